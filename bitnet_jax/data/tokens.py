"""Pre-tokenised corpora: `.npy` arrays and raw `.bin` files of token ids, memory-mapped (never read whole)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bitnet_jax.data.corpus import file_paths
from bitnet_jax.errors import DataError

BIN_DTYPES = ("uint8", "uint16", "uint32", "int32", "int64")


def open_token_file(path: Path, dtype: str = "uint16") -> np.ndarray:
    """A 1-D integer token array: `.npy` through np.load(mmap_mode="r"), anything else as raw `dtype` values."""
    if path.suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: not a readable .npy array ({e}); write it with numpy.save") from None
    else:
        if dtype not in BIN_DTYPES:
            raise DataError(f"data.token_dtype={dtype!r} is not one of {', '.join(BIN_DTYPES)}")
        size, itemsize = path.stat().st_size, np.dtype(dtype).itemsize
        if size == 0 or size % itemsize:
            raise DataError(f"{path}: {size} bytes is not a whole number of {dtype} tokens; set data.token_dtype to "
                            f"the dtype the file was written with")
        arr = np.memmap(path, dtype=dtype, mode="r")
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or len(arr) == 0:
        raise DataError(f"{path}: expected a non-empty 1-D integer array of token ids, got {arr.dtype} "
                        f"shape {arr.shape}; flatten it and save integer ids")
    return arr


def load_token_files(patterns: tuple[str, ...], dtype: str, vocab_size: int | None
                     ) -> tuple[np.ndarray, int, str]:
    """(tokens, vocab size, identity hash) of the token files, concatenated in sorted path order.

    A single file stays memory-mapped; several are copied into one array. The vocabulary is data.tokens_vocab_size
    or, unset, the largest id + 1. Ids outside [0, vocab) are an error."""
    paths = file_paths(patterns)
    arrays = [open_token_file(p, dtype) for p in paths]
    tokens = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    lo, hi = int(tokens.min()), int(tokens.max())
    vocab = vocab_size if vocab_size is not None else hi + 1
    if lo < 0 or hi >= vocab:
        raise DataError(f"token ids range over [{lo}, {hi}], outside the vocabulary [0, {vocab}); set "
                        f"data.tokens_vocab_size above {hi} (or fix data.token_dtype)")
    ident = hashlib.sha256(repr([(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths])
                           .encode()).hexdigest()
    return tokens, vocab, ident
