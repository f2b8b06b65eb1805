"""Plots of a sweep, one colour per curve label (matplotlib, PNG and SVG, log axes with units): loss vs compute,
parameters and inference energy with the fitted laws and their bootstrap bands; training curves per size; IsoFLOP
curves. Each figure is built by a function that returns it, so tests can read its legend and ticks."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from bitnet_jax.scaling.analysis import Analysis, labels_of, law_text, n_column, seed_means, short_number  # noqa: E402

BASELINE_COLOR = "black"
EMA_DECAY = 0.9  # smoothing of the logged training loss: a window of about 10 logged steps
AXES = {  # axis -> (row column, x label, variable in the law); params is filled in per analysis
    "compute": ("flops", "training compute C (FLOPs)", "C"),
    "energy": ("energy_per_token_7nm_j", "inference arithmetic energy per token e at 7nm (J)", "e"),
}


def label_colors(labels: list[str], baseline: str) -> dict[str, object]:
    """A distinct colour per label by its position: the baseline black, the others from tab10 (9 colours without
    its grey), tab20 (18) or, beyond that, evenly spaced hues."""
    others = [label for label in labels if label != baseline]
    n = len(others)
    if n <= 9:
        palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]
    elif n <= 18:
        palette = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i not in (14, 15)]
    else:
        palette = [plt.get_cmap("hsv")(i / n) for i in range(n)]
    colors = dict(zip(others, palette))
    if baseline in labels:
        colors[baseline] = BASELINE_COLOR
    return colors


def plot_all(report_dir: str | Path, rows: list[dict], analysis: Analysis, curves: dict[str, list[dict]]) -> list[str]:
    """Write every plot that the fit rows support; returns their file stems."""
    report_dir = Path(report_dir)
    written = [_save(loss_figure(rows, analysis, axis), report_dir / f"loss_vs_{axis}")
               for axis in ("compute", "params", "energy")]
    if any(r["run_id"] in curves for r in rows):
        written.append(_save(training_figure(rows, analysis, curves), report_dir / "training_curves"))
    if any("isoflop" in fits for fits in analysis.fits.values()):
        written.append(_save(isoflop_figure(rows, analysis), report_dir / "isoflop"))
    return written


def _axes(analysis: Analysis) -> dict:
    n_label = f"parameters N ({'with' if analysis.n_with_embeddings else 'without'} embeddings)"
    return {**AXES, "params": (n_column(analysis.n_with_embeddings), n_label, "N")}


def loss_figure(rows: list[dict], analysis: Analysis, axis: str):
    """Final loss against compute, params or energy: filled points are those the law was fitted on (the lowest
    loss per level), hollow ones the rest; each label's fitted curve, and its bootstrap band."""
    column, x_label, variable = _axes(analysis)[axis]
    labels = labels_of(rows, analysis.baseline)
    colors = label_colors(labels, analysis.baseline)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    band_label = f"{round(100 * analysis.ci, 6):g} % bootstrap band"
    hollow_label = "single runs: off the frontier, or one seed of a fitted mean"
    for label in labels:
        rs = [r for r in rows if r["label"] == label]
        used = set(analysis.run_ids.get(label, {}).get(f"loss_vs_{axis}", ()))
        c = colors[label]
        on = seed_means([r for r in rs if r["run_id"] in used or not used])  # the points fitted: seeds averaged
        averaged = {i for p in on if p["seeds"] > 1 for i in p["run_ids"]}
        off = [r for r in rs if (used and r["run_id"] not in used) or r["run_id"] in averaged]
        ax.scatter(_col(on, column), _col(on, "final_val_loss"), color=c, s=22, zorder=3, label=label)
        if off:
            ax.scatter(_col(off, column), _col(off, "final_val_loss"), facecolors="none", edgecolors=c, s=22,
                       zorder=3, label=hollow_label)
            hollow_label = "_nolegend_"
        fit = analysis.fits.get(label, {}).get(f"loss_vs_{axis}")
        if fit is not None:
            band_label = _curve(ax, fit, _col(rs, column), c, f"{label}: {law_text(fit, variable)}", band_label)
    losses = _col(rows, "final_val_loss")
    ax.set_ylim(losses.min() * 0.97, losses.max() * 1.05)  # the curves' extrapolation must not set the scale
    _finish(ax, x_label, "validation loss (nats/token)", f"loss vs {axis}")
    return fig


def _curve(ax, fit, x: np.ndarray, color, label: str, band_label: str) -> str:
    """The fitted law over the data's range (dashed and marked when unresolved) and its band; returns the legend
    text for the next band ('_nolegend_' once one band carries it)."""
    grid = np.geomspace(x.min() / 1.3, x.max() * 1.3, 200)
    style = "-" if fit.resolved else "--"
    ax.plot(grid, fit.predict(grid), style, color=color, lw=1.5, label=label + ("" if fit.resolved else
                                                                               " (unresolved)"))
    if not fit.samples:
        return band_label
    s = fit.samples
    with np.errstate(over="ignore", invalid="ignore"):
        draws = s["E"][:, None] + s["A"][:, None] * grid[None, :] ** -s["alpha"][:, None]
    tail = (1 - fit.ci) / 2 * 100
    lo, hi = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    ax.fill_between(grid, lo, hi, color=color, alpha=0.15, lw=0, label=band_label)
    return "_nolegend_"


def training_figure(rows: list[dict], analysis: Analysis, curves: dict[str, list[dict]]):
    """Per model size: each run's training loss smoothed by an exponential moving average over its logged steps
    (lines), and its validation evaluations (markers), against tokens seen."""
    colors = label_colors(labels_of(rows, analysis.baseline), analysis.baseline)
    sizes = sorted({(r["d_model"], r["n_layers"], r["d_ff"]) for r in rows if r["run_id"] in curves})
    cols = min(3, len(sizes))
    nrows = -(-len(sizes) // cols)
    fig, axs = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False, sharey=True,
                            layout="constrained")
    for ax, size in zip(axs.flat, sizes):
        for r in rows:
            if (r["d_model"], r["n_layers"], r["d_ff"]) != size or r["run_id"] not in curves:
                continue
            log = curves[r["run_id"]]
            train = [m for m in log if m.get("loss") is not None and m.get("tokens") is not None]
            val = [m for m in log if m.get("val_loss") is not None]
            tokens_per_step = r["tokens"] / max(max(m["step"] for m in log), 1)
            c = colors[r["label"]]
            ax.plot([m["tokens"] for m in train], ema([m["loss"] for m in train], EMA_DECAY), color=c, lw=1.0,
                    label=r["label"])
            ax.plot([m.get("tokens") or m["step"] * tokens_per_step for m in val], [m["val_loss"] for m in val],
                    "o", ms=4, color=c, label="_nolegend_")
        ax.set_title(f"d{size[0]} L{size[1]} ff{size[2]}", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("tokens seen")
        ax.grid(alpha=0.3, which="both")
    for ax in axs.flat[len(sizes):]:
        ax.set_visible(False)
    for row in axs:
        row[0].set_ylabel(f"loss (nats/token)\nlines: training, EMA {EMA_DECAY} over logged steps\n"
                          "markers: validation", fontsize=8)
    handles = {}
    for ax in axs.flat:
        for h, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, h)
    handles["validation loss"] = Line2D([], [], marker="o", ls="", color="grey")
    fig.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize=8)
    fig.suptitle("training curves per size")
    return fig


def ema(values: list[float], decay: float) -> np.ndarray:
    """Bias-corrected exponential moving average (as in Adam), so the first points are not pulled towards 0."""
    out, avg = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        avg = decay * avg + (1 - decay) * v
        out[i] = avg / (1 - decay ** (i + 1))
    return out


def isoflop_figure(rows: list[dict], analysis: Analysis):
    """Loss against N for each compute budget: the runs as dots, each budget's fitted parabola in ln N as a line
    over its sizes and its vertex as a star; budgets whose vertex falls outside their sizes are joined by dotted
    lines and left out of the N_opt(C) fit."""
    column, n_label, _ = _axes(analysis)["params"]
    colors = label_colors(labels_of(rows, analysis.baseline), analysis.baseline)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    outside_label = "budget whose minimum lies outside its sizes (not used)"
    for label, fits in analysis.fits.items():
        fit = fits.get("isoflop")
        if fit is None:
            continue
        rs = [r for r in rows if r["label"] == label and r["budget"]]
        for budget in sorted({r["budget"] for r in rs}):
            pts = sorted((r[column], r["final_val_loss"]) for r in rs if r["budget"] == budget)
            outside = any(np.isclose(budget, b, rtol=1e-3) for b in fit.out_of_range)
            ax.plot(*zip(*pts), "o:" if outside else "o", ms=3, lw=0.8, color=colors[label], alpha=0.7,
                    label=outside_label if outside else "_nolegend_")
            outside_label = "_nolegend_" if outside else outside_label
            used = np.flatnonzero(np.isclose(fit.budgets, budget, rtol=1e-3))
            if used.size:
                u = np.linspace(np.log(pts[0][0]), np.log(pts[-1][0]), 50)
                ax.plot(np.exp(u), np.polyval(fit.parabolas[used[0]], u), "-", lw=0.9, color=colors[label],
                        alpha=0.7)
        ax.scatter(fit.n_opt_per_budget, fit.loss_opt_per_budget, marker="*", s=80, color=colors[label],
                   label=f"{label}: N_opt = {short_number(fit.k)} C^{fit.a:.2f}", zorder=4)
    _finish(ax, n_label, "validation loss (nats/token)", "IsoFLOP curves (one line per compute budget)")
    return fig


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r[key] for r in rows], dtype=float)


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_ticks(ax.xaxis, *ax.get_xlim())
    # losses span well under a decade: plain numbers at evenly spaced values read better than 10^0
    ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=6))
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.2f"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _log_ticks(axis, lo: float, hi: float) -> None:
    """Labelled ticks at 1 x 10^k over two decades and more, at 1, 2, 5 x 10^k over less, at 1..9 x 10^k under
    half a decade; minor ticks stay unlabelled, which is what crowds a log axis spanning few decades."""
    decades = np.log10(hi / lo)
    subs = (1.0,) if decades >= 2 else (1.0, 2.0, 5.0) if decades >= 0.5 else tuple(np.arange(1.0, 10.0))
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=12))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: short_number(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def _save(fig, stem: Path) -> str:
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_suffix(".png"), dpi=120, bbox_inches="tight")
    fig.savefig(stem.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return stem.name
