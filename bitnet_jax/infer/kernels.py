"""W2A8 decode GEMV on packed 2-bit ternary weights: a Pallas (Triton) kernel for GPUs and an XLA reference.

y[b, o] = (sum_k W[o, k] x[b, k]) * x_scale[b] * w_scale, with x int8 per-token absmax codes (`quant.act_absmax_codes`:
x ~ codes * x_scale) and W ternary codes in {-1, 0, 1} (`quant.ternary_codes`: W ~ codes * w_scale) stored in Hugging
Face's packed layout (`infer.pack`): packed (P = ceil(out/4), in) uint8, output row r + i*P in bits 2i..2i+1 of packed
row r, as code + 1 in {0, 1, 2}.

At batch 1 a GEMV is memory-bound: the kernel reads 2 bits per weight instead of 16 for bf16. Each program owns
`block_rows` packed rows (4 * block_rows outputs) and streams them along the input in tiles of `block_k` words. A word
is 4 consecutive packed bytes of one packed row (int32, little-endian: byte j is input column 4*k + j), so
`(word >> 2i) & 0x03030303` holds the codes + 1 of output row r + i*P at four input columns, one per byte: exactly
the operand of the GPU's 4-way int8 dot instruction (dp4a). Codes are kept as c = code + 1 in {0, 1, 2} and the
offset is removed once at the end: sum_k code x = sum_k c x - sum_k x.

Variants (all exact in their accumulator; results equal the int32 reference bit for bit before scaling):
  "dp4a"  PTX dp4a.u32.s32 on packed bytes, int32 accumulate (GPU; emulated with shifts in interpret mode)
  "int"   codes and activations unpacked to int32, int32 multiply-accumulate
  "f32"   codes and activations converted to float32, float32 accumulate (exact: |partial sums| < 2^24)
  "bf16"  products in bfloat16 (exact: +-x or 0 with |x| <= 128), float32 accumulate
  "dp4a_rows"  dp4a on one packed row at a time, as 1-D vectors, with the activation also as int32 words (packed by
          a small XLA op before the kernel): weight row and activation vectors then share one register layout, so the
          loop needs no shared-memory layout conversion or barrier (the 2-D tile variants convert the activation
          word once per step); meant for small block_rows (the rows are unrolled)

`split_k` > 1 splits the input dimension over more programs (small matrices have too few row blocks to fill a GPU);
the int32 partial sums are then added and scaled by a small XLA epilogue.

Weights reach the kernel as int32 words (P, ceil(in/4)): `packed_words(packed)` makes them once (load time). Passing
the uint8 bytes to `w2a8_gemv` works too but converts them on every call, which costs a copy of the weight.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from bitnet_jax import quant
from bitnet_jax.errors import UserError

VARIANTS = ("dp4a", "dp4a_rows", "int", "f32", "bf16")
_BYTE_CODES = 0x03030303  # the low two bits of each byte of a word


class TileConfig(NamedTuple):
    """Tile sizes and launch parameters of the Pallas kernel (block_rows, block_k: powers of two)."""

    block_rows: int = 16  # packed rows per program (4x as many output rows)
    block_k: int = 64  # int32 words (4 input columns each) per loop step
    split_k: int = 1  # programs along the input dimension
    num_warps: int = 4
    num_stages: int = 3
    variant: str = "dp4a"


def packed_words(packed) -> jax.Array:
    """(P, in) uint8 packed ternary weight -> (P, ceil(in/4)) int32 words of the same bytes (little-endian).

    Input columns past `in` are padded with zero bytes; the kernel never multiplies them by a non-zero activation.
    """
    packed = jnp.asarray(packed)
    if packed.ndim != 2 or packed.dtype != jnp.uint8:
        raise UserError(f"packed_words takes a (ceil(out/4), in) uint8 packed weight, got {packed.dtype}"
                        f"{tuple(packed.shape)}; pack with bitnet_jax.infer.pack_ternary first")
    rows, n_in = packed.shape
    n_words = -(-n_in // 4)
    padded = jnp.pad(packed, ((0, 0), (0, 4 * n_words - n_in))).reshape(rows, n_words, 4).astype(jnp.int32)
    shifts = jnp.arange(4, dtype=jnp.int32) * 8
    return jnp.sum(padded << shifts, axis=-1, dtype=jnp.int32)  # disjoint bytes: the sum is a bitwise or


def _words_to_codes(words, n_in: int, out_features: int) -> jax.Array:
    """(P, n_words) int32 words -> (out, in) int32 codes in {-1, 0, 1} (the HF unpack formula, vectorised)."""
    byte_shifts = jnp.arange(4, dtype=jnp.int32) * 8
    packed = ((words[:, :, None] >> byte_shifts) & 0xFF).reshape(words.shape[0], -1)[:, :n_in]  # (P, in) bytes
    group_shifts = jnp.arange(4, dtype=jnp.int32)[:, None, None] * 2
    codes = ((packed[None] >> group_shifts) & 3) - 1  # (4, P, in): group i holds rows i*P .. i*P + P - 1
    return codes.reshape(-1, n_in)[:out_features]


def _check(x_codes, x_scale, packed, w_scale, out_features):
    """Validate shapes and dtypes; return (x (B, in): int8 codes, or float rows when x_scale is None; x_scale f32
    (B,) or None; words (P, W); w_scale f32 (1,))."""
    x_codes = jnp.asarray(x_codes)
    if x_codes.ndim == 1:
        x_codes = x_codes[None]
    floats = x_scale is None
    if x_codes.ndim != 2 or (floats != jnp.issubdtype(x_codes.dtype, jnp.floating)) or \
            (not floats and x_codes.dtype != jnp.int8):
        raise UserError(f"w2a8_gemv takes int8 activation codes of shape (batch, in) with their scales, or float "
                        f"activations (batch, in) with x_scale=None (quantised in the kernel), got {x_codes.dtype}"
                        f"{tuple(x_codes.shape)} and x_scale {'None' if floats else 'given'}; quantise with "
                        f"bitnet_jax.quant.act_absmax_codes or pass x_scale=None")
    batch, n_in = x_codes.shape
    packed = jnp.asarray(packed)
    rows = -(-out_features // 4)
    n_words = -(-n_in // 4)
    if packed.dtype == jnp.uint8 and packed.shape == (rows, n_in):
        words = packed_words(packed)
    elif packed.dtype == jnp.int32 and packed.shape == (rows, n_words):
        words = packed
    else:
        raise UserError(f"packed weight {packed.dtype}{tuple(packed.shape)} does not fit {out_features} outputs x "
                        f"{n_in} inputs: expected uint8{(rows, n_in)} (infer.pack_ternary of the (out, in) codes) "
                        f"or int32{(rows, n_words)} (kernels.packed_words of it)")
    if not floats:
        x_scale = jnp.broadcast_to(jnp.asarray(x_scale, jnp.float32).reshape(-1), (batch,))
    w_scale = jnp.asarray(w_scale, jnp.float32).reshape(-1)
    if w_scale.shape != (1,):
        raise UserError(f"w2a8_gemv takes one weight scale per tensor, got shape {w_scale.shape}")
    return x_codes, x_scale, words, w_scale


EXACT_INNER = 2 ** 24 // 128  # inner dimensions below this keep |int8 codes x ternary codes| sums under 2^24


def code_product(x_codes, w_codes, dims) -> jax.Array:
    """`lax.dot_general(x_codes, w_codes, dims)` of integer codes (int8 activations, ternary or binary weights), as
    the exact integer sums in float32. Computed as a bfloat16 product with float32 accumulation: every code is a small
    integer (exact in bfloat16), every product too, and every partial sum stays an integer below 2^24 while the inner
    dimension is under EXACT_INNER (131072), so the result is the int32 sum exactly, on the GPU's bfloat16 matmul
    units. XLA's integer dots are not (openxla/xla#5796): on an H200 on 2026-12-03 the int8-code 3B model's prefill
    of 32 tokens took 245 ms and the packed model's (which unpacks, then dots in int32) 344 ms, against 43 ms in
    bfloat16. Longer inner dimensions fall back to an int32 dot."""
    (contract, _), _ = dims
    if math.prod(x_codes.shape[a] for a in contract) >= EXACT_INNER:
        return lax.dot_general(x_codes.astype(jnp.int32), w_codes.astype(jnp.int32), dims,
                               preferred_element_type=jnp.int32).astype(jnp.float32)
    return lax.dot_general(x_codes.astype(jnp.bfloat16), w_codes.astype(jnp.bfloat16), dims,
                           preferred_element_type=jnp.float32)


def w2a8_gemv_reference(x_codes, x_scale, packed, w_scale, out_features: int) -> jax.Array:
    """XLA path: unpack the codes with jnp, multiply exactly (`code_product`), then the scales. (batch, out) float32.
    Float activations with x_scale=None are quantised first (`quant.act_absmax_codes`, 8 bits per token)."""
    x_codes, x_scale, words, w_scale = _check(x_codes, x_scale, packed, w_scale, out_features)
    if x_scale is None:
        x_codes, x_scale = _act_codes(x_codes)
    codes = _words_to_codes(words, x_codes.shape[1], out_features)
    return code_product(x_codes, codes, (((1,), (1,)), ((), ()))) * x_scale[:, None] * w_scale[0]


def _act_codes(x) -> tuple[jax.Array, jax.Array]:
    codes, scale = quant.act_absmax_codes(x, 8, True)
    return codes, scale.reshape(-1)


def w2a8_gemv(x_codes, x_scale, packed, w_scale, out_features: int, *, interpret: bool | None = None,
              config: TileConfig | None = None) -> jax.Array:
    """(batch, out) float32 = (x_codes @ W.T) * x_scale[:, None] * w_scale from packed ternary weights.

    x_codes: (batch, in) or (in,) int8; x_scale: (batch,), (batch, 1) or scalar; packed: (ceil(out/4), in) uint8
    (HF layout) or its int32 `packed_words`; w_scale: scalar. interpret=None runs the Pallas kernel on a GPU and the
    XLA reference elsewhere; True runs the kernel in Pallas interpret mode (CPU tests); False forces the compiled
    kernel.

    Float activations (batch, in) with x_scale=None are quantised inside the kernel, with the arithmetic of
    `quant.act_absmax_codes(x, 8, per_token=True)`: every program first finds its rows' absmax over the whole input,
    then quantises each tile as it multiplies it. A decode step then launches one kernel per product instead of four
    (XLA's absmax reduction, the quantisation and the scale's own small kernel, then the GEMV: counted by
    experiments/benchmarks/kernel_count.py in a 3B decode step compiled for sm_90). The scales are multiplied
    together first, a rounding apart from the reference path. Not with variant dp4a_rows, which takes int8 words.
    """
    x_codes, x_scale, words, w_scale = _check(x_codes, x_scale, packed, w_scale, out_features)
    if interpret is None:
        if jax.default_backend() != "gpu":
            return w2a8_gemv_reference(x_codes, x_scale, words, w_scale, out_features)
        interpret = False
    config = config or default_config(out_features, x_codes.shape[1], x_codes.shape[0])
    _check_config(config, quantise=x_scale is None)
    return _pallas_gemv(x_codes, x_scale, words, w_scale, out_features=out_features, config=config,
                        interpret=bool(interpret))


def default_config(out_features: int, n_in: int, batch: int = 1, n_sm: int = 132) -> TileConfig:
    """H100-minded guess (tune on the GPU: `bitnet-jax bench decode --tune`).

    Two programs per multiprocessor from the rows alone where a row block of 16 or 8 gives them, else blocks of 4
    rows, and the input split only where even those give fewer programs than multiprocessors (a split costs a small
    XLA epilogue); tiles of about 4 KB of weights per loop step (2 KB from batch 3: 4 * batch accumulator tiles live
    in registers).
    """
    rows = -(-out_features // 4)
    n_words = -(-n_in // 4)
    block_rows = 4
    for candidate in (16, 8):
        if -(-rows // candidate) >= 2 * n_sm:
            block_rows = candidate
            break
    row_blocks = -(-rows // block_rows)
    tile_words = 1024 if batch <= 2 else 512
    block_k = max(32, min(256, tile_words // block_rows))
    split_k = 1 if row_blocks >= n_sm else max(1, min(-(-2 * n_sm // row_blocks), -(-n_words // block_k)))
    return TileConfig(block_rows=block_rows, block_k=block_k, split_k=split_k)


def _check_config(config: TileConfig, quantise: bool = False) -> None:
    for name in ("block_rows", "block_k"):
        value = getattr(config, name)
        if value < 1 or value & (value - 1):
            raise UserError(f"TileConfig.{name} must be a power of two (Triton tiles), got {value}")
    if config.split_k < 1:
        raise UserError(f"TileConfig.split_k must be >= 1, got {config.split_k}")
    if config.variant not in VARIANTS:
        raise UserError(f"unknown W2A8 kernel variant {config.variant!r}; use one of {', '.join(VARIANTS)}")
    if quantise and config.variant == "dp4a_rows":
        raise UserError("variant dp4a_rows takes int8 activation codes: quantise first (quant.act_absmax_codes) or "
                        "pick another variant")


def _dp4a(codes, x_word, acc, *, interpret: bool):
    """acc + sum over the 4 bytes j of ubyte_j(codes) * sbyte_j(x_word), elementwise on int32 arrays."""
    if not interpret:
        from jax.experimental.pallas import triton as plgpu

        (out,) = plgpu.elementwise_inline_asm(
            "dp4a.u32.s32 $0, $1, $2, $3;", args=[codes, x_word, acc], constraints="=r,r,r,r", pack=1,
            result_shape_dtypes=[jax.ShapeDtypeStruct(acc.shape, jnp.int32)])
        return out
    for j in range(4):
        a = (codes >> (8 * j)) & 0xFF
        b = (x_word << (24 - 8 * j)) >> 24  # arithmetic shift sign-extends byte j
        acc = acc + a * b
    return acc


def _load(ref, mask=None, eviction_policy=None):
    """Load, zeros where `mask` is False: a predicated Triton load on GPU; also runs in interpret mode."""
    from jax.experimental.pallas import triton as plgpu

    if mask is None:
        return plgpu.load(ref, eviction_policy=eviction_policy)
    return plgpu.load(ref, mask=mask, other=0, eviction_policy=eviction_policy)


def _store(ref, value, mask):
    from jax.experimental.pallas import triton as plgpu

    plgpu.store(ref, value, mask=mask)


def _round_half_even(v, *, interpret: bool):
    """jnp.round of float32 v (Pallas' Triton lowering has none): PTX cvt.rni, the instruction XLA emits for it."""
    if interpret:
        return jnp.round(v)
    from jax.experimental.pallas import triton as plgpu

    (out,) = plgpu.elementwise_inline_asm("cvt.rni.f32.f32 $0, $1;", args=[v], constraints="=f,f", pack=1,
                                          result_shape_dtypes=[jax.ShapeDtypeStruct(v.shape, jnp.float32)])
    return out


ABSMAX_CHUNK = 4096  # activations per load in the absmax prologue (one load for the 3B model's 3200-wide rows, three
# for 8640): few dependent loads before the products start, 32 values a thread at 4 warps


def _act_absmax(x_ref, b: int, n_in: int, chunk: int, *, interpret: bool):
    """max(absmax of activation row b over the whole input, quant.EPS), shape (1,): quant.act_absmax_codes' amax."""

    def step(it, m):
        start = it * chunk
        v = _load(x_ref.at[jnp.int32(b), pl.ds(start, chunk)], start + jnp.arange(chunk) < n_in).astype(jnp.float32)
        return jnp.maximum(m, jnp.max(jnp.abs(v)))

    amax = lax.fori_loop(0, -(-n_in // chunk), step, jnp.float32(0))
    return jnp.maximum(jnp.full((1,), amax, jnp.float32), quant.EPS)


def _act_code(v, amax, *, interpret: bool):
    """int32 codes of float32 activations v: clip(round(v / amax * 127), -128, 127), half to even, with the float32
    division of the platform, as XLA computes quant.act_absmax_codes there (on a GPU both are PTX div.full.f32; on a
    CPU XLA multiplies by the reciprocal, here as in the quantiser)."""
    return jnp.clip(_round_half_even(v / amax * 127.0, interpret=interpret), -128.0, 127.0).astype(jnp.int32)


def _gemv_kernel(*refs, n_in: int, out_features: int, batch: int, n_iter: int, config: TileConfig,
                 interpret: bool, quantise: bool):
    """One program: `block_rows` packed rows x one split of the input; all 4 row groups and all batch rows.
    quantise: x_ref holds float activations, quantised here (no xs_ref; with split_k > 1 the activation scales go
    to a second output for the epilogue)."""
    if quantise:
        x_ref, ws_ref, w_ref, o_ref, *xs_out = refs
        chunk = min(1 << (n_in - 1).bit_length(), ABSMAX_CHUNK)  # the whole row in one load where it fits
        amax = [_act_absmax(x_ref, b, n_in, chunk, interpret=interpret) for b in range(batch)]
        x_scales = [a / 127.0 for a in amax]
        if xs_out:
            first = (pl.program_id(0) == 0) & (pl.program_id(1) == 0)
            for b in range(batch):
                _store(xs_out[0].at[pl.ds(b, 1)], x_scales[b], jnp.full((1,), first))
    else:
        x_ref, xs_ref, ws_ref, w_ref, o_ref = refs
        x_scales = [_load(xs_ref.at[pl.ds(b, 1)]) for b in range(batch)]
    br, bk = config.block_rows, config.block_k
    n_rows, n_words = w_ref.shape
    row0 = pl.program_id(0) * br
    word0 = pl.program_id(1) * n_iter * bk
    rows = row0 + jnp.arange(br)
    row_ok = rows < n_rows
    acc_dtype = jnp.int32 if config.variant in ("dp4a", "int") else jnp.float32
    shape = (br, bk)

    def step(it, carry):
        accs, xsums = carry
        start = pl.multiple_of(word0 + it * bk, bk)
        cols = start + jnp.arange(bk)
        col_ok = cols < n_words
        w = _load(w_ref.at[pl.ds(row0, br), pl.ds(start, bk)], row_ok[:, None] & col_ok[None, :],
                  eviction_policy="evict_first")  # each weight byte is read once
        codes = [(w >> (2 * i)) & _BYTE_CODES for i in range(4)]  # word-wise codes + 1 of row group i
        new_accs, new_xsums = list(accs), list(xsums)
        for b in range(batch):
            xb = []  # activation bytes at input columns 4*cols + j, int32
            for j in range(4):
                idx = 4 * cols + j
                x = _load(x_ref.at[b, idx], idx < n_in)
                xb.append(_act_code(x.astype(jnp.float32), amax[b], interpret=interpret) if quantise
                          else x.astype(jnp.int32))
            new_xsums[b] = xsums[b] + (xb[0] + xb[1] + xb[2] + xb[3])
            if config.variant == "dp4a":  # one int8x4 word per column; its broadcast costs one layout conversion
                x_word = (xb[0] & 0xFF) | ((xb[1] & 0xFF) << 8) | ((xb[2] & 0xFF) << 16) | (xb[3] << 24)
                x_word = jnp.broadcast_to(x_word[None, :], shape)
            for i in range(4):
                k = 4 * b + i
                if config.variant == "dp4a":
                    new_accs[k] = _dp4a(codes[i], x_word, accs[k], interpret=interpret)
                    continue
                acc = accs[k]
                for j in range(4):
                    c = (codes[i] >> (8 * j)) & 3
                    if config.variant == "int":
                        acc = acc + c * xb[j][None, :]
                    else:
                        dtype = jnp.float32 if config.variant == "f32" else jnp.bfloat16
                        acc = acc + (c.astype(dtype) * xb[j].astype(dtype)[None, :]).astype(jnp.float32)
                new_accs[k] = acc
        return tuple(new_accs), tuple(new_xsums)

    accs0 = tuple(jnp.zeros(shape, acc_dtype) for _ in range(4 * batch))
    xsums0 = tuple(jnp.zeros((bk,), jnp.int32) for _ in range(batch))
    accs, xsums = lax.fori_loop(0, n_iter, step, (accs0, xsums0))

    for b in range(batch):
        xsum = jnp.sum(xsums[b])
        for i in range(4):
            total = jnp.sum(accs[4 * b + i], axis=1).astype(jnp.int32) - xsum  # sum code*x = sum (code+1)*x - sum x
            out_idx = i * n_rows + rows
            ok = row_ok & (out_idx < out_features)
            if config.split_k == 1:
                scale = x_scales[b] * _load(ws_ref.at[pl.ds(0, 1)])
                _store(o_ref.at[pl.ds(b, 1), pl.ds(i * n_rows + row0, br)], (total.astype(jnp.float32) * scale)[None],
                       ok[None])
            else:
                _store(o_ref.at[pl.program_id(1), pl.ds(b, 1), pl.ds(i * n_rows + row0, br)], total[None], ok[None])


def _rows_kernel(x_ref, xs_ref, ws_ref, w_ref, o_ref, *, out_features: int, batch: int, n_iter: int,
                 config: TileConfig, interpret: bool):
    """Variant dp4a_rows: x_ref holds int32 activation words (batch, n_words); each packed row is a 1-D vector."""
    br, bk = config.block_rows, config.block_k
    n_rows, n_words = w_ref.shape
    row0 = pl.program_id(0) * br
    word0 = pl.program_id(1) * n_iter * bk
    ones = jnp.full((bk,), 0x01010101, jnp.int32)  # dp4a with these sums the 4 activation bytes of a word

    def step(it, carry):
        accs, xsums = carry
        start = pl.multiple_of(word0 + it * bk, bk)
        col_ok = start + jnp.arange(bk) < n_words
        accs, xsums = list(accs), list(xsums)
        xw = [_load(x_ref.at[jnp.int32(b), pl.ds(start, bk)], col_ok) for b in range(batch)]
        for b in range(batch):
            xsums[b] = _dp4a(ones, xw[b], xsums[b], interpret=interpret)
        for r in range(br):
            w = _load(w_ref.at[row0 + r, pl.ds(start, bk)], col_ok & (row0 + r < n_rows),
                      eviction_policy="evict_first")
            for i in range(4):
                codes = (w >> (2 * i)) & _BYTE_CODES
                for b in range(batch):
                    k = (b * br + r) * 4 + i
                    accs[k] = _dp4a(codes, xw[b], accs[k], interpret=interpret)
        return tuple(accs), tuple(xsums)

    accs0 = tuple(jnp.zeros((bk,), jnp.int32) for _ in range(4 * br * batch))
    xsums0 = tuple(jnp.zeros((bk,), jnp.int32) for _ in range(batch))
    accs, xsums = lax.fori_loop(0, n_iter, step, (accs0, xsums0))

    for b in range(batch):
        xsum = jnp.sum(xsums[b])
        scale = _load(xs_ref.at[pl.ds(b, 1)]) * _load(ws_ref.at[pl.ds(0, 1)]) if config.split_k == 1 else None
        for r in range(br):
            for i in range(4):
                total = (jnp.sum(accs[(b * br + r) * 4 + i]) - xsum)[None, None]  # (1, 1)
                out_idx = i * n_rows + row0 + r
                ok = ((row0 + r < n_rows) & (out_idx < out_features))[None, None]
                if config.split_k == 1:
                    _store(o_ref.at[pl.ds(b, 1), pl.ds(out_idx, 1)], total.astype(jnp.float32) * scale[None], ok)
                else:
                    _store(o_ref.at[pl.program_id(1), pl.ds(b, 1), pl.ds(out_idx, 1)], total, ok)


def activation_words(x_codes) -> jax.Array:
    """(batch, in) int8 -> (batch, ceil(in/4)) int32 words of the same bytes (little-endian), zero-padded."""
    batch, n_in = x_codes.shape
    n_words = -(-n_in // 4)
    padded = jnp.pad(x_codes, ((0, 0), (0, 4 * n_words - n_in))).reshape(batch, n_words, 4)
    return lax.bitcast_convert_type(padded, jnp.int32)


@functools.partial(jax.jit, static_argnames=("out_features", "config", "interpret"))
def _pallas_gemv(x_codes, x_scale, words, w_scale, *, out_features: int, config: TileConfig, interpret: bool):
    """x_scale None: x_codes are float activations, quantised in the kernel."""
    batch, n_in = x_codes.shape
    n_rows, n_words = words.shape
    quantise = x_scale is None
    words_per_split = -(-n_words // config.split_k)
    n_iter = -(-words_per_split // config.block_k)
    grid = (-(-n_rows // config.block_rows), config.split_k)
    if config.split_k == 1:
        out_shape = jax.ShapeDtypeStruct((batch, out_features), jnp.float32)
    else:
        out_shape = jax.ShapeDtypeStruct((config.split_k, batch, out_features), jnp.int32)
        if quantise:
            out_shape = (out_shape, jax.ShapeDtypeStruct((batch,), jnp.float32))  # the scales, for the epilogue
    if config.variant == "dp4a_rows":
        kernel = functools.partial(_rows_kernel, out_features=out_features, batch=batch, n_iter=n_iter,
                                   config=config, interpret=interpret)
        x_codes = activation_words(x_codes)
    else:
        kernel = functools.partial(_gemv_kernel, n_in=n_in, out_features=out_features, batch=batch, n_iter=n_iter,
                                   config=config, interpret=interpret, quantise=quantise)
    compiler_params = None
    if not interpret:
        from jax.experimental.pallas import triton as plgpu

        compiler_params = plgpu.CompilerParams(num_warps=config.num_warps, num_stages=config.num_stages)
    inputs = (x_codes, w_scale, words) if quantise else (x_codes, x_scale, w_scale, words)
    out = pl.pallas_call(kernel, out_shape=out_shape, grid=grid, interpret=interpret,
                         compiler_params=compiler_params, name="w2a8_gemv")(*inputs)
    if config.split_k == 1:
        return out
    if quantise:
        out, x_scale = out
    return jnp.sum(out, axis=0).astype(jnp.float32) * x_scale[:, None] * w_scale[0]
