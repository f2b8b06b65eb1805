import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitnet_jax import recipes
from bitnet_jax.config import TrainConfig
from bitnet_jax.train.optim import Hyperparams, lr_schedule, make_optimizer, wd_schedule


def expected_lr(t, peak, warmup, total, floor, kind, peak2=None):
    """The schedules written out by hand (closed forms)."""
    if t < warmup:
        return peak * (t + 1) / warmup
    p = min(max((t - warmup) / (total - warmup), 0.0), 1.0)
    if kind == "cosine":
        return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))
    if kind == "two_stage" and t >= total // 2:
        peak = peak2
    return peak * (1 - (1 - floor) * p)


@pytest.mark.parametrize("kind", ["cosine", "linear", "two_stage"])
def test_lr_schedules_match_closed_forms(kind):
    train = TrainConfig(steps=100, warmup_steps=10, lr=3e-3, lr_schedule=kind, lr_stage2=2e-3, lr_final_ratio=0.1)
    h = Hyperparams.resolve(train, recipes.get("bitnet_b158"))
    sched = lr_schedule(h)
    got = np.array([float(sched(jnp.asarray(t))) for t in range(100)])
    want = np.array([expected_lr(t, 3e-3, 10, 100, 0.1, kind, 2e-3) for t in range(100)])
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_two_stage_drops_lr_and_weight_decay_at_half():
    h = Hyperparams.resolve(TrainConfig(steps=100, warmup_steps=5), recipes.get("bitnet_b158"))
    r = recipes.get("bitnet_b158")
    assert (h.lr, h.lr_stage2, h.weight_decay, h.weight_decay_stage2) == (r.lr, r.lr_stage2, 0.1, 0.0)
    lr, wd = lr_schedule(h), wd_schedule(h)
    assert float(lr(jnp.asarray(50))) < float(lr(jnp.asarray(49))) * 0.8  # abrupt drop at the switch
    assert float(wd(jnp.asarray(49))) == pytest.approx(0.1) and float(wd(jnp.asarray(50))) == 0.0


def test_lr_override_keeps_the_recipes_stage_ratio():
    h = Hyperparams.resolve(TrainConfig(lr=6e-3), recipes.get("bitnet_b158"))
    r = recipes.get("bitnet_b158")
    assert h.lr_stage2 == pytest.approx(6e-3 * r.lr_stage2 / r.lr)
    assert Hyperparams.resolve(TrainConfig(), recipes.get("fp16")).lr == recipes.get("fp16").lr


def test_adamw_decays_matrices_only_and_logs_current_lr():
    h = Hyperparams.resolve(TrainConfig(steps=10, warmup_steps=0, lr=0.5, lr_schedule="linear", weight_decay=0.2,
                                        grad_clip=None), recipes.get("fp16"))
    tx = make_optimizer(h)
    params = {"kernel": jnp.ones((2, 3)), "scale": jnp.ones((3,))}
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, state = tx.update(zeros, state, params)
    # zero gradient: Adam's step is 0, so the update is -lr * wd * p on matrices and nothing on vectors
    np.testing.assert_allclose(updates["kernel"], -0.5 * 0.2 * np.ones((2, 3)), rtol=1e-6)
    np.testing.assert_allclose(updates["scale"], np.zeros(3), atol=0)
    assert float(state[1].hyperparams["learning_rate"]) == pytest.approx(0.5)


def test_gradient_clipping_scales_the_gradient_adam_sees():
    h = Hyperparams.resolve(TrainConfig(steps=10, warmup_steps=0, lr=1.0, grad_clip=1.0, lr_schedule="linear"),
                            recipes.get("fp16"))
    tx = make_optimizer(h)
    params = {"w": jnp.zeros((4,))}
    _, state = tx.update({"w": jnp.full((4,), 10.0)}, tx.init(params), params)
    adam = state[1].inner_state[0]
    # norm 20 clipped to 1: each entry 0.5, so mu = (1 - b1) 0.5 and nu = (1 - b2) 0.25
    np.testing.assert_allclose(adam.mu["w"], 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(adam.nu["w"], 0.05 * 0.25, rtol=1e-6)


def test_peak_lr_and_wd_are_state_values_so_runs_share_one_compiled_step():
    """DESIGN: per-run values live in the state. Two runs that differ only in lr / weight decay use one compiled
    step, each with its own schedule (closed form), and a vmap over the two equals the runs one by one."""
    from flax import nnx

    from bitnet_jax.model import ModelConfig, Transformer
    from bitnet_jax.train.step import METRICS, FlatModel, init_state, make_train_step

    cfg = ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=32, seq_len=8)
    runs = [Hyperparams.resolve(TrainConfig(steps=20, warmup_steps=4, lr=lr, weight_decay=wd), recipes.get("fp16"))
            for lr, wd in ((1e-2, 0.1), (3e-3, 0.0))]
    flat, params, rest = FlatModel.split(Transformer(cfg, "fp16", rngs=nnx.Rngs(0)))
    tx = make_optimizer(runs[0])
    step = make_train_step(flat, tx, runs[0])  # static parts (schedule kind, warmup, steps) are shared
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 32, (2, 9)), jnp.int32)

    def fresh(h):
        return init_state(jax.tree.map(jnp.copy, params), jax.tree.map(jnp.copy, rest), tx, h)

    separate = []
    for h in runs:
        state = fresh(h)
        for t in range(3):
            state, m = step(state, batch)
            lr = float(m[METRICS.index("lr")])
            assert lr == pytest.approx(expected_lr(t, h.lr, 4, 20, 0.1, "cosine"), rel=1e-5)
            assert float(m[METRICS.index("weight_decay")]) == pytest.approx(h.weight_decay)
        separate.append(state)
    assert step._cache_size() == 1
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), fresh(runs[0]), fresh(runs[1]))
    vstep = jax.jit(jax.vmap(lambda s: step.__wrapped__(s, batch)))  # the pure step under the jit
    for _ in range(3):
        stacked, _ = vstep(stacked)
    for i, state in enumerate(separate):
        for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(stacked["params"])):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=2e-5, atol=1e-6)
