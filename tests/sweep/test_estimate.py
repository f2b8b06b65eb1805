"""The dry run's time estimate (bitnet_jax/sweep/jobs.py): its schedule against closed forms worked out by hand.

The model's constants are set to round numbers here (the fitted ones live in jobs.py and the specs), so each expected
time below is arithmetic on those numbers, not a copy of the code's output or of a measurement."""

import dataclasses

import pytest
import yaml

from bitnet_jax import config as config_lib, sweep
from bitnet_jax.cli import main
from bitnet_jax.files import write_json
from bitnet_jax.model import flops_per_token, param_counts
from bitnet_jax.sweep import jobs as jobs_lib
from bitnet_jax.sweep.jobs import Job
from bitnet_jax.sweep.spec import ExecutorSpec, PlannedRun

# a step of any job below costs 0.1 s (the overhead alone: FLOPs and elementwise work are free)
STEP = ExecutorSpec(est_flops_per_sec=1e30, est_step_overhead_s=0.1, est_elementwise_s=0.0)


@pytest.fixture(autouse=True)
def round_constants(monkeypatch):
    """Start-up 10 s + 2 s per layer when compiling, 3 s from the cache; the runner's own 5 s."""
    for name, value in (("COMPILE_S", 10.0), ("COMPILE_PER_LAYER_S", 2.0), ("CACHED_START_S", 3.0),
                        ("RUNNER_S", 5.0), ("ABSMEDIAN_WEIGHT_COST", 4.0)):
        monkeypatch.setattr(jobs_lib, name, value)


def run(steps: int, layers: int = 2, recipe: str = "fp16", d: int = 32, lr: float = 1e-3, seed: int = 0) -> PlannedRun:
    cfg = config_lib.from_dict({"recipe": {"name": recipe}, "model": {
        "d_model": d, "n_layers": layers, "n_heads": 2, "d_ff": 64, "seq_len": 16, "vocab_size": 256},
        "train": {"batch_size": 4, "steps": steps, "lr": lr, "seed": seed}}, "test")
    n = param_counts(cfg.model, cfg.recipe)
    tokens = steps * 4 * 16
    return PlannedRun(f"{recipe}_d{d}L{layers}_{steps}_{lr}_{seed}", recipe, cfg, n["total"], n["non_embedding"],
                      tokens, flops_per_token(cfg.model, cfg.recipe) * tokens, None)


def test_two_jobs_of_one_program_on_one_slot_compile_once():
    # 100 steps x 0.1 s = 10 s of training each; the first compiles (10 + 2 x 2 = 14 s), the second loads (3 s)
    a, b = Job((run(100),)), Job((run(100, lr=2e-3),))
    assert a.program == b.program
    assert jobs_lib.schedule([([a, b], 1)], STEP, 1) == [[pytest.approx(24.0), pytest.approx(37.0)]]
    assert jobs_lib.estimate_seconds([a, b], STEP, 1, 1) == pytest.approx(5 + 24 + 13)


def test_different_programs_each_compile_and_a_run_length_is_not_part_of_the_program():
    a, b = Job((run(100, layers=2),)), Job((run(100, layers=3),))  # 14 s and 16 s start-ups
    assert jobs_lib.estimate_seconds([a, b], STEP, 1, 1) == pytest.approx(5 + (14 + 10) + (16 + 10))
    short, long = Job((run(50),)), Job((run(100),))
    assert short.program == long.program  # steps, eval_every and ckpt_every are not in the compiled program
    assert jobs_lib.estimate_seconds([short, long], STEP, 1, 1) == pytest.approx(5 + (14 + 5) + (3 + 10))


def test_jobs_training_at_once_share_one_device_equally():
    # both start at 0 and compile 14 s (neither has finished compiling when the other starts); then A (5 s alone)
    # and B (10 s alone) train at half speed: A ends after 10 s more, at 24 s; B has 5 s left alone: 29 s
    a, b = Job((run(50),)), Job((run(100, lr=2e-3),))
    assert jobs_lib.schedule([([a, b], 2)], STEP, 1) == [[pytest.approx(24.0), pytest.approx(29.0)]]
    # on two devices each has its own: 14 + 5 and 14 + 10
    assert jobs_lib.schedule([([a, b], 2)], STEP, 2) == [[pytest.approx(19.0), pytest.approx(24.0)]]


def test_a_job_starting_up_does_not_slow_one_training():
    # A: 14 s start-up, 30 s of training; B (3 layers): 16 s start-up, 10 s of training. A trains alone from 14 to 16
    # (2 s done, 28 left); both at half speed until B's 10 s are done at 36 (A: 10 done, 18 left); A alone: 54 s
    a, b = Job((run(300),)), Job((run(100, layers=3),))
    assert jobs_lib.schedule([([a, b], 2)], STEP, 1) == [[pytest.approx(54.0), pytest.approx(36.0)]]


def test_queues_side_by_side_share_the_device_and_keep_their_own_slots():
    # two sweeps of one slot each on one GPU: as two slots of one sweep; the second job of queue 1 waits for its slot
    # (and finds its program compiled: 3 s); queue 0's second job waits for queue 0's slot
    a, b = Job((run(50),)), Job((run(100, layers=3),))
    c = Job((run(50, lr=2e-3),))
    ends = jobs_lib.schedule([([a], 1), ([b, c], 1)], STEP, 1)
    # 0-14 A compiles, 0-16 B compiles; 14-16 A alone (2 of 5 s); 16-22 A and B at half (A done at 22, B 3 of 10);
    # 22-29 B alone (done at 29); C: 29 + 3 s from the cache + 5 s alone = 37
    assert ends == [[pytest.approx(22.0)], [pytest.approx(29.0), pytest.approx(37.0)]]


def test_a_resumed_job_counts_the_steps_left_and_a_group_steps_all_its_runs():
    job = Job((run(100),), done=60)
    assert job.train_seconds(STEP) == pytest.approx(40 * 0.1)
    assert jobs_lib.estimate_seconds([job], STEP, 1, 1) == pytest.approx(5 + 14 + 4)
    # device time per step: FLOPs at the rate plus elementwise seconds x tokens x width x layers, per run
    ex = ExecutorSpec(est_flops_per_sec=1e12, est_step_overhead_s=0.1, est_elementwise_s=1e-9)
    r = run(100, layers=2, d=32)
    one = 0.1 + r.flops / 100 / 1e12 + (4 * 16) * 32 * 2 * 1e-9
    assert Job((r,)).step_seconds(ex) == pytest.approx(one)
    assert Job((r, run(100, lr=2e-3))).step_seconds(ex) == pytest.approx(one + (one - 0.1))


def test_absmedian_adds_a_sort_of_its_weights_each_step():
    ex = ExecutorSpec(est_flops_per_sec=1e30, est_step_overhead_s=0.0, est_elementwise_s=1e-9)
    mean, median = run(10, recipe="bitnet_b158"), run(10, recipe="bitnet_b158_median")
    weights = param_counts(median.config.model, median.config.recipe)["matmul"]
    assert Job((median,)).step_seconds(ex) - Job((mean,)).step_seconds(ex) == pytest.approx(4.0 * weights * 1e-9)


def test_the_dry_run_of_a_resumed_sweep_counts_the_steps_left(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny", "recipes": ["fp16"], "family": {"sizes": [{"d_model": 16, "n_layers": 1, "n_heads": 2,
                                                                   "d_ff": 32}], "base": {"seq_len": 16}},
        "budget": {"tokens": 6400}, "train": {"batch_size": 4}}))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "    100 steps" in capsys.readouterr().out
    [planned] = sweep.expand(sweep.load(spec))
    write_json(tmp_path / "out" / planned.run_id / "summary.json", {"status": "interrupted", "step": 70})
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "30 of 100 steps left" in capsys.readouterr().out


def test_a_cached_start_is_never_slower_than_compiling(monkeypatch):
    monkeypatch.setattr(jobs_lib, "CACHED_START_S", 100.0)
    job = Job((run(10, layers=1),))
    assert job.start_seconds(cached=True) == job.start_seconds() == pytest.approx(12.0)
    assert dataclasses.replace(job, done=10).train_seconds(STEP) == 0.0
