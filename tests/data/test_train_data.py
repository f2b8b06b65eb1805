"""End to end: `bitnet-jax train` on a local jsonl corpus with a SentencePiece tokenizer trained on it."""

import json
import math

import numpy as np
import pytest
import sentencepiece as spm

from bitnet_jax import cli
from bitnet_jax.data import load_tokenizer
from bitnet_jax.train import load_run


@pytest.fixture
def corpus(tmp_path, prose):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in prose))
    return path


def test_train_on_jsonl_with_sentencepiece(tmp_path, corpus, tiny, token_cache, capsys):
    out = tmp_path / "run"
    data_args = [f"data.source={corpus}", "data.tokenizer=sentencepiece", "data.tokenizer_vocab_size=400",
                 "model.vocab_size=400"]
    assert cli.main(["train", *tiny, *data_args, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["tokenizer"] == "sentencepiece"
    (manifest_path,) = (token_cache / "tokens").glob("*.json")
    manifest = json.loads(manifest_path.read_text())
    assert summary["bytes_per_token"] == pytest.approx(manifest["bytes_per_token"]) and manifest["n_bytes"] == 60_000
    assert summary["bytes_per_token"] > 1.5  # pieces, not bytes
    assert math.isclose(summary["val_bits_per_byte"],
                        summary["final_val_loss"] / math.log(2) / summary["bytes_per_token"], rel_tol=1e-9)

    # Generation / evaluation rebuild the tokenizer from the run's saved config alone.
    tok = load_tokenizer(load_run(out).config.data)
    (model_file,) = (token_cache / "tokenizers").glob("*.model")
    ref = spm.SentencePieceProcessor(model_file=str(model_file))
    text = "Return the value of x.\n"
    assert tok.encode(text).tolist() == ref.encode(text) and tok.decode(tok.encode(text)) == text
    assert tok.vocab_size <= 400 and np.all(tok.encode(text) < tok.vocab_size)

    # Resuming with another tokenizer would feed the checkpoint different ids: one-line error.
    capsys.readouterr()
    rc = cli.main(["train", *tiny, f"data.source={corpus}", "data.tokenizer=byte", "model.vocab_size=400",
                   "train.steps=14", "--out", str(out), "--resume"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "changes data.tokenizer" in err and len(err.splitlines()) == 1


def test_model_vocab_too_small_for_tokenizer(tmp_path, corpus, tiny, capsys):
    rc = cli.main(["train", *tiny, f"data.source={corpus}", "data.tokenizer=sentencepiece",
                   "data.tokenizer_vocab_size=400", "model.vocab_size=256", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "model.vocab_size=256 is smaller" in err and len(err.splitlines()) == 1
