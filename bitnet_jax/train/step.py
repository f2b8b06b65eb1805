"""The pure train and eval steps. The NNX model is split once into a static graph and flat lists of arrays, so a
step call flattens a list (fast, in C++) rather than nested nnx.State objects (Python, milliseconds per step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bitnet_jax.train.optim import Hyperparams, current_hyperparams, schedule_values, scheduled, with_hyperparams


@dataclass(frozen=True)
class FlatModel:
    """The static half of a split model: merge(params, rest) rebuilds it from two flat lists of arrays."""

    graphdef: object
    param_def: object
    rest_def: object

    @classmethod
    def split(cls, model: nnx.Module) -> tuple["FlatModel", list, list]:
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        p_leaves, p_def = jax.tree.flatten(params)
        r_leaves, r_def = jax.tree.flatten(rest)
        return cls(graphdef, p_def, r_def), p_leaves, r_leaves

    def merge(self, params: list, rest: list) -> nnx.Module:
        return nnx.merge(self.graphdef, jax.tree.unflatten(self.param_def, params),
                         jax.tree.unflatten(self.rest_def, rest))


METRICS = ("loss", "grad_norm", "lr", "weight_decay")  # the order of the metrics vector a train step returns


def init_state(params: list, rest: list, tx: optax.GradientTransformation, h: Hyperparams) -> dict:
    """The whole training state: parameters, optimiser state, non-parameter variables, the step counter and the
    run's peak learning rates and weight decays (arrays: per-run values never become compile-time constants)."""
    return {"params": params, "opt": tx.init(params), "rest": rest, "step": jnp.zeros((), jnp.int32),
            "schedule": schedule_values(h)}


def next_token_loss(model: FlatModel, params: list, rest: list, batch: jax.Array) -> jax.Array:
    """Mean cross-entropy (nats per token) of predicting batch[:, 1:] from batch[:, :-1]."""
    logits = model.merge(params, rest)(batch[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()


def train_step(model: FlatModel, tx: optax.GradientTransformation, h: Hyperparams) -> Callable:
    """step(state, batch) -> (state, metrics): forward, backward and one AdamW update; `metrics` is one float32
    vector in METRICS order."""

    def step(state, batch):
        loss, grads = jax.value_and_grad(next_token_loss, argnums=1)(model, state["params"], state["rest"], batch)
        opt = with_hyperparams(state["opt"], *scheduled(h, state["schedule"], state["step"]))
        updates, opt = tx.update(grads, opt, state["params"])
        params = optax.apply_updates(state["params"], updates)
        hyper = current_hyperparams(opt)
        metrics = jnp.stack([loss, optax.tree.norm(grads), hyper["lr"], hyper["weight_decay"]]).astype(jnp.float32)
        return {**state, "params": params, "opt": opt, "step": state["step"] + 1}, metrics

    return step


def make_train_step(model: FlatModel, tx: optax.GradientTransformation, h: Hyperparams, layout=None) -> Callable:
    """The jitted `train_step` with the state donated (the benchmark times it alone); with a `layout` (of a bare
    state, train/sharding.py) the state keeps its shardings."""
    if layout is None:
        return jax.jit(train_step(model, tx, h), donate_argnums=0)
    return jax.jit(train_step(model, tx, h), donate_argnums=0, out_shardings=(layout.state, layout.replicated))


def over_group(fn: Callable, size: int) -> Callable:
    """fn over a group of `size` runs stacked on a leading axis: jax.vmap, or for one run a plain call with that axis
    added back (no batching rules needed, e.g. for cuDNN attention)."""
    if size > 1:
        return jax.vmap(fn)
    return lambda *args: jax.tree.map(lambda x: x[None], fn(*jax.tree.map(lambda x: x[0], args)))


def make_train_call(model: FlatModel, tx: optax.GradientTransformation, h: Hyperparams, group: int,
                    steps_per_call: int, draw: Callable, layout=None) -> Callable:
    """call(state, active, until, data) -> (state, active, metrics, ran): up to `steps_per_call` steps of a group of
    runs in one jitted call (one dispatch, one metrics copy).

    state: the group's train states stacked on a leading axis of size `group`; active: (group,) bool, False for a
    diverged run. A run takes a step while active and its step counter is below `until` (runs resumed at different
    steps catch up, and wait there). A step whose loss or gradient norm is not finite is not applied: that run keeps
    its last good state and becomes inactive (diverged) while the others go on.
    `draw(data, i, steps)` gives the (group, batch, seq+1) batches of iteration i for the runs at `steps`.
    Returns metrics (steps_per_call, group, len(METRICS)) and ran (steps_per_call, group): which entries are steps.
    `layout` (train/sharding.py): where the state stays and how each batch is split over the mesh.
    """
    step = over_group(train_step(model, tx, h), group)

    def batch(data, i, steps):
        b = draw(data, i, steps)
        return b if layout is None else jax.lax.with_sharding_constraint(b, layout.batch(1))

    def call(state, active, until, data):
        def body(i, carry):
            state, active, metrics, ran = carry
            new, m = step(state, batch(data, i, state["step"]))
            running = active & (state["step"] < until)
            ok = jnp.isfinite(m[:, 0]) & jnp.isfinite(m[:, 1])
            take = running & ok
            state = jax.tree.map(lambda n, o: jnp.where(take.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, state)
            return state, active & ~(running & ~ok), metrics.at[i].set(m), ran.at[i].set(running)

        behind = until - jnp.min(jnp.where(active, state["step"], until))
        carry = (state, active, jnp.full((steps_per_call, group, len(METRICS)), jnp.nan, jnp.float32),
                 jnp.zeros((steps_per_call, group), bool))
        return jax.lax.fori_loop(0, jnp.clip(behind, 0, steps_per_call), body, carry)

    if layout is None:
        return jax.jit(call, donate_argnums=0)
    rep = layout.replicated
    return jax.jit(call, donate_argnums=0, out_shardings=(layout.state, rep, rep, rep))


def make_eval_step(model: FlatModel, group: int = 1, out_sharding=None) -> Callable:
    """eval(state, batches) -> (group,) mean losses over (n, batch, seq+1) windows, one batch at a time (lax.map);
    `state` is a group's stacked states; `out_sharding`: where the losses land (replicated on a mesh, so that every
    process of a multi-process run can read them)."""

    def evaluate(state, batches):
        def one(s):
            return jnp.mean(jax.lax.map(lambda b: next_token_loss(model, s["params"], s["rest"], b), batches))

        return over_group(one, group)(state)

    return jax.jit(evaluate, out_shardings=out_sharding)
