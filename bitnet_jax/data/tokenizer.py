"""Tokenizers: a token stream of ids in [0, vocab_size)."""

from __future__ import annotations

import numpy as np

from bitnet_jax.errors import DataError


class ByteTokenizer:
    """One token per UTF-8 byte: no training, no files, exactly 1 byte per token."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: bytes | str) -> np.ndarray:
        if isinstance(text, str):
            text = text.encode("utf-8")
        return np.frombuffer(text, dtype=np.uint8).astype(np.uint16)

    def decode(self, ids) -> str:
        return bytes(np.asarray(ids, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


TOKENIZERS = {"byte": ByteTokenizer}


def get_tokenizer(name: str) -> ByteTokenizer:
    if name not in TOKENIZERS:
        raise DataError(f"unknown tokenizer {name!r}; set data.tokenizer to one of {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name]()
