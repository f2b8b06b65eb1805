"""Tokenizers: a token stream of ids in [0, vocab_size).

Three kinds share one small interface (`.encode(text) -> np.ndarray`, `.decode(ids) -> str`, `.vocab_size`, `.name`,
`.sha256`): bytes (no files), SentencePiece `.model` files (trained here on the corpus when asked), and Hugging Face
`tokenizers` JSON files. `load_tokenizer(data_config)` rebuilds a run's tokenizer from its saved config alone.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from bitnet_jax.errors import DataError

TOKENIZERS = ("byte", "sentencepiece", "hf")
_CHUNK_CHARS = 1 << 16  # encode long texts in pieces of about this many characters, cut at newlines


def _ids(ids: list[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    """Token ids in the narrowest unsigned dtype that holds the vocabulary (uint16 up to 65536 ids)."""
    return np.asarray(ids, dtype=np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def _as_str(text: bytes | str) -> str:
    return text.decode("utf-8") if isinstance(text, bytes) else text


def _chunks(text: str) -> list[str]:
    """`text` cut after newlines into pieces of about _CHUNK_CHARS (no character is lost or moved)."""
    out, start = [], 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK_CHARS)
        end = len(text) if end < 0 else end + 1
        out.append(text[start:end])
        start = end
    return out


class ByteTokenizer:
    """One token per UTF-8 byte: no training, no files, exactly 1 byte per token."""

    name = "byte"
    vocab_size = 256
    sha256 = "byte"

    def encode(self, text: bytes | str) -> np.ndarray:
        if isinstance(text, str):
            text = text.encode("utf-8")
        return np.frombuffer(text, dtype=np.uint8).astype(np.uint16)

    def decode(self, ids) -> str:
        return bytes(np.asarray(ids, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


class SentencePieceTokenizer:
    """A SentencePiece `.model` file (unigram or BPE), encoded without adding BOS/EOS."""

    name = "sentencepiece"

    def __init__(self, path: str | Path):
        import sentencepiece as spm

        self.path = Path(path)
        blob = _read_model(self.path, "SentencePiece .model")
        self.processor = spm.SentencePieceProcessor()
        try:
            self.processor.LoadFromSerializedProto(blob)
        except (RuntimeError, OSError) as e:
            raise DataError(f"{self.path}: not a SentencePiece model ({e}); point data.tokenizer_path at a .model "
                            f"file or delete it so it is trained again") from None
        self.vocab_size = self.processor.get_piece_size()
        self.sha256 = hashlib.sha256(blob).hexdigest()

    def encode(self, text: bytes | str) -> np.ndarray:
        pieces = self.processor.encode(_chunks(_as_str(text)))
        return _ids([i for piece in pieces for i in piece], self.vocab_size)

    def decode(self, ids) -> str:
        return self.processor.decode([int(i) for i in ids])


class HFTokenizer:
    """A Hugging Face `tokenizers` JSON file (tokenizer.json), encoded without special tokens."""

    name = "hf"

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer

        self.path = Path(path)
        blob = _read_model(self.path, "Hugging Face tokenizer.json")
        try:
            self.tokenizer = Tokenizer.from_str(blob.decode("utf-8"))
        except Exception as e:  # noqa: BLE001 -- the Rust side raises its own exception types
            raise DataError(f"{self.path}: not a Hugging Face tokenizers JSON file ({str(e).splitlines()[0]}); "
                            f"point data.tokenizer_path at a tokenizer.json") from None
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self.sha256 = hashlib.sha256(blob).hexdigest()

    def encode(self, text: bytes | str) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(_chunks(_as_str(text)), add_special_tokens=False)
        return _ids([i for e in encodings for i in e.ids], self.vocab_size)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


Tokenizer = ByteTokenizer | SentencePieceTokenizer | HFTokenizer


def _read_model(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the {what} {path} ({e.strerror}); set data.tokenizer_path to an existing "
                        f"file") from None


def get_tokenizer(name: str, path: str | Path | None = None) -> Tokenizer:
    """The tokenizer `name` (byte | sentencepiece | hf); the latter two load the model file at `path`."""
    if name not in TOKENIZERS:
        raise DataError(f"unknown tokenizer {name!r}; set data.tokenizer to one of {', '.join(TOKENIZERS)}")
    if name == "byte":
        return ByteTokenizer()
    if path is None:
        raise DataError(f"data.tokenizer={name} needs data.tokenizer_path (a "
                        f"{'.model' if name == 'sentencepiece' else 'tokenizer.json'} file)")
    return SentencePieceTokenizer(path) if name == "sentencepiece" else HFTokenizer(path)


def tokenizer_path(data_config) -> Path | None:
    """Where the config's tokenizer model lives: data.tokenizer_path, or for a SentencePiece model trained here
    without one, a file in the cache named by the source and the training options (so a saved config finds it)."""
    from bitnet_jax.data.cache import cache_dir
    from bitnet_jax.data.sources import describe_source

    if data_config.tokenizer == "byte":
        return None
    if data_config.tokenizer_path:
        return Path(os.path.expanduser(data_config.tokenizer_path))
    if data_config.tokenizer != "sentencepiece":
        raise DataError(f"data.tokenizer={data_config.tokenizer} needs data.tokenizer_path (a tokenizer.json file)")
    key = hashlib.sha256(repr((describe_source(data_config, with_stats=False), data_config.tokenizer_vocab_size,
                               data_config.sentencepiece_type)).encode()).hexdigest()[:16]
    return cache_dir(data_config) / "tokenizers" / f"sentencepiece-{key}.model"


def load_tokenizer(data_config) -> Tokenizer:
    """The tokenizer a run with this `DataConfig` trained on (byte, or the model file it used or trained)."""
    path = tokenizer_path(data_config)
    if path is not None and not path.exists() and data_config.tokenizer == "sentencepiece":
        raise DataError(f"SentencePiece model {path} does not exist; train it by running `bitnet-jax train` with "
                        f"this data config once, or set data.tokenizer_path to an existing .model file")
    return get_tokenizer(data_config.tokenizer, path)


def train_sentencepiece(texts, path: str | Path, vocab_size: int, model_type: str = "unigram",
                        max_sentences: int = 2_000_000) -> Path:
    """Train a SentencePiece model on an iterable of UTF-8 documents and write it to `path` (atomically).

    Lossless settings for language modelling: no normalisation, whitespace kept as is, no dummy prefix, byte
    fallback for characters outside the vocabulary, so decode(encode(text)) == text. An existing file at `path` is
    kept (runs of a sweep that train the same model at once end up sharing one)."""
    import sentencepiece as spm

    from bitnet_jax.files import write_atomic

    def lines():
        n = 0
        for doc in texts:
            for line in _as_str(doc).splitlines():
                if line.strip():
                    yield line
                    n += 1
                    if n >= max_sentences:
                        return

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines(), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=0.9995, byte_fallback=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=False, allow_whitespace_only_pieces=True,
            split_digits=True, hard_vocab_limit=False, bos_id=-1, eos_id=-1, num_threads=os.cpu_count() or 1,
            minloglevel=2)
    except RuntimeError as e:
        raise DataError(f"SentencePiece training failed: {str(e).splitlines()[0]}; change "
                        f"data.tokenizer_vocab_size (byte fallback needs room for 256 byte pieces plus the corpus's "
                        f"characters) or give a larger corpus") from None
    write_atomic(path, model.getvalue(), replace=False)  # concurrent sweep runs all use the first model
    return Path(path)
