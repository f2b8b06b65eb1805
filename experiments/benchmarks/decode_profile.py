"""Where the device time of a generation step goes, kernel by kernel (issue 13, item 3).

    PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python experiments/benchmarks/decode_profile.py [SHAPE:BATCH:VARIANT ...]

Each item builds `bench generate`'s model (SHAPE 3b | 700m | tiny, VARIANT bf16 | int8 | packed | packed_unfused;
default the 3B bf16 and packed models at batch 1), runs `generate_tokens` once to compile, then again with
`jax.profiler` tracing decode steps 8 to 8 + STEPS (STEPS = 24) only: the prefill and the first steps stay out. The
trace is summarised per step as `step_profile.py` does (wall and busy time, kernels, time by kind, the 25 most
expensive ops or kernels, by kernel name inside XLA's CUDA graphs); one JSON line per item goes to stdout and
$OUT/decode_profile.jsonl. On a CPU the XLA ops of the host's thread pool stand in for kernels (`tiny:1:packed`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from bitnet_jax.infer import bench_generate
from bitnet_jax.infer.generate import generate_tokens

sys.path.insert(0, str(Path(__file__).parent))
from step_profile import kernel_events, summarise  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp/decode_profile"))
DEFAULT = ["3b:1:bf16", "3b:1:packed"]
FIRST, STEPS, PROMPT = 8, 24, 32


def profile(shape: str, batch: int, variant: str) -> dict:
    new_tokens = FIRST + STEPS + 2
    model = bench_generate.build(variant, bench_generate.model_config(shape, PROMPT + new_tokens))
    prompts = np.random.default_rng(0).integers(0, model.vocab_size, (batch, PROMPT)).tolist()
    generate_tokens(model, prompts, new_tokens)  # compiles
    with tempfile.TemporaryDirectory() as trace_dir:
        clock = {}

        def on_step(i, _):  # step i's tokens reached the host; step i + 1 is queued already
            if i == FIRST:
                jax.profiler.start_trace(trace_dir)
                clock["start"] = time.perf_counter()
            elif i == FIRST + STEPS:
                clock["wall"] = time.perf_counter() - clock["start"]
                jax.profiler.stop_trace()

        generate_tokens(model, prompts, new_tokens, on_step=on_step)
        events = kernel_events(str(next(Path(trace_dir).rglob("*.xplane.pb"))))
    return {"shape": shape, "batch": batch, "variant": variant, "device": jax.devices()[0].device_kind,
            **summarise(events, STEPS, clock["wall"])}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for item in sys.argv[1:] or DEFAULT:
        shape, batch, variant = item.split(":")
        row = profile(shape, int(batch), variant)
        print(json.dumps(row), flush=True)
        with open(OUT / "decode_profile.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
