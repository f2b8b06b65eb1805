"""bitnet_jax.quant against float64 numpy re-implementations of the paper formulas."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitnet_jax import quant

EPS = 1e-5
SHAPES = [(7,), (16, 32), (3, 5, 64), (2, 4, 8, 16)]
SCALES = [1e-3, 1.0, 1e3]


# ---------------------------------------------------------------- float64 references


def np_grouped(fn, x, axis, groups, per_slice):
    """fn per contiguous chunk of `axis` (over that axis only, or over the whole chunk), full shape."""
    axis %= x.ndim
    out = np.empty_like(x)
    size = x.shape[axis] // groups
    for g in range(groups):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(g * size, (g + 1) * size)
        idx = tuple(idx)
        out[idx] = fn(x[idx], axis=axis if per_slice else None, keepdims=True)
    return out


REL = 1e-5  # well above float32 error in the scaled value, well below the spacing of half-integers


def near_half(v):
    """Elements whose round-half-to-even may differ between float32 and float64."""
    return np.abs(np.abs(v - np.floor(v)) - 0.5) <= REL * np.maximum(1.0, np.abs(v))


def near(v, edges):
    return np.any([np.abs(v - e) <= REL * max(1.0, abs(e)) for e in edges], axis=0)


def ref_ternary(w, stat, groups=1, axis=-1):
    s = 1.0 / np.maximum(np_grouped(stat, np.abs(w), axis, groups, False), EPS)
    v = w * s
    y = np.clip(np.round(v), -1, 1) / s
    return y, np.abs(v) <= 1, near_half(v), near(v, [-1, 1])


def ref_binary(w, groups=1, axis=-1):
    alpha = np_grouped(np.mean, w, axis, groups, False)
    beta = np_grouped(np.mean, np.abs(w), axis, groups, False)
    c = w - alpha
    y = np.where(c > 0, 1.0, -1.0) * beta
    ratio = np.abs(c) / beta
    # exact ties (w == alpha in float64, e.g. one-element groups) are exact in float32 too
    return y, ratio <= 1, (ratio > 0) & (ratio <= REL), np.abs(ratio - 1) <= REL


def ref_act_absmax(x, bits, per_token, groups=1):
    q, lo, hi = 2 ** (bits - 1) - 1, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    s = q / np.maximum(np_grouped(np.max, np.abs(x), -1, groups, per_token), EPS)
    v = x * s
    y = np.clip(np.round(v), lo, hi) / s
    return y, (v >= lo) & (v <= hi), near_half(v), near(v, [lo, hi])


def ref_act_absmean(x, bits, groups=1):
    q, lo, hi = 2 ** (bits - 1) - 1, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    beta = np_grouped(np.mean, np.abs(x), -1, groups, True)
    v = np.sqrt(q) * x / (beta + EPS)
    y = beta / np.sqrt(q) * np.clip(np.round(v), lo, hi)
    return y, (v >= lo) & (v <= hi), near_half(v), near(v, [lo, hi])


def ref_act_zero_point(x, bits, per_token, groups=1):
    qb = 2 ** (bits - 1)
    eta = np_grouped(np.min, x, -1, groups, per_token)
    s = qb / np.maximum(np_grouped(np.max, np.abs(x), -1, groups, per_token), EPS)
    v = (x - eta) * s
    y = np.clip(np.round(v), 0, qb) / s + eta
    return y, (v >= 0) & (v <= qb), near_half(v), near(v, [0, qb])


# ---------------------------------------------------------------- helpers


def divisor(n):
    """A group count > 1 dividing n (n itself when n is prime)."""
    return next((d for d in (4, 3, 2) if n % d == 0), n)


def rand(shape, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def jitted(fn, **kw):
    """fn compiled once per configuration: far cheaper in tests than eager op-by-op dispatch."""
    return jax.jit(functools.partial(fn, **kw))


def assert_matches(y, ref, x):
    """Equal to the float64 reference except where float32 may round a half-integer differently."""
    ref_y, _, amb, _ = ref
    assert amb.sum() <= max(2, 0.02 * amb.size), "too many ambiguous elements: test would be vacuous"
    y = np.asarray(y, np.float64)
    atol = 1e-5 * (np.abs(x).max() + EPS)  # zero-point output codes/s + eta may cancel
    np.testing.assert_allclose(y[~amb], ref_y[~amb], rtol=1e-5, atol=atol)


def assert_grad(f, x, ref, ste, seed=1):
    """grad of sum(f(x) * r) is r (identity) or r * keep away from the clip edges (clipped)."""
    _, keep, _, amb = ref
    r = rand(x.shape, seed=seed)
    g = np.asarray(jax.jit(jax.grad(lambda a: jnp.sum(f(a, ste=ste) * r)))(x))
    want = r if ste == "identity" else r * keep
    np.testing.assert_array_equal(g[~amb], want[~amb])


WEIGHT_CASES = [
    (quant.ternary_absmean, functools.partial(ref_ternary, stat=np.mean)),
    (quant.ternary_absmedian, functools.partial(ref_ternary, stat=np.median)),
    (quant.binary_sign, ref_binary),
]
WEIGHT_IDS = ["absmean", "absmedian", "binary"]


def group_axis_cases(shape):
    return [(1, -1), (divisor(shape[-1]), -1), (divisor(shape[0]), 0)]


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("fn,ref", WEIGHT_CASES, ids=WEIGHT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_weight_values(fn, ref, shape):
    for groups, axis in group_axis_cases(shape):
        for i, scale in enumerate(SCALES):
            w = rand(shape, scale, seed=i)
            y = fn(w, groups=groups, axis=axis)
            assert y.shape == w.shape and y.dtype == jnp.float32
            assert_matches(y, ref(w.astype(np.float64), groups=groups, axis=axis), w)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_act_absmax_values(shape, per_token, bits):
    for groups in (1, divisor(shape[-1])):
        for i, scale in enumerate(SCALES):
            x = rand(shape, scale, seed=i)
            y = quant.act_absmax(x, bits, per_token, groups=groups)
            assert y.shape == x.shape
            assert_matches(y, ref_act_absmax(x.astype(np.float64), bits, per_token, groups), x)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_act_absmean_values(shape, bits):
    for groups in (1, divisor(shape[-1])):
        for i, scale in enumerate(SCALES):
            x = rand(shape, scale, seed=i)
            y = quant.act_absmean(x, bits, groups=groups)
            assert y.shape == x.shape
            assert_matches(y, ref_act_absmean(x.astype(np.float64), bits, groups), x)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_act_zero_point_values(shape, per_token, bits):
    for groups in (1, divisor(shape[-1])):
        for i, scale in enumerate(SCALES):
            for x in (np.abs(rand(shape, scale, seed=i)), rand(shape, scale, seed=i)):  # non-negative, signed
                y = quant.act_zero_point(x, bits, per_token, groups=groups)
                assert y.shape == x.shape
                assert_matches(y, ref_act_zero_point(x.astype(np.float64), bits, per_token, groups), x)


# ---------------------------------------------------------------- integer codes


@pytest.mark.parametrize("groups,axis", [(1, -1), (4, -1), (2, 0)])
def test_ternary_codes(groups, axis):
    w = rand((16, 32), 0.02)
    codes, scale = quant.ternary_codes(w, groups=groups, axis=axis)
    assert codes.dtype == jnp.int8 and scale.dtype == jnp.float32 and scale.ndim == w.ndim
    assert set(np.unique(codes)) <= {-1, 0, 1}
    np.testing.assert_array_equal(codes * scale, quant.ternary_absmean(w, groups=groups, axis=axis))


def test_ternary_codes_zero_fraction_on_gaussian():
    codes, _ = jax.jit(quant.ternary_codes)(rand((512, 512)))
    assert 0.25 <= float(np.mean(np.asarray(codes) == 0)) <= 0.37


@pytest.mark.parametrize("groups,axis", [(1, -1), (4, -1), (2, 0)])
def test_binary_codes(groups, axis):
    w = rand((16, 32), 0.02) + 0.01
    codes, scale = quant.binary_codes(w, groups=groups, axis=axis)
    assert codes.dtype == jnp.int8 and scale.dtype == jnp.float32
    assert set(np.unique(codes)) == {-1, 1}
    np.testing.assert_array_equal(codes * scale, quant.binary_sign(w, groups=groups, axis=axis))


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("per_token", [True, False])
def test_act_absmax_codes(bits, per_token):
    x = rand((3, 5, 64), 3.0)
    codes, scale = quant.act_absmax_codes(x, bits, per_token)
    assert codes.dtype == jnp.int8 and scale.dtype == jnp.float32
    assert scale.shape == ((3, 5, 1) if per_token else (1, 1, 1))
    assert -(2 ** (bits - 1)) <= int(codes.min()) and int(codes.max()) <= 2 ** (bits - 1) - 1
    np.testing.assert_array_equal(codes * scale, quant.act_absmax(x, bits, per_token))


@pytest.mark.parametrize("fn", [quant.binary_sign, lambda w: quant.binary_codes(w)[0]], ids=["sign", "codes"])
def test_sign_of_zero_is_minus_one(fn):
    w = np.array([-1.0, 0.0, 1.0, 2.0, 3.0], np.float32)  # mean is exactly 1.0, an element of w
    out = np.asarray(fn(w))
    assert out[2] < 0 and np.all((out > 0) == (w > 1))


def test_sign_of_zero_per_group():
    w = np.array([1.0, 2.0, 3.0, 5.0, 6.0, 7.0], np.float32)  # group means 2 and 6
    codes, _ = quant.binary_codes(w, groups=2)
    np.testing.assert_array_equal(codes, [-1, -1, 1, -1, -1, 1])


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("ste", quant.STE_KINDS)
@pytest.mark.parametrize("fn,ref", WEIGHT_CASES, ids=WEIGHT_IDS)
@pytest.mark.parametrize("groups,axis", [(1, -1), (4, -1), (2, 0)])
def test_weight_grads(ste, fn, ref, groups, axis):
    w = rand((16, 32), 0.02)
    w[::3, ::5] *= 20.0  # outliers far beyond mean|W|
    r = ref(w.astype(np.float64), groups=groups, axis=axis)
    assert 0 < r[1].mean() < 1  # some elements clipped, some kept
    assert_grad(functools.partial(fn, groups=groups, axis=axis), w, r, ste)


@pytest.mark.parametrize("ste", quant.STE_KINDS)
@pytest.mark.parametrize("bits,per_token,groups", [(2, False, 1), (8, True, 4), (4, False, 2)])
def test_act_absmax_grads(ste, bits, per_token, groups):
    x = rand((4, 8, 32), 2.0)
    r = ref_act_absmax(x.astype(np.float64), bits, per_token, groups)
    assert_grad(functools.partial(quant.act_absmax, bits=bits, per_token=per_token, groups=groups), x, r, ste)
    # absmax never clips in exact arithmetic (|x*s| <= Q), so the clipped STE must keep every element
    g = jax.jit(jax.grad(lambda a: jnp.sum(quant.act_absmax(a, bits, per_token, groups=groups, ste=ste))))(x)
    np.testing.assert_array_equal(g, np.ones_like(x))


@pytest.mark.parametrize("ste", quant.STE_KINDS)
@pytest.mark.parametrize("bits,groups", [(2, 1), (4, 1), (4, 4)])
def test_act_absmean_grads(ste, bits, groups):
    x = rand((4, 8, 32), 2.0)
    r = ref_act_absmean(x.astype(np.float64), bits, groups)
    assert 0 < r[1].mean() < 1
    assert_grad(functools.partial(quant.act_absmean, bits=bits, groups=groups), x, r, ste)


@pytest.mark.parametrize("ste", quant.STE_KINDS)
@pytest.mark.parametrize("bits,per_token,groups", [(8, True, 1), (4, False, 1), (2, True, 4)])
def test_act_zero_point_grads(ste, bits, per_token, groups):
    x = rand((4, 8, 32), 2.0)  # signed input: (x - eta) * s exceeds Qb for the large positives
    r = ref_act_zero_point(x.astype(np.float64), bits, per_token, groups)
    assert 0 < r[1].mean() < 1
    assert_grad(functools.partial(quant.act_zero_point, bits=bits, per_token=per_token, groups=groups), x, r, ste)


# ---------------------------------------------------------------- dtype, transforms, edge cases

ALL = {
    "absmean": quant.ternary_absmean,
    "absmedian": quant.ternary_absmedian,
    "binary": quant.binary_sign,
    "act_absmax": functools.partial(quant.act_absmax, bits=8),
    "act_absmax_tensor4": functools.partial(quant.act_absmax, bits=4, per_token=False),
    "act_absmean": quant.act_absmean,
    "act_zero_point": quant.act_zero_point,
    "absmean_g4": functools.partial(quant.ternary_absmean, groups=4),
    "act_absmax_g4": functools.partial(quant.act_absmax, groups=4),
}


@pytest.mark.parametrize("name", ALL)
def test_bf16(name):
    fn = jitted(ALL[name], ste="clipped")
    x = jnp.asarray(rand((16, 32), 0.5), jnp.bfloat16)
    y = fn(x)
    assert y.dtype == jnp.bfloat16
    want = fn(x.astype(jnp.float32)).astype(jnp.bfloat16)
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(want, np.float32), rtol=2**-8, atol=0)
    for ste in quant.STE_KINDS:
        g = jax.jit(jax.grad(lambda a: jnp.sum(ALL[name](a, ste=ste).astype(jnp.float32))))(x)
        assert g.dtype == jnp.bfloat16


@pytest.mark.parametrize("name", ALL)
def test_jit_and_vmap_match_eager(name):
    fn = functools.partial(ALL[name], ste="clipped")
    xs = rand((3, 16, 32), 2.0)
    eager = np.stack([np.asarray(fn(x)) for x in xs])
    tol = dict(rtol=1e-6, atol=1e-6 * np.abs(xs).max())  # XLA may fuse zero-point's codes/s + eta differently
    np.testing.assert_allclose(jax.jit(fn)(xs[0]), eager[0], **tol)
    np.testing.assert_allclose(jax.jit(jax.vmap(fn))(xs), eager, **tol)


@pytest.mark.parametrize("name", ALL)
def test_zero_input_is_finite(name):
    x = jnp.zeros((16, 32), jnp.float32)
    assert np.all(np.asarray(ALL[name](x)) == 0)
    for ste in quant.STE_KINDS:
        g = jax.jit(jax.grad(lambda a: jnp.sum(ALL[name](a, ste=ste))))(x)
        assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize(
    "fn",
    [quant.ternary_absmean, quant.act_absmax, quant.binary_sign],
    ids=["ternary", "act_absmax", "binary"],
)
def test_groups_one_is_a_plain_reduction(fn):
    assert "reshape" not in str(jax.make_jaxpr(fn)(jnp.ones((4, 16))))


GROUPED = [
    quant.ternary_absmean,
    quant.ternary_absmedian,
    quant.binary_sign,
    quant.act_absmax,
    quant.act_absmean,
    quant.act_zero_point,
    quant.ternary_codes,
    quant.binary_codes,
    quant.act_absmax_codes,
]


@pytest.mark.parametrize("fn", GROUPED, ids=lambda f: f.__name__)
def test_indivisible_groups_raise(fn):
    with pytest.raises(ValueError, match=r"groups=3 .*size 10"):
        fn(jnp.ones((4, 10)), groups=3)


@pytest.mark.parametrize("fn", GROUPED[:6], ids=lambda f: f.__name__)
def test_unknown_ste_raises(fn):
    with pytest.raises(ValueError, match="identity, clipped"):
        fn(jnp.ones((4, 8)), ste="tanh")


def test_bad_bits_raise():
    with pytest.raises(ValueError, match="bits"):
        quant.act_absmax(jnp.ones((2, 4)), bits=1)
    with pytest.raises(ValueError, match="bits"):
        quant.act_absmax_codes(jnp.ones((2, 4)), bits=9)
