"""Tokenizers against their own libraries: SentencePiece (trained here) and Hugging Face tokenizers JSON."""

import numpy as np
import pytest
import sentencepiece as spm

from bitnet_jax import config
from bitnet_jax.data import ByteTokenizer, get_tokenizer, load_tokenizer
from bitnet_jax.data.tokenizer import tokenizer_path, train_sentencepiece
from bitnet_jax.errors import ConfigError, DataError

SAMPLE = "def area(r):\n    return  3.14159 * r ** 2   # naïve ✓\n\n\tTabs and  double  spaces stay.\n"


def test_sentencepiece_matches_the_library(sp_model):
    ours = get_tokenizer("sentencepiece", sp_model)
    ref = spm.SentencePieceProcessor(model_file=str(sp_model))
    assert ours.vocab_size == ref.get_piece_size() <= 400
    for text in (SAMPLE, "The quick brown fox.", "emoji 🙂 and 中文 are byte-fallback pieces"):
        ids = ours.encode(text)
        assert ids.dtype == np.uint16
        assert ids.tolist() == ref.encode(text)
        assert ours.decode(ids) == ref.decode(ref.encode(text)) == text  # lossless: whitespace and bytes kept
    assert ours.encode(SAMPLE.encode("utf-8")).tolist() == ref.encode(SAMPLE)
    assert len(ours.encode(SAMPLE)) < len(SAMPLE.encode("utf-8"))  # pieces are longer than a byte


def test_hf_tokenizers_json_matches_the_library(tmp_path, prose):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(prose, trainers.BpeTrainer(vocab_size=500, special_tokens=["[UNK]"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    tok.save(str(tmp_path / "tokenizer.json"))
    ours = get_tokenizer("hf", tmp_path / "tokenizer.json")
    ref = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert ours.vocab_size == ref.get_vocab_size()
    ids = ours.encode(SAMPLE)
    assert ids.tolist() == ref.encode(SAMPLE, add_special_tokens=False).ids
    assert ours.decode(ids) == ref.decode(ids.tolist()) == SAMPLE


def test_load_tokenizer_from_a_data_config(tmp_path, sp_model, token_cache):
    assert isinstance(load_tokenizer(config.load(None, []).data), ByteTokenizer)
    explicit = config.load(None, ["data.tokenizer=sentencepiece", f"data.tokenizer_path={sp_model}"]).data
    tok = load_tokenizer(explicit)
    assert tok.name == "sentencepiece" and tok.decode(tok.encode(SAMPLE)) == SAMPLE
    # Trained without a path: the model lives in the cache under a name the config alone determines.
    implicit = config.load(None, ["data.tokenizer=sentencepiece", "data.tokenizer_vocab_size=300"]).data
    path = tokenizer_path(implicit)
    assert path.parent == token_cache / "tokenizers" and path.suffix == ".model"
    with pytest.raises(DataError, match="does not exist; train it"):
        load_tokenizer(implicit)
    path.parent.mkdir(parents=True)
    path.write_bytes(sp_model.read_bytes())
    assert load_tokenizer(implicit).sha256 == tok.sha256


def test_tokenizer_errors(tmp_path):
    with pytest.raises(DataError, match="sentencepiece, hf"):
        get_tokenizer("gpt2")
    with pytest.raises(DataError, match="cannot read"):
        get_tokenizer("sentencepiece", tmp_path / "missing.model")
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a SentencePiece model"):
        get_tokenizer("sentencepiece", tmp_path / "junk.model")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(DataError, match="not a Hugging Face tokenizers JSON"):
        get_tokenizer("hf", tmp_path / "junk.json")
    with pytest.raises(ConfigError, match="tokenizer_path"):
        config.load(None, ["data.tokenizer=hf"])
    with pytest.raises(ConfigError, match="byte, sentencepiece, hf"):
        config.load(None, ["data.tokenizer=bpe"])


def test_training_keeps_an_existing_model(tmp_path, sp_model, prose):
    target = tmp_path / "shared.model"
    target.write_bytes(sp_model.read_bytes())
    train_sentencepiece(prose[:5], target, vocab_size=400)  # a concurrent run finished first: its model stays
    assert target.read_bytes() == sp_model.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name != "shared.model"]  # no temporary file left behind
