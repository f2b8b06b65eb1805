"""A synthetic source with a known entropy rate: a random order-k Markov chain over a small vocabulary.

Its transition rows are Dirichlet(concentration) draws, so every probability is positive and the chain is ergodic.
The entropy rate H = sum_s pi(s) H(P(. | s)) is computed exactly from the stationary distribution pi of the k-gram
state chain, so a scaling-law fit's irreducible loss E can be checked against the truth.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from bitnet_jax.errors import DataError

_CHAINS = 256  # the stream is drawn as this many independent stationary chains, concatenated (vectorised sampling)


@dataclass(frozen=True)
class MarkovSpec:
    vocab: int = 16
    order: int = 2
    concentration: float = 0.5  # Dirichlet parameter of each row: smaller = more predictable
    tokens: int = 2_000_000
    seed: int = 0

    def __post_init__(self):
        if not 2 <= self.vocab <= 256 or not 1 <= self.order or self.vocab ** self.order > 1 << 16:
            raise DataError(f"markov source: need 2 <= vocab <= 256, order >= 1 and vocab^order <= 65536 "
                            f"(got vocab={self.vocab}, order={self.order})")
        if self.concentration <= 0 or self.tokens < 1000:
            raise DataError("markov source: concentration must be > 0 and tokens >= 1000")


def transition_matrix(spec: MarkovSpec) -> np.ndarray:
    """P[s, x] = p(next = x | last k symbols = s), states s indexed base-vocab, oldest symbol first."""
    rng = np.random.default_rng([spec.seed, spec.vocab, spec.order])
    return rng.dirichlet(np.full(spec.vocab, spec.concentration), size=spec.vocab ** spec.order)


def _next_state(states: np.ndarray, symbols: np.ndarray, spec: MarkovSpec) -> np.ndarray:
    return (states * spec.vocab + symbols) % (spec.vocab ** spec.order)


def stationary(P: np.ndarray, spec: MarkovSpec, tol: float = 1e-13) -> np.ndarray:
    """The stationary distribution of the k-gram state chain, by power iteration."""
    n_states = P.shape[0]
    states = np.arange(n_states)
    pi = np.full(n_states, 1.0 / n_states)
    for _ in range(100_000):
        new = np.zeros(n_states)
        for x in range(spec.vocab):
            np.add.at(new, _next_state(states, x, spec), pi * P[:, x])
        if np.abs(new - pi).sum() < tol:
            return new
        pi = new
    return pi


def entropy_rate(spec: MarkovSpec) -> float:
    """H in nats per token."""
    P = transition_matrix(spec)
    pi = stationary(P, spec)
    return float(-(pi[:, None] * P * np.log(P)).sum())


def window_floor(spec: MarkovSpec, seq_len: int) -> float:
    """The lowest mean loss (nats per target) any model can reach on windows of seq_len targets drawn from the
    stationary chain: the first k targets lack full context. Equals (H(x_1..x_{T+1}) - H(x_1)) / T."""
    P = transition_matrix(spec)
    pi = stationary(P, spec)
    h_rate = float(-(pi[:, None] * P * np.log(P)).sum())
    k, t = spec.order, seq_len
    if t + 1 < k:
        raise DataError(f"markov source: seq_len {seq_len} is shorter than the order {k}")
    h_kgram = float(-(pi * np.log(pi)).sum())
    first = pi.reshape((spec.vocab,) * k).sum(axis=tuple(range(1, k))) if k > 1 else pi
    h_first = float(-(first * np.log(first)).sum())
    return (h_kgram + (t + 1 - k) * h_rate - h_first) / t


def sample(spec: MarkovSpec) -> np.ndarray:
    """`spec.tokens` symbols (uint16): _CHAINS stationary chains drawn in lock step, concatenated."""
    P = transition_matrix(spec)
    pi = stationary(P, spec)
    cdf = np.cumsum(P, axis=1)
    cdf[:, -1] = 1.0
    rng = np.random.default_rng([spec.seed, 1])
    length = -(-spec.tokens // _CHAINS)
    states = rng.choice(len(pi), size=_CHAINS, p=pi)
    out = np.empty((_CHAINS, length), dtype=np.uint16)
    u = rng.random((length, _CHAINS))
    for i in range(length):
        x = (u[i][:, None] > cdf[states]).sum(axis=1)
        out[:, i] = x
        states = _next_state(states, x, spec)
    return out.reshape(-1)[: spec.tokens]


def digest(spec: MarkovSpec) -> str:
    return hashlib.sha256(repr(spec).encode()).hexdigest()
