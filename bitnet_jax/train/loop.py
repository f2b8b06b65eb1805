"""Training jobs: one run (`run`), or a group of runs of one shape trained together in one process (`run_group`).

A group's runs differ only in per-run values (`config.PER_RUN_VALUES`: learning rates, weight decays, the init and
data seeds); their states are stacked and one jitted call advances all of them under `jax.vmap`, `steps_per_call`
steps at a time, drawing every batch on the device. Each run keeps its own directory and record (config.yaml,
metrics.jsonl, summary.json, ckpt/): a run that diverges is recorded `diverged` and frozen at its last good state while
the others go on, and a job killed at any moment resumes every run from its own last checkpoint. Logging,
evaluation and checkpoints happen at call boundaries, on the same steps as with one step per call.

A job spreads over the devices it sees as `mesh:` says (train/sharding.py: data, fsdp and tensor axes; default: all
of them on data); on one device that is a mesh of one.

SIGINT or SIGTERM stops a job at its next call boundary: every run saves a checkpoint and is marked `interrupted`.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from bitnet_jax import config as config_lib
from bitnet_jax.config import RunConfig
from bitnet_jax.data import TrainBatches, check_same_tokenizer, load_token_data, unigram_bits_per_byte, val_batches
from bitnet_jax.errors import ConfigError
from bitnet_jax.train.member import Member, bits_per_byte
from bitnet_jax.train.optim import schedule_values
from bitnet_jax.train.runtime import (GracefulStop, check_deterministic, enable_compile_cache, is_primary,
                                     start_distributed)
from bitnet_jax.train.sharding import Layout, make_mesh, place
from bitnet_jax.train.state import build_model, build_training, compute_dtype
from bitnet_jax.train.step import METRICS, FlatModel, make_eval_step, make_train_call


@dataclass
class RunResult:
    out_dir: Path
    summary: dict

    @property
    def status(self) -> str:
        return self.summary["status"]


def default_steps_per_call() -> int:
    """Steps per jitted call: on a GPU each call costs a dispatch and a metrics copy (milliseconds on a VM), which
    dominate small models' steps; on a CPU the step itself dominates."""
    return 8 if jax.default_backend() == "cpu" else 32


def run(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False) -> RunResult:
    """Train one model as `cfg` says, writing everything under `out_dir` (locked while it trains)."""
    return run_group([(cfg, out_dir)], resume=resume)[0]


def run_group(runs: list[tuple[RunConfig, str | Path]], *, resume: bool | None = None) -> list[RunResult]:
    """Train runs that differ only in per-run values together. resume=None continues each run its directory holds
    and starts the others (the sweep runner's jobs); True / False require / refuse an existing run."""
    configs = [cfg for cfg, _ in runs]
    _check_group(configs)
    start_distributed(configs[0].distributed)
    check_deterministic(any(c.train.deterministic for c in configs))
    enable_compile_cache()
    members = [Member(cfg, out, resume, primary=is_primary()) for cfg, out in runs]
    opened: list[Member] = []
    error: BaseException | None = None
    try:
        for m in members:
            m.open()
            opened.append(m)
        if jax.process_count() > 1:  # every process decides how each run starts before process 0 writes a file
            multihost_utils.sync_global_devices("bitnet_jax: runs opened")
        todo = [m for m in members if not m.done]
        if todo:
            with GracefulStop() as stop:
                _Job(todo, stop).train()
    except BaseException as e:
        error = e
        raise
    finally:
        for m in opened:
            m.close(error)
        for m in members if error is not None else ():
            m.discard_if_new()
    return [RunResult(m.out, m.summary or m.previous) for m in members]


def _check_group(configs: list[RunConfig]) -> None:
    for cfg in configs[1:]:
        changed = config_lib.changed_keys(configs[0], cfg, (*config_lib.PER_RUN_VALUES, "tracking.*"))
        if changed:
            raise ConfigError(f"runs trained as a group may differ only in {', '.join(config_lib.PER_RUN_VALUES)}; "
                              f"these differ in {', '.join(changed)}")


class _Job:
    """The step loop of a group (of one or more runs). Host-side mirrors of each run's step decide the call
    boundaries; the device reports which steps it took and which runs diverged."""

    def __init__(self, members: list[Member], stop: GracefulStop):
        self.members, self.stop = members, stop
        cfg = members[0].cfg
        t, self.group = cfg.train, len(members)
        mesh = make_mesh(cfg.mesh)
        ways = mesh.shape["data"] * mesh.shape["fsdp"]
        if t.batch_size % ways:
            raise ConfigError(f"train.batch_size={t.batch_size} does not split over mesh data x fsdp = {ways} "
                              f"devices; use a multiple of {ways}")
        data = load_token_data(cfg.data, seq_len=cfg.model.seq_len)
        if cfg.model.vocab_size < data.vocab_size:
            raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the {cfg.data.tokenizer} "
                              f"tokenizer's vocabulary ({data.vocab_size}); set model.vocab_size={data.vocab_size}")
        for m in members:
            if m.resume:
                check_same_tokenizer(m.previous, data, m.out)
        self.bytes_per_token = data.bytes_per_token
        self.steps_per_call = t.steps_per_call or default_steps_per_call()
        trainings = [build_training(m.cfg) for m in members]
        unigram = unigram_bits_per_byte(data.train, data.val, data.vocab_size, data.bytes_per_token)
        dtype = jnp.dtype(compute_dtype(t.compute_dtype)).name
        states = []
        for m, training in zip(members, trainings):
            m.begin(data, unigram, training.hyperparams, jax.devices()[0].device_kind, dtype, self.group,
                    self.steps_per_call)
            state, meta = training.state, {}
            if m.resume and m.latest is not None:
                state, meta = m.ckpts.restore(m.latest, state)
                state["schedule"] = schedule_values(training.hyperparams)  # the config's peaks, as before
            m.restored(m.latest or 0, meta)
            m.tracker = _tracker(m, meta) if m.primary else None
            states.append(state)
        first = trainings[0]
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
        self.layout = Layout.of(mesh, first.model.param_def, stacked, first.optimizer)
        self.state = place(stacked, self.layout.state)
        # every array a call takes is a global one on the mesh (each process holds its devices' part of it)
        replicate = functools.partial(jax.device_put, device=self.layout.replicated)
        self.val = replicate(val_batches(data.val, t.batch_size, cfg.model.seq_len, t.eval_batches))
        self.tune = (replicate(val_batches(data.tune, t.batch_size, cfg.model.seq_len, t.eval_batches,
                                           split="tuning")) if len(data.tune) else None)
        self.alive = [True] * self.group
        self.active = replicate(np.ones((self.group,), bool))
        self.batches = TrainBatches(data.train, [m.cfg.data.seed for m in members], t.batch_size,
                                    cfg.model.seq_len, cfg.data.on_device, cfg.data.device_max_tokens,
                                    self.steps_per_call, put=replicate,
                                    put_batches=functools.partial(jax.device_put, device=self.layout.batch(2)))
        self.call = make_train_call(first.model, first.optimizer, first.hyperparams, self.group, self.steps_per_call,
                                    self.batches.draw, self.layout)
        eval_model = FlatModel.split(build_model(cfg, inference=True, abstract=True))[0]
        self.eval_fn = make_eval_step(eval_model, self.group, self.layout.replicated)

    # ------------------------------------------------------------------ the loop

    def train(self) -> None:
        t = self.members[0].cfg.train
        bar = tqdm(total=t.steps, initial=self._low(), unit="step", dynamic_ncols=True,
                   disable=not (self.members[0].cfg.tracking.progress and self.members[0].primary),
                   desc=self.members[0].cfg.recipe.name if self.group == 1 else f"{self.group} runs")
        self.wall0, self.timed_from, self.timed = time.perf_counter(), None, [0] * self.group
        self.wall_before = [m.summary["wall_s"] for m in self.members]
        try:
            self._events(at=None)  # a run restored at its last step may still owe its final evaluation
            while not self.stop.requested:
                behind = [m.step for g, m in enumerate(self.members) if self.alive[g] and m.step < t.steps]
                if not behind:
                    break
                until = _next_boundary(min(behind), t)
                while not self.stop.requested and any(self.alive[g] and m.step < until
                                                      for g, m in enumerate(self.members)):
                    self._advance(until, bar)
                if not self.stop.requested:
                    self._events(at=until)
            if self.stop.requested:
                self._save_all()
                raise KeyboardInterrupt
            for g, m in enumerate(self.members):
                if self.alive[g]:
                    m.summary["status"] = "finished"
        finally:
            bar.close()
            for g, m in enumerate(self.members):
                m.summary["wall_s"] = self.wall_before[g] + time.perf_counter() - self.wall0

    def _low(self) -> int:
        """The step the slowest live run has reached (the progress bar's position)."""
        return min((m.step for g, m in enumerate(self.members) if self.alive[g]), default=0)

    def _advance(self, until: int, bar) -> None:
        """One jitted call: up to steps_per_call steps of every run behind `until`; record what it did."""
        data = self.batches.inputs([m.step for m in self.members])
        self.state, self.active, metrics, ran = self.call(self.state, self.active, np.int32(until), data)
        metrics, ran, steps = jax.device_get((metrics, ran, self.state["step"]))
        now = time.perf_counter()
        first = self.timed_from is None
        if first:  # the first call includes compilation: time from its end
            self.timed_from = now
            for m in self.members:
                m.summary["first_call_s"] = now - self.wall0
        for g, m in enumerate(self.members):
            for i in np.flatnonzero(ran[:, g]):
                self._record(g, m, dict(zip(METRICS, map(float, metrics[i, g]))), now, first)
            if self.alive[g] and steps[g] != m.step:
                raise RuntimeError(f"step counter mismatch for {m.out}: device {steps[g]}, host {m.step}")
        bar.update(self._low() - bar.n)
        lead = self.members[0].summary
        bar.set_postfix(loss=f"{lead['final_train_loss'] or math.nan:.3f}",
                        tok_s=f"{sum(m.summary['tokens_per_sec'] or 0 for m in self.members):,.0f}")

    def _record(self, g: int, m: Member, row: dict, now: float, first: bool) -> None:
        step = m.step + 1
        if not (math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"])):
            self.alive[g] = False
            m.diverged(step, row)
            m.log({"step": step, **row})
            tqdm.write(f"{m.out}: diverged at step {step}: {m.summary['error']}")
            return
        m.advance(1)
        if not first:
            self.timed[g] += 1
        elapsed = now - self.timed_from
        tps = self.timed[g] * m.tokens_per_step / elapsed if self.timed[g] and elapsed > 0 else None
        m.summary.update(final_train_loss=row["loss"], tokens_per_sec=tps)
        t = m.cfg.train
        if step % t.log_every == 0 or step == t.steps:
            m.log({"step": step, **row, "tokens": m.tokens, "tokens_per_sec": tps})

    def _events(self, at: int | None) -> None:
        """Evaluate and checkpoint the runs standing at step `at` (None: each run at its own step, once, after a
        restore) where that step is an evaluation or checkpoint step they have not done yet."""
        t = self.members[0].cfg.train
        here = [g for g, m in enumerate(self.members) if self.alive[g] and (at is None or m.step == at)]
        due = lambda s, every: s > 0 and (s % every == 0 or s == t.steps)  # noqa: E731
        evaluate = [g for g in here if due(self.members[g].step, t.eval_every)
                    and self.members[g].step > self.members[g].evaluated_at]
        if evaluate:
            self._evaluate(evaluate)
        for g in here:
            m = self.members[g]
            if due(m.step, t.ckpt_every) and m.step > m.saved_at:
                m.save(m.step, jax.tree.map(lambda x: x[g], self.state))
            m.write_summary()

    def _evaluate(self, which: list[int]) -> None:
        val = jax.device_get(self.eval_fn(self.state, self.val))
        tune = jax.device_get(self.eval_fn(self.state, self.tune)) if self.tune is not None else None
        for g in which:
            m = self.members[g]
            row = {"step": m.step, "val_loss": float(val[g]),
                   "val_bits_per_byte": bits_per_byte(float(val[g]), self.bytes_per_token)}
            if tune is not None:
                row["tune_loss"] = float(tune[g])
            m.summary.update(final_val_loss=row["val_loss"], val_bits_per_byte=row["val_bits_per_byte"],
                             final_tune_loss=row.get("tune_loss"),
                             wall_s=self.wall_before[g] + time.perf_counter() - self.wall0)
            m.log(row)
            m.evaluated_at = m.step

    def _save_all(self) -> None:
        """On a stop request: a checkpoint of every live run at the step it reached."""
        for g, m in enumerate(self.members):
            if self.alive[g] and m.step > m.saved_at:
                m.save(m.step, jax.tree.map(lambda x: x[g], self.state))


def _next_boundary(step: int, t) -> int:
    """The first evaluation, checkpoint or final step after `step`."""
    nxt = lambda every: (step // every + 1) * every  # noqa: E731
    return min(nxt(t.eval_every), nxt(t.ckpt_every), t.steps)


def _tracker(m: Member, meta: dict):
    from bitnet_jax.train.tracking import make_tracker

    return make_tracker(m.cfg, m.out, meta.get("wandb_id"))
