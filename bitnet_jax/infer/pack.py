"""2-bit ternary and 1-bit binary weight packing in Hugging Face's BitNet layout.

Ternary (transformers `integrations/bitnet.py`): codes w in {-1, 0, 1} of a torch-layout weight (out, in) are
stored as w + 1 in {0, 1, 2}, four per uint8 along the output dimension: packed shape (ceil(out/4), in), and
original row r + i * ceil(out/4) sits in bits 2i..2i+1 of packed row r. Binary codes in {-1, +1} are stored as
bits (1 = +1), eight per uint8 along the output dimension in the same row-block order.

Our kernels are (in, out) like nnx.Linear: pass `kernel_codes.T`.
"""

from __future__ import annotations

import numpy as np

from bitnet_jax.errors import UserError


def _blocks(out: int, per_byte: int) -> int:
    return -(-out // per_byte)


def pack_ternary(codes) -> np.ndarray:
    """(out, in) codes in {-1, 0, 1} -> (ceil(out/4), in) uint8."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise UserError(f"pack_ternary takes a 2-D (out, in) weight, got shape {codes.shape}")
    if not np.isin(codes, (-1, 0, 1)).all():
        raise UserError("pack_ternary takes codes in {-1, 0, 1}; quantise with quant.ternary_codes first")
    out, n_in = codes.shape
    rows = _blocks(out, 4)
    padded = np.zeros((4 * rows, n_in), np.uint8)  # padding rows hold code -1 (value 0) and are dropped on unpack
    padded[:out] = (codes + 1).astype(np.uint8)
    groups = padded.reshape(4, rows, n_in)
    return (groups[0] | groups[1] << 2 | groups[2] << 4 | groups[3] << 6).astype(np.uint8)


def unpack_ternary(packed, out: int) -> np.ndarray:
    """(ceil(out/4), in) uint8 -> (out, in) int8 codes in {-1, 0, 1}."""
    packed = np.asarray(packed, np.uint8)
    if packed.ndim != 2 or packed.shape[0] != _blocks(out, 4):
        raise UserError(f"packed ternary weight of shape {packed.shape} cannot hold {out} output rows "
                        f"(expected {_blocks(out, 4)} packed rows)")
    groups = [((packed >> (2 * i)) & 3).astype(np.int8) - 1 for i in range(4)]
    return np.concatenate(groups, axis=0)[:out]


def pack_binary(codes) -> np.ndarray:
    """(out, in) codes in {-1, +1} -> (ceil(out/8), in) uint8; bit i of packed row r is row r + i * ceil(out/8)."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise UserError(f"pack_binary takes a 2-D (out, in) weight, got shape {codes.shape}")
    if not np.isin(codes, (-1, 1)).all():
        raise UserError("pack_binary takes codes in {-1, +1}; quantise with quant.binary_codes first")
    out, n_in = codes.shape
    rows = _blocks(out, 8)
    bits = np.zeros((8 * rows, n_in), np.uint8)
    bits[:out] = codes > 0
    groups = bits.reshape(8, rows, n_in)
    packed = np.zeros((rows, n_in), np.uint8)
    for i in range(8):
        packed |= groups[i] << i
    return packed


def unpack_binary(packed, out: int) -> np.ndarray:
    """(ceil(out/8), in) uint8 -> (out, in) int8 codes in {-1, +1}."""
    packed = np.asarray(packed, np.uint8)
    if packed.ndim != 2 or packed.shape[0] != _blocks(out, 8):
        raise UserError(f"packed binary weight of shape {packed.shape} cannot hold {out} output rows "
                        f"(expected {_blocks(out, 8)} packed rows)")
    groups = [((packed >> i) & 1).astype(np.int8) * 2 - 1 for i in range(8)]
    return np.concatenate(groups, axis=0)[:out]
