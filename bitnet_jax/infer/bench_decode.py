"""`bitnet-jax bench decode`: per-layer GEMV time, bf16 (XLA x @ W) vs the W2A8 Pallas kernel vs the XLA W2A8 path.

Shapes are the BitNet b1.58 paper's LLaMA-alike models (REFERENCE.md section 2): per layer q, k, v, o (hidden ->
hidden), gate, up (hidden -> GLU) and down (GLU -> hidden), random weights. Timing: a timed call runs one GEMV per
weight set, each set with its own weight and activation, n sets adding up to at least twice the L2 cache (50 MB on an
H100), so weights come from device memory as in a real decode step. One GEMV's time is the slope between calls over
n and over 2n sets (median of `reps` synchronised calls each, after `warmup` calls), which removes the fixed dispatch
and synchronisation cost. The whole-model number is an estimate: layers x the sum of the
7 linear-layer GEMV times (attention, norms, embeddings and the LM head are not counted). Before timing on a GPU,
every kernel configuration is checked against the XLA reference on the benchmark shapes; a mismatch ends the run
with an error. On a CPU the kernel runs in Pallas interpret mode (slow: use --shape tiny).
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax.errors import UserError
from bitnet_jax.infer import kernels
from bitnet_jax.infer.kernels import TileConfig

# hidden, GLU, heads, layers (REFERENCE.md section 2); tiny is for CPU smoke tests
SHAPES = {"700m": (1536, 4096, 24, 24), "3b": (3200, 8640, 32, 26), "tiny": (64, 160, 2, 2)}
L2_BYTES = 50e6  # H100; the weight sets of one timed call add up to twice this


class KernelMismatch(UserError):
    """The kernel computed a different function from the XLA reference: its timings are worthless."""


def linear_shapes(shape: str) -> dict[str, tuple[int, int, int]]:
    """name -> (out, in, count per layer) for the distinct linear shapes of one layer."""
    if shape not in SHAPES:
        raise UserError(f"unknown decode bench shape {shape!r}; use one of {', '.join(SHAPES)}")
    hidden, glu, _, _ = SHAPES[shape]
    return {"qkvo": (hidden, hidden, 4), "gate_up": (glu, hidden, 2), "down": (hidden, glu, 1)}


def tune_configs(out: int, n_in: int, batch: int, variants: list[str], tune: bool) -> list[TileConfig]:
    """The default tile config of each variant, plus (tune=True) a grid of tiles.

    The grid goes from the most to the least promising guess, since the tune budget may stop it early: dp4a_rows
    shapes first, then 2-D tiles of the first variant with about 4 KB of weights per step, whole-input programs (no
    split epilogue) before split-K, then 8 warps.
    """
    base = kernels.default_config(out, n_in, batch)
    configs = [base._replace(variant=v) for v in variants]
    if tune and "dp4a_rows" in variants:  # 1-D rows: fewer warps make its per-row epilogue reductions cheaper
        # (one warp: shuffles only, no shared memory or barriers)
        for block_rows, block_k, num_warps in ((4, 512, 4), (4, 256, 2), (4, 128, 1), (8, 128, 2), (2, 256, 1)):
            configs.append(base._replace(block_rows=block_rows, block_k=block_k, num_warps=num_warps,
                                         variant="dp4a_rows"))
    if tune:
        tiles = [(4, 256), (8, 128), (16, 64), (32, 32), (8, 256), (16, 128), (4, 128), (32, 64), (16, 256)]
        for split_k in (1, 2, 4):
            for block_rows, block_k in tiles:
                configs.append(base._replace(block_rows=block_rows, block_k=block_k, split_k=split_k,
                                             variant=variants[0]))
        configs += [c._replace(num_warps=8) for c in configs[len(variants):len(variants) + 4]]
    unique = []
    for c in configs:
        if c not in unique and (c in configs[:len(variants)] or _row_accumulators_per_thread(c, batch) <= 64):
            unique.append(c)
    return unique


def _row_accumulators_per_thread(c: TileConfig, batch: int) -> int:
    """int32 accumulators each thread of a dp4a_rows program holds; past about 64 the compiler spills (SASS read)."""
    if c.variant != "dp4a_rows":
        return 0
    return 4 * c.block_rows * batch * c.block_k // (32 * c.num_warps)


def _random_packed(key, out: int, n_in: int) -> jax.Array:
    """Random packed ternary weight (ceil(out/4), in) uint8 whose every 2-bit field holds a valid code + 1."""
    c = jax.random.randint(key, (4, -(-out // 4), n_in), 0, 3, dtype=jnp.int32)
    return (c[0] | c[1] << 2 | c[2] << 4 | c[3] << 6).astype(jnp.uint8)


def _sets_for(bytes_per_set: int, on_gpu: bool) -> int:
    """Weight sets for two passes: each pass over half of them reads at least twice the L2 cache."""
    return 2 * (max(2, math.ceil(2 * L2_BYTES / bytes_per_set)) if on_gpu else 1)


def _median_call_s(fn, args, reps: int, warmup: int) -> float:
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_per_gemv(gemv, sets: list[tuple], reps: int, warmup: int) -> dict:
    """Median seconds per GEMV: slope between GEMVs over the first half of `sets` and over all of them.

    Every GEMV in a timed call has its own weight and activation: XLA can neither drop a repeated product (common
    subexpressions) nor merge two products that share an operand into one matrix product (its dot merger).
    """
    n = len(sets) // 2
    one = jax.jit(lambda s: [gemv(*a) for a in s])
    t1 = _median_call_s(one, (sets[:n],), reps, warmup)
    t2 = _median_call_s(one, (sets,), reps, warmup)
    slope = (t2 - t1) / n
    bound = t1 / n
    return {"s": slope if 0 < slope <= bound else bound, "one_pass_s": bound, "slope_s": slope, "sets": n}


def _check_kernel(config: TileConfig, words, packed, out: int, n_in: int, batch: int, interpret: bool, key) -> None:
    kx, ks = jax.random.split(key)
    x = jax.random.randint(kx, (batch, n_in), -128, 128, dtype=jnp.int32).astype(jnp.int8)
    xs = jax.random.uniform(ks, (batch,), jnp.float32, 1e-3, 1.0)
    got = np.asarray(kernels.w2a8_gemv(x, xs, words, 0.37, out, interpret=interpret, config=config))
    ref = np.asarray(kernels.w2a8_gemv_reference(x, xs, packed, 0.37, out))
    if got.shape != ref.shape or not np.all(np.isfinite(got)) or not np.allclose(got, ref, rtol=1e-5, atol=1e-4):
        bad = float(np.max(np.abs(got - ref))) if got.shape == ref.shape else float("nan")
        raise KernelMismatch(f"W2A8 kernel {config} disagrees with the XLA reference at out={out} in={n_in} "
                        f"batch={batch} (max abs error {bad:.3g}); do not trust its timings")


def copy_bandwidth_gb_s(n_bytes: int = 2 << 30, reps: int = 20) -> float:
    """Device-memory ceiling: a device-to-device copy, counting bytes read plus bytes written (METHOD.md)."""
    x = jax.random.randint(jax.random.PRNGKey(1), (n_bytes // 4,), 0, 1 << 30, dtype=jnp.int32)
    copy = jax.jit(lambda a: a + 1)  # one read and one write per element, not elided like a plain copy
    seconds = _median_call_s(copy, (x,), reps, 3)
    return 2 * n_bytes / seconds / 1e9


def _kernel_gemv(x, x_scale, words, *, w_scale, out, interpret, config):
    return kernels.w2a8_gemv(x, x_scale, words, w_scale, out, interpret=interpret, config=config)


def bench_linear(out: int, n_in: int, batch: int, *, configs: list[TileConfig], reps: int, warmup: int,
                 seed: int = 0, tune_budget_s: float = 240.0) -> dict:
    """Time bf16, the XLA W2A8 path and each kernel config for one (out, in) GEMV shape."""
    on_gpu = jax.default_backend() == "gpu"
    interpret = not on_gpu
    key = jax.random.PRNGKey(seed)
    bytes_bf16 = 2 * out * n_in
    bytes_w2 = -(-out // 4) * n_in
    act_bytes = batch * n_in * 2 + batch * out * 4

    n = _sets_for(bytes_bf16, on_gpu)
    keys = jax.random.split(key, 2 * n + 2)
    bf16_sets = [(jax.random.normal(keys[2 * i], (batch, n_in), jnp.bfloat16),
                  jax.random.normal(keys[2 * i + 1], (n_in, out), jnp.bfloat16) * 0.02) for i in range(n)]
    results = {"bf16": _time_per_gemv(lambda x, w: x @ w, bf16_sets, reps, warmup)}
    results["bf16"]["bytes"] = bytes_bf16 + act_bytes
    del bf16_sets

    n = _sets_for(bytes_w2, on_gpu)
    keys = jax.random.split(keys[-1], 3 * n)
    packed = [_random_packed(keys[3 * i], out, n_in) for i in range(n)]
    words = [kernels.packed_words(p) for p in packed]
    xcodes = [jax.random.randint(keys[3 * i + 1], (batch, n_in), -128, 128, dtype=jnp.int32).astype(jnp.int8)
              for i in range(n)]
    xscale = [jax.random.uniform(keys[3 * i + 2], (batch,), jnp.float32, 1e-3, 1.0) for i in range(n)]
    wscale = jnp.float32(0.37)

    ref_sets = [(x, s, p) for x, s, p in zip(xcodes, xscale, packed)]
    results["w2a8_xla"] = _time_per_gemv(
        lambda x, s, p: kernels.w2a8_gemv_reference(x, s, p, wscale, out), ref_sets, reps, warmup)
    results["w2a8_xla"]["bytes"] = bytes_w2 + act_bytes

    kernel_rows = []
    kernel_sets = [(x, s, w) for x, s, w in zip(xcodes, xscale, words)]
    start = time.perf_counter()
    for config in configs:
        if kernel_rows and time.perf_counter() - start > tune_budget_s:
            kernel_rows.append({"config": config._asdict(), "skipped": f"tune budget {tune_budget_s:.0f} s spent"})
            continue
        try:
            _check_kernel(config, words[0], packed[0], out, n_in, batch, interpret, keys[0])
            gemv = functools.partial(_kernel_gemv, w_scale=wscale, out=out, interpret=interpret, config=config)
            row = _time_per_gemv(gemv, kernel_sets, reps, warmup)
        except KernelMismatch:
            raise
        except Exception as e:  # noqa: BLE001  (one config failing to compile is reported; the sweep goes on)
            message = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            print(f"W2A8 kernel {config} failed at out={out} in={n_in}: {message}", file=sys.stderr)
            kernel_rows.append({"config": config._asdict(), "error": message})
            continue
        row.update(config=config._asdict(), bytes=bytes_w2 + act_bytes)
        kernel_rows.append(row)
    timed = [r for r in kernel_rows if "s" in r]
    if not timed:
        raise UserError(f"no W2A8 kernel configuration ran at out={out} in={n_in}; see the errors above")
    best = min(timed, key=lambda r: r["s"])
    results["w2a8_kernel"] = best
    results["kernel_configs"] = kernel_rows
    for name in ("bf16", "w2a8_xla", "w2a8_kernel"):
        results[name]["gb_per_s"] = results[name]["bytes"] / results[name]["s"] / 1e9
    return results


def measure_step(shape: str, batch: int, configs: dict[str, TileConfig], reps: int, warmup: int) -> dict:
    """Time the linear layers of one whole decode step (layers x 7 GEMVs, each its own weight) as one XLA program.

    Unlike the per-shape slope this includes the launch gaps and one dispatch per step, as real decoding pays them.
    """
    layers = SHAPES[shape][3]
    shapes = [(name, out, n_in) for name, (out, n_in, count) in linear_shapes(shape).items() for _ in range(count)]
    key = jax.random.PRNGKey(2)
    result = {"gemvs": layers * len(shapes)}
    bf16 = []
    for layer in range(layers):
        for k, (_, out, n_in) in enumerate(shapes):
            kx, kw = jax.random.split(jax.random.fold_in(key, layer * 16 + k))
            bf16.append((jax.random.normal(kx, (batch, n_in), jnp.bfloat16),
                         jax.random.normal(kw, (n_in, out), jnp.bfloat16) * 0.02))
    result["bf16_s"] = _median_call_s(jax.jit(lambda s: [x @ w for x, w in s]), (bf16,), reps, warmup)
    del bf16
    w2 = []
    for layer in range(layers):
        for k, (name, out, n_in) in enumerate(shapes):
            kx, kw = jax.random.split(jax.random.fold_in(key, 1000 + layer * 16 + k))
            x = jax.random.randint(kx, (batch, n_in), -128, 128, dtype=jnp.int32).astype(jnp.int8)
            w2.append((x, jnp.ones((batch,), jnp.float32), kernels.packed_words(_random_packed(kw, out, n_in))))
    outs = [out for _, out, _ in shapes] * layers
    cfgs = [configs[name] for name, _, _ in shapes] * layers

    interpret = jax.default_backend() != "gpu"

    def step(sets):
        return [kernels.w2a8_gemv(x, xs, w, 0.37, o, interpret=interpret, config=c)
                for (x, xs, w), o, c in zip(sets, outs, cfgs)]

    result["w2a8_kernel_s"] = _median_call_s(jax.jit(step), (w2,), reps, warmup)
    result["speedup_vs_bf16"] = result["bf16_s"] / result["w2a8_kernel_s"]
    return result


def run(shape: str = "3b", batch: int = 1, *, variants: list[str] | None = None, tune: bool = False,
        reps: int | None = None, warmup: int | None = None, tune_budget_s: float = 240.0,
        partial_json: str | None = None) -> dict:
    """Benchmark every distinct linear shape of one model; returns the JSON-able report.

    partial_json: after each linear shape, the results so far are saved there (a run killed by a time limit keeps
    them); the caller overwrites it with the full report.
    report["config_errors"] counts kernel configurations that failed to compile or run (each printed to stderr).
    """
    on_gpu = jax.default_backend() == "gpu"
    variants = variants or (list(kernels.VARIANTS) if on_gpu else ["dp4a"])
    for v in variants:
        if v not in kernels.VARIANTS:
            raise UserError(f"unknown W2A8 kernel variant {v!r}; use one of {', '.join(kernels.VARIANTS)}")
    if batch < 1:
        raise UserError(f"--batch must be >= 1 for the decode bench, got {batch}")
    reps = reps or (50 if on_gpu else 2)
    warmup = warmup if warmup is not None else (5 if on_gpu else 1)
    shapes = linear_shapes(shape)
    hidden, glu, heads, layers = SHAPES[shape]
    per_shape = {}
    for name, (out, n_in, count) in shapes.items():
        configs = tune_configs(out, n_in, batch, variants, tune and on_gpu)
        per_shape[name] = {"out": out, "in": n_in, "per_layer": count,
                           **bench_linear(out, n_in, batch, configs=configs, reps=reps, warmup=warmup,
                                          tune_budget_s=tune_budget_s)}
        r = per_shape[name]
        print(f"{shape} {name} {out}x{n_in}: bf16 {r['bf16']['s'] * 1e6:.2f} us, W2A8 kernel "
              f"{r['w2a8_kernel']['s'] * 1e6:.2f} us ({r['w2a8_kernel']['config']}), XLA W2A8 "
              f"{r['w2a8_xla']['s'] * 1e6:.2f} us", file=sys.stderr, flush=True)
        if partial_json:
            save({"partial": True, "shape": shape, "batch": batch, "linears": per_shape}, partial_json)
    step = None
    if on_gpu or shape == "tiny":  # tiny: the CPU smoke test runs this path too
        best = {name: TileConfig(**r["w2a8_kernel"]["config"]) for name, r in per_shape.items()}
        step = measure_step(shape, batch, best, max(5, reps // 5), warmup)
    model = {}
    for method in ("bf16", "w2a8_xla", "w2a8_kernel"):
        layer_s = sum(r[method]["s"] * r["per_layer"] for r in per_shape.values())
        model[method] = {"layer_linears_s": layer_s, "model_linears_s": layer_s * layers,
                         "tokens_per_s_linears_only": 1.0 / (layer_s * layers)}
    for m in model.values():
        m["speedup_vs_bf16"] = model["bf16"]["model_linears_s"] / m["model_linears_s"]
    device = jax.devices()[0]
    ceiling = copy_bandwidth_gb_s() if on_gpu else None
    return {"shape": shape, "hidden": hidden, "glu": glu, "heads": heads, "layers": layers, "batch": batch,
            "device": f"{device.platform}:{getattr(device, 'device_kind', '')}", "jax": jax.__version__,
            "kernel_mode": "compiled" if on_gpu else "interpret (CPU smoke test: timings mean nothing)",
            "note": ("per-shape times: slope between one and two passes over weight sets that together exceed "
                     "the L2 cache; measured_step: the linear layers of one decode step as one XLA program"),
            "copy_gb_per_s": ceiling, "reps": reps, "warmup": warmup, "linears": per_shape, "model_estimate": model,
            "measured_step": step,
            "config_errors": sum("error" in c for r in per_shape.values() for c in r["kernel_configs"]),
            "model_estimate_note": ("layers x sum of the 7 linear-layer GEMV times; attention, norms, embeddings "
                                    "and LM head not counted")}


def table(report: dict) -> str:
    """Per-shape GEMV times, GB/s and speedups, then the whole-model linear-layer estimate."""
    lines = [(f"W2A8 decode GEMV  shape {report['shape']}  batch {report['batch']}  {report['device']}  "
              f"jax {report['jax']}  kernel {report['kernel_mode']}"),
             f"device-to-device copy ceiling: {report['copy_gb_per_s'] or float('nan'):.0f} GB/s (read + write)",
             (f"{'linear':8} {'out x in':>12} {'bf16 us':>9} {'GB/s':>6} {'w2a8 us':>9} {'GB/s':>6} "
              f"{'xla-w2 us':>9} {'speedup':>8}  best kernel config")]
    for name, r in report["linears"].items():
        b, k, x = r["bf16"], r["w2a8_kernel"], r["w2a8_xla"]
        c = k["config"]
        cfg = f"{c['variant']} rows {c['block_rows']} k {c['block_k']} split {c['split_k']} warps {c['num_warps']}"
        lines.append(f"{name:8} {r['out']:>5} x {r['in']:<5} {b['s'] * 1e6:9.2f} {b['gb_per_s']:6.0f} "
                     f"{k['s'] * 1e6:9.2f} {k['gb_per_s']:6.0f} {x['s'] * 1e6:9.2f} {b['s'] / k['s']:7.2f}x  {cfg}")
    lines.append(f"estimated whole-model batch-{report['batch']} decode, linear layers only "
                 f"({report['layers']} layers x sum of GEMV times):")
    for method, m in report["model_estimate"].items():
        lines.append(f"  {method:12} {m['model_linears_s'] * 1e3:8.3f} ms/token  "
                     f"{m['tokens_per_s_linears_only']:9.1f} tokens/s  {m['speedup_vs_bf16']:5.2f}x vs bf16")
    step = report.get("measured_step")
    if step:
        lines.append(f"measured: the {step['gemvs']} linear layers of one decode step as one XLA program: bf16 "
                     f"{step['bf16_s'] * 1e3:.3f} ms, W2A8 kernel {step['w2a8_kernel_s'] * 1e3:.3f} ms "
                     f"({step['speedup_vs_bf16']:.2f}x)")
    return "\n".join(lines)


def save(report: dict, path: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(p)
