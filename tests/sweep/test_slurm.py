"""Sweeps on a SLURM cluster (`executor.kind: slurm`) against a real one-node SLURM started on localhost
(tests/sweep/slurm_cluster.py): the sweep's results equal the local executor's; a job that SLURM requeues mid-run
(as a preemption does) resumes its runs from their checkpoints; a runner killed while its jobs run, started again,
follows those jobs instead of submitting them twice; a task warned of its time limit (submitit's checkpoint call)
saves its runs and its resubmission finishes them."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from bitnet_jax import config, sweep
from bitnet_jax.errors import ConfigError
from bitnet_jax.files import read_json, read_metrics
from bitnet_jax.sweep.slurm import TrainTask
from slurm_cluster import start as start_cluster

SIZES = [{"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
         {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64}]
SPEC = {
    "name": "slurm_tiny",
    "recipes": ["fp16"],
    "family": {"sizes": SIZES, "base": {"seq_len": 16}},
    "budget": {"tokens": 64 * 1500},  # 1500 steps: long enough to requeue a job in the middle of its run
    "data": {"max_bytes": 40000},
    "train": {"batch_size": 4, "warmup_steps": 2, "eval_every": 300, "eval_batches": 2, "log_every": 10,
              "ckpt_every": 50, "steps_per_call": 1},
    "fit": {"bootstrap": 0},
}
SLURM = {"kind": "slurm", "partition": "debug", "cpus_per_run": 1, "time_min": 10, "poll_s": 0.5,
         "sbatch": {"gpus-per-node": 0}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    made, reason = start_cluster(tmp_path_factory.mktemp("slurm"))
    if made is None:
        pytest.skip(reason)
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(made.conf)
    yield made
    made.stop()
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


def write_spec(path: Path, spec: dict = SPEC, **executor) -> Path:
    path.write_text(yaml.safe_dump({**spec, "executor": executor}))
    return path


def final_losses(out: Path) -> dict:
    with open(out / "report" / "results.csv") as f:
        return {r["run_id"]: float(r["final_val_loss"]) for r in csv.DictReader(f)}


def wait_for(what, predicate, timeout=240):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_requeued_jobs_resume_and_a_restarted_runner_follows_its_jobs(cluster, tmp_path):
    local = tmp_path / "local"
    # the reference: the same runs on the local executor, uninterrupted; a checkpoint only at the end (the 30 on the
    # way cost most of a run's time here, and checkpoints change nothing in what a run trains)
    sweep.run(write_spec(tmp_path / "local.yaml", {**SPEC, "train": {**SPEC["train"], "ckpt_every": 1500}}), local)
    spec, out = write_spec(tmp_path / "slurm.yaml", **SLURM), tmp_path / "slurm"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    runner = subprocess.Popen([sys.executable, "-m", "bitnet_jax.cli", "sweep", str(spec), "--out", str(out)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = out / "fp16_d16L1f32_D9.6e04_s0"
    wait_for("the first run's job and checkpoint",
             lambda: (out / "slurm" / "jobs.json").exists() and (first / "ckpt" / "50").is_dir())
    [record] = [r for r in read_json(out / "slurm" / "jobs.json")["jobs"] if first.name in r["runs"]]
    job = record["job_id"]
    cluster.run("scontrol", "requeue", job)  # what a preemption does: SIGTERM, then back in the queue
    state = ["squeue", "--array", "--noheader", "--format=%T", f"--jobs={job}"]
    wait_for("the requeued job to be pending", lambda: cluster.run(*state).strip() == "PENDING")
    cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")  # skip SLURM's two-minute requeue delay
    runner.send_signal(signal.SIGKILL)  # the runner dies while its jobs run
    runner.wait(timeout=30)
    submitted = read_json(out / "slurm" / "jobs.json")

    result = sweep.run(spec, out)  # started again: follows the same jobs

    assert read_json(out / "slurm" / "jobs.json") == submitted  # nothing submitted twice
    assert set(result.statuses.values()) == {"finished"}
    assert final_losses(out) == pytest.approx(final_losses(local), rel=1e-6)
    steps = [r["step"] for r in read_metrics(first / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(10, 1501, 10))  # resumed from its checkpoint: every logged step once
    restarts = json.loads((first / "summary.json").read_text())
    assert restarts["status"] == "finished" and restarts["tokens"] == 1500 * 64
    logs = list((out / "slurm").glob("*/*_log.out"))
    assert logs, "submitit's job logs are in OUT/slurm"


def test_a_job_sbatch_refuses_is_one_line(cluster, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", **{**SLURM, "partition": "nope"})
    cmd = [sys.executable, "-m", "bitnet_jax.cli", "sweep", str(spec), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()[-1]
    assert "sbatch refused the sweep's jobs" in err and "invalid partition specified: nope" in err
    assert "check executor.partition" in err


def test_a_task_warned_of_its_time_limit_saves_its_runs_and_requeues_itself(tmp_path):
    """What submitit does on SLURM's warning before a time limit: call the task's checkpoint(), which stops the
    runs (each saves a checkpoint) and returns the submission to requeue; that resubmission finishes the runs."""
    # 3000 steps (~15 s on a 2-core CPU): the signal must come before the run ends; waiting for one checkpoint
    # directory raced (a fast run had pruned ckpt/50 before the poll saw it, and finished before the signal)
    spec = write_spec(tmp_path / "s.yaml", {**SPEC, "budget": {"tokens": 64 * 3000}})
    runs = sweep.expand(sweep.load(spec))[:1]
    run_dir = tmp_path / runs[0].run_id
    config.dump(runs[0].config, run_dir / "plan.yaml")
    task = TrainTask([str(run_dir)])
    worker = threading.Thread(target=task)
    worker.start()
    wait_for("the run's first logged loss",
             lambda: any("loss" in r for r in read_metrics(run_dir / "metrics.jsonl")))
    again = task.checkpoint()  # SIGTERM to the runs, then the submission to requeue
    worker.join(timeout=60)
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "interrupted" and 10 <= summary["step"] < 3000
    assert (run_dir / "ckpt" / str(summary["step"])).is_dir()  # saved where it stopped
    assert isinstance(again.function, TrainTask) and again.function.run_dirs == [str(run_dir)]
    assert again.result() == 0  # the requeued task: resumes from the checkpoint and finishes
    assert read_json(run_dir / "summary.json")["status"] == "finished"
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(10, 3001, 10))


def test_slurm_executor_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="executor.kind='cloud': use local"):
        sweep.load(write_spec(tmp_path / "a.yaml", kind="cloud"))
    with pytest.raises(ConfigError, match="executor.sbatch: expected a mapping"):
        sweep.load(write_spec(tmp_path / "b.yaml", kind="slurm", sbatch="--qos=high"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(ConfigError, match="sbatch is not on PATH; run the sweep on a SLURM login node"):
        sweep.run(write_spec(tmp_path / "c.yaml", **SLURM), tmp_path / "out")
