"""A sweep's report, rebuilt from the run files alone: OUT/report/{results.csv, fits.json, *.png, *.svg, report.md}."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bitnet_jax.scaling.analysis import Analysis, analyse
from bitnet_jax.sweep.results import collect, fit_rows, write_csv
from bitnet_jax.sweep.spec import SweepSpec, load
from bitnet_jax.files import write_atomic
from bitnet_jax.files import read_metrics

PARAMS = {"loss_vs_compute": ("A", "alpha", "E"), "loss_vs_params": ("A", "alpha", "E"),
          "loss_vs_energy": ("A", "alpha", "E"), "chinchilla": ("E", "A", "B", "alpha", "beta", "a", "b"),
          "isoflop": ("k", "a")}
LAWS = {"loss_vs_compute": "L(C) = E + A C^-alpha", "loss_vs_params": "L(N) = E + A N^-alpha",
        "loss_vs_energy": "L(e) = E + A e^-alpha (e: inference J/token, 7nm)",
        "chinchilla": "L(N, D) = E + A N^-alpha + B D^-beta (Approach 3); N_opt ~ C^a, D_opt ~ C^b",
        "isoflop": "N_opt(C) = k C^a (Approach 2)"}


def build_fits(out_dir: str | Path) -> tuple[list[dict], SweepSpec, Analysis]:
    """Results table and fits: OUT/report/results.csv and OUT/report/fits.json."""
    out = Path(out_dir)
    rows = collect(out)
    spec = load(out / "sweep.yaml")
    report = out / "report"
    write_csv(rows, report / "results.csv")
    analysis = analyse(fit_rows(rows), bootstrap=spec.fit.bootstrap, ci=spec.fit.ci,
                       n_with_embeddings=spec.fit.n_with_embeddings)
    write_atomic(report / "fits.json", json.dumps(_finite(analysis.to_dict()), indent=2) + "\n")
    return rows, spec, analysis


def build_report(out_dir: str | Path) -> Path:
    """Everything: results, fits, plots and report.md."""
    from bitnet_jax.scaling.plots import plot_all

    out = Path(out_dir)
    rows, spec, analysis = build_fits(out)
    good = fit_rows(rows)
    curves = {r["run_id"]: read_metrics(out / r["run_id"] / "metrics.jsonl") for r in good}
    plots = plot_all(out / "report", good, analysis, curves, spec.fit.n_with_embeddings) if good else []
    path = out / "report" / "report.md"
    write_atomic(path, render(spec, rows, analysis, plots))
    return path


def render(spec: SweepSpec, rows: list[dict], analysis: Analysis, plots: list[str]) -> str:
    done = sum(r["status"] == "finished" for r in rows)
    lines = [f"# Sweep `{spec.name}`", "", spec.description.strip(), "",
             f"{len(rows)} runs, {done} finished. Fits use finished runs at their best learning rate; "
             f"intervals are {spec.fit.ci:.0%} bootstrap percentile intervals ({spec.fit.bootstrap} resamples). "
             f"N counts parameters {'with' if spec.fit.n_with_embeddings else 'without'} embeddings.", "",
             "## How to read this report", "",
             "- **Loss vs compute**: each point is one run's final validation loss against its training FLOPs; the "
             "curve is `L = E + A C^-alpha` per recipe with its bootstrap band. A recipe whose curve lies lower "
             "reaches a given loss with less compute.",
             "- **Compute multiplier** `k(L) = C_recipe(L) / C_fp16(L)`: how many times the fp16 compute a recipe "
             "needs to reach the same loss (above 1: the quantised model needs more training compute).",
             "- **Effective-parameter ratio** `N_fp16(L_recipe(N)) / N`: the fraction of an fp16 model a quantised "
             "model of N parameters is worth (1 = as good as fp16).",
             "- **Energy ratio** `e_recipe(L) / e_fp16(L)` at matched loss on the inference-energy axis (BitNet's "
             "inference-optimal scaling law): below 1, the quantised model reaches that loss for less inference "
             "energy per token.", "",
             "## Runs", "", _runs_table(rows), ""]
    evaluated = _eval_section(rows)
    if evaluated:
        lines += ["## Zero-shot evaluation", "", "Multiple choice by log-likelihood (lm-eval-harness convention): "
                  "acc / acc_norm (length-normalised) per task, and bits per byte on the held-out text, for each "
                  "finished run at its best learning rate.", "", evaluated, ""]
    lines += ["## Fits", ""]
    for recipe, fits in analysis.fits.items():
        for name, fit in fits.items():
            d = fit.to_dict()
            cells = [f"{p} = {_num(d.get(p))}{_interval(d, p)}" for p in PARAMS[name] if p in d]
            lines.append(f"- **{recipe}**, {LAWS[name]}: " + ", ".join(cells))
    lines.append("")
    if analysis.comparison:
        lines += ["## Against fp16", ""]
        for recipe, comp in analysis.comparison.items():
            lines += [f"### {recipe}", "", "| N | tokens | loss | fp16 loss | gap |", "|---|---|---|---|---|"]
            lines += [f"| {_num(g['N'])} | {_num(g['tokens'])} | {g['loss']:.4f} | {g['fp16_loss']:.4f} | "
                      f"{g['gap']:+.4f} |" for g in comp["loss_gap"]]
            for key, title in (("compute_multiplier", "compute multiplier k(L)"),
                               ("energy_ratio", "inference-energy ratio at matched loss")):
                if comp.get(key):
                    lines += ["", f"{title}: " + "; ".join(
                        f"L={c['loss']:.3f}: {_num(c['ratio'])}{_interval(c, None)}" for c in comp[key])]
            if comp.get("effective_param_ratio"):
                lines += ["", "effective-parameter ratio: " + "; ".join(
                    f"N={_num(e['N'])}: {_num(e['ratio'])}" for e in comp["effective_param_ratio"])]
            lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p}.png)" for p in plots] + [""]
    if analysis.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in analysis.notes] + [""]
    return "\n".join(lines)


def _runs_table(rows: list[dict]) -> str:
    head = "| run | status | N | D | C | val loss | bits/byte | tokens/s | J/token (7nm) | wall s |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['run_id']}{'' if r['best_lr'] or r['status'] != 'finished' else ' (lr not best)'} | "
                     f"{r['status']} | {_num(r['n_params_non_embedding'])} | {_num(r['tokens'])} | {_num(r['flops'])} |"
                     f" {_num(r['final_val_loss'], 4)} | {_num(r['val_bits_per_byte'], 3)} | "
                     f"{_num(r['tokens_per_sec'])} | {_num(r['energy_per_token_7nm_j'])} | {_num(r['wall_s'], 0)} |")
    return "\n".join(lines)


def _eval_section(rows: list[dict]) -> str:
    """Markdown table: recipe, N, D, then acc / acc_norm per task and held-out bits per byte ('' if nothing ran)."""
    done = sorted((r for r in fit_rows(rows) if r.get("eval")),
                  key=lambda r: (r["recipe"], r["n_params_non_embedding"] or 0, r["tokens"] or 0))
    if not done:
        return ""
    tasks = list(dict.fromkeys(t for r in done for t in (r["eval"].get("tasks") or {})))
    has_text = any(r["eval"].get("text") for r in done)
    head = ["recipe", "N", "D", *(f"{t} acc / acc_norm" for t in tasks), *(["held-out bits/byte"] if has_text else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in done:
        scores = r["eval"].get("tasks") or {}
        cells = [f"{_num(scores[t]['acc'], 3)} / {_num(scores[t]['acc_norm'], 3)}" if t in scores else "-"
                 for t in tasks]
        if has_text:
            cells.append(_num((r["eval"].get("text") or {}).get("bits_per_byte"), 3))
        lines.append(f"| {r['recipe']} | {_num(r['n_params_non_embedding'])} | {_num(r['tokens'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(value, digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:.3g}"


def _interval(d: dict, param: str | None) -> str:
    iv = d.get("interval") if param is None else d.get("intervals", {}).get(param)
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
