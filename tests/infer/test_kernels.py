"""W2A8 GEMV: the Pallas kernel (interpret mode on CPU) and the XLA path against float64 numpy on the original codes."""

from __future__ import annotations

import numpy as np
import pytest

from bitnet_jax.errors import UserError
from bitnet_jax.infer import kernels
from bitnet_jax.infer.kernels import TileConfig
from bitnet_jax.infer.pack import pack_ternary


def _problem(out, n_in, batch, seed, *, pow2_scales=True):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-1, 2, (out, n_in)).astype(np.int8)
    x = rng.integers(-128, 128, (batch, n_in)).astype(np.int8)
    if pow2_scales:  # exact in float32: the kernel's output must equal the float64 reference bit for bit
        x_scale = 2.0 ** -rng.integers(0, 8, batch).astype(np.float32)
        w_scale = np.float32(0.25)
    else:
        x_scale = rng.uniform(1e-3, 1.0, batch).astype(np.float32)
        w_scale = np.float32(rng.uniform(0.01, 1.0))
    return codes, x, x_scale, w_scale


def _reference(codes, x, x_scale, w_scale):
    """float64: (x @ W.T) * x_scale * w_scale straight from the unpacked codes (no packing involved)."""
    acc = x.astype(np.float64) @ codes.astype(np.float64).T
    return acc * x_scale.astype(np.float64)[:, None] * np.float64(w_scale)


@pytest.mark.parametrize("out,n_in,batch,config", [
    (64, 128, 1, TileConfig(block_rows=4, block_k=8, variant="dp4a")),  # tiles divide the shape
    (37, 50, 1, TileConfig(block_rows=4, block_k=4, variant="dp4a")),  # ragged rows, words and last word
    (37, 50, 4, TileConfig(block_rows=4, block_k=2, split_k=3, variant="int")),  # split-K, batch 4
    (30, 21, 4, TileConfig(block_rows=2, block_k=4, variant="f32")),
    (45, 36, 1, TileConfig(block_rows=8, block_k=2, split_k=2, variant="bf16")),
    (37, 50, 3, TileConfig(block_rows=2, block_k=4, split_k=2, variant="dp4a_rows")),
    (64, 128, 1, TileConfig(block_rows=4, block_k=8, variant="dp4a_rows")),
])
def test_pallas_kernel_is_exact(out, n_in, batch, config):
    codes, x, x_scale, w_scale = _problem(out, n_in, batch, seed=out * n_in + batch)
    y = np.asarray(kernels.w2a8_gemv(x, x_scale, pack_ternary(codes), w_scale, out, interpret=True, config=config))
    assert y.shape == (batch, out) and y.dtype == np.float32
    np.testing.assert_array_equal(y, _reference(codes, x, x_scale, w_scale))


def test_pallas_kernel_random_scales_and_word_input():
    codes, x, x_scale, w_scale = _problem(23, 40, 2, seed=7, pow2_scales=False)
    words = kernels.packed_words(pack_ternary(codes))
    y = kernels.w2a8_gemv(x, x_scale[:, None], words, w_scale, 23, interpret=True,
                          config=TileConfig(block_rows=4, block_k=4))
    np.testing.assert_allclose(np.asarray(y), _reference(codes, x, x_scale, w_scale), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("out,n_in,batch", [(130, 250, 1), (64, 64, 3)])
def test_xla_reference_path(out, n_in, batch):
    codes, x, x_scale, w_scale = _problem(out, n_in, batch, seed=out + n_in)
    y = kernels.w2a8_gemv_reference(x, x_scale, pack_ternary(codes), w_scale, out)
    np.testing.assert_array_equal(np.asarray(y), _reference(codes, x, x_scale, w_scale))
    # on a machine without a GPU, interpret=None takes this path
    y_auto = kernels.w2a8_gemv(x, x_scale, pack_ternary(codes), w_scale, out)
    np.testing.assert_array_equal(np.asarray(y_auto), np.asarray(y))


@pytest.mark.parametrize("exact_inner", [kernels.EXACT_INNER, 64])  # 64: the int32 fallback for long inputs
def test_code_product_is_the_exact_integer_sum(monkeypatch, exact_inner):
    monkeypatch.setattr(kernels, "EXACT_INNER", exact_inner)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (3, 8640)).astype(np.int8)
    x[0] = -128  # the largest sums: every product -128 (or +128) at the 3B model's longest input
    w = rng.integers(-1, 2, (8640, 40)).astype(np.int8)
    w[:, 0] = 1
    w[:, 1] = -1
    want = x.astype(np.int64) @ w.astype(np.int64)
    got = np.asarray(kernels.code_product(x, w, (((1,), (0,)), ((), ()))))
    assert got.dtype == np.float32 and got[0, 0] == -128 * 8640
    np.testing.assert_array_equal(got.astype(np.int64), want)


def test_activation_words_are_the_same_little_endian_bytes():
    x = np.random.default_rng(4).integers(-128, 128, (3, 10)).astype(np.int8)
    padded = np.zeros((3, 12), np.int8)
    padded[:, :10] = x
    np.testing.assert_array_equal(np.asarray(kernels.activation_words(x)), padded.view("<i4"))


def test_packed_words_are_the_same_little_endian_bytes():
    packed = np.random.default_rng(3).integers(0, 256, (5, 10)).astype(np.uint8)
    padded = np.zeros((5, 12), np.uint8)
    padded[:, :10] = packed
    expected = padded.view("<i4")
    np.testing.assert_array_equal(np.asarray(kernels.packed_words(packed)), expected)


def test_bad_inputs_raise_one_line_errors():
    codes, x, x_scale, w_scale = _problem(8, 16, 1, seed=0)
    packed = pack_ternary(codes)
    with pytest.raises(UserError, match="does not fit"):
        kernels.w2a8_gemv(x, x_scale, packed, w_scale, 12)
    with pytest.raises(UserError, match="int8 activation codes"):
        kernels.w2a8_gemv(x.astype(np.float32), x_scale, packed, w_scale, 8)
    with pytest.raises(UserError, match="power of two"):
        kernels.w2a8_gemv(x, x_scale, packed, w_scale, 8, interpret=True, config=TileConfig(block_rows=3))
    with pytest.raises(UserError, match="variant"):
        kernels.w2a8_gemv(x, x_scale, packed, w_scale, 8, interpret=True, config=TileConfig(variant="fp8"))
    with pytest.raises(UserError, match="x_scale=None"):
        kernels.w2a8_gemv(x, None, packed, w_scale, 8)  # int8 codes need their scales
    with pytest.raises(UserError, match="dp4a_rows takes int8"):
        kernels.w2a8_gemv(x.astype(np.float32), None, packed, w_scale, 8, interpret=True,
                          config=TileConfig(variant="dp4a_rows"))


QUANTISING = [v for v in kernels.VARIANTS if v != "dp4a_rows"]  # variants that take float activations


@pytest.mark.parametrize("variant,quantise", [(v, False) for v in kernels.VARIANTS] + [(v, True) for v in QUANTISING])
@pytest.mark.parametrize("out,n_in,batch,split_k", [(3200, 3200, 1, 1), (37, 50, 4, 3)])
def test_kernel_lowers_to_triton_for_cuda(variant, out, n_in, batch, split_k, quantise):
    """Cross-lowering for CUDA on a CPU machine runs every Pallas->Triton lowering rule the GPU build will use."""
    import jax
    import jax.numpy as jnp
    from jax import export

    config = TileConfig(block_rows=16, block_k=64, split_k=split_k, variant=variant)
    words = jax.ShapeDtypeStruct((-(-out // 4), -(-n_in // 4)), jnp.int32)
    if quantise:
        fn = jax.jit(lambda x, w: kernels.w2a8_gemv(x, None, w, 0.5, out, interpret=False, config=config))
        args = (jax.ShapeDtypeStruct((batch, n_in), jnp.bfloat16), words)
    else:
        fn = jax.jit(lambda x, s, w: kernels.w2a8_gemv(x, s, w, 0.5, out, interpret=False, config=config))
        args = (jax.ShapeDtypeStruct((batch, n_in), jnp.int8), jax.ShapeDtypeStruct((batch,), jnp.float32), words)
    exported = export.export(fn, platforms=["cuda"], disabled_checks=[
        export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])(*args)
    module = exported.mlir_module()
    assert "xla.gpu.triton" in module
    packed_rows = -(-out // 4)
    row_blocks = -(-packed_rows // 16)
    assert f"grid_x = {row_blocks} : i32, grid_y = {split_k} : i32" in module
    assert ("cvt.rni.f32.f32" in module) == quantise  # round half to even, as XLA's round-nearest-even on a GPU


def _numpy_act_codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """REFERENCE.md's per-token absmax quantiser in float32 numpy: codes = clip(round(x / amax * 127), -128, 127)
    (half to even), amax = max(max|x|, 1e-5), scale = amax / 127."""
    xf = x.astype(np.float32)
    amax = np.maximum(np.abs(xf).max(axis=1, keepdims=True), np.float32(1e-5))
    codes = np.clip(np.round(xf / amax * np.float32(127)), -128, 127).astype(np.int8)
    return codes, (amax[:, 0] / np.float32(127)).astype(np.float32)


def _division_sensitive(amax: np.float32, n: int) -> list[np.float32]:
    """n values v in (-amax, amax) whose code round(v / amax * 127) differs from round(v * (1 / amax) * 127): about
    one float32 in a million. XLA divides by a broadcast scalar either way depending on the platform (on a CPU it
    multiplies by the reciprocal; on a GPU it emits PTX div.full.f32), so these codes tell whether the kernel divides
    as the platform's quantiser does."""
    rng, found = np.random.default_rng(5), []
    while len(found) < n:
        v = rng.uniform(-amax, amax, 1 << 20).astype(np.float32)
        exact, approx = np.round(v / amax * np.float32(127)), np.round(v * (np.float32(1) / amax) * np.float32(127))
        found += list(v[exact != approx])
    return found[:n]


AMAX = np.float32(2.9)
DIVISION_SENSITIVE = _division_sensitive(AMAX, 3)


@pytest.mark.parametrize("variant", QUANTISING)
@pytest.mark.parametrize("out,n_in,batch,split_k,dtype", [
    (37, 50, 1, 1, np.float32),  # ragged rows, words and last word
    (64, 128, 3, 2, "bfloat16"),  # split-K (the scales reach the epilogue), bf16 rows as a decode step holds them
    (30, 21, 2, 3, np.float32),
    (33, 70, 2, 1, "chunks of 16"),  # the absmax prologue over several loads, the last one ragged
])
def test_kernel_quantises_float_activations_as_the_quantiser_does(variant, out, n_in, batch, split_k, dtype,
                                                                 monkeypatch):
    """Float rows in: the kernel's own absmax quantisation gives quant.act_absmax_codes' codes and scales (which are
    REFERENCE.md's formula in float32 numpy, up to how the platform divides), hence the output of the kernel given
    those codes bit for bit, and the float64 product of the dequantised factors."""
    import ml_dtypes

    from bitnet_jax import quant

    if dtype == "chunks of 16":  # (a shape of its own: the jitted kernel of another test's shape is cached)
        monkeypatch.setattr(kernels, "ABSMAX_CHUNK", 16)
        dtype = np.float32
    rng = np.random.default_rng(out * n_in + batch)
    codes = rng.integers(-1, 2, (out, n_in)).astype(np.int8)
    x = (rng.standard_t(3, (batch, n_in)) * 2).astype(np.float32)  # heavy tails: one large value sets the scale
    x[0] = np.clip(x[0], -AMAX, AMAX) * np.float32(0.4)  # only the last value reaches AMAX
    x[0, :3] = DIVISION_SENSITIVE
    x[0, -1] = AMAX  # the largest value in the last (ragged) load of the prologue
    x[0, 5] = 0.0
    if batch > 1:
        x[1] = 0.0  # an all-zero row: amax is the quantiser's floor, every code 0
    if dtype == "bfloat16":
        x = x.astype(ml_dtypes.bfloat16)
    x_codes, x_scale = (np.asarray(a) for a in quant.act_absmax_codes(x))
    x_scale = x_scale[:, 0]
    numpy_codes, numpy_scale = _numpy_act_codes(np.asarray(x, np.float32))
    np.testing.assert_allclose(x_scale, numpy_scale, rtol=1e-6)
    differ = np.argwhere(numpy_codes != x_codes)
    assert np.abs(numpy_codes.astype(int) - x_codes).max() <= 1 and all(r == 0 and c < 3 for r, c in differ)

    config = TileConfig(block_rows=4, block_k=4, split_k=split_k, variant=variant)
    packed = pack_ternary(codes)
    got = np.asarray(kernels.w2a8_gemv(x, None, packed, 0.3, out, interpret=True, config=config))
    given = np.asarray(kernels.w2a8_gemv(x_codes, x_scale, packed, 0.3, out, interpret=True, config=config))
    np.testing.assert_array_equal(got, given)
    np.testing.assert_allclose(got, _reference(codes, x_codes, x_scale, np.float32(0.3)), rtol=1e-6, atol=1e-6)
    if batch > 1:
        assert not got[1].any()
    # the XLA reference path (where there is no GPU) quantises with quant.act_absmax_codes too
    reference = np.asarray(kernels.w2a8_gemv_reference(x, None, packed, 0.3, out))
    np.testing.assert_allclose(reference, got, rtol=1e-6, atol=1e-6)


def test_decode_bench_times_one_shape_and_counts_bytes():
    from bitnet_jax.infer import bench_decode

    r = bench_decode.bench_linear(16, 32, 1, configs=[TileConfig(block_rows=4, block_k=4)], reps=1, warmup=0)
    assert r["bf16"]["bytes"] == 2 * 16 * 32 + 2 * 32 + 4 * 16  # bf16 weight + bf16 x + float32 y
    assert r["w2a8_kernel"]["bytes"] == 4 * 32 + 2 * 32 + 4 * 16  # 2-bit weight: ceil(16/4) packed rows
    for name in ("bf16", "w2a8_xla", "w2a8_kernel"):
        assert r[name]["s"] > 0 and r[name]["gb_per_s"] > 0


def test_decode_bench_refuses_a_wrong_kernel(monkeypatch):
    from bitnet_jax.infer import bench_decode

    right = kernels.w2a8_gemv
    monkeypatch.setattr(kernels, "w2a8_gemv", lambda *a, **k: right(*a, **k).at[0, -1].add(1.0))
    with pytest.raises(bench_decode.KernelMismatch, match="disagrees"):
        bench_decode.bench_linear(16, 32, 1, configs=[TileConfig(block_rows=4, block_k=4)], reps=1, warmup=0)


def test_kernel_matches_the_fake_quant_forward():
    """With the quantisers' own codes and scales, the GEMV is the training forward act_absmax(x) @ ternary(w)."""
    import jax.numpy as jnp

    from bitnet_jax import quant

    rng = np.random.default_rng(11)
    w = jnp.asarray(rng.normal(size=(40, 24)).astype(np.float32))  # (in, out) like nnx.Linear
    x = jnp.asarray(rng.normal(size=(3, 40)).astype(np.float32))
    codes, w_scale = quant.ternary_codes(w)
    x_codes, x_scale = quant.act_absmax_codes(x)
    words = kernels.packed_words(pack_ternary(np.asarray(codes).T))
    y = kernels.w2a8_gemv(x_codes, x_scale, words, w_scale, 24, interpret=True,
                          config=TileConfig(block_rows=2, block_k=4))
    fake_quant = np.asarray(quant.act_absmax(x), np.float64) @ np.asarray(quant.ternary_absmean(w), np.float64)
    np.testing.assert_allclose(np.asarray(y), fake_quant, rtol=1e-5, atol=1e-5)
