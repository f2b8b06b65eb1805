"""The results table: one row per run of a sweep directory, rebuilt from the run files alone."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import yaml

from bitnet_jax import config as config_lib
from bitnet_jax.errors import UserError
from bitnet_jax.scaling.energy import inference_energy
from bitnet_jax.files import write_atomic
from bitnet_jax.files import read_json

COLUMNS = ("run_id", "recipe", "status", "d_model", "n_layers", "d_ff", "n_params", "n_params_non_embedding",
           "tokens", "flops", "budget", "lr", "seed", "final_train_loss", "final_val_loss", "val_bits_per_byte",
           "tokens_per_sec", "energy_per_token_7nm_j", "energy_per_token_45nm_j", "wall_s", "best_lr",
           "data_entropy_floor")


def collect(out_dir: str | Path) -> list[dict]:
    """A row for every run directory (one holding plan.yaml) under a sweep directory, in sweep order."""
    out = Path(out_dir)
    if not (out / "sweep.yaml").exists():
        raise UserError(f"{out} is not a sweep directory (no sweep.yaml); pass the --out of `bitnet-jax sweep`")
    from bitnet_jax.sweep.spec import expand, load

    planned = expand(load(out / "sweep.yaml"))
    rows = [_row(out / r.run_id, r.run_id, r.budget) for r in planned if (out / r.run_id / "plan.yaml").exists()]
    _mark_best_lr(rows)
    return rows


def _row(run_dir: Path, run_id: str, budget: float | None) -> dict:
    cfg = config_lib.from_dict(yaml.safe_load((run_dir / "plan.yaml").read_text()), str(run_dir / "plan.yaml"))
    s = read_json(run_dir / "summary.json") or {"status": "pending"}
    model = cfg.model.resolve(cfg.recipe)
    return {
        "run_id": run_id, "recipe": cfg.recipe.name, "status": s.get("status", "pending"),
        "d_model": model.d_model, "n_layers": model.n_layers, "d_ff": model.d_ff,
        "n_params": s.get("n_params"), "n_params_non_embedding": s.get("n_params_non_embedding"),
        "tokens": s.get("tokens"), "flops": s.get("flops"), "budget": budget, "lr": s.get("hyperparams", {}).get("lr"),
        "seed": cfg.train.seed, "final_train_loss": s.get("final_train_loss"), "final_val_loss": s.get("final_val_loss"),
        "val_bits_per_byte": s.get("val_bits_per_byte"), "tokens_per_sec": s.get("tokens_per_sec"),
        "energy_per_token_7nm_j": inference_energy(model, cfg.recipe, node="7nm")["total"],
        "energy_per_token_45nm_j": inference_energy(model, cfg.recipe, node="45nm")["total"],
        "wall_s": s.get("wall_s"), "best_lr": False, "data_entropy_floor": s.get("data_entropy_floor"),
        "eval": s.get("eval"),  # bitnet_jax.eval results, when the sweep has an eval section
    }


def _mark_best_lr(rows: list[dict]) -> None:
    """Among runs that differ only in learning rate, flag the finished one with the lowest validation loss."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        if r["status"] != "finished" or r["final_val_loss"] is None:
            continue
        key = (r["recipe"], r["d_model"], r["n_layers"], r["d_ff"], r["budget"], r["tokens"], r["seed"])
        if key not in groups or r["final_val_loss"] < groups[key]["final_val_loss"]:
            groups[key] = r
    for r in groups.values():
        r["best_lr"] = True


def fit_rows(rows: list[dict]) -> list[dict]:
    """The rows that enter the fits: finished runs at their best learning rate."""
    return [r for r in rows if r["best_lr"]]


def eval_metrics(row: dict) -> dict[str, float | None]:
    """A run's evaluation as flat columns: eval_<task>_acc, eval_<task>_acc_norm, eval_text_bits_per_byte, ..."""
    ev = row.get("eval") or {}
    out = {}
    for task, r in (ev.get("tasks") or {}).items():
        out[f"eval_{task}_acc"], out[f"eval_{task}_acc_norm"] = r.get("acc"), r.get("acc_norm")
    if ev.get("text"):
        out["eval_text_loss"], out["eval_text_bits_per_byte"] = ev["text"].get("loss"), ev["text"].get("bits_per_byte")
    return out


def eval_columns(rows: list[dict]) -> list[str]:
    """The eval columns any row has, in first-seen order."""
    return list(dict.fromkeys(k for r in rows for k in eval_metrics(r)))


def write_csv(rows: list[dict], path: str | Path) -> None:
    """COLUMNS, then one column per evaluation metric present in any run."""
    extra = eval_columns(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *extra], extrasaction="ignore")
    writer.writeheader()
    writer.writerows({**r, **eval_metrics(r)} for r in rows)
    write_atomic(path, buf.getvalue())


def format_eval_table(rows: list[dict]) -> str:
    """Zero-shot accuracy (acc / acc_norm) and held-out bits per byte per run; empty when no run was evaluated."""
    evaluated = [r for r in rows if r.get("eval")]
    if not evaluated:
        return ""
    tasks = list(dict.fromkeys(t for r in evaluated for t in (r["eval"].get("tasks") or {})))
    lines = [f"{'run id':<48}" + "".join(f"{t[:17]:>18}" for t in tasks) + f"{'text bpb':>10}"]
    for r in evaluated:
        cells = []
        for t in tasks:
            res = (r["eval"].get("tasks") or {}).get(t)
            cells.append(f"{res['acc']:.3f} / {res['acc_norm']:.3f}" if res else "-")
        text = r["eval"].get("text") or {}
        lines.append(f"{r['run_id']:<48}" + "".join(f"{c:>18}" for c in cells)
                     + _f(text.get("bits_per_byte"), 10, 3))
    return "\n".join(["zero-shot accuracy (acc / acc_norm)", *lines])


def format_table(rows: list[dict]) -> str:
    head = (f"{'run id':<48}{'status':<10}{'N':>9}{'D':>9}{'C':>9}{'train':>8}{'val':>8}{'bpb':>7}{'tok/s':>9}"
            f"{'E7nm/tok':>10}{'wall':>7}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['run_id']:<48}{r['status']:<10}{_g(r['n_params'])}{_g(r['tokens'])}{_g(r['flops'])}"
                     f"{_f(r['final_train_loss'], 8)}{_f(r['final_val_loss'], 8)}{_f(r['val_bits_per_byte'], 7, 3)}"
                     f"{_g(r['tokens_per_sec'])}{_g(r['energy_per_token_7nm_j'], 10)}{_f(r['wall_s'], 7, 0)}"
                     + ("" if r["best_lr"] or r["status"] != "finished" else "  (not best lr)"))
    return "\n".join(lines)


def _g(value, width: int = 9) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.3g}"


def _f(value, width: int, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"
