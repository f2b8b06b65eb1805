"""A candidate for absmedian's step cost (the sweep calibration found its median doubling a 21M step on the H200,
experiments/sweep_throughput/README.md part 4), not yet measured on a GPU.

`jnp.median` sorts every weight matrix each step. The median of |W| needs only the one or two middle order
statistics, and non-negative float32 values order like their bit patterns as unsigned integers, so a radix select
finds them exactly: four passes over the array, each counting the elements (among those matching the digits chosen
so far) per value of the next 8 bits, then picking the digit whose running count passes the rank. The result is the
same float32 as `jnp.median` (the two middle values combined as 0.5 a + 0.5 b, as jnp.quantile does; NaN if any
input is NaN). `install()` makes `bitnet_jax.quant`'s absmedian use it; `uninstall()` restores `jnp.median`.
`check()` compares it with `jnp.median` on random, tied, zero and grouped inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax import quant

DIGITS = jnp.arange(256, dtype=jnp.uint32)


def _select(bits: jax.Array, rank: jax.Array) -> jax.Array:
    """The rank-th smallest (0-based) of each row of `bits` (rows, m) uint32, as uint32 (rows,)."""
    prefix = jnp.zeros(bits.shape[:1], jnp.uint32)
    rank = rank.astype(jnp.int32)
    for shift in (24, 16, 8, 0):
        digit = (bits >> shift) & 255
        hits = digit[:, :, None] == DIGITS  # (rows, m, 256), fused into the reduction
        if shift < 24:  # only the elements whose higher digits are the ones chosen so far
            hits = hits & ((bits >> (shift + 8)) == (prefix[:, None] >> (shift + 8)))[:, :, None]
        counts = jnp.sum(hits, axis=1, dtype=jnp.int32)
        running = jnp.cumsum(counts, axis=1)
        chosen = jnp.argmax(running > rank[:, None], axis=1)
        below = jnp.take_along_axis(running - counts, chosen[:, None], axis=1)[:, 0]
        rank = rank - below
        prefix = prefix | (chosen.astype(jnp.uint32) << shift)
    return prefix


def radix_median(x, axis=None, keepdims=False):
    """jnp.median of a non-negative float32 array (|W|), by radix selection instead of a sort."""
    x = jnp.asarray(x, jnp.float32)
    axes = tuple(range(x.ndim)) if axis is None else tuple(a % x.ndim for a in np.atleast_1d(axis))
    kept = [a for a in range(x.ndim) if a not in axes]
    rows = jnp.transpose(x, kept + list(axes)).reshape(int(np.prod([x.shape[a] for a in kept])), -1)
    m = rows.shape[1]
    bits = jax.lax.bitcast_convert_type(jnp.where(rows == 0, 0.0, rows), jnp.uint32)  # -0.0 as +0.0
    low, high = (jax.lax.bitcast_convert_type(_select(bits, jnp.full(rows.shape[:1], r)), jnp.float32)
                 for r in ((m - 1) // 2, m // 2))
    weight = jnp.float32(0.5 if m % 2 == 0 else 0.0)
    out = low * (1 - weight) + high * weight
    out = jnp.where(jnp.any(jnp.isnan(rows), axis=1), jnp.nan, out)
    shape = [1 if a in axes else x.shape[a] for a in range(x.ndim)] if keepdims else [x.shape[a] for a in kept]
    return out.reshape(shape)


ORIGINAL = quant.ternary_absmedian


def _absmedian(w, *, groups=1, axis=-1, ste="identity"):
    quant._check_ste(ste)
    w = jnp.asarray(w)
    codes, scale, v = quant._ternary(w, radix_median, groups, axis)
    return quant._ste_output(w, codes * scale, jnp.abs(v) <= 1, ste)


def install() -> None:
    quant.ternary_absmedian = _absmedian


def uninstall() -> None:
    quant.ternary_absmedian = ORIGINAL


def check() -> int:
    """How many of the cases differ from jnp.median (bit for bit); 0 is the pass."""
    rng = np.random.default_rng(0)
    cases = [np.abs(rng.normal(size=s)).astype(np.float32) for s in [(7,), (8,), (33, 17), (64, 48), (3, 5, 6)]]
    cases += [np.abs(rng.integers(-3, 4, size=(40, 9))).astype(np.float32),  # ties and zeros
              np.zeros((5, 4), np.float32), np.full((6,), 2.5, np.float32),
              np.abs(rng.normal(size=(16, 16)) * 1e-30).astype(np.float32)]  # subnormals
    bad = 0
    for x in cases:
        for axis, keepdims in [(None, False), (None, True), (0, True), (-1, False), (tuple(range(x.ndim)), True)]:
            got, want = radix_median(x, axis=axis, keepdims=keepdims), jnp.median(x, axis=axis, keepdims=keepdims)
            bad += got.shape != want.shape or not np.array_equal(np.asarray(got), np.asarray(want))
    w = rng.normal(size=(24, 12)).astype(np.float32)
    for groups, axis in [(1, -1), (3, -1), (4, 0)]:
        want = ORIGINAL(w, groups=groups, axis=axis)
        bad += not np.array_equal(np.asarray(_absmedian(w, groups=groups, axis=axis)), np.asarray(want))
    return bad


if __name__ == "__main__":
    print(f"radix median vs jnp.median: {check()} case(s) differ")
