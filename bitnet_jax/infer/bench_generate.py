"""`bitnet-jax bench generate`: tokens/s of whole generation steps, a ternary model against the same model in bf16.

The BitNet b1.58 paper's 700M and 3B shapes (hidden, GLU, heads, layers as `bench decode`), vocabulary 32000, the
transformers BitNet layout (`hf_bitnet`), random weights. Variants, each a fresh model from the same seed:
  bf16    the fp16 recipe, every float parameter stored in bfloat16 (what a bf16 checkpoint holds);
  int8    bitnet_b158 on the integer path (`infer.to_integer`): int8 weight codes, int8 activations, exact integer sums;
  packed  bitnet_b158 on 2-bit packed weights (`to_integer(packed=True)`): the W2A8 Pallas kernel in decode steps,
          q/k/v and gate/up each as one fused product (4 launches a block instead of 7);
  packed_unfused  the same with every linear layer on its own (`fuse=False`);
  packed_xla_quant  packed, with each decode-step activation quantised by XLA before the kernel
          (`quantise_in_kernel=False`: four launches a product where `packed` has one).
Norms, embeddings and the LM head of the ternary variants are bfloat16 too. Each variant runs `generate_tokens` (one
jitted prefill, then one jitted step per token with its host round trip, as `bitnet-jax generate` streams) once to
compile and once timed; a decode step's time is the median gap between consecutive tokens after the first two, the
prefill's the time to the first token.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bitnet_jax import recipes
from bitnet_jax.config import RunConfig
from bitnet_jax.errors import UserError
from bitnet_jax.infer.bench_decode import SHAPES
from bitnet_jax.infer.generate import generate_tokens
from bitnet_jax.infer.integer import InferenceModel, to_integer
from bitnet_jax.model import ModelConfig, Transformer

VARIANTS = ("bf16", "int8", "packed", "packed_unfused", "packed_xla_quant")


def model_config(shape: str, context: int) -> ModelConfig:
    if shape not in SHAPES:
        raise UserError(f"unknown generate bench shape {shape!r}; use one of {', '.join(SHAPES)}")
    hidden, glu, heads, layers = SHAPES[shape]
    return ModelConfig(vocab_size=256 if shape == "tiny" else 32000, d_model=hidden, n_layers=layers, n_heads=heads,
                       d_ff=glu, seq_len=context, layout="hf_bitnet")


def build(variant: str, cfg: ModelConfig, seed: int = 0) -> InferenceModel:
    recipe = recipes.get("fp16" if variant == "bf16" else "bitnet_b158")
    model = Transformer(cfg, recipe, rngs=nnx.Rngs(seed), dtype=jnp.bfloat16)
    if variant != "bf16":
        to_integer(model, packed=variant.startswith("packed"), fuse=variant != "packed_unfused",
                   quantise_in_kernel=variant != "packed_xla_quant")
    floats = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda x: x.astype(jnp.bfloat16), floats))
    return InferenceModel(RunConfig(recipe=recipe, model=cfg), model, 0, variant != "bf16")


def time_generation(model: InferenceModel, batch: int, prompt_len: int, new_tokens: int, seed: int = 0) -> dict:
    prompts = np.random.default_rng(seed).integers(0, model.vocab_size, (batch, prompt_len)).tolist()
    t0 = time.perf_counter()
    generate_tokens(model, prompts, new_tokens)  # compiles the prefill and the decode step (cache of this length)
    compile_s = time.perf_counter() - t0
    stamps = [time.perf_counter()]
    tokens = generate_tokens(model, prompts, new_tokens, on_step=lambda i, t: stamps.append(time.perf_counter()))
    gaps = np.diff(stamps)
    step_s = statistics.median(gaps[2:])
    return {"compile_s": compile_s, "prefill_s": float(gaps[0]), "decode_step_s": step_s,
            "decode_step_iqr_s": [float(np.percentile(gaps[2:], 25)), float(np.percentile(gaps[2:], 75))],
            "tokens_per_s": batch / step_s, "first_tokens": np.asarray(tokens)[0, :8].tolist()}


def run(shape: str = "3b", batch: int = 1, *, prompt_len: int = 32, new_tokens: int = 64,
        variants: list[str] | None = None) -> dict:
    variants = variants or list(VARIANTS)
    for v in variants:
        if v not in VARIANTS:
            raise UserError(f"unknown generate bench variant {v!r}; use one of {', '.join(VARIANTS)}")
    if batch < 1 or prompt_len < 1 or new_tokens < 4:
        raise UserError(f"generate bench: --batch {batch} and the prompt length {prompt_len} must be >= 1, the new "
                        f"tokens {new_tokens} >= 4 (two compile, the rest are timed)")
    cfg = model_config(shape, prompt_len + new_tokens)
    rows = {}
    for v in variants:
        model = build(v, cfg)
        rows[v] = time_generation(model, batch, prompt_len, new_tokens)
        del model
        print(f"{shape} batch {batch} {v}: decode step {rows[v]['decode_step_s'] * 1e3:.3f} ms, "
              f"{rows[v]['tokens_per_s']:.1f} tokens/s", file=sys.stderr, flush=True)
    if "bf16" in rows:
        for r in rows.values():
            r["speedup_vs_bf16"] = rows["bf16"]["decode_step_s"] / r["decode_step_s"]
    device = jax.devices()[0]
    return {"shape": shape, "model": cfg.__dict__, "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens,
            "device": f"{device.platform}:{getattr(device, 'device_kind', '')}", "jax": jax.__version__,
            "variants": rows}


def table(report: dict) -> str:
    lines = [f"generation, shape {report['shape']}, batch {report['batch']}, prompt {report['prompt_len']} + "
             f"{report['new_tokens']} new tokens, {report['device']}",
             f"{'variant':<8} {'decode step ms':>15} {'tokens/s':>10} {'vs bf16':>8} {'prefill ms':>11}"]
    for name, r in report["variants"].items():
        speedup = f"{r['speedup_vs_bf16']:.2f}x" if "speedup_vs_bf16" in r else "-"
        lines.append(f"{name:<8} {r['decode_step_s'] * 1e3:>15.3f} {r['tokens_per_s']:>10.1f} {speedup:>8} "
                     f"{r['prefill_s'] * 1e3:>11.1f}")
    return "\n".join(lines)


def save(report: dict, path: str) -> None:
    Path(path).write_text(json.dumps(report, indent=1))
