"""Where a b1.58 training step spends its time over fp16's (issue 13, item 1).

    PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python experiments/benchmarks/quant_cost.py [SECONDS] [SHAPE[:VARIANT] ...]

Per shape, one row per variant: the training loop's jitted call (K steps in one `lax.fori_loop`, batches drawn on the
device, AdamW; `train.make_train_call`, as a run trains) timed after compilation, median of a few calls. Variants
take the recipe apart: fp16 in the LLaMA layout (2 norms per block) and in the FAQ layout (a norm inside each of the
7 linear layers, nothing quantised), b1.58 in the FAQ layout with only its weights or only its activations
quantised, b1.58 whole in the FAQ and the LLaMA layouts, absmedian (also with the candidate `bits_median.py`, checked
against `jnp.median` first), and fp16 with XLA's attention instead of cuDNN's;
at the small shapes also 16-run groups (`jax.vmap`, tokens/s of the whole group). Each row also holds the mean loss of
the timed steps. Candidates timed once and dropped (quant_cost.md names the commits that had them): a fused RMSNorm +
absmax op, sibling norms sharing one statistic, a radix-select median, a fixed-trip-count loop, an int8 tensor-core
forward.

Rows go to $OUT/quant_cost.jsonl (default /tmp/quant_cost) as they land; no new variant starts after SECONDS
(default 480). Shapes: 0.8m, 4.3m (sweeps/gpu_small.yaml's, batch 64 x 256), 110m (bench's 125m preset, batch 16 x
1024), 350m (bench's 350m preset, batch 8 x 1024); default the first three, each with its ROWS; SHAPE:VARIANT times
one variant; `tiny` is a CPU smoke test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax import recipes
from bitnet_jax.config import RunConfig, TrainConfig
from bitnet_jax.data import build_token_data
from bitnet_jax.data.batches import TrainBatches
from bitnet_jax.model import ModelConfig, flops_per_token
from bitnet_jax.train.bench import PRESETS
from bitnet_jax.train.state import build_training
from bitnet_jax.train.step import METRICS, make_train_call

sys.path.insert(0, str(Path(__file__).parent))
import bits_median  # noqa: E402  (this folder's candidate)

OUT = Path(os.environ.get("OUT", "/tmp/quant_cost"))
SMALL = dict(vocab_size=256, seq_len=256)
SHAPES = {  # name: (model, batch, steps per call, timed calls)
    "0.8m": (ModelConfig(d_model=128, n_layers=4, n_heads=4, d_ff=352, **SMALL), 64, 32, 8),
    "4.3m": (ModelConfig(d_model=224, n_layers=7, n_heads=7, d_ff=608, **SMALL), 64, 32, 6),
    "110m": (PRESETS["125m"], 16, 8, 5),
    "350m": (PRESETS["350m"], 8, 4, 4),
    "tiny": (PRESETS["tiny"], 8, 4, 2),  # a CPU smoke test of the script (not in the default list)
}
B158 = recipes.get("bitnet_b158")
MEDIAN = recipes.get("bitnet_b158_median")
FP16 = recipes.get("fp16")
VARIANTS = {  # name: (recipe, layout, runs in the group, attention: auto = cuDNN's fused attention on a GPU)
    "fp16 llama": (FP16, "llama", 1, "auto"),
    "fp16 faq (norms only)": (FP16, "faq", 1, "auto"),
    "b1.58 faq, weights only": (dataclasses.replace(B158, act_quant="none"), "faq", 1, "auto"),
    "b1.58 faq, activations only": (dataclasses.replace(B158, weight_quant="none"), "faq", 1, "auto"),
    "b1.58 faq": (B158, "faq", 1, "auto"),
    "b1.58 llama": (B158, "llama", 1, "auto"),
    "b1.58 absmedian faq": (MEDIAN, "faq", 1, "auto"),
    "b1.58 absmedian faq, bit-pattern sort": (MEDIAN, "faq", 1, "auto"),
    "fp16 llama, xla attention": (FP16, "llama", 1, "xla"),
}
GROUP_VARIANTS = {  # a 16-run group (issue 10's packed sweeps), at the small shapes only
    "fp16 llama, group 16": (FP16, "llama", 16, "auto"),
    "b1.58 faq, group 16": (B158, "faq", 16, "auto"),
    "fp16 llama, group 16, xla attention": (FP16, "llama", 16, "xla"),
}
CANDIDATES = {"b1.58 absmedian faq, bit-pattern sort": bits_median}  # variant -> this folder's module, patched in
ONCE = ("b1.58 faq, weights only", "b1.58 faq, activations only")  # timed on 2026-12-03 (quant_cost.md)
ROWS = {  # the variants timed at each shape
    "0.8m": [v for v in VARIANTS if v not in ONCE] + list(GROUP_VARIANTS),
    "4.3m": ["fp16 llama", "fp16 faq (norms only)", "b1.58 faq", "b1.58 llama", "b1.58 absmedian faq",
             "b1.58 absmedian faq, bit-pattern sort"],
    "110m": ["fp16 llama", "b1.58 faq", "b1.58 llama"],
    "350m": ["fp16 llama", "b1.58 faq", "b1.58 llama"],
    "tiny": list(VARIANTS) + list(GROUP_VARIANTS),
}


def build(shape: str, variant: str, tokens: np.ndarray):
    """The variant's jitted training call (K steps), its stacked state and inputs, and what a row records about it."""
    model_cfg, batch, k, _ = SHAPES[shape]
    recipe, layout, group, attention = {**VARIANTS, **GROUP_VARIANTS}[variant]
    for name, module in CANDIDATES.items():
        (module.install if name == variant else module.uninstall)()
    cfg = dataclasses.replace(model_cfg, layout=layout)
    train = TrainConfig(batch_size=batch, steps=10_000, steps_per_call=k, attention=attention)
    training = build_training(RunConfig(recipe=recipe, model=cfg, train=train))
    batches = TrainBatches(tokens, list(range(group)), batch, cfg.seq_len, steps_per_call=k)
    call = make_train_call(training.model, training.optimizer, training.hyperparams, group, k, batches.draw)
    state = jax.tree.map(lambda x: jnp.stack([x] * group), training.state)
    active, inputs = jnp.ones((group,), bool), batches.inputs([0] * group)
    row = {"shape": shape, "variant": variant, "layout": layout, "group": group, "attention": attention, "batch": batch,
           "seq_len": cfg.seq_len, "steps_per_call": k, "device": jax.devices()[0].device_kind}
    return call, state, active, inputs, row, flops_per_token(cfg, recipe)


def measure(shape: str, variant: str, tokens: np.ndarray) -> dict:
    call, state, active, inputs, row, flops = build(shape, variant, tokens)
    k, calls, group = row["steps_per_call"], SHAPES[shape][3], row["group"]
    t0 = time.perf_counter()
    state, active, metrics, _ = call(state, active, jnp.int32(k), inputs)
    jax.block_until_ready(metrics)
    first_s = time.perf_counter() - t0
    times, losses = [], []
    for i in range(calls):
        t0 = time.perf_counter()
        state, active, metrics, _ = call(state, active, jnp.int32((i + 2) * k), inputs)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
        losses.append(float(np.mean(np.asarray(metrics)[:, 0, METRICS.index("loss")])))
    step_s = statistics.median(times) / k
    tps = group * row["batch"] * row["seq_len"] / step_s  # all runs of the group together
    return {**row, "first_call_s": first_s, "step_ms": step_s * 1e3, "tokens_per_sec": tps, "mfu": tps * flops / 989e12,
            "loss_timed_steps": float(np.mean(losses))}


def main() -> None:
    deadline = time.time() + float(sys.argv[1] if len(sys.argv) > 1 else 480)
    shapes = sys.argv[2:] or ["0.8m", "4.3m", "110m"]
    OUT.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"bits_median_cases_differing": bits_median.check()}), flush=True)
    tokens = build_token_data("python_docs", "byte", seq_len=1024).train
    base = {}
    for item in shapes:
        shape, _, one = item.partition(":")
        for variant in [one] if one else ROWS[shape]:
            if time.time() > deadline:
                print(f"deadline: stopped before {shape} {variant}", flush=True)
                return
            row = measure(shape, variant, tokens)
            base.setdefault(shape, row["step_ms"])
            row["step_vs_fp16_llama"] = row["step_ms"] / base[shape] / row["group"]  # per run
            print(json.dumps(row), flush=True)
            with open(OUT / "quant_cost.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
