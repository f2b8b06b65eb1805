"""Every text source behind one interface: `iter_text(data_config)`, a TextStream of the corpus as UTF-8 chunks.

Sources: the embedded corpora (python_docs, python_stdlib), local files (`.txt` or any text file read whole; `.jsonl`
one document per line under data.text_field), and TFDS datasets (tfds). Documents are joined by a blank line and the
stream is cut at data.max_bytes. An empty document (an empty file, a record with no text) adds nothing to the stream
and is counted. Pre-tokenised arrays (`.npy`, `.bin`) skip text entirely (see tokens.py).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from bitnet_jax.data.corpus import SEP, file_paths, python_docs, read_utf8, stdlib_paths
from bitnet_jax.errors import DataError

TEXT_SOURCES = ("python_docs", "python_stdlib", "files", "tfds")
TOKEN_SUFFIXES = (".npy", ".bin")
TEXT_ERRORS = ("strict", "skip", "replace")


def resolve_source(data_config) -> tuple[str, tuple[str, ...]]:
    """(kind, paths): a named source as is; a path or glob in data.source means files (or tokens for .npy/.bin)."""
    source, paths = data_config.source, tuple(data_config.paths)
    if source in (*TEXT_SOURCES, "tokens", "markov"):
        return source, paths
    if "/" in source or "*" in source or Path(source).suffix:
        kind = "tokens" if Path(source).suffix in TOKEN_SUFFIXES else "files"
        return kind, (source, *paths)
    raise DataError(f"unknown data source {source!r}; set data.source to one of {', '.join(TEXT_SOURCES)}, tokens, "
                    f"markov, or a file path / glob such as corpus/*.jsonl")


def tfds_data_dir(data_dir: str | None) -> str:
    """The TFDS data directory: data.tfds_data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (tfds's own)."""
    return os.path.abspath(os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"))


def describe_source(data_config, with_stats: bool = True) -> dict:
    """What the corpus is made of, as plain data: the cache key and the manifest's `source` entry. With stats,
    local files are listed with their size and modification time, so an edited file makes a new cache entry."""
    kind, paths = resolve_source(data_config)
    out = {"kind": kind, "max_bytes": data_config.max_bytes}
    if kind in ("python_docs", "python_stdlib"):
        out["python"] = sys.version.split()[0]
    elif kind in ("files", "tokens"):
        out.update(text_field=data_config.text_field, text_errors=data_config.text_errors)
        if with_stats:
            out["files"] = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in file_paths(paths)]
        else:
            out["paths"] = [os.path.abspath(os.path.expanduser(p)) for p in paths]
    elif kind == "tfds":
        out.update(name=data_config.tfds_name, split=data_config.tfds_split, feature=data_config.tfds_feature,
                   data_dir=tfds_data_dir(data_config.tfds_data_dir))
        if with_stats:  # a rebuilt dataset (same name) is a new corpus
            from bitnet_jax.data.tfds_source import prepared_files

            out["files"] = prepared_files(data_config.tfds_name, data_config.tfds_data_dir)
    return out


class TextStream:
    """A corpus as consecutive UTF-8 chunks: its documents joined by a blank line, cut at max_bytes. Empty documents
    are left out of the text; reading the stream counts them (`empty_documents`) and the others (`documents`), so
    the count of files or records that held no text can be reported with the run. Read it once."""

    def __init__(self, docs: Iterable[bytes], max_bytes: int | None):
        self._docs, self._max_bytes = docs, max_bytes
        self.documents = self.empty_documents = 0

    def __iter__(self) -> Iterator[bytes]:
        return _joined(self._counted(), self._max_bytes)

    def _counted(self) -> Iterator[bytes]:
        for doc in self._docs:
            if doc:
                self.documents += 1
                yield doc
            else:
                self.empty_documents += 1


def iter_text(data_config) -> TextStream:
    """The corpus of a text source as consecutive UTF-8 chunks (documents and blank-line separators), cut at
    data.max_bytes."""
    kind, paths = resolve_source(data_config)
    if kind == "python_docs":
        docs = iter(python_docs())
    elif kind == "python_stdlib":
        docs = read_utf8(stdlib_paths())
    elif kind == "files":
        docs = iter_file_documents(file_paths(paths), data_config.text_field, data_config.text_errors)
    elif kind == "tfds":
        from bitnet_jax.data.tfds_source import iter_tfds_documents

        docs = iter_tfds_documents(data_config)
    else:
        raise DataError(f"data.source={data_config.source!r} is not a text source")
    return TextStream(docs, data_config.max_bytes)


def _joined(docs: Iterable[bytes], max_bytes: int | None) -> Iterator[bytes]:
    left = max_bytes if max_bytes is not None else float("inf")
    first = True
    for doc in docs:
        for piece in ((b"" if first else SEP), doc):
            piece = piece[: int(min(left, len(piece)))]
            if piece:
                yield piece
                left -= len(piece)
        first = False
        if left <= 0:
            return


def iter_file_documents(paths: list[Path], text_field: str = "text", errors: str = "strict") -> Iterator[bytes]:
    """Documents of local files: a `.jsonl` file gives one per line (its `text_field`), any other file one whole.

    An empty document comes out as b"" (TextStream counts it and adds no text): a file holding only whitespace, a
    `.jsonl` file with no records, a record whose text is "". errors, for bytes that are not UTF-8: strict -- stop
    with the file and byte offset; skip -- leave the file out; replace -- bad bytes become U+FFFD."""
    if errors not in TEXT_ERRORS:
        raise DataError(f"data.text_errors={errors!r} is not one of {', '.join(TEXT_ERRORS)}")
    for path in paths:
        raw = path.read_bytes()
        if not raw.strip():
            yield b""
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if errors == "skip":
                continue
            if errors == "strict":
                raise DataError(f"{path}: not UTF-8 at byte offset {e.start} ({raw[e.start:e.start + 4]!r}); "
                                f"re-encode the file or set data.text_errors=skip (drop such files) or replace "
                                f"(U+FFFD for bad bytes)") from None
            raw = raw.decode("utf-8", errors="replace").encode("utf-8")
        if path.suffix == ".jsonl":
            yield from _jsonl_documents(path, raw, text_field)
        else:
            yield raw


def _jsonl_documents(path: Path, raw: bytes, field: str) -> Iterator[bytes]:
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not a JSON object ({e.msg}); fix the line or remove it") from None
        if not isinstance(record, dict) or field not in record:
            keys = ", ".join(map(str, record)) if isinstance(record, dict) else type(record).__name__
            raise DataError(f"{path}:{number}: no field {field!r} (has: {keys}); set data.text_field to the field "
                            f"that holds the text")
        text = record[field]
        if not isinstance(text, str):
            raise DataError(f"{path}:{number}: field {field!r} is {type(text).__name__}, not a string; set "
                            f"data.text_field to a text field")
        yield text.encode("utf-8")
