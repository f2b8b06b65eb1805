"""Embedded corpora, tokenizers and deterministic batches."""

from bitnet_jax.data.batches import (TokenData, build_token_data, check_window, train_batch, unigram_bits_per_byte,
                                     val_batches)
from bitnet_jax.data.corpus import SOURCES, Corpus, load_corpus
from bitnet_jax.data.tokenizer import TOKENIZERS, ByteTokenizer, get_tokenizer

__all__ = [
    "SOURCES",
    "TOKENIZERS",
    "ByteTokenizer",
    "Corpus",
    "TokenData",
    "build_token_data",
    "check_window",
    "get_tokenizer",
    "load_corpus",
    "train_batch",
    "unigram_bits_per_byte",
    "val_batches",
]
