"""Where the device time of a training call goes, kernel by kernel (issues 10 and 13).

    PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python experiments/benchmarks/step_profile.py [SHAPE:VARIANT ...]

For each SHAPE:VARIANT of quant_cost.py (default: the 0.8M fp16, b1.58 and absmedian rows, the 0.8M 16-run group and
the 4.3M b1.58 row) the training call is compiled, run once, then traced with `jax.profiler` over two calls. The
trace is read back with `jax.profiler.ProfileData` and summarised per step: the call's wall time, the time some
kernel was running (the union of the kernel intervals; the rest is the device waiting for the host: launches, the
loop's condition), kernels launched, and device time by kind of work (matmul, attention, reduction fusions,
elementwise fusions, copies) and by HLO op or, inside XLA's CUDA graphs (command buffers), by kernel name (the 25
most expensive). One JSON line per variant goes to stdout and $OUT/step_profile.jsonl. On a CPU the XLA ops of the
host's thread pool stand in for kernels (a smoke test: `tiny:"b1.58 faq"`).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.profiler import ProfileData

sys.path.insert(0, str(Path(__file__).parent))
import quant_cost  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp/quant_cost"))
DEFAULT = ["0.8m:fp16 llama", "0.8m:b1.58 faq", "0.8m:b1.58 absmedian faq", "0.8m:fp16 llama, group 16",
           "4.3m:b1.58 faq"]
KINDS = (  # (kind, substrings of the HLO op or kernel name), first match wins
    ("w2a8 kernel", ("w2a8_gemv",)),  # the packed decode GEMV (infer.kernels: its pallas_call name, also the
    # Triton kernel's, as in the deviceless kernel sequences of kernel_count.py)
    ("attention", ("fmha", "cudnn", "flash", "attention")),
    ("matmul", ("gemm", "cublas", "dot", "xmma", "cutlass", "matmul", "convolution", "nvjet")),
    ("reduction fusion", ("reduce", "scatter")),
    ("copy", ("copy", "transpose", "memcpy", "memset", "dynamic-update-slice", "dynamic_update_slice")),
    ("elementwise fusion", ("fusion",)),
)


def kind_of(op: str, kernel: str) -> str:
    text = f"{op} {kernel}".lower()
    return next((kind for kind, keys in KINDS if any(key in text for key in keys)), "other")


def kernel_events(path: str) -> list[tuple[int, int, str, str]]:
    """(start ns, duration ns, HLO op, kernel name) of every device kernel in the trace (CPU: every XLA op)."""
    data = ProfileData.from_file(path)
    gpu = [plane for plane in data.planes if plane.name.startswith("/device:GPU")]
    events = []
    for plane in gpu or [plane for plane in data.planes if plane.name == "/host:CPU"]:
        lines = list(plane.lines)
        streams = [line for line in lines if "stream" in line.name.lower()]  # not derived lines (XLA Ops, Modules)
        for line in streams or lines:
            for event in line.events:
                stats = dict(event.stats)
                if gpu or "hlo_op" in stats:
                    events.append((int(event.start_ns), int(event.duration_ns), str(stats.get("hlo_op", "")),
                                   event.name))
    return events


def busy_ns(events) -> int:
    """Length of the union of the events' intervals."""
    total, end = 0, None
    for start, duration, *_ in sorted(events):
        if end is None or start > end:
            total, end = total + duration, start + duration
        elif start + duration > end:
            total, end = total + start + duration - end, start + duration
    return total


def profile(shape: str, variant: str, tokens, calls: int = 2) -> dict:
    call, state, active, inputs, row, _ = quant_cost.build(shape, variant, tokens)
    k = row["steps_per_call"]
    state, active, metrics, _ = call(state, active, jnp.int32(k), inputs)
    jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            t0 = time.perf_counter()
            for i in range(calls):
                state, active, metrics, _ = call(state, active, jnp.int32((i + 2) * k), inputs)
                jax.block_until_ready(metrics)
            wall = time.perf_counter() - t0
        events = kernel_events(str(next(Path(trace_dir).rglob("*.xplane.pb"))))
    return {**row, **summarise(events, calls * k, wall)}


def summarise(events, steps: int, wall_s: float) -> dict:
    """Per step: wall and busy time, kernels, device time by kind and the 25 most expensive ops or kernels."""
    by_kind, by_op, count_op = collections.Counter(), collections.Counter(), collections.Counter()
    for _, duration, op, kernel in events:
        name = kernel[:80] if not op or op.startswith("command_buffer") else op  # a CUDA graph's kernels by name
        by_kind[kind_of(op, kernel)] += duration
        by_op[name] += duration
        count_op[name] += 1
    per_step_ms = lambda ns: round(ns / steps / 1e6, 4)  # noqa: E731
    return {"wall_ms_per_step": round(wall_s / steps * 1e3, 4), "busy_ms_per_step": per_step_ms(busy_ns(events)),
            "kernels_per_step": round(len(events) / steps, 1),
            "ms_per_step_by_kind": {kind: per_step_ms(ns) for kind, ns in by_kind.most_common()},
            "top_ops": [{"op": op, "ms_per_step": per_step_ms(ns), "per_step": round(count_op[op] / steps, 2),
                         "kind": kind_of(op, op)} for op, ns in by_op.most_common(25)]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tokens = quant_cost.build_token_data("python_docs", "byte", seq_len=1024).train
    for item in sys.argv[1:] or DEFAULT:
        shape, _, variant = item.partition(":")
        row = profile(shape, variant, tokens)
        print(json.dumps(row), flush=True)
        with open(OUT / "step_profile.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
