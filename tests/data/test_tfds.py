"""TFDS sources: tfds.testing.mock_data + data_source, and a local ArrayRecord dataset built by `bitnet-jax data build`
(no TensorFlow: both are read through random-access data sources)."""

import importlib.util
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bitnet_jax import cli, config
from bitnet_jax.data import load_token_data
from bitnet_jax.data.tfds_source import _load_tfrecord
from bitnet_jax.errors import DataError


def tfds_config(*overrides):
    return config.load(None, ["data.source=tfds", "data.val_fraction=0.25", *overrides]).data


def stream_bytes(data) -> bytes:
    return bytes(np.concatenate([data.train, data.tune, data.val]).astype(np.uint8))


def as_text(value) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def test_mock_data_through_data_source(tmp_path):
    with tfds.testing.mock_data(num_examples=300):
        data = load_token_data(tfds_config("data.tfds_name=lm1b", f"data.tfds_data_dir={tmp_path}"), seq_len=8)
        reference = tfds.data_source("lm1b", split="train", data_dir=str(tmp_path))
        docs = [as_text(reference[i]["text"]) for i in range(len(reference))]
    assert len(docs) == 300
    assert stream_bytes(data) == b"\n\n".join(d for d in docs if d)
    assert data.empty_documents == sum(not d for d in docs)


@pytest.fixture
def built(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("alpha document ✓\n" * 10)
    (tmp_path / "src" / "b.jsonl").write_text("".join(json.dumps({"body": f"json doc {i}"}) + "\n" for i in range(30)))
    data_dir = tmp_path / "tfds"
    rc = cli.main(["data", "build", "my_text", str(tmp_path / "src" / "*"), "--data-dir", str(data_dir),
                   "--text-field", "body"])
    assert rc == 0
    docs = ["alpha document ✓\n" * 10] + [f"json doc {i}" for i in range(30)]
    return data_dir, docs


def test_built_dataset_reads_back_with_tfds_itself(built):
    data_dir, docs = built
    source = tfds.data_source("my_text", split="train", data_dir=str(data_dir))  # tfds's own reader
    assert [source[i]["text"].decode() for i in range(len(source))] == docs
    files = list((data_dir / "my_text" / "1.0.0").glob("*.array_record*"))
    assert files, "expected ArrayRecord shards"


def test_built_dataset_as_training_source(built):
    data_dir, docs = built
    data = load_token_data(tfds_config("data.tfds_name=my_text", f"data.tfds_data_dir={data_dir}"), seq_len=8)
    assert stream_bytes(data) == "\n\n".join(docs).encode()
    half = load_token_data(tfds_config("data.tfds_name=my_text", f"data.tfds_data_dir={data_dir}",
                                       "data.tfds_split=train[:50%]"), seq_len=8)
    reference = tfds.data_source("my_text", split="train[:50%]", data_dir=str(data_dir))
    assert 10 < len(reference) < 25
    assert stream_bytes(half) == "\n\n".join(docs[: len(reference)]).encode()
    with pytest.raises(DataError, match="no feature 'body'"):
        load_token_data(tfds_config("data.tfds_name=my_text", f"data.tfds_data_dir={data_dir}",
                                    "data.tfds_feature=body"), seq_len=8)
    with pytest.raises(DataError, match="no split 'test'"):
        load_token_data(tfds_config("data.tfds_name=my_text", f"data.tfds_data_dir={data_dir}",
                                    "data.tfds_split=test"), seq_len=8)


def test_build_twice_needs_overwrite(built, tmp_path, capsys):
    data_dir, _ = built
    cfg = tfds_config("data.tfds_name=my_text", f"data.tfds_data_dir={data_dir}", "data.val_fraction=0.5")
    before = stream_bytes(load_token_data(cfg, seq_len=4))
    assert cli.main(["data", "build", "my_text", str(tmp_path / "src" / "a.txt"), "--data-dir", str(data_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["data", "build", "my_text", str(tmp_path / "src" / "a.txt"), "--data-dir", str(data_dir),
                     "--overwrite"]) == 0
    assert len(tfds.data_source("my_text", split="train", data_dir=str(data_dir))) == 1
    after = stream_bytes(load_token_data(cfg, seq_len=4))  # the token cache saw the rebuild
    assert before.startswith(after) and after == ("alpha document ✓\n" * 10).encode()
    assert cli.main(["data", "build", "lm1b", str(tmp_path / "src" / "a.txt"), "--data-dir", str(data_dir)]) == 2
    assert "catalogue dataset" in capsys.readouterr().err


def test_unprepared_datasets_say_how_to_prepare(tmp_path):
    with pytest.raises(DataError, match=r"'my_text' is not in the TFDS catalogue.*bitnet-jax data build my_text"):
        load_token_data(tfds_config("data.tfds_name=my_text", f"data.tfds_data_dir={tmp_path}"), seq_len=8)
    with pytest.raises(DataError, match=r"'lm1b' is not prepared under .*tfds build lm1b"):
        load_token_data(tfds_config("data.tfds_name=lm1b", f"data.tfds_data_dir={tmp_path}"), seq_len=8)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed")
def test_tfrecord_without_tensorflow_says_what_to_install(tmp_path):
    with pytest.raises(DataError, match=r"needs TensorFlow: `pip install bitnet-jax\[tf\]`"):
        _load_tfrecord(tfds, "lm1b", "train", str(tmp_path))
