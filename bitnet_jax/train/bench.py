"""`bitnet-jax bench`: time the full jitted train step (forward, backward, AdamW) per recipe at one shape.

Batches are windows of the embedded English text (byte ids, `tokens="text"`, the default) or uniform random ids
(`tokens="random"`). Use text: the token distribution matters on a GPU (a bfloat16 embedding gradient over text,
where a few ids repeat thousands of times per batch, once ran 30x slower than over random ids). Step time is the median over `steps` synchronised steps
after compilation and `warmup` untimed steps; MFU = tokens/s x FLOPs per token / (peak x devices), with FLOPs per
token = 6 N_matmul + 12 L d T (`model.flops_per_token`). `mesh.*` overrides spread the step over the devices the
process sees as a training run does (train/sharding.py; default: all of them on data); tokens/s is the whole mesh's.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax import config as config_lib, recipes
from bitnet_jax.config import RunConfig, TrainConfig
from bitnet_jax.data import build_token_data, check_window, train_batch
from bitnet_jax.errors import ConfigError
from bitnet_jax.model import ModelConfig, flops_per_token, param_counts
from bitnet_jax.train.state import attention_impl, build_training, compute_dtype
from bitnet_jax.train.sharding import Layout, make_mesh
from bitnet_jax.train.step import METRICS, make_train_step

PRESETS = {
    # LLaMA-shaped ~125M (REFERENCE.md's PyTorch peer: d 768, 12 layers, SwiGLU 2048, vocab 32000 tied)
    "125m": ModelConfig(vocab_size=32000, d_model=768, n_layers=12, n_heads=12, d_ff=2048, seq_len=1024),
    # LLaMA-shaped ~350M (d 1024, 24 layers, SwiGLU 2816; 341M, 308M without the embedding): issue 13's second shape
    "350m": ModelConfig(vocab_size=32000, d_model=1024, n_layers=24, n_heads=16, d_ff=2816, seq_len=1024),
    "tiny": ModelConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=2, d_ff=160, seq_len=64),
}


def run(preset: str = "125m", recipe_names: list[str] | None = None, *,
        batch_size: int = 16, seq_len: int | None = None, steps: int = 20, warmup: int = 3, attention: str = "auto",
        compute_dtype: str = "auto", overrides: list[str] = (), peak_tflops: float = 989.0,
        tokens: str = "text") -> list[dict]:
    if preset not in PRESETS:
        raise ConfigError(f"unknown bench preset {preset!r}; available: {', '.join(PRESETS)}")
    if tokens not in ("text", "random"):
        raise ConfigError(f"unknown bench tokens {tokens!r}; use text or random")
    names = recipe_names or ["fp16", "bitnet_b158"]
    raw = {"model": dataclasses.asdict(PRESETS[preset]), "train": {"attention": attention,
                                                                    "compute_dtype": compute_dtype}}
    if seq_len:
        raw["model"]["seq_len"] = seq_len
    for item in overrides:
        config_lib.apply_override(raw, item)
    parsed = config_lib.from_dict(raw, "bench")
    model_cfg, train_cfg = parsed.model, parsed.train
    mesh = make_mesh(parsed.mesh)
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    if batch_size % ways:
        raise ConfigError(f"bench: --batch {batch_size} does not split over mesh data x fsdp = {ways} devices; use "
                          f"a multiple of {ways}")
    rows = []
    for name in names:
        batch = _batch(tokens, batch_size, model_cfg)
        rows.append(_time_recipe(model_cfg, recipes.get(name), train_cfg, batch, steps, warmup, peak_tflops, mesh))
        rows[-1]["tokens"] = tokens
    base = next((r for r in rows if r["recipe"] == "fp16"), None)
    for r in rows:
        r["step_ratio_vs_fp16"] = r["step_ms"] / base["step_ms"] if base else None
    return rows


def _batch(kind: str, batch_size: int, cfg: ModelConfig) -> jax.Array:
    if kind == "random":
        ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch_size, cfg.seq_len + 1), dtype=np.int32)
        return jnp.asarray(ids)
    data = build_token_data("python_docs", "byte", seq_len=cfg.seq_len)
    check_window(data.train, cfg.seq_len)
    return train_batch(jnp.asarray(data.train), 0, 0, batch_size, cfg.seq_len)


def _time_recipe(cfg: ModelConfig, recipe, train_cfg: TrainConfig, batch, steps, warmup, peak_tflops,
                 mesh) -> dict:
    dtype = compute_dtype(train_cfg.compute_dtype)
    attention = attention_impl(train_cfg.attention, dtype)
    training = build_training(RunConfig(recipe=recipe, model=cfg, train=dataclasses.replace(train_cfg, steps=10_000)))
    layout = Layout.of(mesh, training.model.param_def, training.state, training.optimizer, leading=0)
    state, batch = jax.device_put(training.state, layout.state), jax.device_put(batch, layout.batch(0))
    step = make_train_step(training.model, training.optimizer, training.hyperparams, layout)
    batch_size = batch.shape[0]
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        state, m = step(state, batch)
    jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, m = step(state, batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    tps = batch_size * cfg.seq_len / step_s
    fpt = flops_per_token(cfg, recipe)
    counts = param_counts(cfg, recipe)
    return {"recipe": recipe.name, "layout": cfg.resolve(recipe).layout, "n_params": counts["total"],
            "n_params_matmul": counts["matmul"], "batch": batch_size, "seq_len": cfg.seq_len,
            "dtype": jnp.dtype(dtype).name, "attention": attention, "device": jax.devices()[0].device_kind,
            "devices": mesh.size, "mesh": dict(mesh.shape), "compile_s": compile_s, "step_ms": step_s * 1e3,
            "step_ms_min": min(times) * 1e3, "tokens_per_sec": tps,
            "mfu": tps * fpt / (peak_tflops * 1e12 * mesh.size), "loss": float(m[METRICS.index("loss")])}


def table(rows: list[dict]) -> str:
    head = f"{'recipe':<20}{'layout':<10}{'params':>10}{'step ms':>10}{'tokens/s':>12}{'MFU':>8}{'vs fp16':>9}"
    mesh = " x ".join(f"{k} {v}" for k, v in rows[0]["mesh"].items())
    lines = [f"device: {rows[0]['devices']} x {rows[0]['device']} (mesh {mesh})  "
             f"batch {rows[0]['batch']} x seq {rows[0]['seq_len']}  "
             f"dtype {rows[0]['dtype']}  attention {rows[0]['attention']}  tokens {rows[0]['tokens']}", head]
    for r in rows:
        ratio = "-" if r["step_ratio_vs_fp16"] is None else f"{r['step_ratio_vs_fp16']:.3f}"
        lines.append(f"{r['recipe']:<20}{r['layout']:<10}{r['n_params'] / 1e6:>9.1f}M{r['step_ms']:>10.2f}"
                     f"{r['tokens_per_sec']:>12,.0f}{r['mfu'] * 100:>7.1f}%{ratio:>9}")
    return "\n".join(lines)


def save(rows: list[dict], path: str) -> None:
    Path(path).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2) + "\n")
