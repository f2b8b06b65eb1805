"""Sweeps on a SLURM cluster (`executor: {kind: slurm, ...}`): every job of the sweep (one run, or a vmapped group)
is one task of a SLURM job array submitted through submitit, running `bitnet-jax train-group` on its run directories
(and `bitnet-jax eval` after, if the spec evaluates). The runner then follows its jobs until they end, showing the
runs as they finish, and writes the same results, fits and report as the local executor.

- Preemption and time limits: submitit asks SLURM for a warning signal before the limit; the task then stops its
  runs (each saves a checkpoint) and submitit requeues it, and the requeued task resumes every run from its own
  checkpoint. A job that SLURM itself requeues (`scontrol requeue`, a node failure) does the same: the runs save on
  the SIGTERM that SLURM sends first.
- Restart: the runner keeps the ids of its jobs in OUT/slurm/jobs.json; started again (after a crash, a logout or
  Ctrl-C, which leaves the jobs running), it follows the jobs still queued or running instead of submitting their
  runs twice, and submits only the runs that no live job holds.
- Logs: OUT/slurm/<array id>_<task>/<array id>_<task>_log.{out,err} (submitit's).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from bitnet_jax.errors import ConfigError, UserError
from bitnet_jax.files import read_json, write_json
from bitnet_jax.sweep.jobs import Job
from bitnet_jax.sweep.results import run_status
from bitnet_jax.sweep.runner import DONE, _eval_one, _needs_eval
from bitnet_jax.sweep.spec import EvalSpec, ExecutorSpec, PlannedRun

STOP_GRACE_S = 90.0  # how long a task's runs may take to save their checkpoints when SLURM warns


class TrainTask:
    """What one array task runs (pickled by submitit): the sweep job's runs, then their evaluation. submitit calls
    `checkpoint` on SLURM's warning before a time limit or a preemption: the runs save and the task is requeued."""

    def __init__(self, run_dirs: list[str], evaluation: EvalSpec | None = None):
        self.run_dirs, self.evaluation = run_dirs, evaluation
        self._proc: subprocess.Popen | None = None

    def __call__(self) -> int:
        cmd = [sys.executable, "-m", "bitnet_jax.cli", "train-group", *self.run_dirs]
        self._proc = subprocess.Popen(cmd)
        code = self._proc.wait()
        if self.evaluation is not None:
            for d in self.run_dirs:
                if _needs_eval(Path(d), self.evaluation):
                    _eval_one(Path(d), self.evaluation, dict(os.environ))
        return code

    def checkpoint(self):
        import submitit

        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # the runs save a checkpoint at their next call boundary
            try:
                self._proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return submitit.helpers.DelayedSubmission(TrainTask(self.run_dirs, self.evaluation))

    def __getstate__(self):  # the child process does not travel
        return {"run_dirs": self.run_dirs, "evaluation": self.evaluation}

    def __setstate__(self, state):
        self.__init__(state["run_dirs"], state["evaluation"])


class SlurmFollower:
    """Submits the jobs that no live SLURM job holds, then follows them all until none is queued or running."""

    def __init__(self, jobs: list[Job], runs: list[PlannedRun], out: Path, executor: ExecutorSpec,
                 evaluation: EvalSpec | None):
        for tool in ("sbatch", "squeue"):
            if shutil.which(tool) is None:
                raise ConfigError(f"executor.kind=slurm: {tool} is not on PATH; run the sweep on a SLURM login node, "
                                  f"or use executor.kind=local")
        self.out, self.executor, self.evaluation = out, executor, evaluation
        self.folder = out / "slurm"
        self.record_path = self.folder / "jobs.json"
        self.statuses = {r.run_id: run_status(out / r.run_id) for r in runs}
        self.jobs = [j for j in jobs if any(self.statuses[r.run_id] not in DONE for r in j.runs)]
        self.bar = tqdm(total=len(runs), initial=sum(s in DONE for s in self.statuses.values()), unit="run",
                        desc="sweep (slurm)", dynamic_ncols=True)

    # ------------------------------------------------------------------ submission

    def execute(self) -> dict[str, str]:
        try:
            records = self._records()
            alive = live_jobs()
            held = {rid for rec in records if rec["job_id"] in alive for rid in rec["runs"]}
            new = [j for j in self.jobs if not {r.run_id for r in j.runs} <= held]
            if held:
                self.bar.write(f"following {len({r['job_id'] for r in records if r['job_id'] in alive})} SLURM "
                               f"job(s) submitted earlier")
            if new:
                records += self._submit(new)
                write_json(self.record_path, {"jobs": records})
            self._follow(records)
        except KeyboardInterrupt:
            ids = sorted({r["job_id"].split("_")[0] for r in self._records()})
            self.bar.write(f"stopped following; the SLURM jobs keep running (scancel {' '.join(ids)} stops them); "
                           f"run the same sweep command again to follow them and write the report")
            raise
        finally:
            self.bar.close()
        return self.statuses

    def _records(self) -> list[dict]:
        return (read_json(self.record_path) or {}).get("jobs", [])

    def _submit(self, jobs: list[Job]) -> list[dict]:
        import submitit

        ex = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
        e = self.executor
        params = dict(timeout_min=e.time_min, cpus_per_task=e.cpus_per_run, slurm_job_name=f"bitnet-{self.out.name}",
                      slurm_additional_parameters=dict(e.sbatch))
        if self._wants_gpus():
            params["gpus_per_node"] = e.gpus_per_run
        for key, value in (("slurm_partition", e.partition), ("slurm_account", e.account), ("mem_gb", e.mem_gb),
                           ("slurm_array_parallelism", e.max_running)):
            if value is not None:
                params[key] = value
        ex.update_parameters(**params)
        tasks = [TrainTask([str(self.out / r.run_id) for r in j.runs], self.evaluation) for j in jobs]
        try:
            with ex.batch():  # one job array
                submitted = [ex.submit(t) for t in tasks]
        except Exception as e:  # noqa: BLE001 - submitit passes on sbatch's refusal in several forms
            why = next((line for line in str(e).splitlines() if "error" in line.lower()), str(e).splitlines()[0])
            raise UserError(f"sbatch refused the sweep's jobs ({why.strip()[:200]}); check executor.partition, "
                            f"account, time_min, mem_gb and sbatch") from None
        self.bar.write(f"submitted {len(submitted)} job(s) to SLURM as array {submitted[0].job_id.split('_')[0]}")
        return [{"job_id": s.job_id, "runs": [r.run_id for r in j.runs]} for s, j in zip(submitted, jobs)]

    def _wants_gpus(self) -> bool:
        """GPUs are asked for unless the sbatch options already say how many (or the partition has none:
        executor.sbatch: {gpus-per-node: 0})."""
        return not any(k.replace("_", "-") in ("gpus", "gpus-per-node", "gres", "gpus-per-task") for k in
                       self.executor.sbatch)

    # ------------------------------------------------------------------ following

    def _follow(self, records: list[dict]) -> None:
        mine = {rid: rec["job_id"] for rec in records for rid in rec["runs"]}
        while True:
            alive = live_jobs()
            self._update(mine, alive)
            waiting = [rid for rid, s in self.statuses.items() if s not in DONE and mine.get(rid) in alive]
            if not waiting:
                return
            time.sleep(self.executor.poll_s)

    def _update(self, mine: dict, alive: set[str]) -> None:
        """Read every run's status; a run whose job has left the queue without recording an end is failed."""
        for rid, old in self.statuses.items():
            new = run_status(self.out / rid)
            ended = mine.get(rid) not in alive
            if ended and new in ("running", "stopped", "pending"):
                summary = read_json(self.out / rid / "summary.json") or {}
                summary.update(status="failed", error=f"SLURM job {mine.get(rid)} ended before the run finished; "
                                                      f"see its log in {self.folder}")
                write_json(self.out / rid / "summary.json", summary)
                new = "failed"
            if new != old and (new in DONE or ended):
                loss = (read_json(self.out / rid / "summary.json") or {}).get("final_val_loss")
                self.bar.write(f"{rid}: {new}" + (f", val loss {loss:.4f}" if loss is not None else ""))
            self.statuses[rid] = new
        self.bar.update(sum(s in DONE for s in self.statuses.values()) - self.bar.n)


def live_jobs() -> set[str]:
    """Ids of this user's queued and running SLURM jobs, array tasks one by one (e.g. 1234_0)."""
    proc = subprocess.run(["squeue", "--array", "--noheader", "--format=%i", f"--user={getpass.getuser()}"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise UserError(f"squeue failed ({proc.stderr.strip()[:200]}); is the SLURM controller reachable?")
    return {line.strip() for line in proc.stdout.splitlines() if line.strip()}
