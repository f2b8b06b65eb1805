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
from bitnet_jax.files import DirectoryLock, read_json

COLUMNS = ("run_id", "part", "label", "recipe", "status", "d_model", "n_layers", "d_ff", "n_params",
           "n_params_non_embedding", "tokens", "flops", "budget", "lr", "seed", "final_train_loss", "final_tune_loss",
           "final_val_loss", "val_bits_per_byte", "tokens_per_sec", "energy_per_token_7nm_j",
           "energy_per_token_45nm_j", "wall_s", "best_lr", "data_entropy_floor")


def collect(out_dir: str | Path) -> list[dict]:
    """A row for every planned run directory (one holding plan.yaml) under a sweep directory, in sweep order."""
    out = Path(out_dir)
    if not (out / "sweep.yaml").exists():
        raise UserError(f"{out} is not a sweep directory (no sweep.yaml); pass the --out of `bitnet-jax sweep`")
    from bitnet_jax.sweep.spec import expand, load

    planned = expand(load(out / "sweep.yaml"))
    rows = [_row(out / r.run_id, r) for r in planned if (out / r.run_id / "plan.yaml").exists()]
    mark_best_lr(rows)
    return rows


def run_status(run_dir: Path) -> str:
    """The run's recorded status, except that a run recorded `running` whose directory lock nobody holds was
    killed without a word (SIGKILL, power loss): it is `stopped`, and resumes from its last checkpoint."""
    summary = read_json(run_dir / "summary.json")
    if summary is None:
        return "pending"
    status = summary.get("status", "running")
    if status == "running" and not DirectoryLock.held(run_dir / ".lock"):
        return "stopped"
    return status


def _row(run_dir: Path, r) -> dict:
    cfg = config_lib.from_dict(yaml.safe_load((run_dir / "plan.yaml").read_text()), str(run_dir / "plan.yaml"))
    s = read_json(run_dir / "summary.json") or {}
    model = cfg.model.resolve(cfg.recipe)
    return {
        "run_id": r.run_id, "part": r.part, "label": r.label, "recipe": cfg.recipe.name, "status": run_status(run_dir),
        "d_model": model.d_model, "n_layers": model.n_layers, "d_ff": model.d_ff,
        "n_params": s.get("n_params"), "n_params_non_embedding": s.get("n_params_non_embedding"),
        "tokens": s.get("tokens"), "flops": s.get("flops"), "budget": r.budget, "lr": s.get("hyperparams", {}).get("lr"),
        "seed": cfg.train.seed, "final_train_loss": s.get("final_train_loss"),
        "final_tune_loss": s.get("final_tune_loss"), "final_val_loss": s.get("final_val_loss"),
        "val_bits_per_byte": s.get("val_bits_per_byte"), "tokens_per_sec": s.get("tokens_per_sec"),
        "energy_per_token_7nm_j": inference_energy(model, cfg.recipe, node="7nm")["total"],
        "energy_per_token_45nm_j": inference_energy(model, cfg.recipe, node="45nm")["total"],
        "wall_s": s.get("wall_s"), "best_lr": False, "data_entropy_floor": s.get("data_entropy_floor"),
        "eval": s.get("eval"),  # bitnet_jax.eval results, when the sweep has an eval section
        "lr_rivals": _without_lr(cfg),  # runs with equal values differ only in learning rate and seed
    }


def mark_best_lr(rows: list[dict]) -> str:
    """Among finished runs that differ only in learning rate and seed, flag every seed of the learning rate with the
    lowest mean loss over its seeds on the tuning split (the validation loss, which the report shows, then stays an
    unbiased estimate; and one choice for all seeds keeps their spread a measure of run-to-run noise). Runs without
    a tuning loss (a sweep with data.tune_fraction=0, or runs from before the split existed) are chosen on the
    validation loss. Returns how the choice was made: tune, val, or none (no run has a rival learning rate)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "finished" and r["final_val_loss"] is not None:
            groups.setdefault(r["lr_rivals"], []).append(r)
    for r in rows:
        r["best_lr"] = False
    used = set()
    for members in groups.values():
        on_tune = all(r["final_tune_loss"] is not None for r in members)
        metric = "final_tune_loss" if on_tune else "final_val_loss"
        by_lr: dict = {}
        for r in members:
            by_lr.setdefault(r["lr"], []).append(r[metric])
        best = min(by_lr, key=lambda lr: sum(by_lr[lr]) / len(by_lr[lr]))
        for r in members:
            r["best_lr"] = r["lr"] == best
        if len(by_lr) > 1:
            used.add("tune" if on_tune else "val")
    return "val" if "val" in used else ("tune" if used else "none")


def _without_lr(cfg) -> str:
    flat = config_lib.flat_dict(cfg)
    return repr(sorted((k, repr(v)) for k, v in flat.items()
                       if k not in ("train.lr", "train.lr_stage2", "train.seed") and not k.startswith("tracking.")))


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
    """The table `bitnet-jax results` prints; N is non-embedding parameters (the fits' N), N_total all of them."""
    width = max([len(r["run_id"]) for r in rows] + [6]) + 2
    head = (f"{'run id':<{width}}{'status':<12}{'N':>9}{'N_total':>9}{'D':>9}{'C':>9}{'train':>8}{'tune':>8}"
            f"{'val':>8}{'bpb':>7}{'tok/s':>9}{'E7nm/tok':>10}{'wall':>7}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['run_id']:<{width}}{r['status']:<12}{_g(r['n_params_non_embedding'])}{_g(r['n_params'])}"
                     f"{_g(r['tokens'])}{_g(r['flops'])}{_f(r['final_train_loss'], 8)}{_f(r['final_tune_loss'], 8)}"
                     f"{_f(r['final_val_loss'], 8)}{_f(r['val_bits_per_byte'], 7, 3)}{_g(r['tokens_per_sec'])}"
                     f"{_g(r['energy_per_token_7nm_j'], 10)}{_f(r['wall_s'], 7, 0)}"
                     + ("" if r["best_lr"] or r["status"] != "finished" else "  (not best lr)"))
    return "\n".join(lines)


def _g(value, width: int = 9) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.3g}"


def _f(value, width: int, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"
