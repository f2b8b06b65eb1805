"""End-to-end sweep throughput on one GPU: sweeps/gpu_small.yaml with a 3-point learning-rate grid at every size
(54 runs), with executor.group on (runs of one shape and recipe train as one vmapped job) and off (one process per
run), each sweep timed from the command's start to its exit next to its dry-run estimate.

    PYTHONUNBUFFERED=1 python experiments/sweep_throughput/measure.py CASE [CASE ...]

A case is `lr3` (all 6 sizes, 54 runs) or `lr3_small` (the 3 smallest sizes, 27 runs), optionally with `:off`
(executor.group false) and `@TPP` (tokens per parameter, default 20 as in gpu_small; a 10-minute device call holds
the whole 54-run sweep only at about 2). Environment: OUT (results, default /tmp/measure), DEADLINE (seconds from
start; a sweep still running then is stopped with SIGINT, as Ctrl-C would, and reported partial).
Writes OUT/measure.jsonl (one line per case) and OUT/<case>_results.csv.
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

OUT = Path(os.environ.get("OUT", "/tmp/measure"))
DEADLINE = time.time() + float(os.environ.get("DEADLINE", 540))
LRS = {"fp16": [1e-3, 2e-3, 4e-3], "bitnet": [2e-3, 4e-3, 8e-3], "bitnet_b158": [1.5e-3, 3e-3, 6e-3]}
CLI = [sys.executable, "-m", "bitnet_jax.cli"]
TOKENS = Path("/tmp/measure_cache/base/tokens")


def spec_for(case: str) -> tuple[str, Path]:
    """The case's spec file, written from sweeps/gpu_small.yaml."""
    name, _, tpp = case.partition("@")
    base, _, off = name.partition(":")
    spec = yaml.safe_load(Path("sweeps/gpu_small.yaml").read_text())
    spec["name"] = re.sub(r"[^\w.-]", "_", case)
    spec["lr"] = LRS
    spec["budget"] = {"tokens_per_param": float(tpp or 20)}
    if base == "lr3_small":
        spec["family"]["n_sizes"], spec["family"]["n_max"] = 3, 2.75e6  # the 3 smallest sizes of the 6
    spec["executor"] = {**spec.get("executor", {}), "group": not off}
    path = Path("/tmp/measure_specs") / f"{spec['name']}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec["name"], path


def measure(case: str) -> None:
    name, spec = spec_for(case)
    out = Path("/tmp/sweeps") / name
    shutil.rmtree(out, ignore_errors=True)
    dry = subprocess.run([*CLI, "sweep", str(spec), "--out", str(out), "--dry-run"], capture_output=True, text=True)
    estimate = re.search(r"estimated wall time: (\S+)", dry.stdout)
    jobs = re.search(r"(\d+) jobs \(executor", dry.stdout)
    left = DEADLINE - time.time()
    if left < 30:
        emit({"case": case, "skipped": "no time left"})
        return
    # each case compiles from scratch (its own compilation cache) and reads the corpus from the shared token cache
    cache = Path("/tmp/measure_cache") / name
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(TOKENS), str(cache / "tokens")], check=True)
    env = {**os.environ, "BITNET_JAX_CACHE": str(cache)}
    t0 = time.time()
    with open(OUT / "log.txt", "a") as log:
        log.write(f"\n=== {case}\n{dry.stdout[-3000:]}\n")
        log.flush()
        proc = subprocess.Popen([*CLI, "sweep", str(spec), "--out", str(out)], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
        try:
            code = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            proc.send_signal(2)  # SIGINT: the runner checkpoints and stops its jobs
            code = proc.wait()
    wall = time.time() - t0
    summaries = list(out.glob("*/summary.json"))
    last_run = max((s.stat().st_mtime for s in summaries), default=t0) - t0  # before fits, plots and report
    rows = []
    if (out / "sweep.yaml").exists():
        subprocess.run([*CLI, "fit", str(out)], capture_output=True)
        csv_path = out / "report" / "results.csv"
        if csv_path.exists():
            shutil.copy(csv_path, OUT / f"{name}_results.csv")
            rows = list(csv.DictReader(open(csv_path)))
    done = [r for r in rows if r["status"] == "finished"]
    tokens = sum(float(r["tokens"]) for r in done)
    emit({"case": case, "exit": code, "runs": len(rows), "finished": len(done), "jobs": jobs and int(jobs.group(1)),
          "wall_s": round(wall, 1), "runs_done_s": round(last_run, 1), "estimate": estimate and estimate.group(1),
          "tokens": tokens, "tokens_per_sec": tokens / last_run if last_run > 0 else None})


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)
    with open(OUT / "measure.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    _, first = spec_for(sys.argv[1])  # the corpus is tokenised once, before any timing (the token cache)
    t0 = time.time()
    subprocess.run([sys.executable, "-c", "import sys\nfrom bitnet_jax import sweep\nfrom bitnet_jax.data import "
                    "load_token_data\nr = sweep.expand(sweep.load(sys.argv[1]))[0]\n"
                    "load_token_data(r.config.data, r.config.model.seq_len)", str(first)], check=True,
                   env={**os.environ, "BITNET_JAX_CACHE": str(TOKENS.parent)})
    emit({"case": "token cache", "wall_s": round(time.time() - t0, 1)})
    for case in sys.argv[1:]:
        measure(case)


if __name__ == "__main__":
    main()
