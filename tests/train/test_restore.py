import jax
import jax.numpy as jnp
import numpy as np
import pytest
import shutil

from bitnet_jax.data import build_token_data, val_batches
from bitnet_jax.errors import CheckpointError
from bitnet_jax.train import load_run
from bitnet_jax.train.step import FlatModel, make_eval_step


@pytest.mark.parametrize("recipe", ["bitnet_b158", "fp16"])
def test_load_run_reproduces_the_runs_validation_loss(trained_run, recipe):
    run = load_run(trained_run(f"recipe={recipe}"))
    cfg = run.config
    assert run.step == 30 and run.summary["status"] == "finished" and cfg.recipe.name == recipe
    data = build_token_data(cfg.data.source, cfg.data.tokenizer, cfg.data.val_fraction, cfg.data.max_bytes,
                            seq_len=cfg.model.seq_len, tune_fraction=cfg.data.tune_fraction)
    batches = jnp.asarray(val_batches(data.val, cfg.train.batch_size, cfg.model.seq_len, cfg.train.eval_batches))
    flat, params, rest = FlatModel.split(run.model)
    state = jax.tree.map(lambda x: x[None], {"params": params, "rest": rest})  # a group of one
    loss = float(make_eval_step(flat)(state, batches)[0])
    assert loss == pytest.approx(run.summary["final_val_loss"], rel=1e-6)
    # the restored weights are the trained ones, not a fresh init (a fresh init scores ~ln 256 = 5.5 nats)
    assert loss < np.log(256) - 0.5


def test_load_run_errors(trained_run, tmp_path):
    with pytest.raises(CheckpointError, match="not a run directory"):
        load_run(tmp_path)
    run_dir = trained_run("recipe=bitnet_b158")
    with pytest.raises(CheckpointError, match="no checkpoint at step 7; available: .*30"):
        load_run(run_dir, step=7)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("ckpt"))
    with pytest.raises(CheckpointError, match="has no checkpoints"):
        load_run(copy)
