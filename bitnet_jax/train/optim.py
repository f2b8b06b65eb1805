"""Optimiser and schedules: AdamW (optax) with warmup + cosine/linear decay, or b1.58's two-stage LR and weight decay.

The peak learning rates and weight decays are arrays in the train state (`schedule_values`), not Python constants
baked in at trace time; the step computes the current values from them (`scheduled`) and hands them to AdamW through
`optax.inject_hyperparams`' state, where they are also logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from bitnet_jax.config import TrainConfig
from bitnet_jax.recipes import Recipe


@dataclass(frozen=True)
class Hyperparams:
    """The optimisation settings of one run: train config values, falling back to the recipe's defaults."""

    lr: float
    lr_schedule: str
    lr_stage2: float
    weight_decay: float
    weight_decay_stage2: float
    warmup_steps: int
    steps: int
    lr_final_ratio: float
    b1: float
    b2: float
    grad_clip: float | None

    @classmethod
    def resolve(cls, train: TrainConfig, recipe: Recipe) -> "Hyperparams":
        def pick(value, default):
            return default if value is None else value

        lr = pick(train.lr, recipe.lr)
        wd = pick(train.weight_decay, recipe.weight_decay)
        return cls(
            lr=lr,
            lr_schedule=pick(train.lr_schedule, recipe.lr_schedule),
            # the second-stage peak keeps the recipe's ratio to the first when only train.lr is set
            lr_stage2=pick(train.lr_stage2, lr * pick(recipe.lr_stage2, recipe.lr) / recipe.lr),
            weight_decay=wd,
            weight_decay_stage2=pick(train.weight_decay_stage2, pick(recipe.weight_decay_stage2, wd)),
            warmup_steps=min(train.warmup_steps, train.steps - 1),
            steps=train.steps,
            lr_final_ratio=train.lr_final_ratio,
            b1=train.b1, b2=train.b2, grad_clip=train.grad_clip,
        )


PEAKS = ("lr", "lr_stage2", "weight_decay", "weight_decay_stage2")  # the per-run values a sweep varies


def schedule_values(h: Hyperparams) -> dict[str, jax.Array]:
    """The run's peak learning rates and weight decays as float32 arrays: they live in the train state, so runs that
    differ only in these values share one compiled step (and can be vmapped)."""
    return {name: jnp.asarray(getattr(h, name), jnp.float32) for name in PEAKS}


def scheduled(h: Hyperparams, values: dict, count) -> tuple[jax.Array, jax.Array]:
    """(learning rate, weight decay) of update `count`: linear warmup to the peak, then decay to lr_final_ratio x
    peak at the last step.

    `two_stage` (BitNet b1.58): one linear decay over the whole run whose peak drops from `lr` to `lr_stage2` at half
    of training, so the rate falls abruptly at the switch and decays linearly within each stage; the weight decay
    switches from `weight_decay` to `weight_decay_stage2` there (b1.58: 0.1 -> 0). Other schedules keep it constant.
    """
    warmup, total, floor = h.warmup_steps, h.steps, h.lr_final_ratio
    t = jnp.asarray(count).astype(jnp.float32)
    ramp = jnp.minimum(1.0, (t + 1.0) / max(warmup, 1)) if warmup else 1.0
    progress = jnp.clip((t - warmup) / max(total - warmup, 1), 0.0, 1.0)
    if h.lr_schedule == "cosine":
        decay = floor + (1.0 - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    else:
        decay = 1.0 - (1.0 - floor) * progress
    peak, wd = values["lr"], values["weight_decay"]
    if h.lr_schedule == "two_stage":
        second = t >= total // 2
        peak = jnp.where(second, values["lr_stage2"], peak)
        wd = jnp.where(second, values["weight_decay_stage2"], wd)
    return peak * jnp.where(t < warmup, ramp, decay), wd


def lr_schedule(h: Hyperparams) -> optax.Schedule:
    """The learning-rate schedule of `h` as an optax schedule (count -> rate)."""
    return lambda count: scheduled(h, schedule_values(h), count)[0]


def wd_schedule(h: Hyperparams) -> optax.Schedule:
    """The weight-decay schedule of `h` as an optax schedule (count -> decay)."""
    return lambda count: scheduled(h, schedule_values(h), count)[1]


def decay_mask(params):
    """Weight decay on matrices only: norm scales and biases are left alone."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(h: Hyperparams) -> optax.GradientTransformation:
    """Clipping then AdamW, whose learning rate and weight decay are state values (optax.inject_hyperparams) that the
    train step sets each update from `scheduled` (see `with_hyperparams`)."""
    adamw = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=h.lr, weight_decay=h.weight_decay, b1=h.b1, b2=h.b2, eps=1e-8, mask=decay_mask)
    if h.grad_clip is None:
        return optax.chain(optax.identity(), adamw)
    return optax.chain(optax.clip_by_global_norm(h.grad_clip), adamw)


def with_hyperparams(opt_state, lr, weight_decay):
    """The optimiser state with the learning rate and weight decay of the coming update set."""
    clip, adamw = opt_state
    hyper = {**adamw.hyperparams, "learning_rate": lr, "weight_decay": weight_decay}
    return clip, adamw._replace(hyperparams=hyper)


def current_hyperparams(opt_state) -> dict:
    """The learning rate and weight decay used by the last update (from inject_hyperparams' state)."""
    hp = opt_state[1].hyperparams
    return {"lr": hp["learning_rate"], "weight_decay": hp["weight_decay"]}
