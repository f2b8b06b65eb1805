import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bitnet_jax import config, train
from bitnet_jax.errors import CheckpointError
from bitnet_jax.model import flops_per_token, param_counts
from bitnet_jax.files import read_metrics


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "loss" in r}


def snapshot(run_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(run_dir).iterdir() if p.is_file()}


def test_tiny_run_writes_the_record(tmp_path, tiny):
    cfg = config.load(None, tiny + ["recipe=bitnet_b158", "train.steps=30", "train.eval_every=15"])
    result = train.run(cfg, tmp_path / "run")
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s == result.summary and s["status"] == "finished" and s["recipe"] == "bitnet_b158"
    counts = param_counts(cfg.model, cfg.recipe)
    assert (s["n_params"], s["n_params_non_embedding"]) == (counts["total"], counts["non_embedding"])
    tokens = 30 * 4 * 32
    assert s["tokens"] == tokens and s["flops"] == pytest.approx(flops_per_token(cfg.model, cfg.recipe) * tokens)
    for key in ("final_train_loss", "final_tune_loss", "final_val_loss", "val_bits_per_byte", "tokens_per_sec",
                "wall_s"):
        assert s[key] is not None and s[key] > 0, key
    # byte tokenizer: bits per byte is the loss in bits
    assert s["val_bits_per_byte"] == pytest.approx(s["final_val_loss"] / math.log(2))
    assert s["val_bits_per_byte"] < 6.5  # a uniform byte model scores 8 bits; 30 tiny steps reach ~5.5
    assert 4.0 < s["unigram_bits_per_byte"] < 6.0
    assert s["group_size"] == 1 and s["data_empty_documents"] == 0
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 31))
    assert [r["step"] for r in rows if "val_loss" in r] == [15, 30]
    assert all("tune_loss" in r for r in rows if "val_loss" in r)
    first, last = rows[0]["loss"], s["final_train_loss"]
    assert last < first - 1.0  # it learns: from ~ln(256) = 5.5 nats towards the byte entropy
    assert config.load(tmp_path / "run" / "config.yaml") == cfg
    assert sorted(int(p.name) for p in (tmp_path / "run" / "ckpt").iterdir() if p.name.isdigit()) == [24, 30]


def cli(args, env=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "bitnet_jax.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_step(run_dir, step, proc, timeout=120):
    deadline = time.time() + timeout
    while max(losses(run_dir), default=0) < step:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)


RECORD = ("status", "step", "steps", "tokens", "flops", "final_train_loss", "final_tune_loss", "final_val_loss",
          "val_bits_per_byte")


def same_record(a, b):
    sa, sb = (json.loads((Path(d) / "summary.json").read_text()) for d in (a, b))
    assert {k: sa[k] for k in RECORD} == {k: sb[k] for k in RECORD}
    assert read_metrics(Path(a) / "metrics.jsonl") == read_metrics(Path(b) / "metrics.jsonl") or \
        [{k: v for k, v in r.items() if k != "tokens_per_sec"} for r in read_metrics(Path(a) / "metrics.jsonl")] == \
        [{k: v for k, v in r.items() if k != "tokens_per_sec"} for r in read_metrics(Path(b) / "metrics.jsonl")]


def test_killed_run_resumes_to_identical_losses(tmp_path, tiny):
    args = ["train", *tiny, "recipe=bitnet_b158", "train.steps=40", "train.ckpt_every=10", "train.eval_every=20",
            "train.steps_per_call=1"]
    killed = cli([*args, "--out", str(tmp_path / "killed")])
    wait_for_step(tmp_path / "killed", 25, killed)  # past two checkpoints, mid-way to the third
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    train.run(config.load(None, args[1:]), tmp_path / "whole")
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["status"] == "running" and summary["step"] < 40
    resumed = cli(["train", "--out", str(tmp_path / "killed"), "--resume"])
    assert resumed.wait() == 0, resumed.communicate()
    a, b = losses(tmp_path / "whole"), losses(tmp_path / "killed")
    assert list(a) == list(range(1, 41)) and list(b) == list(range(1, 41))
    assert a == b  # bit for bit
    same_record(tmp_path / "whole", tmp_path / "killed")


KILL_AT_FINAL_SUMMARY = """
import os, signal, sys
from bitnet_jax.train import member
write = member.Member.write_summary
def write_or_die(self):  # SIGKILL at the moment the final summary would be written (the last checkpoint is on disk)
    if self.summary.get("status") == "finished":
        os.kill(os.getpid(), signal.SIGKILL)
    write(self)
member.Member.write_summary = write_or_die
from bitnet_jax.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_between_final_checkpoint_and_summary_resumes_to_the_same_record(tmp_path, tiny):
    """Also: the persistent compilation cache. The first process fills it; a second run of the config compiles
    nothing new."""
    args = ["train", *tiny, "train.steps=12"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "BITNET_JAX_CACHE": str(tmp_path / "cache")}
    dying = subprocess.run([sys.executable, "-c", KILL_AT_FINAL_SUMMARY, *args, "--out", str(tmp_path / "killed")],
                           env=env, capture_output=True, text=True)
    assert dying.returncode == -signal.SIGKILL, dying.stderr[-2000:]
    s = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert s["status"] == "running" and (tmp_path / "killed" / "ckpt" / "12").is_dir()  # killed right there
    compiled = set(os.listdir(tmp_path / "cache" / "jax_compile"))
    assert len(compiled) >= 3  # the train call, the evaluation, the batch draw...
    assert cli(args + ["--out", str(tmp_path / "whole")], env=env).wait() == 0
    assert set(os.listdir(tmp_path / "cache" / "jax_compile")) == compiled  # every program came from the cache
    resumed = cli(["train", "--out", str(tmp_path / "killed"), "--resume"], env=env)
    assert resumed.wait() == 0, resumed.communicate()
    same_record(tmp_path / "whole", tmp_path / "killed")


def test_sigterm_checkpoints_and_marks_interrupted_then_resumes(tmp_path, tiny):
    args = ["train", *tiny, "train.steps=400", "train.ckpt_every=1000", "train.eval_every=1000",
            "train.steps_per_call=2"]
    proc = cli([*args, "--out", str(tmp_path / "run")])
    wait_for_step(tmp_path / "run", 5, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "bitnet-jax train --out" in err and "--resume" in err
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    ckpts = [int(p.name) for p in (tmp_path / "run" / "ckpt").iterdir() if p.name.isdigit()]
    assert s["status"] == "interrupted" and 5 <= s["step"] < 400 and ckpts == [s["step"]]
    assert max(losses(tmp_path / "run")) == s["step"]


def test_nan_loss_stops_as_diverged_and_keeps_last_good_checkpoint(tmp_path, tiny):
    # a learning rate of 1e30 blows the weights up in the first update; step 1 itself is finite and checkpointed
    cfg = config.load(None, tiny + ["recipe=fp16", "train.lr=1e30", "train.warmup_steps=0", "train.steps=40",
                                    "train.ckpt_every=1"])
    result = train.run(cfg, tmp_path / "run")
    s = result.summary
    assert s["status"] == "diverged" and "non-finite" in s["error"]
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "ckpt").iterdir() if p.name.isdigit())
    assert steps and max(steps) == s["step"]  # the step that diverged was not applied
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows[-1]["step"] == s["step"] + 1 and None in (rows[-1]["loss"], rows[-1]["grad_norm"])  # NaN -> null
    assert all(np.isfinite(v) for k, v in losses(tmp_path / "run").items() if k <= max(steps))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def test_resume_guards(tmp_path, tiny):
    run_dir = tmp_path / "run"
    train.run(config.load(None, tiny), run_dir)
    before = snapshot(run_dir)
    with pytest.raises(CheckpointError, match="--resume"):  # an existing run is never overwritten
        train.run(config.load(None, tiny), run_dir)
    with pytest.raises(CheckpointError, match="model.d_model"):
        train.run(config.load(None, tiny + ["model.d_model=64"]), run_dir, resume=True)
    with pytest.raises(CheckpointError, match="recipe"):
        train.run(config.load(None, tiny + ["recipe=fp16"]), run_dir, resume=True)
    with pytest.raises(CheckpointError, match="train.batch_size, train.lr"):
        train.run(config.load(None, tiny + ["train.batch_size=8", "train.lr=1e-3"]), run_dir, resume=True)
    with pytest.raises(CheckpointError, match="data.seed"):
        train.run(config.load(None, tiny + ["data.seed=3"]), run_dir, resume=True)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train.run(config.load(None, tiny), tmp_path / "empty", resume=True)
    assert not (tmp_path / "empty").exists()
    assert snapshot(run_dir) == before  # nothing already written is lost
    again = train.run(config.load(None, tiny), run_dir, resume=True)  # a finished run stays finished
    assert again.status == "finished" and snapshot(run_dir) == before
    # extending a run: only train.steps (and logging/eval/checkpoint/tracking settings) may change
    longer = train.run(config.load(None, tiny + ["train.steps=16", "train.eval_every=8"]), run_dir, resume=True)
    assert longer.status == "finished" and longer.summary["step"] == 16
    assert list(losses(run_dir)) == list(range(1, 17))


def test_k_steps_per_call_train_the_same_losses(tmp_path, tiny):
    one = train.run(config.load(None, tiny + ["train.steps_per_call=1"]), tmp_path / "k1")
    five = train.run(config.load(None, tiny + ["train.steps_per_call=5"]), tmp_path / "k5")
    assert losses(tmp_path / "k1") == pytest.approx(losses(tmp_path / "k5"), rel=1e-6)
    assert one.summary["final_val_loss"] == pytest.approx(five.summary["final_val_loss"], rel=1e-6)
    assert [r["step"] for r in read_metrics(tmp_path / "k5" / "metrics.jsonl") if "val_loss" in r] == [6, 12]


def test_a_run_whose_data_fails_leaves_no_directory(tmp_path, tiny, capsys):
    from bitnet_jax.cli import main

    out = tmp_path / "run"
    assert main(["train", *tiny, "model.seq_len=100000", "--out", str(out)]) == 2
    assert "too short" in capsys.readouterr().err and not out.exists()


def wandb_records(path: Path) -> list:
    """The records of a .wandb file, read with wandb's own protobuf schema: after a 7-byte header, records are
    framed as in a LevelDB log (32 KiB blocks; each chunk: crc32, length, type FULL=1 / FIRST / MIDDLE / LAST=4)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, block, chunks, records = path.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def finished_wandb_records(run_dir: Path, timeout: float = 60.0) -> list:
    """The records of the run's one offline .wandb file once wandb's service process has written its exit record
    (the service may still be writing after `finish()` returns; a half-written record does not parse yet)."""
    deadline = time.time() + timeout
    while True:
        logs = list((run_dir / "wandb").glob("offline-run-*/*.wandb"))
        try:
            records = wandb_records(logs[0]) if len(logs) == 1 else []
        except Exception:  # a record still being written
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.time() > deadline:
            assert len(logs) == 1, logs
            return records or wandb_records(logs[0])
        time.sleep(0.5)


def test_wandb_offline_logs_the_run(tmp_path, tiny, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # offline needs no key
    cfg = config.load(None, tiny + ["train.steps=4", "train.eval_every=4", "tracking.wandb=offline",
                                    "tracking.project=test", "tracking.group=my-sweep", "tracking.tags=[b158, tiny]"])
    result = train.run(cfg, tmp_path / "run")
    assert result.status == "finished"
    assert "wandb sync" in capsys.readouterr().out
    records = finished_wandb_records(tmp_path / "run")
    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.run_group, list(run.tags)) == ("test", "my-sweep", ["b158", "tiny"])
    logged_config = {u.key: json.loads(u.value_json) for u in run.config.update if u.key != "_wandb"}
    assert logged_config == json.loads(json.dumps(cfg.to_dict()))

    def key(item):
        return item.key or ".".join(item.nested_key)

    history: dict[int, dict] = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {key(i): json.loads(i.value_json) for i in r.history.item}
            history.setdefault(row["_step"], {}).update(row)
    for row in read_metrics(tmp_path / "run" / "metrics.jsonl"):  # the same rows as metrics.jsonl, at their steps
        for k, v in row.items():
            if k != "step" and v is not None:
                assert history[row["step"]][k] == pytest.approx(v), (row["step"], k)
    summary: dict = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({key(u): json.loads(u.value_json) for u in r.summary.update})
    for k, v in json.loads((tmp_path / "run" / "summary.json").read_text()).items():
        if v is not None:
            assert summary[k] == (pytest.approx(v) if isinstance(v, float) else v), k
