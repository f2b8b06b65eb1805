"""The pure train and eval steps: the NNX model is split once and the step is jitted over plain pytrees."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bitnet_jax.train.optim import current_hyperparams


def next_token_loss(graphdef, params, rest, batch: jax.Array) -> jax.Array:
    """Mean cross-entropy (nats per token) of predicting batch[:, 1:] from batch[:, :-1]."""
    model = nnx.merge(graphdef, params, rest)
    logits = model(batch[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()


def make_train_step(graphdef, rest, tx: optax.GradientTransformation) -> Callable:
    """step(state, batch) -> (state, metrics); `state` = {'params', 'opt'} is donated."""

    def step(state, batch):
        loss, grads = jax.value_and_grad(next_token_loss, argnums=1)(graphdef, state["params"], rest, batch)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **current_hyperparams(opt)}
        return {"params": params, "opt": opt}, metrics

    return jax.jit(step, donate_argnums=0)


def make_eval_step(graphdef, rest) -> Callable:
    """eval(params, batches) -> mean loss over (n, batch, seq+1) windows, one batch at a time under lax.map."""

    def evaluate(params, batches):
        losses = jax.lax.map(lambda b: next_token_loss(graphdef, params, rest, b), batches)
        return jnp.mean(losses)

    return jax.jit(evaluate)
