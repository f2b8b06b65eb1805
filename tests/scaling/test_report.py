"""The analysis, plots and report on synthetic rows drawn from known laws (no training), checked against the
closed forms of those laws."""

import json

import numpy as np
import pytest

from bitnet_jax.errors import UserError
from bitnet_jax.scaling.analysis import UNSTABLE, analyse, compare, fit_rows, loss_gaps
from bitnet_jax.scaling.fit import PowerLaw
from bitnet_jax.scaling.plots import label_colors, loss_figure, training_figure
from bitnet_jax.scaling.report import ReportSettings, render, write_fits, write_report

# fixed tokens, 6 sizes; each variant is worth 1/k of a baseline model: L(N) = E + A (N / k)^-alpha
E, A, ALPHA, TOKENS = 1.8, 60.0, 0.3, 4e5
WORTH = {"fp16": 1.0, "bitnet_b158": 2.0, "bitnet_b158+ste=clipped": 3.0, "bitnet_b158_median": 4.0}
ENERGY_PER_PARAM = {"fp16": 5e-13, "bitnet_b158": 1e-14, "bitnet_b158+ste=clipped": 1e-14,
                    "bitnet_b158_median": 2e-14}
SIZES = np.geomspace(2.5e4, 4e5, 6)


def row(label, n, loss, *, tokens=TOKENS, budget=None, run_id=None, **extra):
    return {"run_id": run_id or f"{label}_{n:.4g}_{tokens:.3g}", "label": label, "recipe": label.split("+")[0],
            "status": "finished", "d_model": int(n), "n_layers": 2, "d_ff": 4 * int(n), "n_params": n * 1.2,
            "n_params_non_embedding": n, "tokens": tokens, "flops": 6 * n * tokens, "budget": budget, "lr": 1e-3,
            "seed": 0, "final_train_loss": loss, "final_tune_loss": loss, "final_val_loss": loss,
            "val_bits_per_byte": None if loss is None else loss / np.log(2), "tokens_per_sec": 1e5,
            "energy_per_token_7nm_j": n * ENERGY_PER_PARAM.get(label, 1e-13), "energy_per_token_45nm_j": n * 1e-12,
            "wall_s": 1.0, "best_lr": True, "data_entropy_floor": None, "eval": None, **extra}


def variant_rows(noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    return [row(label, n, (E + A * (n / k) ** -ALPHA) * (1 + noise * rng.standard_normal()))
            for label, k in WORTH.items() for n in SIZES]


@pytest.fixture(scope="module")
def variants():
    rows = variant_rows()
    return rows, analyse(rows, bootstrap=40)


def legend_texts(fig):
    return [t.get_text() for ax in fig.axes for t in (ax.get_legend().get_texts() if ax.get_legend() else [])] + \
        [t.get_text() for legend in fig.legends for t in legend.get_texts()]


# ---------------------------------------------------------------- labels and comparisons


def test_every_label_gets_its_curves_and_a_comparison_with_the_baseline(variants):
    rows, result = variants
    assert list(result.fits) == list(WORTH)  # the baseline first, then in order of appearance
    for label in WORTH:
        assert {"loss_vs_compute", "loss_vs_params", "loss_vs_energy"} <= set(result.fits[label])
        assert result.fits[label]["loss_vs_params"].alpha == pytest.approx(ALPHA, rel=0.1)
    assert sorted(result.comparison) == sorted(set(WORTH) - {"fp16"})
    for label, k in WORTH.items():
        if label == "fp16":
            continue
        comp = result.comparison[label]
        assert [g["gap"] > 0 for g in comp["loss_gap"]] == [True] * 6
        # at fixed tokens C is proportional to N, so matching loss needs k times the compute; energy per token
        # scales with N too, times the labels' energy per parameter
        for c in comp["compute_multiplier"]:
            assert c["ratio"] == pytest.approx(k, rel=0.15) and c["interval"][0] <= c["ratio"] <= c["interval"][1]
        for c in comp["energy_ratio"]:
            assert c["ratio"] == pytest.approx(k * ENERGY_PER_PARAM[label] / ENERGY_PER_PARAM["fp16"], rel=0.15)
        for c in comp["effective_param_ratio"]:
            assert c["ratio"] == pytest.approx(1 / k, rel=0.15)
    json.dumps(result.to_dict(), allow_nan=False)


def test_plots_have_one_legend_entry_per_label_and_distinct_colours(variants):
    rows, result = variants
    for axis, variable in (("params", "N"), ("compute", "C"), ("energy", "e")):
        fig = loss_figure(rows, result, axis)
        texts = legend_texts(fig)
        assert [t for t in texts if t in WORTH] == list(WORTH)
        laws = [t for t in texts if ": L = " in t]
        assert len(laws) == 4 and all(f" {variable}^-0." in t for t in laws), laws
        assert texts.count("80 % bootstrap band") == 1
        points = [c for c in fig.axes[0].collections if c.get_label() in WORTH]
        assert len({tuple(np.round(c.get_facecolor()[0], 3)) for c in points}) == 4


def test_colours_stay_distinct_for_many_labels():
    for n in (3, 12, 25):
        labels = ["fp16"] + [f"variant{i}" for i in range(n)]
        colors = label_colors(labels, "fp16")
        assert len({str(c) for c in colors.values()}) == n + 1 and colors["fp16"] == "black"


def test_fit_rows_take_finished_runs_at_their_chosen_learning_rate():
    good = row("fp16", 1e5, 2.0)
    rows = [good, row("fp16", 2e5, 1.9, best_lr=False), row("fp16", 3e5, 1.8, status="diverged"),
            row("fp16", 4e5, None, status="finished")]
    assert fit_rows(rows) == [good]


def test_without_the_baseline_comparisons_are_skipped_and_a_note_says_why():
    rows = [r for r in variant_rows() if r["label"] != "fp16"]
    result = analyse(rows, bootstrap=0, baseline="fp16")
    assert result.comparison == {}
    assert any("no finished runs labelled 'fp16' (the baseline)" in n for n in result.notes)
    other = analyse(rows, bootstrap=0, baseline="bitnet_b158")
    assert sorted(other.comparison) == ["bitnet_b158+ste=clipped", "bitnet_b158_median"]


# ---------------------------------------------------------------- compute frontier and IsoFLOP

FRONTIER = {"E": 1.8, "A": 400.0, "B": 600.0, "alpha": 0.3}  # alpha = beta: the frontier is one power law


def chinchilla_loss(n, d):
    return FRONTIER["E"] + FRONTIER["A"] * n ** -FRONTIER["alpha"] + FRONTIER["B"] * d ** -FRONTIER["alpha"]


def n_opt(c):
    """Closed form for alpha = beta: N_opt = G (C/6)^(1/2), G = (A / B)^(1 / (2 alpha))."""
    return (FRONTIER["A"] / FRONTIER["B"]) ** (1 / (2 * FRONTIER["alpha"])) * (c / 6) ** 0.5


def isoflop_rows(budgets, spread=np.linspace(-1.0, 1.0, 5)):
    """Per budget, sizes around the true optimum (the middle one exactly at it) at D = C / 6N."""
    return [row("fp16", n, chinchilla_loss(n, c / (6 * n)), tokens=c / (6 * n), budget=c)
            for c in budgets for n in n_opt(c) * np.exp(spread)]


def test_compute_law_is_fitted_on_one_point_per_budget_and_recovers_the_frontier():
    budgets = np.logspace(16, 21, 6)
    rows = isoflop_rows(budgets)
    result = analyse(rows, bootstrap=0)
    fit = result.fits["fp16"]["loss_vs_compute"]
    assert fit.n_points == 6
    best = {c: min((r for r in rows if r["budget"] == c), key=lambda r: r["final_val_loss"]) for c in budgets}
    assert sorted(result.run_ids["fp16"]["loss_vs_compute"]) == sorted(r["run_id"] for r in best.values())
    # the frontier in closed form: L*(C) = E + K C^(-alpha/2)
    frontier = chinchilla_loss(n_opt(budgets), budgets / (6 * n_opt(budgets)))
    assert fit.alpha == pytest.approx(FRONTIER["alpha"] / 2, rel=0.01)
    assert fit.E == pytest.approx(FRONTIER["E"], rel=0.01)
    np.testing.assert_allclose(fit.predict(budgets), frontier, rtol=1e-3)
    assert result.fits["fp16"]["isoflop"].a == pytest.approx(0.5, abs=0.02)
    assert "chinchilla" in result.fits["fp16"]
    assert result.to_dict()["fits"]["fp16"]["loss_vs_compute"]["n_points"] == 6


def test_isoflop_budget_with_its_minimum_outside_its_sizes_is_reported():
    rows = isoflop_rows(np.logspace(16, 19, 4)) + isoflop_rows([1e21], spread=np.linspace(0.8, 2.4, 5))
    result = analyse(rows, bootstrap=0)
    assert result.fits["fp16"]["isoflop"].out_of_range == (1e21,)
    text = render(rows, result, ReportSettings(name="iso"), [])
    assert "budgets 1e+21: vertex outside the sizes sampled, left out of N_opt(C)" in text


def test_compute_optimal_allocation_against_the_baseline_matches_the_closed_form():
    """A label whose N term is 4x the baseline's (A' = 4A, alpha = beta) has N_opt x 4^(1/2alpha) and D_opt divided by
    it at every budget; an IsoFLOP-only sweep fits no L(N) or L(e) (a note says why)."""
    budgets = np.logspace(16, 19, 4)
    shifted = 4 ** (1 / (2 * FRONTIER["alpha"]))
    mine = [row("bitnet_b158", n, FRONTIER["E"] + 4 * FRONTIER["A"] * n ** -FRONTIER["alpha"]
                + FRONTIER["B"] * (c / (6 * n)) ** -FRONTIER["alpha"], tokens=c / (6 * n), budget=c)
            for c in budgets for n in shifted * n_opt(c) * np.exp(np.linspace(-1.0, 1.0, 5))]
    result = analyse(isoflop_rows(budgets) + mine, bootstrap=30)
    [*table] = result.comparison["bitnet_b158"]["compute_optimal"]
    assert [r["budget"] for r in table] == pytest.approx(list(budgets))
    for r in table:
        assert r["N_opt_ratio"]["ratio"] == pytest.approx(shifted, rel=0.02)
        assert r["D_opt_ratio"]["ratio"] == pytest.approx(1 / shifted, rel=0.02)
        assert r["N_opt"] == pytest.approx(shifted * n_opt(r["budget"]), rel=0.02)
        lo, hi = r["N_opt_ratio"]["interval"]
        assert lo <= r["N_opt_ratio"]["ratio"] <= hi
    for label in ("fp16", "bitnet_b158"):
        assert "loss_vs_params" not in result.fits[label] and "loss_vs_energy" not in result.fits[label]
    assert any("L(N) and L(e) are fitted on the runs without a compute budget" in n for n in result.notes)
    text = render(isoflop_rows(budgets) + mine, result, ReportSettings(name="iso"), [])
    assert "compute-optimal allocation (Approach 2), this label / `fp16`:" in text
    assert f"| 1e+16 | {shifted * n_opt(1e16):.3g}" in text


def test_loss_gap_pairs_sizes_whose_token_counts_differ_by_a_few_percent():
    """At D = 20 N a faq-layout recipe has a few more parameters (norms) than fp16, hence a few more tokens: still the
    same size; seeds are averaged; a size only one side ran, or a budget 10 % apart, has no gap."""
    ncol = "n_params_non_embedding"
    base = [row("fp16", 1000, 2.0, tokens=20000), row("fp16", 2000, 1.5, tokens=40000),
            row("fp16", 4000, 1.2, tokens=80000)]
    mine = [row("bitnet_b158", 1000, 2.3, tokens=20100, seed=0), row("bitnet_b158", 1000, 2.5, tokens=20100, seed=1),
            row("bitnet_b158", 2000, 1.8, tokens=44000), row("bitnet_b158", 8000, 1.1, tokens=160000)]
    [gap] = loss_gaps(mine, base, ncol)
    assert (gap["N"], gap["tokens"], gap["baseline_tokens"], gap["runs"]) == (1000, 20100, 20000, 2)
    assert gap["gap"] == pytest.approx(2.4 - 2.0)


def test_seeds_of_one_config_enter_a_fit_as_one_point_at_their_mean():
    """Two seeds per size, one unlucky: the L(N) fit uses the mean of each pair (an exact law), not the lower one."""
    rows = []
    for n in SIZES:
        loss = E + A * n ** -ALPHA
        rows += [row("fp16", n, loss + 0.05, seed=0, run_id=f"a{n:.0f}"),
                 row("fp16", n, loss - 0.05, seed=1, run_id=f"b{n:.0f}")]
    fit = analyse(rows, bootstrap=0).fits["fp16"]["loss_vs_params"]
    assert fit.n_points == len(SIZES)
    assert fit.E == pytest.approx(E, rel=0.02) and fit.alpha == pytest.approx(ALPHA, rel=0.02)


# ---------------------------------------------------------------- withheld comparisons


def test_an_unresolved_law_withholds_the_ratios_built_on_it_but_not_the_loss_gap():
    rng = np.random.default_rng(3)
    flat = [row("bitnet_b158", n, 2.4 * (1 + 0.01 * rng.standard_normal())) for n in SIZES]  # no trend with N
    rows = [r for r in variant_rows() if r["label"] == "fp16"] + flat
    result = analyse(rows, bootstrap=40)
    assert not result.fits["bitnet_b158"]["loss_vs_compute"].resolved
    comp = result.comparison["bitnet_b158"]
    for key, law in (("compute_multiplier", "compute"), ("energy_ratio", "energy"),
                     ("effective_param_ratio", "params")):
        assert key not in comp and comp["withheld"][key].startswith(f"loss_vs_{law} of this label is unresolved")
    assert len(comp["loss_gap"]) == 6
    text = render(rows, result, ReportSettings(name="flat"), [])
    assert "**This sweep cannot resolve 3 of its 6 fitted power laws**" in text
    assert "`bitnet_b158` L(C)" in text.split("## How to read")[0]
    assert "compute multiplier `C(L) / C_fp16(L)`: withheld: loss_vs_compute of this label is unresolved" in text
    assert {u["law"] for u in json.loads(json.dumps(result.to_dict()))["unresolved"]} == {
        "loss_vs_compute", "loss_vs_params", "loss_vs_energy"}


def hand_fit(A, draws_A):
    """L = 1 + A x^-1 fitted on losses 1.5 .. 2, with bootstrap draws that differ from it only in A."""
    n = len(draws_A)
    return PowerLaw(A=A, alpha=1.0, E=1.0, objective=0.0, n_points=6, x_range=(1.0, 2.0), loss_range=(1.5, 2.0),
                    samples={"A": np.asarray(draws_A, float), "alpha": np.ones(n), "E": np.ones(n)})


def test_a_ratio_outside_its_own_bootstrap_interval_is_withheld():
    # x(L) = A / (L - 1): the point ratio is 1 at every loss, every paired draw gives 2
    base, stable, unstable = hand_fit(1.0, np.ones(20)), hand_fit(1.0, np.linspace(0.8, 1.2, 20)), \
        hand_fit(1.0, np.full(20, 2.0))
    fits = lambda f: {"loss_vs_compute": f}  # noqa: E731
    ok = compare([], [], fits(stable), fits(base), "n_params_non_embedding")["compute_multiplier"]
    assert [c["ratio"] for c in ok] == pytest.approx([1.0] * 3)
    bad = compare([], [], fits(unstable), fits(base), "n_params_non_embedding")["compute_multiplier"]
    assert [(c["ratio"], c["withheld"]) for c in bad] == [(None, UNSTABLE)] * 3


# ---------------------------------------------------------------- files, report text, plots


def test_write_fits_and_report_from_plain_rows(tmp_path, variants):
    rows, _ = variants
    rows = rows + [row("fp16", 8e5, None, status="failed", run_id="fp16_failed")]
    settings = ReportSettings(name="four-labels", description="fp16 and three b1.58 variants", bootstrap=40,
                              lr_selection="val")
    analysis = write_fits(tmp_path, rows, settings)
    fits = json.loads((tmp_path / "fits.json").read_text(),
                      parse_constant=lambda c: pytest.fail(f"{c} in fits.json"))
    assert fits["settings"]["baseline"] == "fp16" and fits["settings"]["lr_selection"] == "val"
    assert set(fits["fits"]) == set(WORTH) and set(fits["comparison"]) == set(WORTH) - {"fp16"}
    law = fits["fits"]["bitnet_b158"]["loss_vs_compute"]
    assert law["resolved"] is True and law["n_points"] == 6 and len(law["run_ids"]) == 6
    assert law["selection"].startswith("lowest loss per compute level")

    curves = {r["run_id"]: [{"step": s, "tokens": s * 100, "loss": 3.0 - s / 100, **({"val_loss": 2.9 - s / 100}
                                                                                       if s % 50 == 0 else {})}
                            for s in range(1, 101)] for r in rows[:6]}
    path = write_report(tmp_path, rows, analysis, settings, curves)
    text = path.read_text()
    assert path == tmp_path / "report.md"
    for stem in ("loss_vs_compute", "loss_vs_params", "loss_vs_energy", "training_curves"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 5000 and (tmp_path / f"{stem}.svg").exists()
        assert f"![{stem}]({stem}.png)" in text
    assert "reported losses are optimistic" in text
    assert "Every fitted power law is resolved" in text
    assert "## Against `fp16`" in text and "### bitnet_b158+ste=clipped" in text
    assert "| fp16_failed | fp16 | failed |" in text


def test_settings_are_checked():
    with pytest.raises(UserError, match="lr_selection"):
        ReportSettings(name="x", lr_selection="test")
    with pytest.raises(UserError, match="ci"):
        ReportSettings(name="x", ci=1.5)


def overlaps(labels, renderer):
    boxes = [t.get_window_extent(renderer) for t in labels]
    return [(a.get_text(), b.get_text()) for i, (a, p) in enumerate(zip(labels, boxes))
            for b, q in zip(labels[i + 1:], boxes[i + 1:]) if p.overlaps(q)]


def test_tick_labels_of_few_sizes_do_not_overlap(variants):
    rows, result = variants  # 6 sizes over 1.2 decades, losses over a fraction of one
    fig = loss_figure(rows, result, "params")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        shown = [t for t in axis.get_ticklabels(which="both")
                 if t.get_text() and lo <= (t.get_position()[0] if axis is ax.xaxis else t.get_position()[1]) <= hi]
        assert len(shown) >= 2, [t.get_text() for t in shown]
        assert overlaps(shown, renderer) == []


def test_training_curves_smooth_the_training_loss_and_mark_validation_points(variants):
    rows, result = variants
    raw = [3.0, 1.0] * 20  # alternating: a smoothed curve stays between the extremes
    curve = [{"step": s + 1, "tokens": (s + 1) * 10, "loss": v} for s, v in enumerate(raw)]
    curve += [{"step": 20, "tokens": 200, "val_loss": 2.1}, {"step": 40, "tokens": 400, "val_loss": 2.0}]
    fig = training_figure(rows[:1], result, {rows[0]["run_id"]: curve})
    ax = fig.axes[0]
    lines = {line.get_marker(): line for line in ax.get_lines()}
    smooth = lines["None"].get_ydata()
    assert smooth[0] == pytest.approx(3.0) and 1.6 < smooth[-1] < 2.4
    assert list(lines["o"].get_xdata()) == [200, 400] and list(lines["o"].get_ydata()) == [2.1, 2.0]
    assert "EMA" in ax.get_ylabel() and "validation" in ax.get_ylabel()
