"""One training run: data, model, optimiser, the jitted step, evaluation, checkpoints and run outputs.

OUT/config.yaml, OUT/metrics.jsonl, OUT/summary.json and OUT/ckpt/ are the whole record of a run; a run killed at any
moment continues with `resume=True` and ends with exactly the losses of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import yaml
from flax import nnx
from tqdm.auto import tqdm

from bitnet_jax import config as config_lib
from bitnet_jax.config import RunConfig
from bitnet_jax.data import TrainBatches, check_same_tokenizer, load_token_data, unigram_bits_per_byte, val_batches
from bitnet_jax.errors import CheckpointError, ConfigError
from bitnet_jax.model import Transformer, flops_per_token, param_counts
from bitnet_jax.train.checkpoint import Checkpoints
from bitnet_jax.train.optim import Hyperparams, make_optimizer, schedule_values
from bitnet_jax.files import DirectoryLock, MetricsWriter, read_json, write_json
from bitnet_jax.train.step import METRICS, FlatModel, init_state, make_eval_step, make_train_step
from bitnet_jax.train.tracking import make_tracker


@dataclass
class RunResult:
    out_dir: Path
    summary: dict

    @property
    def status(self) -> str:
        return self.summary["status"]


def compute_dtype(name: str):
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    return jnp.dtype(name)


def attention_impl(name: str, dtype) -> str | None:
    """auto: cuDNN's fused attention on GPU in 16-bit (2x the XLA step rate at 125M on an H100), else XLA's."""
    if name == "auto":
        half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        return "cudnn" if jax.default_backend() == "gpu" and half else "xla"
    return name


def build_model(cfg: RunConfig) -> Transformer:
    dtype = compute_dtype(cfg.train.compute_dtype)
    return Transformer(cfg.model, cfg.recipe, rngs=nnx.Rngs(cfg.train.seed), dtype=dtype,
                       attention_impl=attention_impl(cfg.train.attention, dtype))


def run(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False) -> RunResult:
    """Train one model as `cfg` says, writing everything under `out_dir` (locked while it trains)."""
    out = Path(out_dir)
    with DirectoryLock(out / ".lock", what="a training run"):
        ckpts = Checkpoints(out / "ckpt", keep=cfg.train.keep_checkpoints)
        try:
            return _run_locked(cfg, out, resume, ckpts)
        finally:
            ckpts.close()


def _run_locked(cfg: RunConfig, out: Path, resume: bool, ckpts: Checkpoints) -> RunResult:
    summary_path, config_path = out / "summary.json", out / "config.yaml"
    previous = read_json(summary_path)
    latest = ckpts.latest_step()
    if not resume and (latest is not None or previous is not None):
        raise CheckpointError(f"{out} already holds a run (step {latest or 0}); pass --resume to continue it "
                              f"or choose another --out")
    if resume and config_path.exists():
        _check_same_model(cfg, config_path)
    if resume and previous is not None and previous.get("status") == "finished" and latest == cfg.train.steps:
        return RunResult(out, previous)

    data = load_token_data(cfg.data, seq_len=cfg.model.seq_len)
    if resume:
        check_same_tokenizer(previous, data, out)
    if cfg.model.vocab_size < data.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the {cfg.data.tokenizer} "
                          f"tokenizer's vocabulary ({data.vocab_size}); set model.vocab_size={data.vocab_size}")
    model = build_model(cfg)
    flat, params, rest = FlatModel.split(model)
    hp = Hyperparams.resolve(cfg.train, cfg.recipe)
    tx = make_optimizer(hp)
    state = init_state(params, rest, tx, hp)
    start, wandb_id = 0, None
    if resume and latest is not None:
        state, meta = ckpts.restore(latest, state)
        state["schedule"] = schedule_values(hp)  # the config's peaks, as before the interruption
        start, wandb_id = latest, meta.get("wandb_id")

    counts = param_counts(cfg.model, cfg.recipe)
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
    summary = {
        "status": "running", "recipe": cfg.recipe.name, "layout": cfg.model.resolve(cfg.recipe).layout,
        "n_params": counts["total"], "n_params_non_embedding": counts["non_embedding"],
        "n_params_matmul": counts["matmul"], "step": start, "steps": cfg.train.steps,
        "tokens": start * tokens_per_step,
        "flops": flops_per_token(cfg.model, cfg.recipe) * start * tokens_per_step,
        "flops_per_token": flops_per_token(cfg.model, cfg.recipe),
        "data_source": data.source, "data_sha256": data.sha256, "bytes_per_token": data.bytes_per_token,
        "data_entropy_floor": data.entropy_floor,
        "tokenizer": data.tokenizer, "tokenizer_sha256": data.tokenizer_sha256,
        "unigram_bits_per_byte": unigram_bits_per_byte(data.train, data.val, data.vocab_size, data.bytes_per_token),
        "hyperparams": dataclasses.asdict(hp), "device": jax.devices()[0].device_kind,
        "compute_dtype": jnp.dtype(compute_dtype(cfg.train.compute_dtype)).name,
        "final_train_loss": None, "final_val_loss": None, "val_bits_per_byte": None,
        "tokens_per_sec": None, "wall_s": (previous or {}).get("wall_s", 0.0) if resume else 0.0,
    }
    config_lib.dump(cfg, config_path)
    write_json(summary_path, summary)
    tracker = make_tracker(cfg, out, wandb_id)
    metrics = MetricsWriter(out / "metrics.jsonl", keep_through_step=start if resume else -1)
    trainer = _Trainer(cfg, data, flat, tx, hp, ckpts, metrics, tracker, summary, summary_path)
    try:
        trainer.train(state, start)
    except BaseException as e:
        summary["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        summary["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
        raise
    finally:
        metrics.close()
        ckpts.wait()  # the last save is on disk before the summary says so
        write_json(summary_path, summary)
        if tracker is not None:
            tracker.finish(summary)
    return RunResult(out, summary)


def _check_same_model(cfg: RunConfig, config_path: Path) -> None:
    """A resumed run must keep the model shape and recipe its checkpoint was trained with."""
    try:
        saved = config_lib.from_dict(yaml.safe_load(config_path.read_text()), str(config_path))
    except (ConfigError, yaml.YAMLError) as e:
        raise CheckpointError(f"{config_path}: cannot read the run's saved config ({e})") from None
    for section, old, new in (("recipe", saved.recipe, cfg.recipe),
                              ("model", saved.model.resolve(saved.recipe), cfg.model.resolve(cfg.recipe))):
        for f in dataclasses.fields(old):
            a, b = getattr(old, f.name), getattr(new, f.name)
            if a != b:
                raise CheckpointError(f"cannot resume {config_path.parent}: its checkpoint has {section}.{f.name}={a}, "
                                      f"the config asks for {b}; resume with the same {section} or choose another --out")


class _Trainer:
    """The step loop. Metrics stay on the device and are fetched in groups (every log_every steps, and before any
    checkpoint or evaluation), so the host rarely waits for the device."""

    def __init__(self, cfg, data, flat, tx, hp, ckpts, metrics, tracker, summary, summary_path):
        self.cfg, self.data, self.ckpts, self.metrics, self.tracker = cfg, data, ckpts, metrics, tracker
        self.summary, self.summary_path = summary, summary_path
        t = cfg.train
        # On the device (drawn there, no copy per step) unless the stream is too large; then gathered on the host.
        self.batches = TrainBatches(data.train, cfg.data.seed, t.batch_size, cfg.model.seq_len, cfg.data.on_device,
                                    cfg.data.device_max_tokens)
        self.step_fn = make_train_step(flat, tx, hp)
        self.eval_fn = make_eval_step(flat)
        self.val = jnp.asarray(val_batches(data.val, t.batch_size, cfg.model.seq_len, t.eval_batches))
        self.tokens_per_step = t.batch_size * cfg.model.seq_len

    def train(self, state, start: int) -> None:
        t = self.cfg.train
        bar = tqdm(total=t.steps, initial=start, unit="step", disable=not self.cfg.tracking.progress,
                   desc=self.cfg.recipe.name, dynamic_ncols=True)
        self.wall0, self.timed_from, self.timed_steps = time.perf_counter(), None, 0
        self.wall_before = self.summary["wall_s"]
        pending: list[tuple[int, dict]] = []
        try:
            for step in range(start, t.steps):
                batch = self.batches(step, state["step"])
                state, m = self.step_fn(state, batch)
                done = step + 1
                pending.append((done, m))
                evaluate, save = done % t.eval_every == 0 or done == t.steps, done % t.ckpt_every == 0
                if len(pending) >= t.log_every or evaluate or save or done == t.steps:
                    if not self.record(pending, bar):  # only a state known to be finite is saved or evaluated
                        return
                    pending = []
                if evaluate:
                    self.evaluate(state, done)
                if save or done == t.steps:
                    self.ckpts.save(done, state, {"step": done, "wandb_id": getattr(self.tracker, "run_id", None)})
            self.summary["status"] = "finished"
        finally:
            bar.close()
            self.summary["wall_s"] = self.wall_before + time.perf_counter() - self.wall0

    def record(self, pending: list[tuple[int, dict]], bar) -> bool:
        """Fetch the metrics of the pending steps; False (and status diverged) at the first non-finite one."""
        fetched = jax.device_get(jnp.stack([m for _, m in pending]))  # one copy for the whole group
        now = time.perf_counter()
        if self.timed_from is None:  # the first step includes compilation: time from its end
            self.timed_from, self.timed_steps = now, -len(pending)
        self.timed_steps += len(pending)
        elapsed = now - self.timed_from
        tps = self.timed_steps * self.tokens_per_step / elapsed if self.timed_steps > 0 and elapsed > 0 else None
        s = self.summary
        for (step, _), raw in zip(pending, fetched):
            m = dict(zip(METRICS, map(float, raw)))
            s.update(step=step, tokens=step * self.tokens_per_step, final_train_loss=m["loss"], tokens_per_sec=tps,
                     flops=s["flops_per_token"] * step * self.tokens_per_step)
            if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
                s["status"] = "diverged"
                s["error"] = f"non-finite loss {m['loss']} or gradient norm {m['grad_norm']} at step {step}"
                self.log({"step": step, **m})
                bar.write(f"run diverged at step {step}: {s['error']}; the last good checkpoint is kept "
                          f"(step {self.ckpts.latest_step()})")
                return False
            if step % self.cfg.train.log_every == 0 or step == self.cfg.train.steps:
                self.log({"step": step, **m, "tokens": s["tokens"], "tokens_per_sec": tps})
        bar.update(pending[-1][0] - bar.n)
        bar.set_postfix(loss=f"{s['final_train_loss']:.3f}", tok_s=f"{tps or 0:,.0f}")
        return True

    def evaluate(self, state, step: int) -> None:
        val_loss = float(self.eval_fn(state, self.val))
        bpb = val_loss / math.log(2) / self.data.bytes_per_token
        self.summary.update(final_val_loss=val_loss, val_bits_per_byte=bpb,
                            wall_s=self.wall_before + time.perf_counter() - self.wall0)
        self.log({"step": step, "val_loss": val_loss, "val_bits_per_byte": bpb})
        write_json(self.summary_path, self.summary)

    def log(self, row: dict) -> None:
        self.metrics.write(row)
        if self.tracker is not None:
            self.tracker.log(row)
