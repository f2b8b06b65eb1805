"""Plots of a sweep (matplotlib, PNG and SVG, log axes with units): loss vs compute, parameters and inference
energy with fitted curves and bootstrap bands; training curves per size; IsoFLOP curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bitnet_jax.scaling.analysis import Analysis, n_column  # noqa: E402

COLORS = {"fp16": "black", "bitnet": "tab:red", "bitnet_b158": "tab:blue", "bitnet_b158_median": "tab:cyan",
          "bitnet_a48": "tab:green"}
AXES = {  # axis name -> (row column, x label)
    "compute": ("flops", "training compute C (FLOPs)"),
    "energy": ("energy_per_token_7nm_j", "inference arithmetic energy per token at 7nm (J)"),
}


def color(recipe: str) -> str:
    return COLORS.get(recipe, f"C{abs(hash(recipe)) % 10}")


def plot_all(report_dir: Path, rows: list[dict], analysis: Analysis, curves: dict[str, list[dict]],
             n_with_embeddings: bool) -> list[str]:
    """Write every plot that the data supports; returns their file stems."""
    ncol = n_column(n_with_embeddings)
    n_label = f"parameters N ({'with' if n_with_embeddings else 'without'} embeddings)"
    axes = {**AXES, "params": (ncol, n_label)}
    written = []
    for axis, (column, label) in axes.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        losses = [r["final_val_loss"] for r in rows]
        for recipe in _recipes(rows):
            rs = [r for r in rows if r["recipe"] == recipe]
            x = np.array([r[column] for r in rs], float)
            y = np.array([r["final_val_loss"] for r in rs], float)
            ax.scatter(x, y, color=color(recipe), s=22, zorder=3, label=recipe)
            fit = analysis.fits.get(recipe, {}).get(f"loss_vs_{axis}")
            if fit is not None:
                _curve(ax, fit, x, color(recipe))
        _finish(ax, label, "validation loss (nats/token)", f"loss vs {axis}")
        ax.set_ylim(min(losses) * 0.97, max(losses) * 1.05)  # the curves' extrapolation must not set the scale
        written.append(_save(fig, report_dir / f"loss_vs_{axis}"))
    if curves:
        written.append(_training_curves(report_dir, rows, curves))
    iso = [(r, f["isoflop"]) for r, f in analysis.fits.items() if "isoflop" in f]
    if iso:
        written.append(_isoflop(report_dir, rows, iso, ncol, n_label))
    return written


def _recipes(rows: list[dict]) -> list[str]:
    return sorted({r["recipe"] for r in rows}, key=lambda r: (r != "fp16", r))


def _curve(ax, fit, x: np.ndarray, c: str) -> None:
    grid = np.geomspace(x.min() / 1.3, x.max() * 1.3, 200)
    ax.plot(grid, fit.predict(grid), color=c, lw=1.5, label=f"E + A x^-a: a={fit.alpha:.2f}, E={fit.E:.2f}")
    if fit.samples:
        s = fit.samples
        with np.errstate(over="ignore", invalid="ignore"):
            draws = np.array([s["E"][i] + s["A"][i] * grid ** -s["alpha"][i] for i in range(len(s["A"]))])
        tail = (1 - fit.ci) / 2 * 100
        lo, hi = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
        ax.fill_between(grid, lo, hi, color=c, alpha=0.15, lw=0)


def _training_curves(report_dir: Path, rows: list[dict], curves: dict[str, list[dict]]) -> str:
    sizes = sorted({(r["d_model"], r["n_layers"], r["d_ff"]) for r in rows})
    cols = min(3, len(sizes))
    nrows = -(-len(sizes) // cols)
    fig, axs = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False, sharey=True)
    for ax, size in zip(axs.flat, sizes):
        for r in rows:
            if (r["d_model"], r["n_layers"], r["d_ff"]) != size or r["run_id"] not in curves:
                continue
            train = [m for m in curves[r["run_id"]] if m.get("loss") is not None and "tokens" in m]
            val = [m for m in curves[r["run_id"]] if m.get("val_loss") is not None]
            tokens_per_step = r["tokens"] / max(m["step"] for m in curves[r["run_id"]])
            ax.plot([m["tokens"] for m in train], [m["loss"] for m in train], color=color(r["recipe"]), lw=0.8,
                    alpha=0.5)
            ax.plot([m["step"] * tokens_per_step for m in val], [m["val_loss"] for m in val], "o-", ms=3,
                    color=color(r["recipe"]), label=r["recipe"])
        ax.set_title(f"d{size[0]} L{size[1]} ff{size[2]}", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("tokens")
        ax.grid(alpha=0.3, which="both")
    for ax in axs.flat[len(sizes):]:
        ax.set_visible(False)
    axs[0][0].set_ylabel("loss (nats/token): train thin, validation dots")
    handles, labels = axs[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8)
    fig.suptitle("training curves per size")
    fig.tight_layout()
    return _save(fig, report_dir / "training_curves")


def _isoflop(report_dir: Path, rows: list[dict], iso: list, ncol: str, n_label: str) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for recipe, fit in iso:
        rs = [r for r in rows if r["recipe"] == recipe and r["budget"]]
        for budget in sorted({r["budget"] for r in rs}):
            pts = sorted((r[ncol], r["final_val_loss"]) for r in rs if r["budget"] == budget)
            ax.plot(*zip(*pts), "o--", ms=3, lw=0.8, color=color(recipe), alpha=0.7)
        ax.scatter(fit.n_opt_per_budget, fit.loss_opt_per_budget, marker="*", s=80, color=color(recipe),
                   label=f"{recipe}: N_opt ~ C^{fit.a:.2f}", zorder=4)
    _finish(ax, n_label, "validation loss (nats/token)", "IsoFLOP curves (one line per compute budget)")
    return _save(fig, report_dir / "isoflop")


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.2f"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def _save(fig, stem: Path) -> str:
    fig.savefig(stem.with_suffix(".png"), dpi=120, bbox_inches="tight")
    fig.savefig(stem.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return stem.name
