"""One run's files inside a training job: its directory, lock, checkpoints, metrics.jsonl, summary.json and tracker.

A job trains one run or a group of runs together; every run keeps its own directory and record, and resumes alone.
What a run directory holds decides how it starts:
- nothing: a new run (refused under `--resume`: there is nothing to resume);
- a run: continued from its last checkpoint under `--resume` (refused without it), after checking that the config
  differs from the saved one only where a resume may (`config.RESUMABLE_CHANGES`);
- a finished run with its final losses: returned as it is.
The summary's final losses and token count are rebuilt from metrics.jsonl and the checkpoint, so a run killed at any
moment, also between its final checkpoint and its final summary, ends with exactly the record of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import yaml

from bitnet_jax import config as config_lib
from bitnet_jax.config import DistributedConfig, RunConfig
from bitnet_jax.errors import CheckpointError, ConfigError
from bitnet_jax.files import DirectoryLock, MetricsWriter, read_json, read_metrics, write_json
from bitnet_jax.model import flops_per_token, param_counts
from bitnet_jax.train.checkpoint import Checkpoints

FINAL_FROM_METRICS = {"final_train_loss": "loss", "final_val_loss": "val_loss", "final_tune_loss": "tune_loss",
                      "val_bits_per_byte": "val_bits_per_byte"}


class Member:
    """A run of a job. `open()` locks the directory and decides how the run starts; `begin()` writes its first
    files once the job's data and model are known to be good (a run refused before that leaves nothing behind)."""

    def __init__(self, cfg: RunConfig, out: str | Path, resume: bool | None, primary: bool = True):
        self.cfg, self.out = cfg, Path(out)
        self.primary = primary  # the process that writes the run's files (the others of a multi-process run read)
        self.resume = resume  # None: continue the run the directory holds, if any (the sweep runner's jobs)
        self.summary_path, self.config_path = self.out / "summary.json", self.out / "config.yaml"
        self.lock = DirectoryLock(self.out / ".lock", what="a training run")
        self.created = not self.out.exists()
        self.ckpts: Checkpoints | None = None
        self.metrics: MetricsWriter | None = None
        self.tracker = None
        self.previous: dict | None = None
        self.latest: int | None = None
        self.start = self.step = self.tokens = 0
        self.evaluated_at = self.saved_at = -1
        self.summary: dict = {}
        self.done = False  # finished (or diverged) earlier: nothing to train

    @property
    def steps(self) -> int:
        return self.cfg.train.steps

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.train.batch_size * self.cfg.model.seq_len

    def open(self) -> None:
        if not self.primary:
            self._decide_start()
            return
        self.lock.__enter__()
        try:
            self._decide_start()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise

    def _decide_start(self) -> None:
        self.previous = read_json(self.summary_path)
        self.latest = _latest_step(self.out / "ckpt")
        holds_run = self.latest is not None or self.config_path.exists()
        if self.resume is None:
            self.resume = holds_run
        if not self.resume and holds_run:
            raise CheckpointError(f"{self.out} already holds a run (step {self.latest or 0}); pass --resume to "
                                  f"continue it or choose another --out")
        if self.resume and not holds_run:
            raise CheckpointError(f"nothing to resume in {self.out} (no config.yaml or checkpoint); drop --resume "
                                  f"to start a new run there")
        if self.resume and self.config_path.exists():
            self._check_resumable()
        p = self.previous or {}
        finished = (p.get("status") == "finished" and self.latest == self.steps
                    and p.get("final_val_loss") is not None)
        self.done = bool(self.resume) and (finished or p.get("status") == "diverged")

    def _check_resumable(self) -> None:
        try:
            saved = config_lib.from_dict(yaml.safe_load(self.config_path.read_text()) or {}, str(self.config_path))
        except (ConfigError, yaml.YAMLError) as e:
            raise CheckpointError(f"{self.config_path}: cannot read the run's saved config ({e})") from None
        changed = config_lib.changed_keys(saved, self.cfg)
        if changed:
            raise CheckpointError(f"cannot resume {self.out}: the config changes {', '.join(changed)} from the saved "
                                  f"run (a resume may change only train.steps and the logging, evaluation, "
                                  f"checkpoint and tracking settings); use the saved config.yaml or another --out")
        if self.latest is not None and self.latest > self.steps:
            raise CheckpointError(f"cannot resume {self.out} at train.steps={self.steps}: it has trained "
                                  f"{self.latest} steps already; give train.steps >= {self.latest}")

    def begin(self, data, unigram_bpb: float, hp, device: str, dtype_name: str, group_size: int,
              steps_per_call: int) -> None:
        """Create the checkpoint manager, config.yaml, the summary and metrics.jsonl (kept through the restored
        step); the final losses and token count come back from the files of an interrupted run."""
        self.ckpts = Checkpoints(self.out / "ckpt", keep=self.cfg.train.keep_checkpoints)
        rows = [r for r in read_metrics(self.out / "metrics.jsonl") if r.get("step", 0) <= (self.latest or 0)]
        counts = param_counts(self.cfg.model, self.cfg.recipe)
        fpt = flops_per_token(self.cfg.model, self.cfg.recipe)
        p = self.previous or {}
        self.summary = {
            "status": "running", "recipe": self.cfg.recipe.name,
            "layout": self.cfg.model.resolve(self.cfg.recipe).layout,
            "n_params": counts["total"], "n_params_non_embedding": counts["non_embedding"],
            "n_params_matmul": counts["matmul"], "step": 0, "steps": self.steps, "tokens": 0, "flops": 0.0,
            "flops_per_token": fpt,
            "data_source": data.source, "data_sha256": data.sha256, "bytes_per_token": data.bytes_per_token,
            "data_entropy_floor": data.entropy_floor, "data_empty_documents": data.empty_documents,
            "tokenizer": data.tokenizer, "tokenizer_sha256": data.tokenizer_sha256,
            "unigram_bits_per_byte": unigram_bpb,
            "hyperparams": dataclasses.asdict(hp), "device": device, "compute_dtype": dtype_name,
            "group_size": group_size, "steps_per_call": steps_per_call,
            "final_train_loss": None, "final_tune_loss": None, "final_val_loss": None, "val_bits_per_byte": None,
            "tokens_per_sec": p.get("tokens_per_sec") if self.resume else None, "first_call_s": None,
            "wall_s": p.get("wall_s", 0.0) if self.resume else 0.0,
        }
        for key, column in FINAL_FROM_METRICS.items():
            self.summary[key] = next((r[column] for r in reversed(rows) if r.get(column) is not None), None)
        self.evaluated_at = max((r["step"] for r in rows if r.get("val_loss") is not None), default=-1)
        if self.primary:  # how many processes ran it is not part of the run: a resume may use another number
            config_lib.dump(dataclasses.replace(self.cfg, distributed=DistributedConfig()), self.config_path)
            self.metrics = MetricsWriter(self.out / "metrics.jsonl", keep_through_step=self.latest or 0)

    def restored(self, step: int, meta: dict) -> None:
        """The run continues from its checkpoint at `step` (meta: what the checkpoint recorded)."""
        self.start = self.saved_at = self.step = step
        # checkpoints written before the token counter existed: every step drew one full batch
        self.tokens = int(meta.get("tokens", step * self.tokens_per_step))
        self.advance(0)

    def advance(self, steps_taken: int) -> None:
        """Count `steps_taken` more steps, each of which drew one batch."""
        self.step += steps_taken
        self.tokens += steps_taken * self.tokens_per_step
        self.summary.update(step=self.step, tokens=self.tokens, flops=self.summary["flops_per_token"] * self.tokens)

    def log(self, row: dict) -> None:
        if self.metrics is None:
            return
        self.metrics.write(row)
        if self.tracker is not None:
            self.tracker.log(row)

    def save(self, step: int, state) -> None:
        self.ckpts.save(step, state, {"step": step, "tokens": self.tokens,
                                      "wandb_id": getattr(self.tracker, "run_id", None)})
        self.saved_at = step

    def write_summary(self) -> None:
        if self.primary:
            write_json(self.summary_path, self.summary)

    def diverged(self, step: int, row: dict) -> None:
        self.summary["status"] = "diverged"
        self.summary["error"] = (f"non-finite loss {row['loss']} or gradient norm {row['grad_norm']} at step {step}; "
                                 f"the last good checkpoint is step {self.saved_at}")

    def close(self, error: BaseException | None = None) -> None:
        """Write the final record and release everything (also after a failure)."""
        if error is not None and self.summary:
            interrupted = isinstance(error, KeyboardInterrupt)
            self.summary["status"] = "interrupted" if interrupted else "failed"
            if not interrupted:
                self.summary["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        if self.metrics is not None:
            self.metrics.close()
        if self.ckpts is not None:
            self.ckpts.close()  # the last save is on disk before the summary says so
        if self.summary:
            self.write_summary()
            if self.tracker is not None:
                self.tracker.finish(self.summary)
        if self.primary:
            self.lock.__exit__(None, None, None)

    def discard_if_new(self) -> None:
        """A run refused before writing anything leaves no directory behind (only one it created itself)."""
        if self.primary and self.created and not self.summary:
            shutil.rmtree(self.out, ignore_errors=True)


def _latest_step(ckpt_dir: Path) -> int | None:
    """The newest finished checkpoint step without opening a manager (which would create the directory)."""
    if not ckpt_dir.is_dir():
        return None
    steps = [int(p.name) for p in ckpt_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(steps) if steps else None


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    return loss / math.log(2) / bytes_per_token
