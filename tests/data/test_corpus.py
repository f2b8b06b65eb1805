"""Embedded corpora and the byte tokenizer."""

import hashlib
import string
import time

import numpy as np
import pytest

from bitnet_jax.data import SOURCES, ByteTokenizer, get_tokenizer, load_corpus
from bitnet_jax.errors import DataError


@pytest.fixture(scope="module")
def docs():
    return load_corpus("python_docs")


def test_python_docs_is_english_prose(docs):
    assert docs.name == "python_docs" and docs.n_documents > 50
    assert len(docs.text) > 300_000
    text = docs.text.decode("utf-8")  # raises if not valid UTF-8
    printable = set(string.printable.encode())
    assert sum(b in printable for b in docs.text) / len(docs.text) > 0.95
    assert text.count(" the ") > 1000


def test_python_docs_hash_and_determinism(docs):
    assert docs.sha256 == hashlib.sha256(docs.text).hexdigest()
    assert load_corpus("python_docs").sha256 == docs.sha256


def test_python_docs_loads_fast():
    t0 = time.perf_counter()
    load_corpus("python_docs")
    assert time.perf_counter() - t0 < 0.5


def test_max_bytes_truncates(docs):
    small = load_corpus("python_docs", max_bytes=1000)
    assert small.text == docs.text[:1000]
    assert small.sha256 == hashlib.sha256(docs.text[:1000]).hexdigest()


def test_python_stdlib():
    corpus = load_corpus("python_stdlib", max_bytes=200_000)
    assert len(corpus.text) == 200_000
    assert b"def " in corpus.text and b"import " in corpus.text
    assert corpus.n_documents > 1
    assert corpus.text[:100_000] == load_corpus("python_stdlib", max_bytes=100_000).text


def test_unknown_source():
    with pytest.raises(DataError, match="python_docs"):
        load_corpus("wikipedia")
    assert "python_stdlib" in SOURCES


def test_byte_tokenizer_round_trip():
    tok = get_tokenizer("byte")
    assert isinstance(tok, ByteTokenizer) and tok.vocab_size == 256
    s = "naïve café ✓"
    ids = tok.encode(s)
    assert ids.dtype == np.uint16
    assert ids.tolist() == list(s.encode("utf-8"))
    assert len(ids) == 16  # ï, é: 2 bytes; ✓: 3 bytes
    assert tok.decode(ids) == s
    assert tok.encode(s.encode("utf-8")).tolist() == ids.tolist()


def test_byte_tokenizer_decode_replaces_broken_utf8():
    tok = ByteTokenizer()
    assert tok.decode([0x61, 0xE2, 0x9C]) == "a\ufffd"


def test_unknown_tokenizer():
    with pytest.raises(DataError, match="byte"):
        get_tokenizer("gpt2")


def test_files_source_reads_globs_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe not utf-8")
    corpus = load_corpus("files", paths=(str(tmp_path / "**" / "*.txt"),), text_errors="skip")
    assert corpus.text == b"first\n\nsecond" and corpus.n_documents == 2
    with pytest.raises(DataError, match="matched no files"):
        load_corpus("files", paths=(str(tmp_path / "*.md"),))
