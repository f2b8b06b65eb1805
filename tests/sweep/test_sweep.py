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
from bitnet_jax.files import DirectoryLock, read_json, read_metrics, write_json
from bitnet_jax.sweep import jobs as jobs_lib
from bitnet_jax.sweep.results import collect, mark_best_lr

SIZES = [{"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}, {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64}]
TINY_SPEC = {
    "name": "tiny",
    "recipes": ["fp16", "bitnet_b158"],
    "family": {"sizes": SIZES, "base": {"seq_len": 16}},
    "budget": {"tokens": 640},
    "data": {"max_bytes": 40000},
    "train": {"batch_size": 4, "warmup_steps": 2, "eval_every": 5, "eval_batches": 2, "log_every": 1,
              "ckpt_every": 3},
    "fit": {"bootstrap": 20},
}
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def write_spec(path: Path, **changes) -> Path:
    spec = {**TINY_SPEC, **changes}
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep_cmd(spec, out) -> list[str]:
    return [sys.executable, "-m", "bitnet_jax.cli", "sweep", str(spec), "--out", str(out)]


def results(out: Path) -> list[dict]:
    with open(out / "report" / "results.csv") as f:
        return list(csv.DictReader(f))


def test_expand_plans_every_run(tmp_path):
    spec = sweep.load(write_spec(tmp_path / "s.yaml", seeds=[0, 1], lr_grid=[1e-3, 3e-3]))
    runs = sweep.expand(spec)
    assert len(runs) == 2 * 2 * 2 * 2  # recipes x sizes x lrs x seeds
    assert len({r.run_id for r in runs}) == len(runs)
    r = runs[0]
    assert r.tokens == 640 and r.config.train.steps == 640 // (4 * 16) and r.config.tracking.group == "tiny"
    assert r.flops == pytest.approx(r.tokens * __import__("bitnet_jax").model.flops_per_token(r.config.model))
    assert {x.label for x in runs} == {"fp16", "bitnet_b158"}


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


VARIANTS = ["fp16", {"name": "bitnet_b158"}, {"name": "bitnet_b158", "ste": "clipped"},
            {"name": "bitnet_b158", "weight_quant": "ternary_absmedian", "label": "b158_median"}]


def test_recipe_variants_are_labelled_curves_with_unique_readable_ids(tmp_path):
    sizes = [{**SIZES[0], "n_heads": 2}, {**SIZES[0], "n_heads": 4}]  # the spec varies a model field
    spec = sweep.load(write_spec(tmp_path / "s.yaml", recipes=VARIANTS, family={"sizes": sizes, "base": {"seq_len": 16}},
                                 lr={"bitnet_b158": [1e-3, 2e-3], "b158_median": 3e-3}))
    runs = sweep.expand(spec)
    labels = [r.label for r in runs]
    assert list(dict.fromkeys(labels)) == ["fp16", "bitnet_b158", "bitnet_b158+ste=clipped", "b158_median"]
    assert len({r.run_id for r in runs}) == len(runs) == 2 * (1 + 2 + 2 + 1)
    assert "bitnet_b158+ste=clipped_d16L1f32_n_heads=4_D640_lr0.002_s0" in {r.run_id for r in runs}
    clipped = [r for r in runs if r.label == "bitnet_b158+ste=clipped"]
    assert {r.config.recipe.ste for r in clipped} == {"clipped"} and {r.config.train.lr for r in clipped} == {1e-3, 2e-3}
    median = [r for r in runs if r.label == "b158_median"]
    assert {(r.config.recipe.weight_quant, r.config.train.lr) for r in median} == {("ternary_absmedian", 3e-3)}
    # ids the readable parts cannot tell apart (budgets equal to 2 significant digits) get a hash of the plan
    iso = sweep.expand(sweep.load(write_spec(tmp_path / "i.yaml", budget={"compute": [1.01e9, 1.04e9]})))
    ids = [r.run_id for r in iso]
    assert len(set(ids)) == len(ids) and all(len(i.rsplit("_", 1)[1]) == 6 for i in ids)


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
    ({"lr": {"bitnet": 1e-3}}, "lr.bitnet: not a label or recipe name of this sweep"),
    ({"recipes": ["fp16", {"name": "fp16"}]}, "share the label fp16"),
    ({"baseline": "fp32"}, "baseline: 'fp32' is not a label"),
    ({"recipes": ["fp16", {"name": "bitnet_b158", "stee": "clipped"}]}, "unknown recipe field(s) stee"),
    ({"family": {"sizes": [SIZES[0], SIZES[0]], "base": {"seq_len": 16}}}, "would train the same config"),
    ({"parts": [{"name": "a", "sedes": [1]}]}, "parts.a.sedes: a part may change only family, budget, lr"),
    ({"parts": [{"name": "a"}, {"name": "a"}]}, "two parts are named 'a'"),
    ({"parts": [{"name": "a", "lr": {"bitnet": 1e-3}}]}, "parts.a: lr.bitnet: not a label"),
    ({"parts": [{"name": "a", "budget": {"tokens": 10, "tokens_per_param": 2}}]}, "parts.a: budget: give exactly"),
    ({"parts": [{"seeds": [1]}]}, "parts[0]: each part is a mapping with a name"),
    ({"parts": []}, "parts: expected a list"),
    ({"parts": [{"name": "a", "family": [SIZES[0]]}]}, "parts.a: family: expected a mapping"),
    ({"parts": [{"name": "a", "lr": {"fp16": 1e-3}, "lr_grid": [1e-3]}]}, "parts.a: lr and lr_grid: give one"),
    ({"parts": [{"name": "a", "labels": ["bitnet"]}]}, "parts.a: labels: 'bitnet' is not a label of this sweep"),
    ({"parts": [{"name": "a", "labels": "fp16"}]}, "parts.a: labels: expected a list of labels"),
])
def test_bad_specs_are_one_line(tmp_path, changes, message):
    with pytest.raises(ConfigError) as e:
        sweep.load(write_spec(tmp_path / "s.yaml", **changes))
    assert message in str(e.value) and "\n" not in str(e.value) and "s.yaml" in str(e.value)


def test_parts_plan_the_union_of_their_runs(tmp_path):
    """A grid and two seeds at the small size, one learning rate at the large one: each part keeps the top level's
    family base and recipes, adds its lr per label, replaces seeds; a run two parts plan alike is trained once."""
    spec = sweep.load(write_spec(tmp_path / "s.yaml", lr={"fp16": [1e-3, 2e-3], "bitnet_b158": [2e-3, 4e-3]}, parts=[
        {"name": "grid", "family": {"sizes": [SIZES[0]]}},
        {"name": "seeds", "family": {"sizes": [SIZES[0]]}, "seeds": [0, 1]},
        {"name": "large", "family": {"sizes": [SIZES[1]]}, "lr": {"fp16": 1.5e-3, "bitnet_b158": 3e-3}}]))
    runs = sweep.expand(spec)
    plan = {(r.part, r.label, r.config.model.d_model, r.config.train.lr, r.config.train.seed) for r in runs}
    assert len(runs) == len(plan) == 4 + 4 + 2  # seeds part: its seed-0 runs are the grid's, planned once
    assert {p[0] for p in plan if p[2] == 16 and p[4] == 0} == {"grid"}
    assert {p for p in plan if p[0] == "seeds"} == {("seeds", lb, 16, lr, 1) for lb, lrs in
                                                    (("fp16", (1e-3, 2e-3)), ("bitnet_b158", (2e-3, 4e-3)))
                                                    for lr in lrs}
    assert {p for p in plan if p[0] == "large"} == {("large", "fp16", 32, 1.5e-3, 0),
                                                    ("large", "bitnet_b158", 32, 3e-3, 0)}
    assert all(r.config.model.seq_len == 16 for r in runs) and len({r.run_id for r in runs}) == len(runs)
    table = sweep.spec.describe(runs, spec)
    assert table.splitlines()[0].split()[:3] == ["run", "id", "part"] and " large " in table
    only = sweep.load(write_spec(tmp_path / "o.yaml", lr={"fp16": [1e-3, 2e-3], "bitnet_b158": 2e-3}, parts=[
        {"name": "all", "family": {"sizes": [SIZES[0]]}},
        {"name": "extra", "family": {"sizes": [SIZES[0]]}, "labels": ["bitnet_b158"], "lr": {"bitnet_b158": 5e-3}}]))
    extra = [(r.label, r.config.train.lr) for r in sweep.expand(only) if r.part == "extra"]
    assert extra == [("bitnet_b158", 5e-3)]  # the part plans its label only, at its rate
    targets = sweep.load(write_spec(tmp_path / "t.yaml", parts=[
        {"name": "t", "family": {"n_min": 3e4, "n_max": 3e4, "n_sizes": 1, "aspect_ratio": 32, "head_dim": 16}}]))
    assert {r.config.model.d_model for r in sweep.expand(targets)} == {48}  # size_family: d = 48 for 3e4


def test_parts_option_trains_the_named_parts_and_the_dry_run_shows_what_is_left(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml", recipes=["fp16"], parts=[
        {"name": "small", "family": {"sizes": [SIZES[0]]}}, {"name": "large", "family": {"sizes": [SIZES[1]]}}])
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--parts", "small"]) == 0
    assert sorted(p.name for p in out.glob("fp16_*")) == ["fp16_d16L1f32_D640_s0"]
    assert [r["run_id"] for r in results(out)] == ["fp16_d16L1f32_D640_s0"]
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    left = capsys.readouterr().out.split("what is left:")
    assert "1 of these 2 runs are finished" in left[0] and "1 jobs" in left[1]
    assert "fp16_d32L1f64_D640_s0" in left[1] and "fp16_d16L1f32" not in left[1]
    assert main(["sweep", str(spec), "--out", str(out), "--parts", "small,huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--parts huge: not a part of the spec 'tiny', whose parts are small, large" in err and "\n" not in err
    assert main(["sweep", str(write_spec(tmp_path / "p.yaml")), "--parts", "small"]) == 2
    assert "has no parts; drop --parts" in capsys.readouterr().err


def test_malformed_spec(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nrecipes: [fp16\n")
    assert main(["sweep", str(path)]) == 2
    assert "malformed YAML" in capsys.readouterr().err


def test_dry_run_shows_runs_jobs_and_time_and_trains_nothing(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml", lr_grid=[1e-3, 2e-3, 4e-3])
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "fp16_d16L1f32" in text and "12 runs" in text and "4 jobs (executor.group=true)" in text
    assert "3 run(s)" in text and "estimated wall time" in text
    assert not (tmp_path / "out").exists()
    ungrouped = write_spec(tmp_path / "u.yaml", lr_grid=[1e-3, 2e-3, 4e-3], executor={"group": False})
    assert main(["sweep", str(ungrouped), "--dry-run"]) == 0
    assert "12 jobs (executor.group=false)" in capsys.readouterr().out


def test_jobs_group_runs_of_one_shape_bounded_by_memory(tmp_path):
    runs = sweep.expand(sweep.load(write_spec(tmp_path / "s.yaml", lr_grid=[1e-3, 2e-3, 4e-3], seeds=[0, 1])))
    spec = sweep.load(tmp_path / "s.yaml")
    jobs = jobs_lib.plan_jobs(runs, spec.executor, device_bytes=1e12, jobs_per_device=1)
    assert [len(j.runs) for j in jobs] == [6, 6, 6, 6]  # per size and recipe: 3 learning rates x 2 seeds
    for j in jobs:
        assert len({(r.config.model, r.config.recipe) for r in j.runs}) == 1
    budget = 2.5 * jobs_lib.run_bytes(runs[-1])  # room for 2.5 runs of the largest shape
    small = jobs_lib.plan_jobs(runs, spec.executor, device_bytes=budget / jobs_lib.MEMORY_USE, jobs_per_device=1)
    assert sum(len(j.runs) for j in small) == len(runs)
    assert all(len(j.runs) * jobs_lib.run_bytes(j.runs[0]) <= budget for j in small)
    assert [len(j.runs) for j in small if j.runs[0].config.model == runs[-1].config.model] == [2] * 6  # 2 recipes x 6 runs


def test_a_broken_spec_fails_fast_with_no_run_directories(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "__init__.py").write_text("")  # an empty file is an empty document, not an error
    (corpus / "a.py").write_text("def f(x):\n    return x + 1\n" * 2000)
    spec = write_spec(tmp_path / "s.yaml", data={"source": "files", "paths": [str(corpus / "*.py")]},
                      family={"sizes": [SIZES[0], {**SIZES[1], "seq_len": 40000}], "base": {"seq_len": 16}})
    t0 = time.time()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "too short for seq_len+1 = 40001" in err and "\n" not in err and time.time() - t0 < 30
    assert not (tmp_path / "out").exists()


def test_lock_stops_a_second_runner(tmp_path):
    out = tmp_path / "out"
    with DirectoryLock(out / ".sweep.lock", what="a sweep runner"):
        with pytest.raises(UserError, match="in use by a sweep runner"):
            sweep.run(write_spec(tmp_path / "s.yaml"), out)


def test_restart_changed_trains_the_changed_runs_afresh(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", recipes=["fp16"], family={"sizes": SIZES[:1], "base": {"seq_len": 16}})
    out = tmp_path / "out"
    sweep.run(spec, out)
    [run_id] = [p.name for p in out.iterdir() if p.name.startswith("fp16_")]
    first = read_json(out / run_id / "summary.json")
    write_spec(tmp_path / "s.yaml", recipes=["fp16"], family={"sizes": SIZES[:1], "base": {"seq_len": 16}},
               data={"max_bytes": 40000, "seed": 3})
    with pytest.raises(ConfigError, match="data.seed"):
        sweep.run(spec, out)
    sweep.run(spec, out, restart_changed=True)
    again = read_json(out / run_id / "summary.json")
    assert again["status"] == "finished" and again["final_train_loss"] != first["final_train_loss"]
    assert yaml.safe_load((out / run_id / "config.yaml").read_text())["data"]["seed"] == 3


def test_sigint_stops_the_sweep_within_seconds_and_the_same_command_resumes(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", recipes=["fp16"], budget={"tokens": 200000},
                      train={**TINY_SPEC["train"], "eval_every": 5000, "ckpt_every": 5000, "log_every": 10})
    out = tmp_path / "out"
    proc = subprocess.Popen(sweep_cmd(spec, out), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first, second = out / "fp16_d16L1f32_D2e05_s0", out / "fp16_d32L1f64_D2e05_s0"
    deadline = time.time() + 120
    while not read_metrics(first / "metrics.jsonl"):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    t0 = time.time()
    out_text, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - t0 < 30, err[-2000:]
    assert "run the same sweep command again to resume" in err and "1 queued run(s) not started" in out_text
    s = read_json(first / "summary.json")
    ckpts = [int(p.name) for p in (first / "ckpt").iterdir() if p.name.isdigit()]
    assert s["status"] == "interrupted" and ckpts == [s["step"]] and 0 < s["step"] < s["steps"]
    assert not (second / "summary.json").exists()  # the queued run never started
    resumed = subprocess.run(sweep_cmd(spec, out), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["status"] for r in results(out)] == ["finished", "finished"]
    logged = [m["step"] for m in read_metrics(first / "metrics.jsonl") if "loss" in m]
    assert logged == sorted(set(logged)) and logged[-1] == s["steps"]  # nothing trained twice


def test_a_stalled_job_is_killed_and_marked_failed(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", recipes=["fp16"], family={"sizes": SIZES[:1], "base": {"seq_len": 16}},
                      executor={"stall_timeout_s": 0.5})  # a child writes nothing while it imports and compiles
    result = sweep.run(spec, tmp_path / "out")
    [(run_id, status)] = result.statuses.items()
    assert status == "failed"
    assert "no progress for" in read_json(tmp_path / "out" / run_id / "summary.json")["error"]


def test_sigkilled_sweep_restarts_to_identical_results(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", budget={"tokens": 1280}, family={"sizes": SIZES[:1], "base": {"seq_len": 16}})
    assert subprocess.run(sweep_cmd(spec, tmp_path / "whole"), env=ENV, capture_output=True).returncode == 0
    delay = random.Random().uniform(4.0, 14.0)  # anywhere in the sweep: between runs, mid-run, mid-checkpoint
    killed = subprocess.Popen(sweep_cmd(spec, tmp_path / "killed"), env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(delay)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    time.sleep(0.5)  # children die with the runner
    statuses = {r["run_id"]: r["status"] for r in collect(tmp_path / "killed")}
    assert "running" not in statuses.values(), (delay, statuses)  # a SIGKILLed run shows as stopped
    restarted = subprocess.run(sweep_cmd(spec, tmp_path / "killed"), env=ENV, capture_output=True, text=True)
    assert restarted.returncode == 0, (delay, restarted.stderr[-2000:])
    a, b = results(tmp_path / "whole"), results(tmp_path / "killed")
    assert [r["status"] for r in b] == ["finished"] * 2, delay
    for ra, rb in zip(a, b):
        assert ra["run_id"] == rb["run_id"]
        assert (ra["final_train_loss"], ra["final_val_loss"]) == (rb["final_train_loss"], rb["final_val_loss"]), delay
    for run in sweep.expand(sweep.load(spec)):  # each step trained and logged exactly once
        steps = [m["step"] for m in read_metrics(tmp_path / "killed" / run.run_id / "metrics.jsonl") if "loss" in m]
        assert steps == list(range(1, run.config.train.steps + 1)), (delay, run.run_id)


def test_a_killed_run_shows_as_stopped(tmp_path):
    from bitnet_jax.sweep.results import run_status

    write_json(tmp_path / "summary.json", {"status": "running"})
    assert run_status(tmp_path) == "stopped"  # nobody holds its lock
    with DirectoryLock(tmp_path / ".lock", what="a training run"):
        assert run_status(tmp_path) == "running"


def test_best_lr_is_picked_on_the_tuning_split():
    base = {"label": "x", "status": "finished", "lr_rivals": "k"}
    rows = [{**base, "run_id": "a", "lr": 1e-3, "final_tune_loss": 2.0, "final_val_loss": 1.0},
            {**base, "run_id": "b", "lr": 2e-3, "final_tune_loss": 1.5, "final_val_loss": 1.2}]
    assert mark_best_lr(rows) == "tune" and [r["best_lr"] for r in rows] == [False, True]
    for r in rows:
        r["final_tune_loss"] = None  # no tuning split: chosen on the reported split, and said so
    assert mark_best_lr(rows) == "val" and [r["best_lr"] for r in rows] == [True, False]


def test_best_lr_is_one_choice_for_all_seeds_on_their_mean_tuning_loss():
    """Seed 0 alone would pick lr 1e-3 and seed 1 alone 2e-3; the means (1.55 vs 1.5) pick 2e-3 for both seeds."""
    base = {"label": "x", "status": "finished", "lr_rivals": "k", "final_val_loss": 1.0}
    rows = [{**base, "run_id": "a0", "lr": 1e-3, "final_tune_loss": 1.4},
            {**base, "run_id": "a1", "lr": 1e-3, "final_tune_loss": 1.7},
            {**base, "run_id": "b0", "lr": 2e-3, "final_tune_loss": 1.45},
            {**base, "run_id": "b1", "lr": 2e-3, "final_tune_loss": 1.55},
            {**base, "run_id": "other", "lr_rivals": "j", "lr": 1e-3, "final_tune_loss": 9.0}]
    assert mark_best_lr(rows) == "tune"
    assert [r["run_id"] for r in rows if r["best_lr"]] == ["b0", "b1", "other"]


class FakeJob:
    """Stands in for a training child: records which GPU it got, writes the statuses it is told to, exits."""

    def __init__(self, cmd, env, statuses, code, log):
        self.dirs = [Path(p) for p in cmd[4:]]
        self.gpu, self.code, self.started = env.get("CUDA_VISIBLE_DEVICES"), code, time.time()
        log.append(self)
        for d in self.dirs:
            if statuses.get(d.name):
                write_json(d / "summary.json", {"status": statuses[d.name]})

    def poll(self):
        return self.code if time.time() - self.started > 0.3 else None

    def wait(self):
        return self.code


def fake_popen(monkeypatch, statuses=None, code=0):
    from bitnet_jax.sweep import runner

    log = []
    monkeypatch.setattr(runner.subprocess, "Popen",
                        lambda cmd, env, **kw: FakeJob(cmd, env, statuses or {}, code, log))
    monkeypatch.setattr(runner, "POLL_S", 0.05)
    return log


def test_jobs_go_in_parallel_with_their_share_of_each_gpu(tmp_path, monkeypatch):
    from bitnet_jax.sweep import runner

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert jobs_lib.gpu_ids() == ["3", "5"]
    spec = sweep.load(write_spec(tmp_path / "s.yaml", executor={"runs_per_gpu": 2, "group": False}))
    runs = sweep.expand(spec)
    log = fake_popen(monkeypatch, {r.run_id: "finished" for r in runs})
    for r in runs:
        (tmp_path / "out" / r.run_id).mkdir(parents=True)
    slots = runner._slots(["3", "5"], 2, None)
    statuses = runner._Scheduler([jobs_lib.Job((r,)) for r in runs], runs, tmp_path / "out", slots, 2,
                                 spec).execute()
    assert set(statuses.values()) == {"finished"} and len(log) == 4
    assert sorted(j.gpu for j in log) == ["3", "3", "5", "5"]  # two jobs per GPU, all four at once
    assert max(j.started for j in log) - min(j.started for j in log) < 0.25


def test_a_job_can_span_several_gpus_with_the_spec_mesh(tmp_path, monkeypatch):
    """executor.gpus_per_run: each job sees a set of GPUs (CUDA_VISIBLE_DEVICES), its runs the spec's mesh."""
    from bitnet_jax.sweep import runner

    assert runner._slots(["0", "1", "2", "3"], 1, None, 2) == ["0,1", "2,3"]
    assert runner._slots(["0", "1", "2"], 2, None, 2) == ["0,1", "0,1"]  # a GPU left over stays idle
    with pytest.raises(ConfigError, match="gpus_per_run=2, but this host shows 1 GPU"):
        runner._slots(["0"], 1, None, 2)
    spec = sweep.load(write_spec(tmp_path / "s.yaml", mesh={"fsdp": 2}, executor={"gpus_per_run": 2,
                                                                                  "group": False}))
    runs = sweep.expand(spec)
    assert {(r.config.mesh.data, r.config.mesh.fsdp, r.config.mesh.tensor) for r in runs} == {(-1, 2, 1)}
    log = fake_popen(monkeypatch, {r.run_id: "finished" for r in runs})
    for r in runs:
        (tmp_path / "out" / r.run_id).mkdir(parents=True)
    slots = runner._slots(["3", "5"], 1, None, 2)
    statuses = runner._Scheduler([jobs_lib.Job((r,)) for r in runs], runs, tmp_path / "out", slots, 1,
                                 spec).execute()
    assert set(statuses.values()) == {"finished"} and {j.gpu for j in log} == {"3,5"}


def test_an_interrupted_run_keeps_its_status_and_a_crash_is_failed(tmp_path, monkeypatch):
    """A run stopped by a signal records `interrupted` itself (resumed next time); a crash that recorded nothing
    is marked failed by the runner with the exit code."""
    from bitnet_jax.sweep import runner

    spec = sweep.load(write_spec(tmp_path / "s.yaml", executor={"group": False}))
    runs = sweep.expand(spec)[:2]
    for r in runs:
        (tmp_path / "out" / r.run_id).mkdir(parents=True)
    fake_popen(monkeypatch, {runs[0].run_id: "interrupted", runs[1].run_id: "running"}, code=-2)
    statuses = runner._Scheduler([jobs_lib.Job((r,)) for r in runs], runs, tmp_path / "out", [None], 1,
                                 spec).execute()
    assert statuses == {runs[0].run_id: "interrupted", runs[1].run_id: "failed"}
    assert "exit code -2" in read_json(tmp_path / "out" / runs[1].run_id / "summary.json")["error"]
