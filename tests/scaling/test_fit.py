"""Scaling-law fits: recovery of known laws from synthetic data, bootstrap coverage, Approach 2 against a dense
numeric argmin, Epoch AI's refit of Chinchilla's Figure 4, and input errors."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bitnet_jax.scaling.fit import fit_chinchilla, fit_isoflop, fit_power_law

# Besiroglu et al. 2024 (Epoch AI), refit of Hoffmann et al.'s Figure 4: also the truth of the synthetic laws
EPOCH = {"E": 1.817, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}
FIG4 = Path(__file__).resolve().parents[1] / "data" / "chinchilla_fig4_epoch.csv"  # credit: next to it, .md
POWER = {"A": 400.0, "alpha": 0.3, "E": 1.7}


def chinchilla_law(N, D, E, A, B, alpha, beta):
    return E + A * N**-alpha + B * D**-beta


def huber_objective(params, N, D, loss, delta=1e-3):
    """Hoffmann et al.'s objective at given (E, A, B, alpha, beta), written independently in numpy."""
    r = np.log(chinchilla_law(N, D, **params)) - np.log(loss)
    return np.sum(np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)))


def frontier(E, A, B, alpha, beta):
    """(G, a, b) of the closed-form compute-optimal frontier."""
    return (alpha * A / (beta * B)) ** (1 / (alpha + beta)), beta / (alpha + beta), alpha / (alpha + beta)


def dense_argmin_n(C, law):
    """N minimising law(N, C / 6N), by brute force over a fine log grid."""
    N = np.logspace(6, 14, 400_001)
    return N[np.argmin(law(N, C / (6 * N)))]


@pytest.fixture(scope="module")
def power_data():
    rng = np.random.default_rng(0)
    x = np.logspace(6, 9, 16)
    loss = (POWER["E"] + POWER["A"] * x ** -POWER["alpha"]) * np.exp(0.003 * rng.standard_normal(x.size))
    return x, loss


@pytest.fixture(scope="module")
def power_fit(power_data):
    return fit_power_law(*power_data, bootstrap=200, seed=0, ci=0.95)


@pytest.fixture(scope="module")
def chinchilla_data():
    rng = np.random.default_rng(1)
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(7e7, 1.6e10, 8), np.geomspace(5e9, 5e11, 8)))
    loss = chinchilla_law(N, D, **EPOCH) * np.exp(0.002 * rng.standard_normal(N.size))
    return N, D, loss


@pytest.fixture(scope="module")
def chinchilla_fit(chinchilla_data):
    return fit_chinchilla(*chinchilla_data, bootstrap=100, seed=0, ci=0.95)


# ---------------------------------------------------------------- power law


def test_power_law_recovers_parameters(power_fit):
    assert power_fit.n_points == 16
    assert power_fit.A == pytest.approx(POWER["A"], rel=0.05)
    assert power_fit.alpha == pytest.approx(POWER["alpha"], rel=0.02)
    assert power_fit.E == pytest.approx(POWER["E"], rel=0.02)


def test_power_law_intervals_cover_truth_and_are_tight(power_fit):
    for name, true in POWER.items():
        lo, hi = power_fit.intervals[name]
        assert lo <= true <= hi, (name, lo, hi)
        assert lo <= getattr(power_fit, name) <= hi
        assert hi - lo < 0.25 * true, (name, lo, hi)  # an interval this wide would say nothing
        assert power_fit.samples[name].shape == (200,)


def test_power_law_bootstrap_is_seeded(power_data, power_fit):
    again = fit_power_law(*power_data, bootstrap=200, seed=0, ci=0.95)
    other = fit_power_law(*power_data, bootstrap=200, seed=1, ci=0.95)
    assert again.intervals == power_fit.intervals
    assert other.intervals != power_fit.intervals


def test_power_law_is_scale_free(power_data, power_fit):
    x, loss = power_data
    shifted = fit_power_law(x * 1e16, loss)  # x up to 1e25, like training FLOPs
    assert shifted.alpha == pytest.approx(power_fit.alpha, rel=1e-6)
    assert shifted.E == pytest.approx(power_fit.E, rel=1e-6)
    assert shifted.A == pytest.approx(power_fit.A * 1e16**power_fit.alpha, rel=1e-5)
    assert shifted.intervals == {} and shifted.samples == {}


def test_power_law_with_a_clear_exponent_is_resolved(power_fit):
    assert power_fit.resolved and power_fit.reason == ""


def test_flat_data_leave_the_power_law_unresolved():
    rng = np.random.default_rng(0)
    x = np.geomspace(1e6, 1e9, 10)
    loss = 2.0 * np.exp(0.01 * rng.standard_normal(10))  # no trend at all: a flat curve fits as well as any
    fit = fit_power_law(x, loss, bootstrap=100, seed=0)
    assert not fit.resolved
    assert fit.reason.startswith("the 80 % interval of alpha holds 0")
    assert fit.to_dict()["resolved"] is False and fit.to_dict()["reason"] == fit.reason


def test_rising_data_leave_the_power_law_unresolved():
    x = np.geomspace(1e6, 1e9, 8)
    fit = fit_power_law(x, 2.0 + 0.01 * np.log(x))  # loss grows with x: only alpha < 0 fits
    assert fit.alpha < 0
    assert not fit.resolved and "does not decrease over the data range" in fit.reason


def test_too_few_points_or_a_cliff_leave_the_power_law_unresolved():
    x = np.geomspace(1e6, 1e9, 4)
    four = fit_power_law(x, POWER["E"] + POWER["A"] * x ** -POWER["alpha"], bootstrap=20)
    assert not four.resolved and four.reason.startswith("4 points for 3 parameters: at least 5")
    x = np.geomspace(1e6, 1e9, 6)
    cliff = fit_power_law(x, [3.0, 2.0, 2.0, 2.0, 2.0, 2.0])  # one high point, then flat: only a step fits
    assert not cliff.resolved and ("upper edge" in cliff.reason or "not finite" in cliff.reason)


@pytest.mark.parametrize("interval, says", [
    ((0.1, 0.5), ""),
    ((-0.1, 0.5), "the 80 % interval of alpha holds 0"),
    ((0.1, 2.5), "the 80 % interval of alpha reaches beyond 2"),
    ((0.35, 0.5), "alpha = 0.3 lies outside its own 80 % interval"),
    ((np.nan, np.nan), "the 80 % interval of alpha is not finite"),
])
def test_the_interval_of_alpha_decides_whether_a_law_is_resolved(interval, says):
    from bitnet_jax.scaling.fit import _unresolved_reason

    reason = _unresolved_reason({"A": 400.0, "alpha": 0.3, "E": 1.7}, interval, 0.8, 10)
    assert reason.startswith(says) and bool(reason) == bool(says)


def test_power_law_predict_and_inverse(power_fit):
    x = np.array([1e5, 3e7, 1e12])
    np.testing.assert_allclose(power_fit.inverse(power_fit.predict(x)), x, rtol=1e-9)
    assert np.all(np.isinf(power_fit.inverse([power_fit.E, power_fit.E - 0.1])))
    json.dumps(power_fit.to_dict(samples=True))


# ---------------------------------------------------------------- Approach 3


def test_chinchilla_recovers_parameters(chinchilla_fit):
    fit = chinchilla_fit
    assert fit.n_points == 64
    assert fit.E == pytest.approx(EPOCH["E"], rel=0.03)
    assert fit.alpha == pytest.approx(EPOCH["alpha"], rel=0.03)
    assert fit.beta == pytest.approx(EPOCH["beta"], rel=0.03)
    assert fit.A == pytest.approx(EPOCH["A"], rel=0.1)
    assert fit.B == pytest.approx(EPOCH["B"], rel=0.15)


def test_chinchilla_intervals_cover_truth(chinchilla_fit):
    G, a, b = frontier(**EPOCH)
    for name, true in {**EPOCH, "G": G, "a": a, "b": b}.items():
        lo, hi = chinchilla_fit.intervals[name]
        assert lo <= true <= hi, (name, lo, hi)
        assert chinchilla_fit.samples[name].shape == (100,)
    lo, hi = chinchilla_fit.intervals["alpha"]
    assert hi - lo < 0.05  # tight enough to reject a wrong exponent


def test_chinchilla_frontier(chinchilla_fit):
    fit = chinchilla_fit
    G, a, b = frontier(fit.E, fit.A, fit.B, fit.alpha, fit.beta)
    assert (fit.G, fit.a, fit.b) == pytest.approx((G, a, b), rel=1e-12)
    assert fit.a == pytest.approx(frontier(**EPOCH)[1], abs=0.02)
    C = np.array([1e20, 1e23])
    np.testing.assert_allclose(6 * fit.n_opt(C) * fit.d_opt(C), C, rtol=1e-12)
    for c in C:  # the closed form is the argmin of the fitted law along the iso-FLOP line
        assert fit.n_opt(c) == pytest.approx(dense_argmin_n(c, fit.predict), rel=1e-3)
    json.dumps(fit.to_dict())


def test_chinchilla_reproduces_epoch_refit_of_figure_4():
    with FIG4.open() as f:
        rows = list(csv.DictReader(f))
    N, C, loss = (np.array([float(r[k]) for r in rows]) for k in ("Model Size", "Training FLOP", "loss"))
    keep = np.argsort(loss)[:-5]  # Epoch drop the 5 highest-loss points; with them beta comes out 0.45
    N, D, loss = N[keep], C[keep] / (6 * N[keep]), loss[keep]
    fit = fit_chinchilla(N, D, loss)
    for name, rel in {"E": 0.01, "alpha": 0.01, "beta": 0.01, "A": 0.02, "B": 0.04}.items():
        assert getattr(fit, name) == pytest.approx(EPOCH[name], rel=rel), name
    # the optimum found is at least as good as Epoch's (rounded) published parameters
    assert fit.objective <= huber_objective(EPOCH, N, D, loss)
    assert fit.objective == pytest.approx(huber_objective({k: getattr(fit, k) for k in EPOCH}, N, D, loss), rel=1e-9)


# ---------------------------------------------------------------- Approach 2


def isoflop_grid(budgets, sizes=7, span=1.5):
    """Sizes spread over +-span in ln N around the true optimum of each budget, losses from the Epoch law."""
    G, a, _ = frontier(**EPOCH)
    N = np.concatenate([G * (c / 6) ** a * np.exp(np.linspace(-span, span, sizes)) for c in budgets])
    C = np.repeat(budgets, sizes)
    return N, C, chinchilla_law(N, C / (6 * N), **EPOCH)


def test_isoflop_matches_dense_argmin():
    budgets = np.logspace(18, 22, 5)
    fit = fit_isoflop(*isoflop_grid(budgets))
    law = lambda N, D: chinchilla_law(N, D, **EPOCH)  # noqa: E731
    truth = np.array([dense_argmin_n(c, law) for c in budgets])
    np.testing.assert_allclose(fit.budgets, budgets, rtol=1e-12)
    np.testing.assert_allclose(fit.n_opt_per_budget, truth, rtol=0.01)
    np.testing.assert_allclose(fit.n_opt(budgets), truth, rtol=0.01)
    assert fit.a == pytest.approx(frontier(**EPOCH)[1], abs=0.002)
    np.testing.assert_allclose(fit.loss_opt_per_budget, law(truth, budgets / (6 * truth)), rtol=1e-3)
    np.testing.assert_allclose(6 * fit.n_opt(budgets) * fit.d_opt(budgets), budgets, rtol=1e-12)
    # each stored parabola reproduces its budget's vertex
    for coef, n_opt in zip(fit.parabolas, fit.n_opt_per_budget):
        assert -coef[1] / (2 * coef[0]) == pytest.approx(np.log(n_opt), rel=1e-9)


def test_isoflop_d_opt_from_parabolas_in_ln_d():
    """With D = C / 6N, ln D is ln N mirrored at each budget, so the ln D parabolas put D_opt at exactly C / 6 N_opt
    and b = 1 - a; bootstrap draws of both vertices come from one resample of each budget."""
    budgets = np.logspace(18, 22, 5)
    N, C, loss = isoflop_grid(budgets)
    fit = fit_isoflop(N, C, loss, D=C / (6 * N), bootstrap=50, seed=1)
    np.testing.assert_allclose(fit.d_opt_per_budget, budgets / (6 * fit.n_opt_per_budget), rtol=1e-9)
    assert fit.b == pytest.approx(1 - fit.a, abs=1e-9)
    np.testing.assert_allclose(fit.d_opt(budgets), budgets / (6 * fit.n_opt(budgets)), rtol=1e-9)
    np.testing.assert_allclose(fit.samples["d_opt_per_budget"] * fit.samples["n_opt_per_budget"] * 6,
                               np.broadcast_to(budgets, (50, 5)), rtol=1e-9)
    assert fit.intervals["b"][0] <= fit.b <= fit.intervals["b"][1]
    with pytest.raises(ValueError, match="D must be finite and positive"):
        fit_isoflop(N, C, loss, D=-C)


def test_isoflop_groups_budgets_skips_small_ones_and_bootstraps():
    rng = np.random.default_rng(2)
    N, C, loss = isoflop_grid(np.logspace(18, 21, 4))
    C = C * (1 + 1e-5 * rng.standard_normal(C.size))  # same budget to 3 significant digits
    loss = loss * np.exp(0.002 * rng.standard_normal(loss.size))
    N, C, loss = np.append(N, [1e9, 2e9]), np.append(C, [1e23, 1e23]), np.append(loss, [2.0, 2.1])  # 2 points only
    fit = fit_isoflop(N, C, loss, bootstrap=200, seed=0)
    assert len(fit.budgets) == 4 and fit.skipped == (1e23,)
    assert fit.intervals["a"][0] <= fit.a <= fit.intervals["a"][1]
    assert fit.intervals["k"][0] <= fit.k <= fit.intervals["k"][1]
    assert fit.samples["n_opt_per_budget"].shape == (200, 4)
    assert fit_isoflop(N, C, loss, bootstrap=200, seed=0).intervals == fit.intervals
    json.dumps(fit.to_dict(samples=True))


def test_isoflop_excludes_a_budget_whose_sizes_all_lie_on_one_side_of_its_optimum():
    budgets = np.logspace(18, 21, 4)
    N, C, loss = isoflop_grid(budgets)
    G, a, _ = frontier(**EPOCH)
    lopsided = 1e22
    n_big = G * (lopsided / 6) ** a * np.exp(np.linspace(0.8, 3.0, 5))  # every size above the optimum
    fit = fit_isoflop(np.append(N, n_big), np.append(C, np.full(5, lopsided)),
                      np.append(loss, chinchilla_law(n_big, lopsided / (6 * n_big), **EPOCH)))
    assert fit.out_of_range == (lopsided,)
    np.testing.assert_allclose(fit.budgets, budgets, rtol=1e-12)
    clean = fit_isoflop(N, C, loss)
    assert (fit.k, fit.a) == pytest.approx((clean.k, clean.a), rel=1e-9)
    assert fit.to_dict()["out_of_range"] == [lopsided]


def test_isoflop_needs_two_usable_budgets():
    N, C, loss = isoflop_grid(np.array([1e19]))
    with pytest.raises(ValueError, match="2 budgets"):
        fit_isoflop(N, C, loss)


# ---------------------------------------------------------------- bad input


def _call(kind, *arrays, **options):
    if kind == "power":
        return fit_power_law(arrays[0], arrays[-1], **options)
    return {"chinchilla": fit_chinchilla, "isoflop": fit_isoflop}[kind](*arrays, **options)


@pytest.mark.parametrize("kind", ["power", "chinchilla", "isoflop"])
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a[:-1], "equal lengths"),
        (lambda a: np.where(np.arange(a.size) == 3, -a, a), "positive"),
        (lambda a: np.where(np.arange(a.size) == 3, 0.0, a), "positive"),
        (lambda a: np.where(np.arange(a.size) == 3, np.nan, a), "finite"),
        (lambda a: a.reshape(2, -1), "1-D"),
    ],
)
def test_bad_arrays_raise(kind, change, message):
    arrays = [np.linspace(1.0, 2.0, 8) * 1e9 for _ in range(3)]
    arrays[0] = change(arrays[0])
    with pytest.raises(ValueError, match=message):
        _call(kind, *arrays)


@pytest.mark.parametrize("kind, n", [("power", 2), ("chinchilla", 4), ("isoflop", 2)])
def test_too_few_points_raise(kind, n):
    with pytest.raises(ValueError, match="at least"):
        _call(kind, *[np.arange(1.0, n + 1) for _ in range(3)])


@pytest.mark.parametrize("options", [{"bootstrap": -1}, {"bootstrap": 2.5}, {"ci": 1.0}, {"ci": 0.0}])
def test_bad_options_raise(options):
    with pytest.raises(ValueError, match="bootstrap|ci"):
        fit_power_law(np.arange(1.0, 9.0), np.arange(9.0, 1.0, -1), **options)


def test_exhaustive_search_reaches_the_screened_optimum():
    rng = np.random.default_rng(5)
    x = np.geomspace(1e6, 1e9, 12)
    loss = (1.7 + 400 * x ** -0.3) * (1 + 0.003 * rng.standard_normal(12))
    screened, exhaustive = fit_power_law(x, loss), fit_power_law(x, loss, search="exhaustive")
    assert exhaustive.objective <= screened.objective * (1 + 1e-6) + 1e-12
    assert exhaustive.E == pytest.approx(screened.E, rel=1e-3)
    with pytest.raises(ValueError, match="search"):
        fit_power_law(x, loss, search="random")
