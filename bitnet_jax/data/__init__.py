"""Data: sources (embedded, local text/jsonl, TFDS, pre-tokenised), tokenizers, the token cache and batches."""

from bitnet_jax.data.batches import (
                                     TokenData,
                                     TrainBatches,
                                     build_token_data,
                                     check_window,
                                     host_train_batch,
                                     train_batch,
                                     unigram_bits_per_byte,
                                     val_batches,
)
from bitnet_jax.data.corpus import SOURCES, Corpus, load_corpus
from bitnet_jax.data.pipeline import check_same_tokenizer, load_token_data
from bitnet_jax.data.tokenizer import (
                                     TOKENIZERS,
                                     ByteTokenizer,
                                     HFTokenizer,
                                     SentencePieceTokenizer,
                                     Tokenizer,
                                     get_tokenizer,
                                     load_tokenizer,
)

__all__ = [
    "SOURCES",
    "TOKENIZERS",
    "ByteTokenizer",
    "Corpus",
    "HFTokenizer",
    "SentencePieceTokenizer",
    "TokenData",
    "Tokenizer",
    "TrainBatches",
    "build_token_data",
    "check_same_tokenizer",
    "check_window",
    "get_tokenizer",
    "host_train_batch",
    "load_corpus",
    "load_token_data",
    "load_tokenizer",
    "train_batch",
    "unigram_bits_per_byte",
    "val_batches",
]
