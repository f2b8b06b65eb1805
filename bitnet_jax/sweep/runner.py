"""The sweep runner: plan, check, then train every run in child processes (one job = one run or a vmapped group),
resumable at any moment.

- Before anything is written, every planned config is validated and the data is resolved once per distinct data
  section (files, tokenizer, token cache), so a broken spec fails in seconds with one line and no run directories.
- A spec whose plans differ from the runs already in the directory is refused (the runs and keys are listed) unless
  `restart_changed` starts those runs afresh.
- Finished and diverged runs are skipped; any other run continues from its last checkpoint.
- SIGINT / SIGTERM: no queued job starts, running jobs checkpoint and stop (their runs are `interrupted`), and the
  runner raises KeyboardInterrupt; the same command resumes. A job that writes nothing for
  executor.stall_timeout_s is killed and its unfinished runs are marked failed.
- A lock file stops two runners sharing one directory; each run locks its own directory.
- A child dies with the runner (PR_SET_PDEATHSIG, see child.follow_parent), so a SIGKILLed sweep leaves no orphan.
- On a host with GPUs, jobs go in parallel: executor.runs_per_gpu per GPU, each with its share of GPU memory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from bitnet_jax import config as config_lib
from bitnet_jax.errors import ConfigError
from bitnet_jax.child import PARENT_ENV
from bitnet_jax.files import DirectoryLock, read_json, write_atomic, write_json
from bitnet_jax.sweep import jobs as jobs_lib
from bitnet_jax.sweep import spec as spec_lib
from bitnet_jax.sweep.jobs import Job
from bitnet_jax.sweep.results import run_status
from bitnet_jax.sweep.spec import EvalSpec, PlannedRun, SweepSpec

DONE = ("finished", "diverged")
STOP_GRACE_S = 120.0  # how long stopped jobs may take to write their checkpoints before they are killed
POLL_S = 0.2


@dataclass
class SweepResult:
    out_dir: Path
    runs: list[PlannedRun]
    statuses: dict[str, str]


def run(spec_path: str | Path, out_dir: str | Path | None = None, *, dry_run: bool = False,
        restart_changed: bool = False, parts: list[str] | None = None) -> SweepResult:
    """Run (or, with dry_run, only list) every run of the sweep, or of the named `parts` of its spec, then write the
    results table, fits and report (of every run in the directory)."""
    spec = spec_lib.load(spec_path)
    runs = _select_parts(spec_lib.expand(spec), spec, parts)
    out = Path(out_dir or Path("runs") / spec.name)
    ex = spec.executor
    if ex.kind == "slurm":  # jobs go to the cluster's GPUs, one job per task, as many at once as it allows
        per_device, gpus = 1, []
        jobs = jobs_lib.plan_jobs(runs, ex, ex.gpu_memory_gb * 2**30, 1)
        slots = [None] * (ex.max_running or len(jobs))
    else:
        gpus = jobs_lib.gpu_ids()
        per_device = jobs_lib.jobs_per_gpu(runs, ex, bool(gpus))
        jobs = jobs_lib.plan_jobs(runs, ex, jobs_lib.device_memory(bool(gpus)), per_device)
        slots = _slots(gpus, per_device, ex.parallel, ex.gpus_per_run)
    if dry_run:
        statuses = {r.run_id: run_status(out / r.run_id) for r in runs}
        print(spec_lib.describe(runs, spec))
        left = [Job(rest, done=min(_steps_done(out / r.run_id) for r in rest))
                for j in jobs if (rest := tuple(r for r in j.runs if statuses[r.run_id] not in DONE))]
        done = len(runs) - sum(len(j.runs) for j in left)
        if done:
            print(f"{done} of these {len(runs)} runs are finished (or diverged) in {out}; what is left:")
        devices = len(slots) if ex.kind == "slurm" else max(1, len(gpus) // ex.gpus_per_run)
        print(describe_jobs(left, spec, len(slots), devices))
        return SweepResult(out, runs, statuses)
    if spec.eval.active:
        _check_eval_inputs(spec.eval)
    _check_data(runs)
    changed = changed_runs(runs, out)
    if changed and not restart_changed:
        listing = "; ".join(f"{rid} ({', '.join(keys)})" for rid, keys in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise ConfigError(f"{spec_path} plans {len(changed)} run(s) differently from the runs in {out}: {listing}{more};"
                          f" restore the spec, use another --out, or pass --restart-changed to train those runs afresh")
    out.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(out / ".sweep.lock", what="a sweep runner"):
        for run_id, _ in changed:
            shutil.rmtree(out / run_id)
        write_atomic(out / "sweep.yaml", Path(spec_path).read_text())
        for r in runs:
            config_lib.dump(r.config, out / r.run_id / "plan.yaml")
        if ex.kind == "slurm":
            from bitnet_jax.sweep.slurm import SlurmFollower

            statuses = SlurmFollower(jobs, runs, out, ex, spec.eval if spec.eval.active else None).execute()
        else:
            statuses = _Scheduler(jobs, runs, out, slots, per_device, spec).execute()
        from bitnet_jax.sweep.report import write_reports  # plotting libraries only once runs are done

        write_reports(out)
    return SweepResult(out, runs, statuses)


def _select_parts(runs: list[PlannedRun], spec: SweepSpec, parts: list[str] | None) -> list[PlannedRun]:
    """The runs planned by the named parts (a run two parts plan belongs to the first), or all runs."""
    if parts is None:
        return runs
    names = [p["name"] for p in spec.parts]
    if not names:
        raise ConfigError(f"--parts: the spec {spec.name!r} has no parts; drop --parts to run all of it")
    unknown = [p for p in parts if p not in names] or ([] if parts else ["(none)"])
    if unknown:
        raise ConfigError(f"--parts {','.join(unknown)}: not a part of the spec {spec.name!r}, whose parts are "
                          f"{', '.join(names)}")
    return [r for r in runs if r.part in parts]


def changed_runs(runs: list[PlannedRun], out: Path) -> list[tuple[str, list[str]]]:
    """(run id, keys) for every planned run whose directory holds a started run of another config (beyond what a
    resume may change: train.steps, logging, evaluation, checkpoint and tracking settings). A run that never started
    simply takes the new plan."""
    changed = []
    for r in runs:
        saved = out / r.run_id / "config.yaml"
        if saved.exists():
            keys = config_lib.changed_keys(config_lib.load(saved), r.config)
            if keys:
                changed.append((r.run_id, keys))
    return changed


def _check_data(runs: list[PlannedRun]) -> None:
    """Resolve each distinct data section once (files, tokenizer, token cache) and check that it fills every run's
    vocabulary, training window and evaluation batches; the runs then read the token cache."""
    from bitnet_jax.data import check_window, load_token_data, val_batches

    seen: dict[tuple, object] = {}
    for r in runs:
        cfg = r.config
        key = (repr(cfg.data), cfg.model.seq_len)
        if key not in seen:
            seen[key] = load_token_data(cfg.data, seq_len=cfg.model.seq_len)
        data = seen[key]
        if cfg.model.vocab_size < data.vocab_size:
            raise ConfigError(f"run {r.run_id}: model.vocab_size={cfg.model.vocab_size} is smaller than the "
                              f"{cfg.data.tokenizer} tokenizer's vocabulary ({data.vocab_size}); set family.base "
                              f"vocab_size: {data.vocab_size}")
        check_window(data.train, cfg.model.seq_len)
        for split, tokens in (("validation", data.val), ("tuning", data.tune)):
            if split == "validation" or len(tokens):
                val_batches(tokens, cfg.train.batch_size, cfg.model.seq_len, cfg.train.eval_batches, split=split)


def _slots(gpus: list[str], per_device: int, parallel: int | None, gpus_per_run: int = 1) -> list[str | None]:
    """One entry per job that may run at once: the CUDA_VISIBLE_DEVICES of a set of gpus_per_run GPUs (each set
    repeated per_device times), or None on a CPU host."""
    if not gpus:
        return [None] * (parallel or 1)
    if gpus_per_run > len(gpus):
        raise ConfigError(f"executor.gpus_per_run={gpus_per_run}, but this host shows {len(gpus)} GPU(s); lower it")
    sets = [",".join(gpus[i:i + gpus_per_run]) for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)]
    slots = [g for g in sets for _ in range(per_device)]
    return slots[:parallel] if parallel else slots


def describe_jobs(jobs: list[Job], spec: SweepSpec, n_slots: int, n_devices: int) -> str:
    ex = spec.executor
    lines = [f"{len(jobs)} jobs (executor.group={str(ex.group).lower()}), {n_slots} at a time:"]
    for j in jobs:
        seconds = j.start_seconds() + j.train_seconds(ex)
        steps = f"{j.steps:>7} steps" if not j.done else f"{j.steps - j.done:>7} of {j.steps} steps left"
        lines.append(f"  {j.name:<60}{len(j.runs):>3} run(s) {steps}  ~{spec_lib.duration(seconds)} alone")
    total = jobs_lib.estimate_seconds(jobs, ex, n_slots, n_devices)
    lines.append(f"estimated wall time: {spec_lib.duration(total)} (bitnet_jax/sweep/jobs.py: a step "
                 f"{ex.est_step_overhead_s * 1e3:.2g} ms + FLOPs at {ex.est_flops_per_sec:.3g}/s + "
                 f"{ex.est_elementwise_s:.3g} s x tokens x width x layers, executor.est_*; jobs on a device share it "
                 f"equally; start-up {jobs_lib.COMPILE_S:.0f} s + {jobs_lib.COMPILE_PER_LAYER_S:.1f} s per layer, "
                 f"{jobs_lib.CACHED_START_S:.0f} s cached)")
    return "\n".join(lines)


def _steps_done(run_dir: Path) -> int:
    """The step a run's summary records (0 if it has none): a stopped run resumes there, a killed one from its last
    checkpoint before it."""
    return int((read_json(run_dir / "summary.json") or {}).get("step") or 0)


class _Scheduler:
    """Starts jobs on free slots, watches them for progress, and stops them all on SIGINT / SIGTERM."""

    def __init__(self, jobs: list[Job], runs: list[PlannedRun], out: Path, slots: list, per_device: int,
                 spec: SweepSpec):
        self.out, self.spec, self.free, self.per_device = out, spec, list(slots), per_device
        self.statuses = {r.run_id: run_status(out / r.run_id) for r in runs}
        self.evaluation = spec.eval if spec.eval.active else None
        self.queue = [Job(tuple(r for r in j.runs if self._todo(r))) for j in jobs]
        self.queue = [j for j in self.queue if j.runs]
        self.running: dict[subprocess.Popen, _Running] = {}
        self.stop_signal: int | None = None
        self.bar = tqdm(total=len(runs), initial=len(runs) - sum(len(j.runs) for j in self.queue), unit="run",
                        desc="sweep", dynamic_ncols=True)

    def _todo(self, r: PlannedRun) -> bool:
        return self.statuses[r.run_id] not in DONE or (
            self.evaluation is not None and _needs_eval(self.out / r.run_id, self.evaluation))

    def execute(self) -> dict[str, str]:
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            while self.queue or self.running:
                while self.queue and self.free and self.stop_signal is None:
                    self._start(self.queue.pop(0), self.free.pop(0))
                self._poll()
                if self.stop_signal is not None:
                    self._stop()
                time.sleep(POLL_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.bar.close()
        bad = [rid for rid, s in self.statuses.items() if s != "finished"]
        if bad:
            print(f"warning: {len(bad)} run(s) did not finish and are left out of the fits: {', '.join(bad)}",
                  file=sys.stderr)
        return self.statuses

    def _on_signal(self, signum, frame):
        self.stop_signal = signum

    def _env(self, slot) -> dict:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot
            env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / self.per_device:.3f}")  # a share per job
        return env

    def _start(self, job: Job, slot) -> None:
        train = [r for r in job.runs if self.statuses[r.run_id] not in DONE]
        log_path = self.out / "logs" / f"{job.name}.log"
        if not train:  # only evaluation is left
            self._finish(_Running(job, slot, time.monotonic(), log_path), code=0)
            return
        log_path.parent.mkdir(exist_ok=True)
        with open(log_path, "a") as log:  # the child keeps its own descriptor
            cmd = [sys.executable, "-m", "bitnet_jax.cli", "train-group", *(str(self.out / r.run_id) for r in train)]
            proc = subprocess.Popen(cmd, env=self._env(slot), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # a terminal's Ctrl-C reaches the runner alone
        self.running[proc] = _Running(job, slot, time.monotonic(), log_path)

    def _poll(self) -> None:
        for proc, job in list(self.running.items()):
            code = proc.poll()
            reason = None
            if code is None:
                quiet = time.monotonic() - max(job.started, _last_write(self.out, job))
                if quiet <= self.spec.executor.stall_timeout_s:
                    continue
                proc.kill()
                code = proc.wait()
                reason = f"no progress for {quiet:.0f} s (executor.stall_timeout_s); killed"
            del self.running[proc]
            self._finish(job, code, reason)

    def _finish(self, job: "_Running", code: int, reason: str | None = None) -> None:
        for r in job.job.runs:
            run_dir = self.out / r.run_id
            status = run_status(run_dir)
            if code != 0 and status not in (*DONE, "interrupted"):  # a crash the run could not record itself
                summary = read_json(run_dir / "summary.json") or {}
                summary.update(status="failed", error=reason or f"exit code {code}; see {job.log_path}")
                write_json(run_dir / "summary.json", summary)
                status = "failed"
            if self.stop_signal is None and self.evaluation is not None and _needs_eval(run_dir, self.evaluation):
                _eval_one(run_dir, self.evaluation, self._env(job.slot))
            self.statuses[r.run_id] = status
            summary = read_json(run_dir / "summary.json") or {}
            loss = summary.get("final_val_loss")
            self.bar.write(f"{r.run_id}: {status}" + (f", val loss {loss:.4f}" if loss is not None else "")
                           + (f"; evaluation failed: {summary['eval_error']}" if summary.get("eval_error") else ""))
            self.bar.update(1)
        self.free.append(job.slot)

    def _stop(self) -> None:
        """Forward the stop to every running job, give them STOP_GRACE_S to checkpoint, then raise."""
        for proc in self.running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.running and time.monotonic() < deadline:
            self._poll()
            time.sleep(POLL_S)
        for proc, job in list(self.running.items()):
            proc.kill()
            del self.running[proc]
            self._finish(job, proc.wait(), "killed after the sweep was stopped")
        queued = sum(len(j.runs) for j in self.queue)
        self.bar.write(f"sweep stopped ({signal.Signals(self.stop_signal).name}): running runs saved a checkpoint, "
                       f"{queued} queued run(s) not started")
        raise KeyboardInterrupt


@dataclass
class _Running:
    job: Job
    slot: str | None
    started: float  # time.monotonic()
    log_path: Path


def _last_write(out: Path, job: _Running) -> float:
    """The newest modification time (on the monotonic clock) among the job's log and its runs' record files."""
    paths = [job.log_path] + [out / r.run_id / name for r in job.job.runs for name in ("metrics.jsonl", "summary.json")]
    newest = max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)
    return time.monotonic() - (time.time() - newest) if newest else 0.0


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


def _eval_one(run_dir: Path, evaluation: EvalSpec, env: dict) -> None:
    """`bitnet-jax eval` on a finished run, in its own process (its results land in the run's summary.json); a
    failure is recorded as summary["eval_error"] and retried the next time the sweep runs."""
    cmd = [sys.executable, "-m", "bitnet_jax.cli", "eval", str(run_dir), *evaluation.cli_args()]
    with open(run_dir / "eval.log", "a") as log:
        code = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    summary = read_json(run_dir / "summary.json") or {}
    if code != 0 or "eval" not in summary:
        summary["eval_error"] = f"exit code {code}; see {run_dir / 'eval.log'}"
    else:
        summary.pop("eval_error", None)
    write_json(run_dir / "summary.json", summary)
