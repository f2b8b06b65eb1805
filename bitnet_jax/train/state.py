"""What a run config builds: the model, its optimiser and the fresh train state, in one place for training,
restoring, benchmarking and importing.

`build_model(cfg, inference=True)` builds the model in the recipe's inference form (`Recipe.for_inference`): the
form validation, evaluation and generation use, in which no token sees a later one.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bitnet_jax.config import RunConfig
from bitnet_jax.model import Transformer
from bitnet_jax.train.optim import Hyperparams, make_optimizer
from bitnet_jax.train.step import FlatModel, init_state


def compute_dtype(name: str):
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    return jnp.dtype(name)


def attention_impl(name: str, dtype, deterministic: bool = False) -> str | None:
    """auto: cuDNN's fused attention on GPU in 16-bit (2x the XLA step rate at 125M on an H100), else XLA's; XLA's
    under train.deterministic (cuDNN's fused backward failed to compile with XLA's deterministic ops on an H200)."""
    if name == "auto":
        half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        return "cudnn" if jax.default_backend() == "gpu" and half and not deterministic else "xla"
    return name


def build_model(cfg: RunConfig, *, inference: bool = False, abstract: bool = False) -> Transformer:
    """The config's Transformer, initialised from train.seed (abstract: shapes only, nothing computed)."""
    dtype = compute_dtype(cfg.train.compute_dtype)
    recipe = cfg.recipe.for_inference() if inference else cfg.recipe

    def make():
        return Transformer(cfg.model, recipe, rngs=nnx.Rngs(cfg.train.seed), dtype=dtype,
                           attention_impl=attention_impl(cfg.train.attention, dtype, cfg.train.deterministic))

    return nnx.eval_shape(make) if abstract else make()


@dataclass(frozen=True)
class Training:
    """A run's static pieces (model graph, hyper-parameters, optimiser) and its fresh train state."""

    model: FlatModel
    hyperparams: Hyperparams
    optimizer: optax.GradientTransformation
    state: dict  # arrays, or ShapeDtypeStructs when built abstract


def build_training(cfg: RunConfig, model: nnx.Module | None = None, *, abstract: bool = False) -> Training:
    """The model (or the given one), AdamW and a fresh state with step 0; abstract: shapes only, for restoring."""
    model = model if model is not None else build_model(cfg, abstract=abstract)
    flat, params, rest = FlatModel.split(model)
    hp = Hyperparams.resolve(cfg.train, cfg.recipe)
    tx = make_optimizer(hp)
    make = lambda p, r: init_state(p, r, tx, hp)  # noqa: E731
    state = jax.eval_shape(make, params, rest) if abstract else make(params, rest)
    return Training(flat, hp, tx, state)
