"""BitNet quantisers: fake-quant (quantise, then dequantise) with straight-through gradients,
plus integer forms for packing and integer inference.

Weights
  ternary_absmean    W -> {-1, 0, 1} * mean|W|            BitNet b1.58 (Ma et al., 2024)
  ternary_absmedian  W -> {-1, 0, 1} * median|W|          BitNet b1.58 Reloaded (Nielsen & Schneider-Kamp, 2024)
  binary_sign        W -> Sign(W - mean W) * mean|W|      BitNet (Wang et al., 2023)
Activations
  act_absmax         b-bit absmax, per token or per tensor              BitNet (2023), BitNet b1.58
  act_absmean        b-bit absmean, per token (4 bits in the paper)     BitNet a4.8 (Wang et al., 2024)
  act_zero_point     b-bit min/max with a zero point, for non-negative inputs (before non-linearities)  BitNet (2023)
Integer forms
  ternary_codes, binary_codes, act_absmax_codes return (int8 codes, float32 scale) with
  codes * scale equal (in float32) to ternary_absmean, binary_sign, act_absmax respectively.

Conventions: statistics in float32, output in the input dtype; round half to even; EPS = 1e-5.
groups=G is BitNet's model-parallel group quantisation: the weight `axis` (activations: the last
axis) is split into G contiguous equal chunks and every statistic is taken per chunk.
ste="identity" passes the gradient straight through (dy/dx = 1); ste="clipped" zeroes it where the
pre-rounding scaled value lies outside the clip range.
"""

import math

import jax
import jax.numpy as jnp

__all__ = [
    "EPS",
    "STE_KINDS",
    "ternary_absmean",
    "ternary_absmedian",
    "binary_sign",
    "act_absmax",
    "act_absmean",
    "act_zero_point",
    "ternary_codes",
    "binary_codes",
    "act_absmax_codes",
]

EPS = 1e-5
STE_KINDS = ("identity", "clipped")


# ---------------------------------------------------------------- checks


def _check_ste(ste):
    if ste not in STE_KINDS:
        raise ValueError(f"unknown ste {ste!r}; valid values: {', '.join(STE_KINDS)}")


def _check_bits(bits, max_bits=None):
    # bits=1 would give Q = 0 (division by zero); int8 codes cannot hold more than 8 bits
    if not isinstance(bits, int) or bits < 2 or (max_bits is not None and bits > max_bits):
        top = max_bits if max_bits is not None else "any"
        raise ValueError(f"bits must be an integer in [2, {top}], got {bits!r}")


def _check_groups(size, groups, axis):
    if not isinstance(groups, int) or groups < 1 or size % groups:
        raise ValueError(f"groups={groups!r} must be a positive integer dividing size {size} of axis {axis}")


# ---------------------------------------------------------------- statistics


def _grouped(fn, x, *, axis, groups, per_slice):
    """fn(x) per chunk of `axis`, over `axis` only (per_slice) or over all axes; broadcasts against x."""
    axis = axis % x.ndim
    axes = (axis,) if per_slice else tuple(range(x.ndim))
    _check_groups(x.shape[axis], groups, axis)
    if groups == 1:
        return fn(x, axis=axes, keepdims=True)
    n, chunk = x.shape[axis], x.shape[axis] // groups
    split = x.reshape(x.shape[:axis] + (groups, chunk) + x.shape[axis + 1 :])
    # reduce the chunk axis (axis + 1) and the other requested axes, shifted past the new group axis
    red = tuple(a + (a > axis) for a in axes if a != axis) + (axis + 1,)
    stat = fn(split, axis=red, keepdims=True)
    stat = jnp.broadcast_to(stat, stat.shape[: axis + 1] + (chunk,) + stat.shape[axis + 2 :])
    return stat.reshape(stat.shape[:axis] + (n,) + stat.shape[axis + 2 :])


# ---------------------------------------------------------------- straight-through estimators


@jax.custom_vjp
def _straight_through(x, q):
    return q


def _st_fwd(x, q):
    return q, None


def _st_bwd(_, g):
    return g, jnp.zeros_like(g)


_straight_through.defvjp(_st_fwd, _st_bwd)


@jax.custom_vjp
def _straight_through_masked(x, q, keep):
    return q


def _stm_fwd(x, q, keep):
    return q, keep


def _stm_bwd(keep, g):
    return g * keep, jnp.zeros_like(g), jnp.zeros_like(keep)


_straight_through_masked.defvjp(_stm_fwd, _stm_bwd)


def _ste_output(x, q, keep, ste):
    """Quantised value q (float32) in x's dtype, with the straight-through gradient onto x."""
    q = jax.lax.stop_gradient(q.astype(x.dtype))  # the quantiser itself is never differentiated
    if ste == "identity":
        return _straight_through(x, q)
    return _straight_through_masked(x, q, jax.lax.stop_gradient(keep.astype(x.dtype)))


# ---------------------------------------------------------------- quantiser cores (float32)


def _ternary(w, stat, groups, axis):
    """(codes in {-1,0,1}, scale = clamped stat of |W|, pre-rounding value W/scale), all float32."""
    wf = w.astype(jnp.float32)
    scale = jnp.maximum(_grouped(stat, jnp.abs(wf), axis=axis, groups=groups, per_slice=False), EPS)
    v = wf / scale
    return jnp.clip(jnp.round(v), -1, 1), scale, v


def _binary(w, groups, axis):
    """(codes in {-1,+1}, beta = mean|W|, W - alpha), all float32; Sign(0) = -1."""
    wf = w.astype(jnp.float32)
    alpha = _grouped(jnp.mean, wf, axis=axis, groups=groups, per_slice=False)
    beta = _grouped(jnp.mean, jnp.abs(wf), axis=axis, groups=groups, per_slice=False)
    centred = wf - alpha
    return jnp.where(centred > 0, 1.0, -1.0).astype(jnp.float32), beta, centred


def _absmax(x, bits, per_token, groups):
    """(integer-valued codes, scale = absmax/Q, pre-rounding value x*s), all float32."""
    xf = x.astype(jnp.float32)
    q = 2 ** (bits - 1) - 1
    amax = jnp.maximum(_grouped(jnp.max, jnp.abs(xf), axis=-1, groups=groups, per_slice=per_token), EPS)
    v = xf / amax * q  # divide first so the absmax element lands exactly on +-Q (never falsely clipped)
    return jnp.clip(jnp.round(v), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1), amax / q, v


# ---------------------------------------------------------------- weight quantisers


def ternary_absmean(w, *, groups=1, axis=-1, ste="identity"):
    """BitNet b1.58: W -> clip(round(W / mean|W|), -1, 1) * mean|W|. Clipped STE: zero where |W*s| > 1."""
    _check_ste(ste)
    w = jnp.asarray(w)
    codes, scale, v = _ternary(w, jnp.mean, groups, axis)
    return _ste_output(w, codes * scale, jnp.abs(v) <= 1, ste)


def ternary_absmedian(w, *, groups=1, axis=-1, ste="identity"):
    """BitNet b1.58 Reloaded: as ternary_absmean with median|W| in place of mean|W|."""
    _check_ste(ste)
    w = jnp.asarray(w)
    codes, scale, v = _ternary(w, jnp.median, groups, axis)
    return _ste_output(w, codes * scale, jnp.abs(v) <= 1, ste)


def binary_sign(w, *, groups=1, axis=-1, ste="identity"):
    """BitNet (2023): W -> Sign(W - mean W) * mean|W|, with Sign(0) = -1.

    Clipped STE is the hard-tanh analogue: the gradient is zeroed where |(W - alpha) / beta| > 1,
    evaluated as |W - alpha| > beta so that an all-zero tensor (beta = 0) keeps its gradient.
    """
    _check_ste(ste)
    w = jnp.asarray(w)
    codes, beta, centred = _binary(w, groups, axis)
    return _ste_output(w, codes * beta, jnp.abs(centred) <= beta, ste)


# ---------------------------------------------------------------- activation quantisers


def act_absmax(x, bits=8, per_token=True, *, groups=1, ste="identity"):
    """BitNet absmax: s = Q / max|x| (per token over the last axis, or per tensor), Q = 2^(bits-1) - 1;
    x -> clip(round(x*s), -2^(bits-1), 2^(bits-1) - 1) / s."""
    _check_ste(ste)
    _check_bits(bits)
    x = jnp.asarray(x)
    codes, scale, v = _absmax(x, bits, per_token, groups)
    keep = (v >= -(2 ** (bits - 1))) & (v <= 2 ** (bits - 1) - 1)
    return _ste_output(x, codes * scale, keep, ste)


def act_absmean(x, bits=4, *, groups=1, ste="identity"):
    """BitNet a4.8 per-token absmean: beta = mean|x| over the last axis, Q = 2^(bits-1) - 1;
    x -> beta/sqrt(Q) * clip(round(sqrt(Q) * x / (beta + EPS)), -2^(bits-1), 2^(bits-1) - 1)."""
    _check_ste(ste)
    _check_bits(bits)
    x = jnp.asarray(x)
    xf = x.astype(jnp.float32)
    root_q = math.sqrt(2 ** (bits - 1) - 1)
    beta = _grouped(jnp.mean, jnp.abs(xf), axis=-1, groups=groups, per_slice=True)
    v = root_q * xf / (beta + EPS)  # +EPS (not max) as in the paper
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    y = beta / root_q * jnp.clip(jnp.round(v), lo, hi)
    return _ste_output(x, y, (v >= lo) & (v <= hi), ste)


def act_zero_point(x, bits=8, per_token=True, *, groups=1, ste="identity"):
    """BitNet (2023) zero-point variant for non-negative inputs: eta = min x, gamma = max|x|,
    Qb = 2^(bits-1), s = Qb / gamma; x -> clip(round((x - eta) * s), 0, Qb) / s + eta."""
    _check_ste(ste)
    _check_bits(bits)
    x = jnp.asarray(x)
    xf = x.astype(jnp.float32)
    qb = 2 ** (bits - 1)
    eta = _grouped(jnp.min, xf, axis=-1, groups=groups, per_slice=per_token)
    gamma = jnp.maximum(_grouped(jnp.max, jnp.abs(xf), axis=-1, groups=groups, per_slice=per_token), EPS)
    v = (xf - eta) / gamma * qb  # divide first so x = gamma (with eta = 0) lands exactly on Qb
    y = jnp.clip(jnp.round(v), 0, qb) / (qb / gamma) + eta
    return _ste_output(x, y, (v >= 0) & (v <= qb), ste)


# ---------------------------------------------------------------- integer forms


def ternary_codes(w, *, groups=1, axis=-1):
    """(int8 codes in {-1,0,1}, float32 scale = clamped mean|W|) with codes * scale == ternary_absmean(w)."""
    codes, scale, _ = _ternary(jnp.asarray(w), jnp.mean, groups, axis)
    return codes.astype(jnp.int8), scale


def binary_codes(w, *, groups=1, axis=-1):
    """(int8 codes in {-1,+1}, float32 scale = beta = mean|W|) with codes * scale == binary_sign(w)."""
    codes, beta, _ = _binary(jnp.asarray(w), groups, axis)
    return codes.astype(jnp.int8), beta


def act_absmax_codes(x, bits=8, per_token=True, *, groups=1):
    """(int8 codes, float32 scale = absmax/Q) with codes * scale == act_absmax(x, bits, per_token)."""
    _check_bits(bits, max_bits=8)
    codes, scale, _ = _absmax(jnp.asarray(x), bits, per_token, groups)
    return codes.astype(jnp.int8), scale
