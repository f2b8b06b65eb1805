"""GPU probe for packed small-model training: a child's start-up time, the training loop's tokens/s by steps per
call (K) and group size (G), and run-to-run determinism with and without train.deterministic.

    PYTHONUNBUFFERED=1 python experiments/sweep_throughput/probe.py [SECONDS] [PART ...]

PART: startup, determinism, loop (default all three). Every measurement is one JSON line in $OUT/probe.jsonl
(default /tmp/probe), printed as it lands; the script stops starting new measurements once SECONDS (default 520)
have passed. Shapes are sweeps/gpu_small.yaml's smallest,
middle and largest (0.8M, 4.3M, 12.4M non-embedding parameters), batch 64 x 256 byte tokens.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(os.environ.get("OUT", "/tmp/probe"))
DEADLINE = time.time() + float(sys.argv[1] if len(sys.argv) > 1 else 520)
SHAPES = {"0.8M": (128, 4, 352), "4.3M": (224, 7, 608), "12.4M": (320, 10, 864)}
SITE = "/opt/torch/.venv/lib/python3.12/site-packages/**/*.py"  # the GPU host's largest local text (gpu_small)


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)
    with open(OUT / "probe.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def shape_args(name: str) -> list[str]:
    d, layers, ff = SHAPES[name]
    return [f"model.d_model={d}", f"model.n_layers={layers}", f"model.n_heads={d // 32}", f"model.d_ff={ff}",
            "model.seq_len=256", "model.vocab_size=256", "train.batch_size=64", "tracking.progress=false"]


def startup() -> None:
    for what, cmd in (("bitnet-jax train --help", [sys.executable, "-m", "bitnet_jax.cli", "train", "--help"]),
                      ("import the training stack", [sys.executable, "-c", "import bitnet_jax.train.loop"]),
                      ("import jax", [sys.executable, "-c", "import jax"])):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        emit({"probe": "startup", "what": what, "seconds_min": min(times), "seconds": times})


def throughput(name: str, recipe: str, k: int, group: int, steps: int) -> None:
    from bitnet_jax import config, train

    overrides = shape_args(name) + [f"recipe={recipe}", f"train.steps={steps}", f"train.steps_per_call={k}",
                                    f"train.eval_every={steps}", f"train.ckpt_every={steps}", "train.log_every=100",
                                    "data.source=python_stdlib"]
    runs = [(config.load(None, overrides + [f"train.lr={2e-3 * 1.5 ** i}", f"train.seed={i}"]),
             f"/tmp/probe_runs/{name}_{recipe}_k{k}_g{group}_{i}") for i in range(group)]
    t0 = time.perf_counter()
    results = train.run_group(runs)
    wall = time.perf_counter() - t0
    tps = [r.summary["tokens_per_sec"] for r in results]
    emit({"probe": "loop", "shape": name, "recipe": recipe, "k": k, "group": group, "steps": steps, "wall_s": wall,
          "tokens_per_sec_per_run": tps[0], "tokens_per_sec_total": sum(tps),
          "statuses": sorted({r.status for r in results}), "final_loss": results[0].summary["final_train_loss"]})


def determinism() -> None:
    """Full 0.8M b1.58 runs (20 tokens per parameter, 1,000 steps of 64 x 256) as XLA compiles them by default and
    with train.deterministic=true (twice each: identical losses or not), then the cost of XLA's attention alone and
    whether cuDNN's fused attention compiles under deterministic ops."""
    base = [sys.executable, "-m", "bitnet_jax.cli", "train", *shape_args("0.8M"), "recipe=bitnet_b158",
            "train.steps=1000", "train.eval_every=500", "train.ckpt_every=1000", "train.log_every=100",
            "train.warmup_steps=200", "data.source=files", f"data.paths=[{SITE}]", "data.max_bytes=120000000",
            "data.val_fraction=0.002", "data.tune_fraction=0.002", "data.text_errors=skip"]
    variants = [("false", "auto"), ("false", "auto"), ("true", "auto"), ("true", "auto"), ("false", "xla"),
                ("true", "cudnn")]
    for det, attention in variants:
        if time.time() > DEADLINE:
            return
        out = f"/tmp/probe_runs/det_{det}_{attention}_{time.time_ns()}"
        t0 = time.perf_counter()
        proc = subprocess.run([*base, f"train.deterministic={det}", f"train.attention={attention}", "--out", out],
                              capture_output=True, text=True)
        summary = json.loads(Path(out, "summary.json").read_text()) if Path(out, "summary.json").exists() else {}
        emit({"probe": "determinism", "deterministic": det, "attention": attention, "exit": proc.returncode,
              "wall_s": time.perf_counter() - t0, "final_train_loss": summary.get("final_train_loss"),
              "final_val_loss": summary.get("final_val_loss"), "tokens_per_sec": summary.get("tokens_per_sec"),
              "error": proc.stderr[-600:] if proc.returncode else None})


def loop() -> None:
    plan = [("0.8M", "bitnet_b158", 1, 1, 300), ("0.8M", "bitnet_b158", 8, 1, 300), ("0.8M", "bitnet_b158", 32, 1, 300),
            ("0.8M", "fp16", 32, 1, 300), ("0.8M", "bitnet_b158", 32, 4, 300), ("0.8M", "bitnet_b158", 32, 16, 300),
            ("4.3M", "bitnet_b158", 32, 1, 300), ("4.3M", "bitnet_b158", 32, 4, 300),
            ("12.4M", "bitnet_b158", 32, 1, 200), ("12.4M", "bitnet_b158", 32, 4, 200)]
    for item in plan:
        if time.time() > DEADLINE:
            emit({"probe": "skipped", "item": item})
            continue
        try:
            throughput(*item)
        except Exception as e:  # keep measuring the rest
            emit({"probe": "loop", "item": item, "error": f"{type(e).__name__}: {str(e)[:500]}"})


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BITNET_JAX_CACHE", "/tmp/probe_cache")
    parts = sys.argv[2:] or ["startup", "determinism", "loop"]
    for part in parts:  # determinism runs in child processes before this one starts JAX's backend
        {"startup": startup, "determinism": determinism, "loop": loop}[part]()


if __name__ == "__main__":
    main()
