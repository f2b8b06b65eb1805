"""Validation, evaluation and inference never let a token see later tokens, for every recipe: BitNet's per-tensor
activation scale (its training form) is replaced by the per-token scale of its inference form there."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitnet_jax import config
from bitnet_jax.data import build_token_data, val_batches
from bitnet_jax.train.state import build_model
from bitnet_jax.train.step import FlatModel, make_eval_step

RECIPES = ["fp16", "bitnet", "bitnet_b158", "bitnet_a48"]


def _setup(tiny, recipe, inference):
    cfg = config.load(None, tiny + [f"recipe={recipe}"])
    flat, params, rest = FlatModel.split(build_model(cfg, inference=inference))
    state = jax.tree.map(lambda x: x[None], {"params": params, "rest": rest})  # a group of one
    data = build_token_data("python_docs", seq_len=cfg.model.seq_len, max_bytes=60000)
    return cfg, flat, params, rest, state, jnp.asarray(val_batches(data.val, 4, cfg.model.seq_len, 2))


# a4.8's 4-bit activation codes turn float reordering between batch shapes into the odd flipped code (up to ~1e-4 of
# the loss, more with XLA's cheapest CPU code generation, which the tests use)
@pytest.mark.parametrize("recipe, tol", [("fp16", 1e-6), ("bitnet", 1e-6), ("bitnet_b158", 1e-6), ("bitnet_a48", 1e-3)])
def test_validation_loss_does_not_depend_on_how_windows_are_batched(tiny, recipe, tol):
    cfg, flat, _, _, state, windows = _setup(tiny, recipe, inference=True)
    evaluate = make_eval_step(flat)
    together = float(evaluate(state, windows)[0])  # 2 batches of 4 windows
    alone = float(evaluate(state, windows.reshape(8, 1, -1))[0])  # 8 batches of 1 window
    assert together == pytest.approx(alone, rel=tol)


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_token_never_sees_later_tokens(tiny, recipe):
    cfg, flat, params, rest, _, windows = _setup(tiny, recipe, inference=True)
    model = flat.merge(params, rest)
    x = windows[0, :, :-1]
    changed = x.at[:, 20:].set((x[:, 20:] + 7) % 256)  # rewrite everything after position 19
    a, b = np.asarray(model(x))[:, :20], np.asarray(model(changed))[:, :20]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bitnet_training_form_is_per_tensor_so_the_check_can_fail(tiny):
    """The training form of `bitnet` takes one activation scale over the whole batch: batched losses move."""
    _, flat, _, _, state, windows = _setup(tiny, "bitnet", inference=False)
    evaluate = make_eval_step(flat)
    together, alone = float(evaluate(state, windows)[0]), float(evaluate(state, windows.reshape(8, 1, -1))[0])
    assert abs(together - alone) / alone > 1e-5  # (4e-5 at initialisation; exactly 0 in the inference form)
