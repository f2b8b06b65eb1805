"""The sweep runner: every planned run in its own subprocess and directory, resumable at any moment.

- Finished and diverged runs are skipped; any other run is (re)started with `--resume`, so a killed run continues
  from its last checkpoint and ends with the losses of an uninterrupted one.
- A lock file stops two runners sharing one directory; each run also locks its own directory.
- A child dies with the runner (PR_SET_PDEATHSIG, see follow_parent), so a SIGKILLed sweep leaves no orphan.
- A failed or diverged run does not stop the sweep; it is recorded with its status and left out of the fits.
- On a host with several GPUs, runs go in parallel, one per GPU.
"""

from __future__ import annotations

import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from bitnet_jax import config as config_lib
from bitnet_jax.sweep import spec as spec_lib
from bitnet_jax.sweep.spec import EvalSpec, PlannedRun
from bitnet_jax.files import write_atomic
from bitnet_jax.files import DirectoryLock, read_json, write_json

DONE = ("finished", "diverged")
PARENT_ENV = "BITNET_JAX_SWEEP_PARENT"


@dataclass
class SweepResult:
    out_dir: Path
    runs: list[PlannedRun]
    statuses: dict[str, str]


def run(spec_path: str | Path, out_dir: str | Path | None = None, *, dry_run: bool = False) -> SweepResult:
    """Run (or, with dry_run, only list) every run of the sweep, then write the results table, fits and report."""
    spec = spec_lib.load(spec_path)
    runs = spec_lib.expand(spec)
    out = Path(out_dir or Path("runs") / spec.name)
    if dry_run:
        print(spec_lib.describe(runs, spec))
        return SweepResult(out, runs, {r.run_id: run_status(out / r.run_id) for r in runs})
    if spec.eval.active:
        _check_eval_inputs(spec.eval)
    out.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(out / ".sweep.lock", what="a sweep runner"):
        write_atomic(out / "sweep.yaml", Path(spec_path).read_text())
        for r in runs:
            config_lib.dump(r.config, out / r.run_id / "plan.yaml")
        statuses = _execute(runs, out, spec.executor.parallel, spec.eval)
        from bitnet_jax.scaling.report import build_report  # plotting libraries only once runs are done

        build_report(out)
    return SweepResult(out, runs, statuses)


def run_status(run_dir: Path) -> str:
    summary = read_json(run_dir / "summary.json")
    return summary.get("status", "running") if summary else "pending"


def _execute(runs: list[PlannedRun], out: Path, parallel: int | None,
             evaluation: EvalSpec | None = None) -> dict[str, str]:
    statuses = {r.run_id: run_status(out / r.run_id) for r in runs}
    evaluate = evaluation is not None and evaluation.active
    todo = [r for r in runs
            if statuses[r.run_id] not in DONE or (evaluate and _needs_eval(out / r.run_id, evaluation))]
    gpus = _gpu_ids()
    slots: queue.Queue = queue.Queue()
    n_slots = parallel or max(1, len(gpus))
    for i in range(n_slots):
        slots.put(gpus[i % len(gpus)] if gpus else None)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", desc="sweep", dynamic_ncols=True)
    lock = threading.Lock()

    def work(r: PlannedRun) -> None:
        gpu = slots.get()
        try:
            status = statuses[r.run_id] if statuses[r.run_id] in DONE else _run_one(r, out / r.run_id, gpu)
            if evaluate and _needs_eval(out / r.run_id, evaluation):
                _eval_one(out / r.run_id, gpu, evaluation)
        finally:
            slots.put(gpu)
        with lock:
            statuses[r.run_id] = status
            summary = read_json(out / r.run_id / "summary.json") or {}
            loss = summary.get("final_val_loss")
            bar.write(f"{r.run_id}: {status}" + (f", val loss {loss:.4f}" if loss is not None else "")
                      + (f"; evaluation failed: {summary['eval_error']}" if summary.get("eval_error") else ""))
            bar.update(1)

    with ThreadPoolExecutor(max_workers=n_slots) as pool:
        for future in [pool.submit(work, r) for r in todo]:
            future.result()
    bar.close()
    bad = [rid for rid, s in statuses.items() if s != "finished"]
    if bad:
        print(f"warning: {len(bad)} run(s) did not finish and are left out of the fits: {', '.join(bad)}",
              file=sys.stderr)
    return statuses


def _run_one(r: PlannedRun, run_dir: Path, gpu: str | None) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    cmd = [sys.executable, "-m", "bitnet_jax.cli", "train", str(run_dir / "plan.yaml"), "--out", str(run_dir),
           "--resume"]
    with open(run_dir / "train.log", "a") as log:
        code = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    status = run_status(run_dir)
    if code != 0 and status not in (*DONE, "interrupted"):  # a crash the run could not record itself
        summary = read_json(run_dir / "summary.json") or {}
        summary.update(status="failed", error=f"exit code {code}; see {run_dir / 'train.log'}")
        write_json(run_dir / "summary.json", summary)
        status = "failed"
    return status


def _check_eval_inputs(evaluation: EvalSpec) -> None:
    """Read the eval section's task files and text once up front: a bad file stops the sweep before any training."""
    from bitnet_jax.eval import load_task, read_text

    for path in evaluation.tasks.values():
        load_task(path, limit=1)
    if evaluation.text is not None:
        read_text(evaluation.text)


def _needs_eval(run_dir: Path, evaluation: EvalSpec) -> bool:
    """A finished run lacking results for a task or the text of the sweep's eval section (added since, or failed)."""
    summary = read_json(run_dir / "summary.json") or {}
    done = summary.get("eval") or {}
    missing_text = evaluation.text is not None and not done.get("text")
    return summary.get("status") == "finished" and (bool(set(evaluation.tasks) - set(done.get("tasks") or {}))
                                                     or missing_text)


def _eval_one(run_dir: Path, gpu: str | None, evaluation: EvalSpec) -> None:
    """`bitnet-jax eval` on a finished run, in its own process (its results land in the run's summary.json); a
    failure is recorded as summary["eval_error"] and retried the next time the sweep runs."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    cmd = [sys.executable, "-m", "bitnet_jax.cli", "eval", str(run_dir), *evaluation.cli_args()]
    with open(run_dir / "eval.log", "a") as log:
        code = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    summary = read_json(run_dir / "summary.json") or {}
    if code != 0 or "eval" not in summary:
        summary["eval_error"] = f"exit code {code}; see {run_dir / 'eval.log'}"
    else:
        summary.pop("eval_error", None)
    write_json(run_dir / "summary.json", summary)


def follow_parent() -> None:
    """In a run started by the runner: be killed when the runner dies, however it dies (Linux PR_SET_PDEATHSIG).

    Set in the child itself rather than in a preexec_fn, since forking a multithreaded (JAX) process and running
    Python before exec can deadlock. If the runner died before this point, exit now.
    """
    parent = os.environ.get(PARENT_ENV)
    if parent is None:
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):
        os._exit(1)


def _gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]
