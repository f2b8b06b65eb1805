"""Evaluate a finished run directory: zero-shot tasks and held-out perplexity, saved to RUN/eval.json and merged
into RUN/summary.json under "eval" (so sweep results and reports pick them up)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from bitnet_jax.config import RunConfig
from bitnet_jax.errors import DataError, UserError
from bitnet_jax.eval.choice import multiple_choice
from bitnet_jax.eval.perplexity import perplexity, read_text
from bitnet_jax.eval.tasks import load_task
from bitnet_jax.files import write_atomic
from bitnet_jax.files import DirectoryLock, read_json, write_json


def tokenizer_for(cfg: RunConfig):
    """The tokenizer a run was trained with (byte, SentencePiece or Hugging Face tokenizers, from its data config)."""
    from bitnet_jax.data import load_tokenizer

    return load_tokenizer(cfg.data)


def task_files(tasks: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """{name: path} from a mapping, or from NAME=FILE strings (a bare FILE is named by its stem)."""
    if isinstance(tasks, Mapping):
        return {str(k): str(v) for k, v in tasks.items()}
    out = {}
    for item in tasks:
        name, sep, path = str(item).partition("=")
        if not sep:
            name, path = Path(name).stem, name
        if not name or not path:
            raise UserError(f"task {item!r}: expected NAME=FILE.jsonl, e.g. hellaswag=data/hellaswag_val.jsonl")
        out[name] = path
    return out


def evaluate_run(run_dir: str | Path, tasks: Mapping[str, str] | Iterable[str] = (), text: str | Path | None = None,
                 *, limit: int | None = None, batch_size: int = 32, step: int | None = None) -> dict:
    """Score the run's latest (or `step`) checkpoint on each task file and the held-out text; returns the results
    {"step", "tasks": {name: {acc, acc_norm, acc_stderr, n, file}}, "text": {file, loss, perplexity, ...}}."""
    from bitnet_jax.train import load_run  # the model stack loads only once the inputs are known to be good

    run_dir = Path(run_dir)
    files = task_files(tasks)
    if not files and text is None:
        raise UserError("nothing to evaluate: give --task NAME=FILE.jsonl (repeatable) and/or --text FILE")
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: must be a positive number of examples")
    examples = {name: load_task(path, limit) for name, path in files.items()}  # bad files fail before the model loads
    held_out = read_text(text) if text is not None else None
    loaded = load_run(run_dir, step)  # first: a wrong path fails here, before the lock creates anything
    with DirectoryLock(run_dir / ".lock", what="a training run or an evaluation"):
        tokenizer = tokenizer_for(loaded.config)
        if tokenizer.vocab_size > loaded.config.model.vocab_size:
            raise DataError(f"{run_dir}: the {loaded.config.data.tokenizer} tokenizer has {tokenizer.vocab_size} "
                            f"tokens but the model only {loaded.config.model.vocab_size}; evaluate with the run's "
                            f"own tokenizer")
        results = {"step": loaded.step, "tasks": {}, "text": None}
        for name, exs in examples.items():
            scored = multiple_choice(loaded.model, tokenizer, exs, batch_size=batch_size)
            results["tasks"][name] = {**scored.to_dict(), "file": str(files[name])}
        if held_out is not None:
            measured = perplexity(loaded.model, tokenizer, held_out, batch_size=batch_size)
            results["text"] = {"file": str(text), **measured}
        results = finite(_merge(read_json(run_dir / "eval.json"), results))  # JSON has no NaN: null instead
        write_atomic(run_dir / "eval.json", json.dumps(results, indent=2) + "\n")
        summary = read_json(run_dir / "summary.json") or {}
        summary["eval"] = results
        write_json(run_dir / "summary.json", summary)
    return results


def _merge(previous: dict | None, new: dict) -> dict:
    """Results of the same checkpoint accumulate (another task later keeps the earlier ones); a new step replaces."""
    if not previous or previous.get("step") != new["step"]:
        return new
    return {"step": new["step"], "tasks": {**previous.get("tasks", {}), **new["tasks"]},
            "text": new["text"] or previous.get("text")}


def finite(value):
    """JSON-safe: NaN/Inf anywhere become null."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_results(results: dict) -> str:
    """A plain-text table of evaluation results."""
    lines = [f"checkpoint step {results['step']}"]
    if results["tasks"]:
        lines.append(f"{'task':<24}{'n':>7}{'acc':>9}{'± se':>8}{'acc_norm':>10}")
    for name, r in results["tasks"].items():
        se = r.get("acc_stderr")
        lines.append(f"{name:<24}{r['n']:>7}{r['acc']:>9.4f}{'-' if se is None else f'{se:.4f}':>8}"
                     f"{r['acc_norm']:>10.4f}")
    t = results.get("text")
    if t:
        lines.append(f"held-out text {t['file']}: {t['tokens']} tokens, loss {t['loss']:.4f} nats/token, "
                     f"perplexity {t['perplexity']:.3f}, {t['bits_per_byte']:.4f} bits/byte")
    return "\n".join(lines)
