"""Joint effective-parameter fit: recovery of known shared parameters and rho from synthetic data (grid of N x D,
fixed D, D = 20 N), bootstrap intervals covering the truth, size buckets on data whose rho changes with N, errors."""

import json

import numpy as np
import pytest

from bitnet_jax.scaling.joint import fit_joint, rho_by_size

TRUE = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}
RHO = {"fp16": 1.0, "bitnet_b158": 0.55, "bitnet": 0.3}
NOISE = 0.003  # multiplicative, 0.3 %


def law(N, D, rho):
    return TRUE["E"] + TRUE["A"] * (rho * N) ** -TRUE["alpha"] + TRUE["B"] * D ** -TRUE["beta"]


def synthetic(N, D, rho_of, seed):
    """Every label at every (N, D); rho_of(label, N) -> the true rho. Returns N, D, loss, labels over all labels."""
    labels = np.repeat(list(RHO), len(N))
    NN, DD = np.tile(N, len(RHO)), np.tile(D, len(RHO))
    rho = np.array([rho_of(lab, n) for lab, n in zip(labels, NN)])
    noise = np.exp(NOISE * np.random.default_rng(seed).standard_normal(NN.size))
    return NN, DD, law(NN, DD, rho) * noise, labels


def constant_rho(label, N):
    return RHO[label]


GRID_N, GRID_D = (g.ravel() for g in np.meshgrid(np.geomspace(2e7, 1e9, 5), np.geomspace(1e9, 1e11, 5)))
SIZES = np.geomspace(2e7, 2e9, 8)


@pytest.fixture(scope="module")
def grid_fit():
    return fit_joint(*synthetic(GRID_N, GRID_D, constant_rho, seed=0), bootstrap=100, seed=0, ci=0.95)


def test_grid_recovers_rho_and_shared_parameters(grid_fit):
    assert grid_fit.form == "N,D" and grid_fit.n_points == 75
    assert grid_fit.rho["fp16"] == 1.0
    for label in ("bitnet_b158", "bitnet"):
        assert grid_fit.rho[label] == pytest.approx(RHO[label], rel=0.05)
    assert grid_fit.alpha == pytest.approx(TRUE["alpha"], abs=0.02)
    assert grid_fit.beta == pytest.approx(TRUE["beta"], abs=0.03)
    assert grid_fit.E == pytest.approx(TRUE["E"], rel=0.03)


def test_grid_intervals_cover_truth(grid_fit):
    truth = TRUE | {f"rho[{k}]": v for k, v in RHO.items() if k != "fp16"}
    assert set(grid_fit.intervals) == set(truth)
    for name, value in truth.items():
        lo, hi = grid_fit.intervals[name]
        assert lo <= value <= hi, (name, lo, hi)
    lo, hi = grid_fit.intervals["rho[bitnet_b158]"]
    assert hi - lo < 0.1  # the interval is informative, not just wide


def test_predict_matches_generating_law(grid_fit):
    for label, rho in RHO.items():
        np.testing.assert_allclose(grid_fit.predict(GRID_N, GRID_D, label), law(GRID_N, GRID_D, rho), rtol=0.01)
    with pytest.raises(ValueError, match="unknown label"):
        grid_fit.predict(1e8, 1e10, "int4")


def test_to_dict_is_plain_json(grid_fit):
    d = json.loads(json.dumps(grid_fit.to_dict(), allow_nan=False))
    assert d["form"] == "N,D" and set(d["rho"]) == set(RHO)
    assert len(d["intervals"]["rho[bitnet]"]) == 2 and "samples" not in d


def test_fixed_d_fits_n_form_and_recovers_rho():
    D = np.full_like(SIZES, 2e10)
    fit = fit_joint(*synthetic(SIZES, D, constant_rho, seed=1))
    assert fit.form == "N" and fit.B is None and fit.beta is None
    for label in ("bitnet_b158", "bitnet"):
        assert fit.rho[label] == pytest.approx(RHO[label], rel=0.05)
    # at fixed D the D term is a constant that E absorbs
    assert fit.E == pytest.approx(TRUE["E"] + TRUE["B"] * 2e10 ** -TRUE["beta"], rel=0.03)
    np.testing.assert_allclose(fit.predict(SIZES, None, "bitnet"), law(SIZES, D, 0.3), rtol=0.01)


def matched_size_ratio(N, rho, k):
    """N' / N where fp16 at (N', k N') reaches the loss of rho at (N, k N): bisection in log N' on the true law."""
    target = law(N, k * N, rho)
    lo, hi = np.log(N) - 10, np.log(N)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if law(np.exp(mid), k * np.exp(mid), 1.0) > target else (lo, mid)
    return np.exp(lo) / N


def test_d_proportional_to_n_fits_n_form_with_matched_size_rho():
    fit = fit_joint(*synthetic(SIZES, 20 * SIZES, constant_rho, seed=2))
    assert fit.form == "N"
    for label in ("bitnet_b158", "bitnet"):
        # along D = 20 N, rho is the equal-loss size ratio (fp16 also loses tokens), which varies slowly with N
        ratios = [matched_size_ratio(n, RHO[label], 20) for n in SIZES]
        assert min(ratios) * 0.98 <= fit.rho[label] <= max(ratios) * 1.02, (label, fit.rho[label], ratios)


def drifting_rho(label, N):
    """bitnet_b158 is worth 0.45 of an fp16 parameter below 1.5e8 parameters and 0.65 above; bitnet stays at 0.3."""
    if label == "bitnet_b158":
        return 0.45 if N < 1.5e8 else 0.65
    return RHO[label]


def test_size_buckets_detect_drift():
    fit = rho_by_size(*synthetic(GRID_N, GRID_D, drifting_rho, seed=3), buckets=2, bootstrap=100, seed=0, ci=0.95)
    # distinct sizes 2e7, 5.3e7, 1.4e8 | 3.8e8, 1e9: the cut between buckets matches the change in rho
    assert fit.buckets[0][1] < 1.5e8 < fit.buckets[1][0]
    assert set(fit.rho) == {"fp16", "bitnet_b158@0", "bitnet_b158@1", "bitnet@0", "bitnet@1"}
    for key, value in {"bitnet_b158@0": 0.45, "bitnet_b158@1": 0.65, "bitnet@0": 0.3, "bitnet@1": 0.3}.items():
        assert fit.rho[key] == pytest.approx(value, rel=0.06)
        lo, hi = fit.intervals[f"rho[{key}]"]
        assert lo <= value <= hi, (key, lo, hi)
    lo, hi = fit.intervals["drift[bitnet_b158]"]
    assert 1.0 < lo <= 0.65 / 0.45 <= hi
    lo, hi = fit.intervals["drift[bitnet]"]
    assert lo <= 1.0 <= hi
    assert fit.drift["bitnet_b158"] == pytest.approx(0.65 / 0.45, rel=0.1)


@pytest.mark.parametrize("change, match", [
    (lambda a: a | {"labels": np.where(a["labels"] == "fp16", "bf16", a["labels"])}, "baseline"),
    (lambda a: {k: v[[0, 25, 50]] for k, v in a.items()}, "at least"),  # one point per label: 3 for 5 parameters
    (lambda a: a | {"N": -a["N"]}, "positive"),
    (lambda a: a | {"loss": np.where(np.arange(a["loss"].size) == 3, np.nan, a["loss"])}, "positive"),
    (lambda a: a | {"D": a["D"][:-1]}, "equal lengths"),
    (lambda a: a | {"labels": a["labels"][:-1]}, "equal lengths"),
    (lambda a: a | {"labels": a["labels"].reshape(-1, 3)}, "1-D"),
])
def test_bad_input_raises(change, match):
    N, D, loss, labels = synthetic(GRID_N, GRID_D, constant_rho, seed=4)
    args = change({"N": N, "D": D, "loss": loss, "labels": labels})
    with pytest.raises(ValueError, match=match):
        fit_joint(args["N"], args["D"], args["loss"], args["labels"])


@pytest.mark.parametrize("options, match", [({"buckets": 1}, "buckets"), ({"buckets": 6}, "buckets"),
                                            ({"bootstrap": -1}, "bootstrap"), ({"ci": 1.0}, "ci")])
def test_bad_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        rho_by_size(*synthetic(GRID_N, GRID_D, constant_rho, seed=4), **options)
