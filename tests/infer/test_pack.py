import numpy as np
import pytest

from bitnet_jax.errors import UserError
from bitnet_jax.infer.pack import pack_binary, pack_ternary, unpack_binary, unpack_ternary


def reference_unpack_ternary(packed, out):
    """REFERENCE.md section 2, element by element: row r + i*ceil(out/4) is ((p[r] >> 2i) & 3) - 1."""
    rows = -(-out // 4)
    w = np.full((4 * rows, packed.shape[1]), 99, np.int64)
    for r in range(rows):
        for i in range(4):
            for c in range(packed.shape[1]):
                w[r + i * rows, c] = ((int(packed[r, c]) >> (2 * i)) & 3) - 1
    return w[:out]


@pytest.mark.parametrize("out,n_in", [(8, 3), (5, 4), (1, 1), (13, 7), (64, 16)])
def test_ternary_round_trip_and_hf_bit_layout(out, n_in):
    codes = np.random.default_rng(out * 100 + n_in).integers(-1, 2, (out, n_in)).astype(np.int8)
    packed = pack_ternary(codes)
    assert packed.dtype == np.uint8 and packed.shape == (-(-out // 4), n_in)
    np.testing.assert_array_equal(reference_unpack_ternary(packed, out), codes)
    np.testing.assert_array_equal(unpack_ternary(packed, out), codes)


def test_ternary_known_byte():
    # rows 0..3 of a 4-row weight land in bits 0-1, 2-3, 4-5, 6-7 of packed row 0, stored as w + 1
    codes = np.array([[1], [0], [-1], [1]], np.int8)
    assert pack_ternary(codes)[0, 0] == 2 | 1 << 2 | 0 << 4 | 2 << 6


@pytest.mark.parametrize("out,n_in", [(8, 3), (5, 2), (17, 4)])
def test_binary_round_trip(out, n_in):
    codes = np.where(np.random.default_rng(out).random((out, n_in)) > 0.5, 1, -1).astype(np.int8)
    packed = pack_binary(codes)
    assert packed.shape == (-(-out // 8), n_in)
    np.testing.assert_array_equal(unpack_binary(packed, out), codes)
    rows = packed.shape[0]
    for r in range(out):  # bit i of packed row r is original row r + i * rows
        bit = (packed[r % rows] >> (r // rows)) & 1
        np.testing.assert_array_equal(bit, codes[r] > 0)


def test_bad_packing_input():
    with pytest.raises(UserError, match=r"codes in \{-1, 0, 1\}"):
        pack_ternary(np.array([[2]]))
    with pytest.raises(UserError, match=r"codes in \{-1, \+1\}"):
        pack_binary(np.array([[0]]))
    with pytest.raises(UserError, match="cannot hold 9 output rows"):
        unpack_ternary(np.zeros((2, 3), np.uint8), 9)
    with pytest.raises(UserError, match="2-D"):
        pack_ternary(np.zeros(3))
