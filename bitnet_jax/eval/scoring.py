"""Batched, jitted log-likelihood of token continuations: the engine under multiple choice and perplexity.

A request is a token sequence whose last `n_scored` tokens are scored given everything before them. Requests are
sorted by length, grouped into batches of a fixed size and right-padded to a few bucket lengths (powers of two up to
the model's seq_len), so a whole task compiles a handful of shapes. Right padding never changes the scores: the
model is causal, and its normalisations and per-token activation quantisers act on each position alone (runs load
in their recipe's inference form, so `bitnet`'s per-tensor training scale is per token here too).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bitnet_jax.errors import DataError
from bitnet_jax.train.step import FlatModel

MIN_BUCKET = 16


@functools.partial(jax.jit, static_argnums=0)  # one compiled function per (model structure, shape)
def _sum_logprobs(model: FlatModel, params, rest, inputs, targets, mask):
    """Per row: sum over masked positions of log p(target | inputs up to there), in float32."""
    logits = model.merge(params, rest)(inputs).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(mask, picked, 0.0), axis=-1)


def buckets(seq_len: int) -> list[int]:
    """The padded input lengths: powers of two from MIN_BUCKET, and seq_len itself."""
    out, n = [], MIN_BUCKET
    while n < seq_len:
        out.append(n)
        n *= 2
    return [*out, seq_len]


class Scorer:
    """score(requests) -> float64 array of summed log-probabilities, one per (tokens, n_scored) request."""

    def __init__(self, model: nnx.Module, batch_size: int = 32, seq_len: int | None = None):
        if batch_size < 1:
            raise DataError(f"evaluation batch size {batch_size}: must be a positive integer")
        self.seq_len = seq_len or model.cfg.seq_len
        self.batch_size = batch_size
        self.flat, self.params, self.rest = FlatModel.split(model)

    def window(self, tokens: np.ndarray, n_scored: int) -> tuple[np.ndarray, int]:
        """(tokens left-truncated to seq_len+1, n_scored); an empty context or a continuation too long is an error."""
        if n_scored < 1:
            raise DataError("a continuation encodes to no tokens; every choice needs some text")
        if len(tokens) - n_scored < 1:
            raise DataError("a context encodes to no tokens; the model needs at least one token before a continuation")
        if n_scored > self.seq_len:
            raise DataError(f"a continuation of {n_scored} tokens does not fit the model's seq_len {self.seq_len}")
        return tokens[-(self.seq_len + 1):], n_scored

    def __call__(self, requests: list[tuple[np.ndarray, int]]) -> np.ndarray:
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]))
        sizes = buckets(self.seq_len)
        scores = np.zeros(len(requests), dtype=np.float64)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            longest = max(len(requests[i][0]) - 1 for i in chunk)
            width = next(b for b in sizes if b >= longest)
            inputs = np.zeros((self.batch_size, width), np.int32)
            targets = np.zeros((self.batch_size, width), np.int32)
            mask = np.zeros((self.batch_size, width), bool)
            for row, i in enumerate(chunk):
                tokens, n_scored = requests[i]
                n = len(tokens) - 1
                inputs[row, :n], targets[row, :n] = tokens[:-1], tokens[1:]
                mask[row, n - n_scored:n] = True
            sums = np.asarray(_sum_logprobs(self.flat, self.params, self.rest, inputs, targets, mask), dtype=np.float64)
            scores[chunk] = sums[:len(chunk)]
        return scores
