"""Run groups: runs that differ only in per-run values train together under jax.vmap, each with its own record."""

import signal

import numpy as np
import pytest

from bitnet_jax import config, train
from bitnet_jax.errors import ConfigError

from test_loop import cli, losses, same_record, wait_for_step

@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """alone(cfg) -> (RunResult, run directory) of cfg trained on its own: the reference the tests compare a group's
    members with, trained once per module for a config that several tests use."""
    runs = {}

    def train_alone(cfg):
        key = repr(cfg)
        if key not in runs:
            out = tmp_path_factory.mktemp("alone") / "run"
            runs[key] = (train.run(cfg, out), out)
        return runs[key]

    return train_alone


def group_configs(tiny, recipe, lrs):
    return [config.load(None, tiny + [f"recipe={recipe}", f"train.lr={lr}", f"train.seed={i}", f"data.seed={i}"])
            for i, lr in enumerate(lrs)]


@pytest.mark.parametrize("recipe, tol", [("fp16", 1e-5), ("bitnet_b158", 2e-3)])
def test_a_group_trains_what_its_members_train_alone(tmp_path, tiny, recipe, tol, alone):
    """vmapped members equal the same runs alone up to float reordering; ternary rounding can flip a weight on
    such a difference, hence the wider tolerance for b1.58."""
    cfgs = group_configs(tiny, recipe, [1e-3, 2e-2])
    grouped = train.run_group([(c, tmp_path / f"g{i}") for i, c in enumerate(cfgs)])
    for i, (c, r) in enumerate(zip(cfgs, grouped)):
        alone_result, alone_dir = alone(c)
        assert r.status == alone_result.status == "finished" and r.summary["group_size"] == 2
        a, b = losses(tmp_path / f"g{i}"), losses(alone_dir)
        assert list(a) == list(b) and np.allclose(list(a.values()), list(b.values()), rtol=tol, atol=0)
        assert r.summary["final_val_loss"] == pytest.approx(alone_result.summary["final_val_loss"], rel=tol)
    assert losses(tmp_path / "g0")[12] != losses(tmp_path / "g1")[12]  # the members really differ


def test_a_diverging_member_is_frozen_while_the_others_go_on(tmp_path, tiny, alone):
    cfgs = group_configs(tiny, "fp16", [1e-3, 1e30])  # the first: the first member of the fp16 test above
    ok, bad = train.run_group([(c, tmp_path / f"g{i}") for i, c in enumerate(cfgs)])
    alone_result, alone_dir = alone(cfgs[0])
    assert ok.status == "finished" and bad.status == "diverged" and "non-finite" in bad.summary["error"]
    assert losses(tmp_path / "g0") == pytest.approx(losses(alone_dir), rel=1e-5)
    assert bad.summary["step"] < 12 and ok.summary["final_val_loss"] == pytest.approx(
        alone_result.summary["final_val_loss"], rel=1e-5)


def test_a_group_killed_mid_run_resumes_like_an_uninterrupted_one(tmp_path, tiny):
    cfgs = group_configs(tiny, "fp16", [1e-3, 3e-3])
    for name in ("whole", "killed"):
        for i, c in enumerate(cfgs):
            c = config.load(None, tiny + ["recipe=fp16", f"train.lr={c.train.lr}", f"train.seed={i}",
                                          f"data.seed={i}", "train.steps=40", "train.ckpt_every=10",
                                          "train.eval_every=20", "train.steps_per_call=1"])
            config.dump(c, tmp_path / f"{name}{i}" / "plan.yaml")
    killed = cli(["train-group", str(tmp_path / "killed0"), str(tmp_path / "killed1")])
    wait_for_step(tmp_path / "killed1", 25, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    train.run_group([(config.load(tmp_path / f"whole{i}" / "plan.yaml"), tmp_path / f"whole{i}") for i in range(2)])
    resumed = cli(["train-group", str(tmp_path / "killed0"), str(tmp_path / "killed1")])
    assert resumed.wait() == 0, resumed.communicate()
    for i in range(2):
        assert losses(tmp_path / f"whole{i}") == losses(tmp_path / f"killed{i}")
        same_record(tmp_path / f"whole{i}", tmp_path / f"killed{i}")


def test_members_of_a_group_must_differ_only_in_per_run_values(tmp_path, tiny):
    a, b = config.load(None, tiny), config.load(None, tiny + ["train.batch_size=8"])
    with pytest.raises(ConfigError, match="train.batch_size"):
        train.run_group([(a, tmp_path / "a"), (b, tmp_path / "b")])
    assert not (tmp_path / "a").exists()


def test_each_member_of_a_group_has_its_own_wandb_run(tmp_path, tiny, monkeypatch):
    pytest.importorskip("wandb")
    from test_loop import finished_wandb_records

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfgs = [config.load(None, tiny + ["train.steps=4", "train.eval_every=4", "tracking.wandb=offline",
                                      f"tracking.name=m{i}", f"train.lr={lr}"]) for i, lr in enumerate((1e-3, 3e-3))]
    train.run_group([(c, tmp_path / f"m{i}") for i, c in enumerate(cfgs)])

    for i in range(2):
        records = finished_wandb_records(tmp_path / f"m{i}")
        [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert run.display_name == f"m{i}"
        logged = [r for r in records if r.WhichOneof("record_type") == "history"]
        assert len(logged) >= 4  # this member's own rows
