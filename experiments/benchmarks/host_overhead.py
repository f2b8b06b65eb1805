"""The host's cost per generated token of what the decode step once took on every call (issue 13, item 3).

    PYTHONPATH=$PWD python experiments/benchmarks/host_overhead.py [LAYERS]

A `bench generate` model of LAYERS blocks (default 26, the 3B shape's depth; width 64, so the device work is
negligible) in the bf16 and packed variants: milliseconds to hash its nnx GraphDef, to compare two equal GraphDefs
(what a jit static argument costs per call: a hash, then an equality test against the cached key), and to flatten
its nnx.State; then `generate_tokens`'s median step. Runs on a CPU.
"""

import sys
import time

import jax
from flax import nnx

from bitnet_jax.infer import bench_generate
from bitnet_jax.model import ModelConfig


def ms(fn, reps: int = 50) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e3


def main() -> None:
    layers = int(sys.argv[1]) if len(sys.argv) > 1 else 26
    cfg = ModelConfig(vocab_size=256, d_model=64, n_layers=layers, n_heads=4, d_ff=128, seq_len=96,
                      layout="hf_bitnet")
    for variant in ("bf16", "packed"):
        model = bench_generate.build(variant, cfg)
        graphdef, state = nnx.split(model.model)
        other, _ = nnx.split(model.model)
        step = bench_generate.time_generation(model, 1, 32, 64)["decode_step_s"] * 1e3
        print(f"{layers} layers, {variant}: hash GraphDef {ms(lambda: hash(graphdef)):.3f} ms, compare two "
              f"{ms(lambda: graphdef == other):.3f} ms, flatten State {ms(lambda: jax.tree.flatten(state)):.3f} ms; "
              f"generate_tokens step {step:.3f} ms ({jax.devices()[0].platform})")


if __name__ == "__main__":
    main()
