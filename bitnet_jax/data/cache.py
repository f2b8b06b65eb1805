"""The token cache: a tokenised corpus stored once as a flat uint16/uint32 file and memory-mapped by every run.

An entry is `<cache>/tokens/<key>.bin` plus `<key>.json`, its manifest, where key = hash(source description,
tokenizer identity). The token file is written under a temporary name and renamed into place, and the manifest is
written last, so an entry without a manifest is unfinished. On reuse the manifest, the file size and (for files up
to VERIFY_MAX_BYTES) the SHA-256 of the tokens are checked; an entry that fails is rebuilt. The manifest also keeps
the count of empty documents, so a cache hit reports what the first tokenisation saw (a manifest without it, from
before it was kept, is rebuilt rather than guessed).

The cache directory is data.cache_dir, else $BITNET_JAX_CACHE, else ~/.cache/bitnet_jax.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from bitnet_jax.data.sources import TextStream
from bitnet_jax.errors import DataError
from bitnet_jax.files import write_atomic

ENV_VAR = "BITNET_JAX_CACHE"
DEFAULT_DIR = "~/.cache/bitnet_jax"
FORMAT = 1
VERIFY_MAX_BYTES = 2 << 30  # larger token files are checked by size only (hashing them would slow every start)
_HASH_BLOCK = 1 << 24


def cache_dir(data_config=None) -> Path:
    where = getattr(data_config, "cache_dir", None) or os.environ.get(ENV_VAR) or DEFAULT_DIR
    return Path(os.path.expanduser(where))


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def cache_key(source: dict, tokenizer) -> str:
    ident = {"format": FORMAT, "source": source, "tokenizer": [tokenizer.name, tokenizer.sha256]}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def read_entry(directory: Path, key: str) -> tuple[np.ndarray, dict] | None:
    """(memory-mapped tokens, manifest) of a complete, intact entry, else None."""
    tokens_path, manifest_path = directory / f"{key}.bin", directory / f"{key}.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        dtype = np.dtype(manifest["dtype"])
        if manifest.get("format") != FORMAT or manifest.get("key") != key:
            return None
        if not isinstance(manifest.get("empty_documents"), int):
            return None
        size = tokens_path.stat().st_size
        if size != manifest["n_tokens"] * dtype.itemsize or size == 0:
            return None
        if size <= VERIFY_MAX_BYTES and _file_sha256(tokens_path) != manifest["tokens_sha256"]:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return np.memmap(tokens_path, dtype=dtype, mode="r"), manifest


def encode_stream(chunks: Iterable[bytes], tokenizer, write: Callable[[np.ndarray], None],
                  group_bytes: int = 1 << 22) -> tuple[int, str]:
    """Tokenise consecutive text chunks in groups of about `group_bytes` (cut between chunks), passing each group's
    ids to `write`. Returns (text bytes, SHA-256 of the text)."""
    h, n_bytes, group, size = hashlib.sha256(), 0, [], 0

    def flush():
        text = b"".join(group)
        if text:
            write(tokenizer.encode(text if tokenizer.name == "byte" else text.decode("utf-8", errors="ignore")))

    for chunk in chunks:
        h.update(chunk)
        n_bytes += len(chunk)
        group.append(chunk)
        size += len(chunk)
        if size >= group_bytes:
            flush()
            group, size = [], 0
    flush()
    return n_bytes, h.hexdigest()


def build_entry(directory: Path, key: str, source: dict, text: TextStream, tokenizer) -> tuple[np.ndarray, dict]:
    """Tokenise the stream into a new cache entry (token file renamed into place, then the manifest)."""
    directory.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tokenizer.vocab_size)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}.", suffix=".bin")
    tokens_hash, n_tokens = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as f:
            def write(ids: np.ndarray) -> None:
                nonlocal n_tokens
                blob = np.ascontiguousarray(ids, dtype=dtype).tobytes()
                tokens_hash.update(blob)
                f.write(blob)
                n_tokens += len(ids)

            n_bytes, text_sha = encode_stream(text, tokenizer, write)
            f.flush()
            os.fsync(f.fileno())
        if n_tokens == 0:
            raise empty_corpus(source, text)
        os.replace(tmp, directory / f"{key}.bin")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    manifest = {"format": FORMAT, "key": key, "source": source,
                "tokenizer": {"name": tokenizer.name, "sha256": tokenizer.sha256, "vocab_size": tokenizer.vocab_size},
                "n_tokens": n_tokens, "n_bytes": n_bytes, "bytes_per_token": n_bytes / n_tokens,
                "dtype": dtype.name, "text_sha256": text_sha, "tokens_sha256": tokens_hash.hexdigest(),
                "empty_documents": text.empty_documents}
    write_atomic(directory / f"{key}.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return np.memmap(directory / f"{key}.bin", dtype=dtype, mode="r"), manifest


def source_label(source: dict) -> str:
    return source.get("name") or source.get("kind", "?")


def empty_corpus(source: dict, text: TextStream) -> DataError:
    return DataError(f"the corpus ({source_label(source)}) is empty: {text.empty_documents} empty documents and no "
                     f"text; check data.source / data.paths")


def cached_tokens(directory: Path, source: dict, text: Callable[[], TextStream], tokenizer
                  ) -> tuple[np.ndarray, dict]:
    """The tokens of a source from the cache, tokenising (`text()`) only on a miss or a damaged entry."""
    key = cache_key(source, tokenizer)
    found = read_entry(directory, key)
    return found if found is not None else build_entry(directory, key, source, text(), tokenizer)


def uncached_tokens(source: dict, text: TextStream, tokenizer) -> tuple[np.ndarray, dict]:
    """The same stream and manifest fields, held in memory (small embedded corpora need no cache)."""
    parts: list[np.ndarray] = []
    n_bytes, text_sha = encode_stream(text, tokenizer, parts.append)
    tokens = np.concatenate(parts) if parts else np.zeros(0, token_dtype(tokenizer.vocab_size))
    if len(tokens) == 0:
        raise empty_corpus(source, text)
    return tokens, {"n_tokens": len(tokens), "n_bytes": n_bytes, "bytes_per_token": n_bytes / len(tokens),
                    "text_sha256": text_sha, "empty_documents": text.empty_documents}
