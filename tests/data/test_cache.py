"""The token cache: contents checked against the tokenizer library, reuse, and rebuild after damage."""

import hashlib
import json

import numpy as np
import pytest
import sentencepiece as spm

from bitnet_jax import config
from bitnet_jax.data import load_token_data, pipeline
from bitnet_jax.data.cache import cache_dir

DOCS = ["Hello world, this is the first document.", "A second one:\n  indented  code\n", "third ✓ naïve"] * 20


@pytest.fixture
def setup(tmp_path, sp_model):
    model = sp_model
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    cfg = config.load(None, [f"data.source={corpus}", "data.tokenizer=sentencepiece",
                             f"data.tokenizer_path={model}", "data.val_fraction=0.1"]).data
    return cfg, model


def entry_files(token_cache):
    return sorted((token_cache / "tokens").glob("*.bin")), sorted((token_cache / "tokens").glob("*.json"))


def count_tokenisations(monkeypatch):
    calls = []
    real = pipeline.iter_text

    def counting(cfg):
        calls.append(1)
        return real(cfg)

    monkeypatch.setattr(pipeline, "iter_text", counting)
    return calls


def test_entry_matches_the_library_and_is_reused(setup, token_cache, monkeypatch):
    cfg, model = setup
    calls = count_tokenisations(monkeypatch)
    data = load_token_data(cfg, seq_len=8)
    text = "\n\n".join(DOCS).encode("utf-8")
    ref = spm.SentencePieceProcessor(model_file=str(model)).encode(text.decode())
    np.testing.assert_array_equal(np.concatenate([data.train, data.tune, data.val]), ref)
    (bins, manifests) = entry_files(token_cache)
    assert len(bins) == len(manifests) == 1 and isinstance(data.train, np.memmap)
    manifest = json.loads(manifests[0].read_text())
    assert manifest["n_tokens"] == len(ref) and manifest["n_bytes"] == len(text)
    assert manifest["dtype"] == "uint16" and manifest["bytes_per_token"] == pytest.approx(len(text) / len(ref))
    assert manifest["text_sha256"] == hashlib.sha256(text).hexdigest() == data.sha256
    assert manifest["tokens_sha256"] == hashlib.sha256(np.asarray(ref, np.uint16).tobytes()).hexdigest()
    assert manifest["tokenizer"]["name"] == "sentencepiece" and manifest["source"]["kind"] == "files"
    assert data.bytes_per_token == pytest.approx(len(text) / len(ref))
    again = load_token_data(cfg, seq_len=8)
    assert calls == [1]  # the second run read the cache: no tokenisation
    np.testing.assert_array_equal(again.train, data.train)


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_manifest", "bad_manifest"])
def test_damaged_entry_is_rebuilt(setup, token_cache, monkeypatch, damage):
    cfg, _ = setup
    calls = count_tokenisations(monkeypatch)
    first = load_token_data(cfg, seq_len=8)
    good = np.concatenate([first.train, first.tune, first.val])
    (tokens_file,), (manifest_file,) = entry_files(token_cache)
    blob = tokens_file.read_bytes()
    if damage == "truncate":
        tokens_file.write_bytes(blob[:-2])
    elif damage == "flip":
        tokens_file.write_bytes(blob[:10] + bytes([blob[10] ^ 1]) + blob[11:])
    elif damage == "no_manifest":
        manifest_file.unlink()
    else:
        manifest_file.write_text(manifest_file.read_text()[:40])
    data = load_token_data(cfg, seq_len=8)
    assert calls == [1, 1]
    np.testing.assert_array_equal(np.concatenate([data.train, data.tune, data.val]), good)
    assert tokens_file.read_bytes() == blob and json.loads(manifest_file.read_text())["n_tokens"] == len(good)


def test_key_depends_on_tokenizer_and_source(setup, token_cache, tmp_path):
    cfg, _ = setup
    load_token_data(cfg, seq_len=8)
    byte_cfg = config.load(None, [f"data.source={cfg.source}", "data.val_fraction=0.1"]).data
    load_token_data(byte_cfg, seq_len=8)
    assert len(entry_files(token_cache)[0]) == 2
    with open(cfg.source, "a") as f:  # an edited file is a new corpus
        f.write(json.dumps({"text": "one more document"}) + "\n")
    load_token_data(byte_cfg, seq_len=8)
    assert len(entry_files(token_cache)[0]) == 3


def test_cache_directory_precedence(tmp_path, token_cache, monkeypatch):
    assert cache_dir(config.load(None, []).data) == token_cache  # $BITNET_JAX_CACHE
    assert cache_dir(config.load(None, [f"data.cache_dir={tmp_path}/mine"]).data) == tmp_path / "mine"
    monkeypatch.delenv("BITNET_JAX_CACHE")
    assert str(cache_dir(config.load(None, []).data)).endswith(".cache/bitnet_jax")
