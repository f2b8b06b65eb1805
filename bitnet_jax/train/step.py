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


def make_train_step(model: FlatModel, tx: optax.GradientTransformation, h: Hyperparams) -> Callable:
    """step(state, batch) -> (state, metrics); `state` is donated; `metrics` is one float32 vector in METRICS order,
    so fetching many steps' metrics is one device-to-host copy (each copy costs milliseconds on some hosts).

    The loop draws each batch in its own jitted call (`data.train_batch`) on the device-resident token stream.
    """

    def step(state, batch):
        loss, grads = jax.value_and_grad(next_token_loss, argnums=1)(model, state["params"], state["rest"], batch)
        opt = with_hyperparams(state["opt"], *scheduled(h, state["schedule"], state["step"]))
        updates, opt = tx.update(grads, opt, state["params"])
        params = optax.apply_updates(state["params"], updates)
        hyper = current_hyperparams(opt)
        metrics = jnp.stack([loss, optax.tree.norm(grads), hyper["lr"], hyper["weight_decay"]]).astype(jnp.float32)
        return {**state, "params": params, "opt": opt, "step": state["step"] + 1}, metrics

    return jax.jit(step, donate_argnums=0)


def make_eval_step(model: FlatModel) -> Callable:
    """eval(state, batches) -> mean loss over (n, batch, seq+1) windows, one batch at a time under lax.map."""

    def evaluate(state, batches):
        losses = jax.lax.map(lambda b: next_token_loss(model, state["params"], state["rest"], b), batches)
        return jnp.mean(losses)

    return jax.jit(evaluate)
