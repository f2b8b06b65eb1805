"""A sweep's fits and report from plain data: rows (one dict per run, every status) and training curves in,
REPORT_DIR/{fits.json, *.png, *.svg, report.md} out. Whoever collects the rows from run files calls
`write_fits`, then `write_report`; nothing here reads a sweep directory."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from bitnet_jax.errors import UserError
from bitnet_jax.files import write_atomic
from bitnet_jax.scaling.analysis import SELECTION, Analysis, analyse, draw_interval, fit_rows, labels_of, law_text
from bitnet_jax.scaling.fit import ALPHA_EDGES, MIN_POINTS

LR_SELECTION = {
    "tune": "Each group's learning rate was chosen on the tuning split; the losses reported are on the held-out "
            "validation split, which played no part in the choice.",
    "val": "Each group's learning rate was chosen on the validation split whose losses are reported, so the "
           "reported losses, and the fits made from them, are optimistic (biased low).",
    "none": "No learning-rate grid: every run trained at its one configured learning rate.",
}
PARAMS = {"loss_vs_compute": ("A", "alpha", "E"), "loss_vs_params": ("A", "alpha", "E"),
          "loss_vs_energy": ("A", "alpha", "E"), "chinchilla": ("E", "A", "B", "alpha", "beta", "a", "b"),
          "isoflop": ("k", "a", "k_d", "b")}
LAWS = {"loss_vs_compute": "L(C) = E + A C^-alpha", "loss_vs_params": "L(N) = E + A N^-alpha",
        "loss_vs_energy": "L(e) = E + A e^-alpha (e: inference J/token, 7nm)",
        "chinchilla": "L(N, D) = E + A N^-alpha + B D^-beta (Approach 3); N_opt ~ C^a, D_opt ~ C^b",
        "isoflop": "N_opt(C) = k C^a, D_opt(C) = k_d C^b (Approach 2)"}
VARIABLE = {"loss_vs_compute": "C", "loss_vs_params": "N", "loss_vs_energy": "e"}
RATIOS = {"compute_multiplier": ("compute multiplier", "C(L) / C_base(L)"),
          "energy_ratio": ("inference-energy ratio", "e(L) / e_base(L)"),
          "effective_param_ratio": ("effective-parameter ratio", "N_base(L(N)) / N")}


@dataclass(frozen=True)
class ReportSettings:
    """How to fit and what to say: the baseline label, the bootstrap, which N, and how learning rates were chosen
    ('tune': on the tuning split; 'val': on the reported validation split; 'none': no learning-rate grid)."""

    name: str
    description: str = ""
    baseline: str = "fp16"
    bootstrap: int = 200
    ci: float = 0.8
    n_with_embeddings: bool = False
    lr_selection: str = "tune"

    def __post_init__(self):
        if self.lr_selection not in LR_SELECTION:
            raise UserError(f"report settings: lr_selection must be one of {', '.join(LR_SELECTION)}, "
                            f"got {self.lr_selection!r}")
        if not isinstance(self.bootstrap, int) or isinstance(self.bootstrap, bool) or self.bootstrap < 0:
            raise UserError(f"report settings: bootstrap must be a non-negative integer, got {self.bootstrap!r}")
        if not 0 < self.ci < 1:
            raise UserError(f"report settings: ci must lie strictly between 0 and 1, got {self.ci!r}")


def write_fits(report_dir: str | Path, rows: list[dict], settings: ReportSettings) -> Analysis:
    """Fit every label of `rows` and compare it with the baseline; writes REPORT_DIR/fits.json (JSON, no NaN)."""
    analysis = analyse(rows, baseline=settings.baseline, bootstrap=settings.bootstrap, ci=settings.ci,
                       n_with_embeddings=settings.n_with_embeddings)
    payload = {"settings": dataclasses.asdict(settings), **analysis.to_dict()}
    write_atomic(Path(report_dir) / "fits.json", json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n")
    return analysis


def write_report(report_dir: str | Path, rows: list[dict], analysis: Analysis, settings: ReportSettings,
                 curves: dict[str, list[dict]]) -> Path:
    """Plots (PNG and SVG) and REPORT_DIR/report.md; `curves` maps run_id to its metrics.jsonl rows."""
    from bitnet_jax.scaling.plots import plot_all  # matplotlib only when a report is drawn

    report_dir = Path(report_dir)
    good = fit_rows(rows)
    plots = plot_all(report_dir, good, analysis, curves) if good else []
    path = report_dir / "report.md"
    write_atomic(path, render(rows, analysis, settings, plots))
    return path


def render(rows: list[dict], analysis: Analysis, settings: ReportSettings, plots: list[str]) -> str:
    """report.md as text: headline, how to read it, runs, evaluation, fits, comparisons, plots, notes."""
    done = sum(r["status"] == "finished" for r in rows)
    ci, base = _pct(settings.ci), settings.baseline
    lines = [f"# Sweep `{settings.name}`", "", settings.description.strip(), "",
             f"{len(rows)} runs, {done} finished, {len(fit_rows(rows))} enter the fits (finished, at their chosen "
             f"learning rate). {LR_SELECTION[settings.lr_selection]} {_intervals_sentence(settings)} N counts "
             f"parameters {'with' if settings.n_with_embeddings else 'without'} embeddings. Curves are keyed by label; "
             f"`{base}` is the baseline.", "",
             "## Headline", "", *_headline(analysis, settings), "",
             "## How to read this report", "",
             "- **Loss vs compute**: final validation loss against training FLOPs, fitted as `L = E + A C^-alpha` "
             "on each label's compute frontier: at each compute level only the run with the lowest loss (the "
             "others are drawn hollow). Loss vs N and vs inference energy likewise use the lowest loss per N "
             "(per energy).",
             f"- A law is **unresolved** when the data do not pin down a falling curve: fewer than {MIN_POINTS} "
             f"points, a fit that does not decrease or is a cliff (alpha above {ALPHA_EDGES[1]:g}), or a {ci} "
             f"interval of alpha that holds 0, reaches beyond {ALPHA_EDGES[1]:g} or misses the point estimate. "
             f"Ratios built on it are withheld.",
             f"- **Compute multiplier** `C(L) / C_{base}(L)`: how many times the baseline's compute a label needs to "
             f"reach the same loss (above 1: more training compute).",
             f"- **Effective-parameter ratio** `N_{base}(L(N)) / N`: the share of a baseline model that a model of N "
             f"parameters is worth (1 = as good as the baseline).",
             f"- **Energy ratio** `e(L) / e_{base}(L)` at matched loss on the inference-energy axis (BitNet's "
             f"inference-optimal scaling law): below 1, the label reaches that loss for less energy per token.",
             "- A ratio whose point estimate falls outside its own bootstrap interval is withheld: the fit is "
             "unstable.", "",
             "## Runs", "", _runs_table(rows), ""]
    evaluated = _eval_section(rows, base)
    if evaluated:
        lines += ["## Zero-shot evaluation", "", "Multiple choice by log-likelihood (lm-eval-harness convention): "
                  "acc / acc_norm (length-normalised) per task, and bits per byte on the held-out text, for each "
                  "finished run at its chosen learning rate.", "", evaluated, ""]
    lines += ["## Fits", "", *_fit_lines(analysis, rows), ""]
    if analysis.comparison:
        lines += [f"## Against `{base}`", ""]
        for label, comp in analysis.comparison.items():
            lines += [f"### {label}", "", *_comparison_lines(comp, base), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p}.png)" for p in plots] + [""]
    if analysis.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in analysis.notes] + [""]
    return "\n".join(lines)


def _intervals_sentence(settings: ReportSettings) -> str:
    if not settings.bootstrap:
        return "No bootstrap was asked for, so no intervals are given and no law is tested against one."
    return (f"Intervals are {_pct(settings.ci)} Bayesian-bootstrap percentile intervals ({settings.bootstrap} "
            "resamples).")


def _headline(analysis: Analysis, settings: ReportSettings) -> list[str]:
    out = []
    if settings.lr_selection == "val":
        out.append("- **The reported losses are optimistic**: learning rates were picked on the same validation "
                   "split.")
    unresolved = analysis.unresolved()
    fitted = sum(law in VARIABLE for fits in analysis.fits.values() for law in fits)
    if unresolved:
        out.append(f"- **This sweep cannot resolve {len(unresolved)} of its {fitted} fitted power laws**; the "
                   "comparisons that need them are withheld.")
        by_reason: dict[str, list[str]] = {}
        for label, law, why in unresolved:
            by_reason.setdefault(why, []).append(f"`{label}` {LAWS[law].split(' = ')[0]}")
        out += [f"  - {', '.join(laws)}: {why}" for why, laws in by_reason.items()]
    elif fitted:
        out.append(f"- Every fitted power law is resolved (falling, its {_pct(settings.ci)} interval of alpha "
                   "excludes 0).")
    if settings.baseline not in analysis.fits:
        out.append(f"- No finished runs are labelled `{settings.baseline}`: nothing is compared.")
    for label, comp in analysis.comparison.items():
        out.append(f"- `{label}` vs `{settings.baseline}`: " + _comparison_summary(comp))
    return out or ["- Nothing could be fitted (see Notes)."]


def _comparison_summary(comp: dict) -> str:
    gaps = [g["gap"] for g in comp["loss_gap"]]
    parts = [f"loss gap {min(gaps):+.3f} to {max(gaps):+.3f} nats over {len(gaps)} matched size(s)"] if gaps else []
    for key, (name, _) in RATIOS.items():
        why = comp["withheld"].get(key, "")
        if why:
            parts.append(f"{name} withheld ({'a law it needs is unresolved' if ' is unresolved: ' in why else why})")
        elif comp.get(key):
            parts.append(f"{name} " + "; ".join(_ratio_cell(c) for c in comp[key]))
    for name in ("N_opt", "D_opt"):
        cells = [f"C={_num(r['budget'])}: " + _ratio_text(r[f"{name}_ratio"]) for r in comp.get("compute_optimal", [])
                 if f"{name}_ratio" in r]
        if cells:
            parts.append(f"compute-optimal {name} ratio (Approach 2) " + "; ".join(cells))
    return "; ".join(parts) if parts else "no matched sizes and no usable fits"


def _ratio_text(ratio: dict) -> str:
    if ratio["ratio"] is None:
        return f"withheld ({ratio['withheld']})"
    return _num(ratio["ratio"]) + _interval(ratio.get("interval"))


def _fit_lines(analysis: Analysis, rows: list[dict]) -> list[str]:
    lines = []
    for label, fits in analysis.fits.items():
        runs = sum(r["label"] == label for r in fit_rows(rows))
        for law, fit in fits.items():
            d = fit.to_dict()
            cells = ", ".join(f"{p} = {_num(d.get(p))}{_interval(d.get('intervals', {}).get(p))}"
                              for p in PARAMS[law] if p in d)
            used = f"{fit.n_points} points from {runs} runs ({SELECTION[law]}; seeds averaged)"
            status = ""
            if law in VARIABLE:
                status = f"; curve `{law_text(fit, VARIABLE[law])}`" + (
                    "" if fit.resolved else f"; **unresolved**: {fit.reason}")
            lines.append(f"- **{label}**, {LAWS[law]}: {cells}; {used}{status}")
            if law == "isoflop":
                lines.append("  - vertices: " + "; ".join(_vertex_cell(fit, i) for i in range(len(fit.budgets))))
                for budgets, why in ((fit.out_of_range, "vertex outside the sizes sampled, left out of N_opt(C)"),
                                     (fit.skipped, "fewer than 3 sizes or no minimum, left out")):
                    if budgets:
                        lines.append(f"  - budgets {', '.join(_num(b) for b in budgets)}: {why}")
    return lines


def _vertex_cell(fit, i: int) -> str:
    """One budget of an Approach 2 fit: C, N_opt, D_opt (intervals where bootstrapped) and the loss at the vertex."""
    def cell(values: str) -> str:
        draws = fit.samples.get(values)
        iv = draw_interval(draws[:, i], fit.ci) if draws is not None else None
        return _num(float(getattr(fit, values)[i])) + _interval(iv)

    d = f", D_opt {cell('d_opt_per_budget')}" if fit.d_opt_per_budget is not None else ""
    return f"C={_num(float(fit.budgets[i]))}: N_opt {cell('n_opt_per_budget')}{d}, L {fit.loss_opt_per_budget[i]:.4f}"


def _allocation_lines(rows: list[dict], base: str) -> list[str]:
    """The compute-optimal allocation (Approach 2) against the baseline, one row per budget both fitted."""
    lines = ["", f"compute-optimal allocation (Approach 2), this label / `{base}`:", "",
             f"| budget | N_opt | {base} N_opt | ratio | D_opt | {base} D_opt | ratio |", "|" + "---|" * 7]
    for r in rows:
        cells = [_num(r["budget"])]
        for name in ("N_opt", "D_opt"):
            if name not in r:
                cells += ["-", "-", "-"]
                continue
            cells += [_num(r[name]) + _interval(r.get(f"{name}_interval")),
                      _num(r[f"baseline_{name}"]) + _interval(r.get(f"baseline_{name}_interval")),
                      _ratio_text(r[f"{name}_ratio"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _comparison_lines(comp: dict, base: str) -> list[str]:
    if comp["loss_gap"]:
        lines = [f"| N | tokens | budget | loss | {base} loss | gap |", "|---|---|---|---|---|---|"]
        lines += [f"| {_num(g['N'])} | {_num(g['tokens'])} | {_num(g['budget'])} | {g['loss']:.4f} | "
                  f"{g['baseline_loss']:.4f} | {g['gap']:+.4f} |" for g in comp["loss_gap"]]
    else:
        lines = [f"No size was trained both here and under `{base}`: no per-size gap."]
    for key, (name, formula) in RATIOS.items():
        title = f"{name} `{formula.replace('base', base)}`"
        if key in comp["withheld"]:
            lines += ["", f"{title}: withheld: {comp['withheld'][key]}"]
        elif key in comp:
            cells = [_ratio_cell(c) for c in comp[key]]
            lines += ["", f"{title}: " + ("; ".join(cells) if cells else "the two fits share no loss range")]
    if comp.get("compute_optimal"):
        lines += _allocation_lines(comp["compute_optimal"], base)
    return lines


def _ratio_cell(c: dict) -> str:
    where = f"N={_num(c['N'])}" if "N" in c else f"L={c['loss']:.3f}"
    return f"{where}: {_ratio_text(c)}"


def _runs_table(rows: list[dict]) -> str:
    head = "| run | label | status | N | D | C | val loss | bits/byte | tokens/s | J/token (7nm) | wall s |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['run_id']}{'' if r['best_lr'] or r['status'] != 'finished' else ' (lr not chosen)'} | "
                     f"{r['label']} | {r['status']} | {_num(r['n_params_non_embedding'])} | {_num(r['tokens'])} | "
                     f"{_num(r['flops'])} | {_num(r['final_val_loss'], 4)} | {_num(r['val_bits_per_byte'], 3)} | "
                     f"{_num(r['tokens_per_sec'])} | {_num(r['energy_per_token_7nm_j'])} | {_num(r['wall_s'], 0)} |")
    return "\n".join(lines)


def _eval_section(rows: list[dict], baseline: str) -> str:
    """Markdown table: label, N, D, then acc / acc_norm per task and held-out bits per byte ('' if nothing ran)."""
    done = [r for r in fit_rows(rows) if r.get("eval")]
    if not done:
        return ""
    order = {label: i for i, label in enumerate(labels_of(done, baseline))}
    done.sort(key=lambda r: (order[r["label"]], r["n_params_non_embedding"] or 0, r["tokens"] or 0))
    tasks = list(dict.fromkeys(t for r in done for t in (r["eval"].get("tasks") or {})))
    has_text = any(r["eval"].get("text") for r in done)
    head = ["label", "N", "D", *(f"{t} acc / acc_norm" for t in tasks), *(["held-out bits/byte"] if has_text else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in done:
        scores = r["eval"].get("tasks") or {}
        cells = [f"{_num(scores[t]['acc'], 3)} / {_num(scores[t]['acc_norm'], 3)}" if t in scores else "-"
                 for t in tasks]
        if has_text:
            cells.append(_num((r["eval"].get("text") or {}).get("bits_per_byte"), 3))
        lines.append(f"| {r['label']} | {_num(r['n_params_non_embedding'])} | {_num(r['tokens'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(ci: float) -> str:
    return f"{round(100 * ci, 6):g} %"


def _num(value, digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:.3g}"


def _interval(iv) -> str:
    return f" [{_num(iv[0])}, {_num(iv[1])}]" if iv else ""


def _finite(value):
    """JSON without NaN/Inf (null instead)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
