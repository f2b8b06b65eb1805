import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bitnet_jax import sweep
from bitnet_jax.cli import main
from bitnet_jax.errors import ConfigError, UserError
from bitnet_jax.sweep.results import collect
from bitnet_jax.files import DirectoryLock, read_json, read_metrics

TINY_SPEC = {
    "name": "tiny",
    "recipes": ["fp16", "bitnet_b158"],
    "family": {"sizes": [{"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
                         {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64}],
               "base": {"seq_len": 16}},
    "budget": {"tokens": 640},
    "data": {"max_bytes": 40000},
    "train": {"batch_size": 4, "warmup_steps": 2, "eval_every": 5, "eval_batches": 2, "log_every": 1,
              "ckpt_every": 3},
    "fit": {"bootstrap": 20},
}


def write_spec(path: Path, **changes) -> Path:
    spec = {**TINY_SPEC, **changes}
    path.write_text(yaml.safe_dump(spec))
    return path


def test_expand_plans_every_run(tmp_path):
    spec = sweep.load(write_spec(tmp_path / "s.yaml", seeds=[0, 1], lr_grid=[1e-3, 3e-3]))
    runs = sweep.expand(spec)
    assert len(runs) == 2 * 2 * 2 * 2  # recipes x sizes x lrs x seeds
    assert len({r.run_id for r in runs}) == len(runs)
    r = runs[0]
    assert r.tokens == 640 and r.config.train.steps == 640 // (4 * 16) and r.config.tracking.group == "tiny"
    assert r.flops == pytest.approx(r.tokens * __import__("bitnet_jax").model.flops_per_token(r.config.model))


def test_budget_modes(tmp_path):
    per_param = sweep.expand(sweep.load(write_spec(tmp_path / "a.yaml", budget={"tokens_per_param": 20})))
    for r in per_param:
        assert abs(r.tokens - 20 * r.n_params_non_embedding) <= 4 * 16 / 2
    iso = sweep.expand(sweep.load(write_spec(tmp_path / "b.yaml", budget={"compute": [1e9, 2e9]})))
    assert len(iso) == 2 * 2 * 2 and {r.budget for r in iso} == {1e9, 2e9}
    for r in iso:  # D = C / flops_per_token, up to one batch of rounding
        assert r.flops == pytest.approx(r.budget, rel=0.1)
    fam = sweep.expand(sweep.load(write_spec(tmp_path / "c.yaml", family={
        "n_min": 2e4, "n_max": 2e5, "n_sizes": 3, "aspect_ratio": 16, "head_dim": 16, "base": {"seq_len": 16}})))
    ns = sorted({r.n_params_non_embedding for r in fam if r.config.recipe.name == "fp16"})
    assert len(ns) == 3 and 1e4 < ns[0] < 4e4 and 1e5 < ns[-1] < 4e5


@pytest.mark.parametrize("changes, message", [
    ({"familly": {}}, "familly: unknown key"),
    ({"budget": {}}, "exactly one of tokens"),
    ({"budget": {"tokens": 10, "compute": [1e9]}}, "exactly one of tokens"),
    ({"family": {"sizes": [{"d_model": 16}], "n_min": 1e4, "n_max": 1e5}}, "either sizes"),
    ({"train": {"steps": 5}}, "set by the sweep"),
    ({"recipes": ["fp16", "bitnet_b2"]}, "unknown recipe 'bitnet_b2'"),
    ({"family": {"sizes": [{"d_model": 30, "n_heads": 4}]}}, "not divisible"),
    ({"lr": {"fp16": 1e-3}, "lr_grid": [1e-3]}, "give one"),
    ({"name": "a b"}, "name"),
])
def test_bad_specs_are_one_line(tmp_path, changes, message):
    with pytest.raises(ConfigError) as e:
        sweep.load(write_spec(tmp_path / "s.yaml", **changes))
    assert message in str(e.value) and "\n" not in str(e.value) and "s.yaml" in str(e.value)


def test_malformed_spec(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nrecipes: [fp16\n")
    assert main(["sweep", str(path)]) == 2
    assert "malformed YAML" in capsys.readouterr().err


def test_dry_run_trains_nothing(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "fp16_d16L1f32" in text and "4 runs" in text and "est." in text
    assert not (tmp_path / "out").exists()


def test_lock_stops_a_second_runner(tmp_path):
    out = tmp_path / "out"
    with DirectoryLock(out / ".sweep.lock", what="a sweep runner"):
        with pytest.raises(UserError, match="in use by a sweep runner"):
            sweep.run(write_spec(tmp_path / "s.yaml"), out)


def test_failed_and_diverged_runs_do_not_stop_the_sweep(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml", lr={"fp16": 1e30},  # fp16 diverges
                      family={"sizes": [{"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
                                        {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 48, "seq_len": 4096}],
                              "base": {"seq_len": 16}})  # the second size cannot fit its window in the data
    result = sweep.run(spec, tmp_path / "out")
    st = result.statuses
    assert st["fp16_d16L1f32_D640_lr1e30_s0"] == "diverged"
    assert st["bitnet_b158_d16L1f32_D640_s0"] == "finished"
    assert [s for k, s in st.items() if "f48" in k] == ["failed", "failed"]
    failed_dir = next((tmp_path / "out").glob("bitnet_b158_d16L1f48_*"))
    assert "exit code 2" in read_json(failed_dir / "summary.json")["error"]
    assert "too short" in (failed_dir / "train.log").read_text()
    assert "did not finish" in capsys.readouterr().err
    rows = collect(tmp_path / "out")
    assert [r["best_lr"] for r in rows if r["status"] != "finished"] == [False] * 3
    assert (tmp_path / "out" / "report" / "report.md").exists()


def results(out: Path) -> list[dict]:
    with open(out / "report" / "results.csv") as f:
        return list(csv.DictReader(f))


def test_sigkilled_sweep_restarts_to_identical_results(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", budget={"tokens": 1280})
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "bitnet_jax.cli", "sweep", str(spec), "--out"]
    assert subprocess.run(cmd + [str(tmp_path / "whole")], env=env, capture_output=True).returncode == 0
    delay = random.Random().uniform(4.0, 25.0)  # anywhere in the sweep: between runs, mid-run, mid-checkpoint
    killed = subprocess.Popen(cmd + [str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(delay)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    time.sleep(0.5)  # children die with the runner
    restarted = subprocess.run(cmd + [str(tmp_path / "killed")], env=env, capture_output=True, text=True)
    assert restarted.returncode == 0, (delay, restarted.stderr[-2000:])
    a, b = results(tmp_path / "whole"), results(tmp_path / "killed")
    assert [r["status"] for r in b] == ["finished"] * 4, delay
    for ra, rb in zip(a, b):
        assert ra["run_id"] == rb["run_id"]
        assert (ra["final_train_loss"], ra["final_val_loss"]) == (rb["final_train_loss"], rb["final_val_loss"]), delay
    for run in sweep.expand(sweep.load(spec)):  # each step trained and logged exactly once
        steps = [m["step"] for m in read_metrics(tmp_path / "killed" / run.run_id / "metrics.jsonl") if "loss" in m]
        assert steps == list(range(1, run.config.train.steps + 1)), (delay, run.run_id)


def test_results_fit_and_report_commands_rebuild_from_run_files(tmp_path, capsys):
    out = tmp_path / "out"
    sweep.run(write_spec(tmp_path / "s.yaml", recipes=["fp16"]), out)
    capsys.readouterr()
    for f in (out / "report").iterdir():
        f.unlink()
    assert main(["results", str(out)]) == 0
    assert "fp16_d16L1f32_D640_s0" in capsys.readouterr().out
    assert main(["fit", str(out)]) == 0
    assert {p.name for p in (out / "report").iterdir()} == {"results.csv", "fits.json"}
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.md").exists() and (out / "report" / "training_curves.png").exists()
    assert main(["results", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_runs_go_in_parallel_one_per_gpu(tmp_path, monkeypatch):
    import threading

    from bitnet_jax.sweep import runner

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert runner._gpu_ids() == ["3", "5"]
    active, seen, lock = set(), [], threading.Lock()

    def fake_run(r, run_dir, gpu):  # stands in for the training subprocess
        with lock:
            assert gpu not in active  # never two runs on one GPU
            active.add(gpu)
            seen.append((gpu, len(active)))
        time.sleep(0.2)
        with lock:
            active.discard(gpu)
        return "finished"

    monkeypatch.setattr(runner, "_run_one", fake_run)
    runs = sweep.expand(sweep.load(write_spec(tmp_path / "s.yaml")))
    statuses = runner._execute(runs, tmp_path / "out", parallel=None)
    assert set(statuses.values()) == {"finished"} and len(seen) == 4
    assert {g for g, _ in seen} == {"3", "5"} and max(n for _, n in seen) == 2  # both GPUs busy at once


def test_an_interrupted_run_keeps_its_status_and_a_crash_is_failed(tmp_path, monkeypatch):
    """A run stopped by Ctrl-C records `interrupted` itself (resumed next time); a crash that recorded nothing
    is marked failed by the runner with the exit code."""
    from bitnet_jax.sweep import runner
    from bitnet_jax.files import write_json

    def fake_call(status):
        def call(cmd, **kw):
            if status:
                write_json(tmp_path / "summary.json", {"status": status})
            return -2
        return call

    monkeypatch.setattr(runner.subprocess, "call", fake_call("interrupted"))
    assert runner._run_one(None, tmp_path, None) == "interrupted"
    monkeypatch.setattr(runner.subprocess, "call", fake_call("running"))
    assert runner._run_one(None, tmp_path, None) == "failed"
    assert "exit code -2" in read_json(tmp_path / "summary.json")["error"]
