"""A second bf16 baseline for `decode_w2a8.sh`: PyTorch's cuBLAS GEMV (F.linear) at the same shapes, CUDA-graph timed.

XLA's bf16 `x @ W` is the baseline of `bitnet-jax bench decode`; this checks that it is not a weak one. Each graph
replays one GEMV per weight set (sets together twice the 50 MB L2), timed with CUDA events, median of replays.
Prints one line per shape and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import torch

SHAPES = {"700m": (1536, 4096), "3b": (3200, 8640)}


def time_linear(out: int, n_in: int, batch: int, reps: int = 50) -> float:
    sets = max(2, math.ceil(100e6 / (2 * out * n_in)))
    ws = [torch.randn(out, n_in, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
    xs = [torch.randn(batch, n_in, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
    ys = [torch.nn.functional.linear(x, w) for x, w in zip(xs, ws)]  # warm-up, cuBLAS handle creation
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for x, w in zip(xs, ws):
            torch.nn.functional.linear(x, w)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ys = [torch.nn.functional.linear(x, w) for x, w in zip(xs, ws)]
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3 / sets)
    for x, w, y in zip(xs[:1], ws[:1], ys[:1]):  # the graph computed the product
        torch.testing.assert_close(y.float(), x.float() @ w.float().T, rtol=2e-2, atol=2e-2)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    rows = []
    for shape, (hidden, glu) in SHAPES.items():
        for name, out, n_in in (("qkvo", hidden, hidden), ("gate_up", glu, hidden), ("down", hidden, glu)):
            s = time_linear(out, n_in, args.batch)
            gbs = (2 * out * n_in + 2 * args.batch * (out + n_in)) / s / 1e9
            rows.append({"shape": shape, "linear": name, "out": out, "in": n_in, "batch": args.batch, "s": s,
                         "gb_per_s": gbs})
            print(f"torch bf16 F.linear {shape:5} {name:8} {out:5} x {n_in:<5} {s * 1e6:8.2f} us {gbs:6.0f} GB/s")
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
