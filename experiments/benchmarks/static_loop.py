"""A candidate for the per-step overhead of small models (issues 10 and 13), not yet measured on a GPU.

`train.make_train_call` loops `lax.fori_loop(0, clip(behind, 0, K), ...)`: the trip count depends on the state, so
on a GPU XLA's while loop copies its condition to the host and waits for it before every step, and the host cannot
queue the next step's kernels ahead of the device. Its body already masks runs that are not behind `until`, so the
same call with a fixed trip count of K gives the same states and metrics (the extra iterations compute a step and
discard it: waste only in a call that ends early, at an evaluation or checkpoint boundary). This module re-states
`call` with the fixed trip count so that quant_cost.py can time it (`install()` / `uninstall()` swap it in for
`bitnet_jax.train.step.make_train_call`; single-device only); `check()` runs both on a tiny model, including a call
that ends early, and returns the largest difference in states and metrics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax.train import step as step_module

ORIGINAL = step_module.make_train_call


def make_train_call(model, tx, h, group, steps_per_call, draw, layout=None):
    assert layout is None, "static_loop: single device only"
    step = step_module.over_group(step_module.train_step(model, tx, h), group)

    def call(state, active, until, data):
        def body(i, carry):
            state, active, metrics, ran = carry
            new, m = step(state, draw(data, i, state["step"]))
            running = active & (state["step"] < until)
            ok = jnp.isfinite(m[:, 0]) & jnp.isfinite(m[:, 1])
            take = running & ok
            state = jax.tree.map(lambda n, o: jnp.where(take.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, state)
            return state, active & ~(running & ~ok), metrics.at[i].set(m), ran.at[i].set(running)

        carry = (state, active, jnp.full((steps_per_call, group, len(step_module.METRICS)), jnp.nan, jnp.float32),
                 jnp.zeros((steps_per_call, group), bool))
        return jax.lax.fori_loop(0, steps_per_call, body, carry)

    return jax.jit(call, donate_argnums=0)


def install() -> None:
    step_module.make_train_call = make_train_call


def uninstall() -> None:
    step_module.make_train_call = ORIGINAL


def check() -> float:
    """Largest absolute difference between the two loops' states, active flags and (ran) metrics over three calls
    of a 2-run group, K = 4, the last call stopping after 2 of its 4 steps; 0.0 is the pass (same float ops)."""
    from bitnet_jax import recipes
    from bitnet_jax.config import RunConfig, TrainConfig
    from bitnet_jax.data.batches import TrainBatches
    from bitnet_jax.model import ModelConfig
    from bitnet_jax.train.state import build_training

    cfg = RunConfig(recipe=recipes.get("bitnet_b158"), train=TrainConfig(batch_size=2, steps=100, steps_per_call=4),
                    model=ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=32, seq_len=8))
    training = build_training(cfg)
    tokens = np.random.default_rng(0).integers(0, 32, size=4096).astype(np.uint16)
    batches = TrainBatches(tokens, [0, 1], 2, 8, steps_per_call=4)
    results = []
    for make in (ORIGINAL, make_train_call):
        call = make(training.model, training.optimizer, training.hyperparams, 2, 4, batches.draw)
        state = jax.tree.map(lambda x: jnp.stack([x] * 2), training.state)
        active, inputs, seen = jnp.ones((2,), bool), batches.inputs([0, 0]), []
        for until in (4, 8, 10):
            state, active, metrics, ran = call(state, active, jnp.int32(until), inputs)
            seen.append(np.where(np.asarray(ran)[..., None], np.asarray(metrics), 0.0))
        results.append(jax.tree.leaves((state, active, seen)))
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(*results))


if __name__ == "__main__":
    print({"static_loop_check_max_abs_diff": check()})
