"""A candidate for absmedian's step cost (quant_cost.md: its median makes the 0.8M step 2.6x fp16's on the H200),
not yet measured on a GPU.

`jnp.median` sorts with JAX's float comparator (a total order that places NaNs), which XLA's GPU backend sorts with
its own compare-exchange network: about log2(n)^2 / 2 stages for n weights, many kernels per weight matrix, every
step. |W| is non-negative, and non-negative float32 values order like their bit patterns as unsigned integers, so
sorting the bit patterns gives the same order with a plain integer comparator, which XLA can hand to CUB's radix
sort. The median is then the same float32 as `jnp.median` (the two middle values combined as 0.5 a + 0.5 b, as
jnp.quantile does; NaN if the slice holds one). `install()` makes `bitnet_jax.quant`'s absmedian use it;
`uninstall()` restores `jnp.median`. `check()` compares it with `jnp.median` bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax import quant


def bits_median(x, axis=None, keepdims=False):
    """jnp.median of a non-negative float32 array (|W|), sorting its bit patterns as uint32."""
    x = jnp.asarray(x, jnp.float32)
    axes = tuple(range(x.ndim)) if axis is None else tuple(a % x.ndim for a in np.atleast_1d(axis))
    kept = [a for a in range(x.ndim) if a not in axes]
    rows = jnp.transpose(x, kept + list(axes)).reshape(int(np.prod([x.shape[a] for a in kept])), -1)
    m = rows.shape[1]
    bits = jnp.sort(jax.lax.bitcast_convert_type(jnp.where(rows == 0, 0.0, rows), jnp.uint32), axis=1)  # -0 as +0
    low, high = (jax.lax.bitcast_convert_type(bits[:, r], jnp.float32) for r in ((m - 1) // 2, m // 2))
    weight = jnp.float32(0.5 if m % 2 == 0 else 0.0)
    out = low * (1 - weight) + high * weight
    out = jnp.where(jnp.any(jnp.isnan(rows), axis=1), jnp.nan, out)
    shape = [1 if a in axes else x.shape[a] for a in range(x.ndim)] if keepdims else [x.shape[a] for a in kept]
    return out.reshape(shape)


ORIGINAL = quant.ternary_absmedian


def _absmedian(w, *, groups=1, axis=-1, ste="identity"):
    quant._check_ste(ste)
    w = jnp.asarray(w)
    codes, scale, v = quant._ternary(w, bits_median, groups, axis)
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
              np.abs(rng.normal(size=(16, 16)) * 1e-30).astype(np.float32),  # subnormals
              np.array([0.0, -0.0, 1.0, 3.0], np.float32), np.array([1.0, np.nan, 2.0], np.float32)]
    bad = 0
    for x in cases:
        for axis, keepdims in [(None, False), (None, True), (0, True), (-1, False), (tuple(range(x.ndim)), True)]:
            got, want = bits_median(x, axis=axis, keepdims=keepdims), jnp.median(x, axis=axis, keepdims=keepdims)
            bad += got.shape != want.shape or not np.array_equal(np.asarray(got), np.asarray(want), equal_nan=True)
    w = rng.normal(size=(24, 12)).astype(np.float32)
    for groups, axis in [(1, -1), (3, -1), (4, 0)]:
        want = ORIGINAL(w, groups=groups, axis=axis)
        bad += not np.array_equal(np.asarray(_absmedian(w, groups=groups, axis=axis)), np.asarray(want))
    return bad


if __name__ == "__main__":
    print(f"bit-pattern sort median vs jnp.median: {check()} case(s) differ")
