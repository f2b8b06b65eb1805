"""Embedded text corpora that ship with the Python interpreter (no download), and `load_corpus` for small corpora
held in memory as one UTF-8 string (sources.py streams the same text for the token cache)."""

from __future__ import annotations

import glob
import hashlib
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bitnet_jax.errors import DataError

SOURCES = ("python_docs", "python_stdlib", "files")
SEP = b"\n\n"
_SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "__pycache__"}


@dataclass(frozen=True)
class Corpus:
    name: str
    text: bytes  # UTF-8
    sha256: str  # hex digest of text
    n_documents: int  # documents with text in the (max_bytes-cut) corpus
    empty_documents: int = 0  # documents without text, left out


def python_docs() -> list[bytes]:
    from pydoc_data.topics import topics

    return [topics[key].encode("utf-8") for key in sorted(topics)]


def stdlib_paths() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        rels += [(Path(dirpath) / f).relative_to(root).as_posix() for f in filenames if f.endswith(".py")]
    # POSIX relative paths sort the same way on every OS.
    return [root / r for r in sorted(rels)]


def file_paths(patterns: tuple[str, ...]) -> list[Path]:
    """Every file matched by the glob patterns (`**` recurses), sorted, each once."""
    found = set()
    for pattern in patterns:
        found.update(p for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p))
    if not found:
        raise DataError(f"data paths {list(patterns)} matched no files; give existing files or glob patterns "
                        f"such as 'corpus/**/*.txt' (data.source or data.paths)")
    return [Path(p) for p in sorted(found)]


def read_utf8(paths: list[Path]) -> Iterator[bytes]:
    """The files that are valid UTF-8 (others are skipped), each read when the stream asks for it: a stream cut at
    max_bytes stops asking, so no more is read than it needs."""
    for path in paths:
        with open(path, "rb") as f:
            raw = f.read()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        yield raw


def load_corpus(source: str = "python_docs", max_bytes: int | None = None, paths: tuple[str, ...] = (),
                text_field: str = "text", text_errors: str = "strict") -> Corpus:
    """Load a corpus as UTF-8 bytes, documents joined by a blank line, truncated to max_bytes.

    `python_docs` and `python_stdlib` ship with the interpreter; `files` reads the files matched by the glob
    patterns in `paths`, in sorted order (`.jsonl`: one document per line, its `text_field`; text_errors says what
    to do with non-UTF-8 files: strict | skip | replace). Empty documents are left out and counted."""
    from bitnet_jax.data.sources import TextStream, iter_file_documents

    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; set data.source to one of {', '.join(SOURCES)}")
    if max_bytes is not None and max_bytes <= 0:
        raise DataError(f"data.max_bytes must be positive, got {max_bytes}; raise it or leave it unset")
    if source == "python_docs":
        docs = python_docs()
    elif source == "python_stdlib":
        docs = read_utf8(stdlib_paths())
    else:
        docs = iter_file_documents(file_paths(tuple(paths)), text_field, text_errors)
    stream = TextStream(docs, max_bytes)
    text = b"".join(stream)
    if not text:
        raise DataError(f"corpus {source!r} is empty ({stream.empty_documents} empty documents); choose another "
                        f"data.source or data.paths")
    return Corpus(name=source, text=text, sha256=hashlib.sha256(text).hexdigest(), n_documents=stream.documents,
                  empty_documents=stream.empty_documents)
