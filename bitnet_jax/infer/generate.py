"""Text generation with a fixed-size KV cache: one jitted prefill over the (left-padded) prompts, then one jitted step
per new token; greedy, temperature, top-k and top-p sampling from a seed; a callback per step for streaming.

Prompts of different lengths are left-padded to the longest. Each row's RoPE positions start at 0 at its first real
token and its padding slots are masked out of attention, so every row sees exactly what it would see alone (the same
logits up to float rounding). With a per-tensor activation quantiser (the `bitnet` recipe) the scale is shared by
the whole call's input, so padding rows and the cache split change it: generation then differs slightly from a
full recomputation of each row alone; per-token recipes (bitnet_b158 and its variants) do not have this caveat.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bitnet_jax.data.tokenizer import load_tokenizer
from bitnet_jax.errors import UserError
from bitnet_jax.infer.integer import InferenceModel, check_tokens


@dataclass(frozen=True)
class Sampling:
    """temperature 0 is greedy (argmax); top_k 0 and top_p 1 switch those filters off."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if not self.temperature >= 0:
            raise UserError(f"temperature={self.temperature}: must be >= 0 (0 is greedy)")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise UserError(f"top_k={self.top_k}: must be an integer >= 0 (0 keeps every token)")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p={self.top_p}: must be in (0, 1] (1 keeps every token)")


def sample_next(logits: jax.Array, key: jax.Array, sampling: Sampling) -> jax.Array:
    """One token per row of logits (batch, vocab): argmax when greedy, else a draw from the tempered distribution
    restricted to the top_k largest logits and to the smallest set of tokens holding top_p of the probability."""
    if sampling.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / sampling.temperature
    if sampling.top_k:
        kth = jax.lax.top_k(logits, min(sampling.top_k, logits.shape[-1]))[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if sampling.top_p < 1:
        ordered = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(ordered, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # probability mass of the tokens ranked above each one
        cutoff = jnp.min(jnp.where(before < sampling.top_p, ordered, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.lru_cache(maxsize=8)
def _jitted_step(graphdef, treedef, sampling: Sampling):
    """The jitted decode step of one model structure and sampling. The structure is bound here, once, rather than
    passed as a static argument on every call: hashing a 26-layer model's GraphDef costs the host 1.5-2 ms, more
    than a small decode step takes on a GPU; so does flattening its nnx.State, hence the flat list of arrays."""

    def step(leaves, tokens, cache, start, index, key, i):
        """Run `tokens` (batch, t) through the model at cache slots index..index+t-1; sample from the last position
        with the i-th key of `key`. Returns the new tokens (batch, 1) and the cache."""
        model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
        slots = index + jnp.arange(tokens.shape[1])
        positions = jnp.maximum(slots[None, :] - start[:, None], 0)
        keys = jnp.arange(cache[0][0].shape[1])
        mask = (keys[None, None, :] <= slots[None, :, None]) & (keys[None, None, :] >= start[:, None, None])
        mask = mask | (keys[None, :] == slots[:, None])  # a padding slot sees itself: no empty softmax row
        logits, cache = model.decode(tokens, cache, positions, mask, index)
        return sample_next(logits[:, -1], jax.random.fold_in(key, i), sampling)[:, None], cache

    return jax.jit(step, donate_argnames="cache")


def generate_tokens(model: InferenceModel, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                    sampling: Sampling = Sampling(), seed: int = 0,
                    on_step: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """New token ids (batch, max_new_tokens) continuing each prompt (a list of token-id lists, any lengths).
    `on_step(i, tokens)` is called with each step's (batch,) tokens as soon as they reach the host (streaming): step
    i + 1 is already queued on the device by then, so the host's copy and callback overlap the device's work."""
    if not prompts:
        raise UserError("no prompts to continue: pass at least one")
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens={max_new_tokens}: must be >= 1")
    lengths = np.array([len(p) for p in prompts])
    if lengths.min() == 0:
        raise UserError(f"prompt {int(lengths.argmin())} is empty: every prompt needs at least one token")
    width = int(lengths.max())
    padded = np.zeros((len(prompts), width), np.int64)
    for row, prompt in enumerate(prompts):
        padded[row, width - len(prompt):] = prompt
    padded = check_tokens(padded, model.vocab_size)
    graphdef, state = nnx.split(model.model)
    leaves, treedef = jax.tree.flatten(state)
    cache = model.model.init_cache(len(prompts), width + max_new_tokens, model.model.dtype or jnp.float32)
    start = jnp.asarray(width - lengths, jnp.int32)
    key = jax.random.key(seed)
    step = _jitted_step(graphdef, treedef, sampling)
    tokens, index, out = jnp.asarray(padded), 0, []

    def fetch(device_tokens: jax.Array) -> None:
        out.append(np.asarray(device_tokens)[:, 0])
        if on_step is not None:
            on_step(len(out) - 1, out[-1])

    for i in range(max_new_tokens):
        previous = tokens
        tokens, cache = step(leaves, tokens, cache, start, np.int32(index), key, np.int32(i))
        index += width if i == 0 else 1
        if i > 0:
            fetch(previous)
    fetch(tokens)
    return np.stack(out, axis=1)


def generate(model: InferenceModel, prompts: Sequence[str], max_new_tokens: int = 64, sampling: Sampling = Sampling(),
             seed: int = 0, on_text: Callable[[int, str], None] | None = None) -> list[str]:
    """Continuations of text prompts, decoded with the run's tokenizer. `on_text(row, piece)` receives each row's new
    text as it is generated (a multi-byte character is passed on once complete)."""
    tokenizer = load_tokenizer(model.config.data)
    ids = [[int(t) for t in tokenizer.encode(p)] for p in prompts]
    shown = [0] * len(prompts)
    so_far: list[list[int]] = [[] for _ in prompts]

    def stream(i: int, tokens: np.ndarray) -> None:
        for row, token in enumerate(tokens):
            so_far[row].append(int(token))
            text = tokenizer.decode(so_far[row])
            if on_text is not None and (not text.endswith("\ufffd") or i == max_new_tokens - 1):
                on_text(row, text[shown[row]:])
                shown[row] = len(text)

    new = generate_tokens(model, ids, max_new_tokens, sampling, seed, stream)
    return [tokenizer.decode(row) for row in new]
