"""One run over two processes (jax.distributed, coordinator on 127.0.0.1, CPU collectives through gloo), 4 CPU
devices each, against the same run in one process with 8 devices: the losses at every logged step, one copy of
every file (process 0 writes them; orbax writes the checkpoints collectively), and a resume of the two-process run
whose batches come through the host path."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from bitnet_jax import config
from bitnet_jax.child import PARENT_ENV
from bitnet_jax.errors import ConfigError
from bitnet_jax.files import read_metrics
from bitnet_jax.train.runtime import start_distributed

RTOL = 2e-3
TINY = ["recipe=bitnet_b158", "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64",
        "model.seq_len=32", "train.batch_size=8", "train.warmup_steps=2", "train.eval_every=6",
        "train.eval_batches=2", "train.log_every=1", "train.ckpt_every=6", "data.max_bytes=60000",
        "tracking.progress=false", "mesh.data=4", "mesh.fsdp=2"]


def env(devices: int) -> dict:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def train(out, args, devices: int, extra=()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bitnet_jax.cli", "train", *TINY, *args, "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def two_processes(out, args, extra=()) -> list[subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    joint = [f"distributed.coordinator=127.0.0.1:{port}", "distributed.num_processes=2"]
    return [train(out, [*args, *joint, f"distributed.process_id={i}"], 4, extra) for i in range(2)]


def finish(procs: list[subprocess.Popen]) -> None:
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(log[-2000:] for log in logs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """12 steps with batches drawn on the devices, then a resume to 18 (the schedule follows the new length) with
    batches drawn on the host: in one process with 8 devices and in two with 4 each, side by side."""
    tmp = tmp_path_factory.mktemp("distributed")
    one, two = tmp / "one", tmp / "two"
    finish([train(one, ["train.steps=12"], 8), *two_processes(two, ["train.steps=12"])])
    host = ["train.steps=18", "data.on_device=false"]
    finish([train(one, host, 8, ["--resume"]), *two_processes(two, host, ["--resume"])])
    return one, two


def test_two_processes_train_the_losses_of_one(runs):
    one, two = (read_metrics(p / "metrics.jsonl") for p in runs)
    losses = [[r["loss"] for r in rows if "loss" in r] for rows in (one, two)]
    assert len(losses[0]) == len(losses[1]) == 18
    np.testing.assert_allclose(losses[1], losses[0], rtol=RTOL)
    vals = [[r["val_loss"] for r in rows if "val_loss" in r] for rows in (one, two)]
    assert len(vals[1]) == 3
    np.testing.assert_allclose(vals[1], vals[0], rtol=RTOL)


def test_one_copy_of_every_file(runs):
    _, two = runs
    rows = read_metrics(two / "metrics.jsonl")
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == list(range(1, 19))  # one writer: every step once
    summary = json.loads((two / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 18 and summary["tokens"] == 18 * 8 * 32
    assert sorted(p.name for p in two.iterdir()) == [".lock", "ckpt", "config.yaml", "metrics.jsonl", "summary.json"]
    assert sorted(p.name for p in (two / "ckpt").iterdir()) == ["12", "18"]
    saved = config.load(two / "config.yaml")  # the process count is not part of the run
    assert saved.distributed == config.DistributedConfig()


@pytest.mark.parametrize("overrides,message", [
    (["distributed.coordinator=127.0.0.1:1"], "give coordinator, num_processes and process_id together"),
    (["distributed.coordinator=nohost", "distributed.num_processes=2", "distributed.process_id=0"],
     "expected host:port"),
    (["distributed.coordinator=h:1", "distributed.num_processes=2", "distributed.process_id=2"],
     "process_id=2 must lie in [0, num_processes=2)"),
])
def test_distributed_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        config.load(None, overrides)


@pytest.mark.parametrize("env,joins", [
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, False),  # a shell inside an allocation: no srun step
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}, False),  # a one-task step
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}, True),  # srun -n 2
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1", PARENT_ENV: "1"}, False),  # sweep job
])
def test_slurm_environment_joins_only_the_tasks_of_an_srun_step(monkeypatch, env, joins):
    for key in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", PARENT_ENV):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *args: calls.append(args))
    monkeypatch.setattr(jax.config, "update", lambda *args: None)
    start_distributed(config.DistributedConfig())
    assert calls == ([()] if joins else [])
