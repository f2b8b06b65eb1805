"""Bootstrap calibration: over many synthetic sweeps drawn from a known power law, the 80 % interval of the
exponent must hold the true exponent about 80 % of the time (70-90 % allows for the finite number of sweeps)."""

import numpy as np

from bitnet_jax.scaling.fit import fit_power_law

TRUE = {"E": 1.7, "A": 400.0, "alpha": 0.3}
SWEEPS, SIZES, NOISE, RESAMPLES = 60, 10, 0.01, 100


def synthetic_sweep(seed):
    """SIZES points spread over three decades, loss with 1 % multiplicative log-normal noise."""
    rng = np.random.default_rng(1000 + seed)
    x = np.geomspace(1e6, 1e9, SIZES)
    return x, (TRUE["E"] + TRUE["A"] * x ** -TRUE["alpha"]) * np.exp(NOISE * rng.standard_normal(SIZES))


def test_80_percent_interval_of_alpha_covers_the_truth_about_80_percent_of_the_time():
    held = 0
    for seed in range(SWEEPS):
        lo, hi = fit_power_law(*synthetic_sweep(seed), bootstrap=RESAMPLES, seed=seed, ci=0.8).intervals["alpha"]
        held += lo <= TRUE["alpha"] <= hi
    assert 0.7 <= held / SWEEPS <= 0.9, held / SWEEPS
