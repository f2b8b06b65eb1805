"""Local text / jsonl / pre-tokenised sources through load_token_data, and their bad-input errors."""

import json

import numpy as np
import pytest

from bitnet_jax import cli, config
from bitnet_jax.data import build_token_data, load_token_data
from bitnet_jax.errors import ConfigError, DataError


def data_config(*overrides):
    return config.load(None, list(overrides)).data


def write_jsonl(path, docs, field="text"):
    path.write_text("".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path


def test_jsonl_and_txt_documents_joined_in_path_order(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", ["second doc", "third ✓"], field="body")
    (tmp_path / "a.txt").write_text("first doc")
    data = load_token_data(data_config(f"data.source={tmp_path}/*", "data.text_field=body", "data.val_fraction=0.3",
                                       "data.tune_fraction=0.2"), seq_len=4)
    expected = "first doc\n\nsecond doc\n\nthird ✓".encode()
    stream = np.concatenate([data.train, data.tune, data.val])
    assert bytes(stream.astype(np.uint8)) == expected
    assert len(data.val) == round(len(expected) * 0.3) and len(data.tune) == round(len(expected) * 0.2)
    assert data.bytes_per_token == 1.0 and data.empty_documents == 0


def test_source_path_or_paths_list(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 100)
    via_source = load_token_data(data_config(f"data.source={tmp_path}/a.txt"), seq_len=4)
    via_paths = load_token_data(data_config("data.source=files", f"data.paths=[{tmp_path}/a.txt]"), seq_len=4)
    assert via_source.sha256 == via_paths.sha256 and len(via_source.train) == 90  # 5 tune and 5 val tokens after


@pytest.mark.parametrize("policy, expected", [("skip", b"good"), ("replace", "good\n\nab\ufffdcd".encode())])
def test_non_utf8_policies(tmp_path, policy, expected):
    (tmp_path / "a.txt").write_text("good")
    (tmp_path / "b.txt").write_bytes(b"ab\xffcd")
    data = load_token_data(data_config(f"data.source={tmp_path}/*.txt", f"data.text_errors={policy}",
                                       "data.val_fraction=0.5", "data.tune_fraction=0"), seq_len=1)
    assert bytes(np.concatenate([data.train, data.tune, data.val]).astype(np.uint8)) == expected


def test_bad_input_errors(tmp_path):
    (tmp_path / "bad.txt").write_bytes("héllo".encode() + b"\xfe rest")
    with pytest.raises(DataError, match=r"bad.txt: not UTF-8 at byte offset 6 .*data.text_errors=skip"):
        load_token_data(data_config(f"data.source={tmp_path}/bad.txt"), seq_len=4)
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match=r"is empty: 1 empty documents and no text; check data.source"):
        load_token_data(data_config(f"data.source={tmp_path}/empty.txt"), seq_len=4)
    write_jsonl(tmp_path / "c.jsonl", ["abc"], field="content")
    with pytest.raises(DataError, match=r"c.jsonl:1: no field 'text' \(has: content, id\); set data.text_field"):
        load_token_data(data_config(f"data.source={tmp_path}/c.jsonl"), seq_len=4)
    (tmp_path / "short.txt").write_text("only a few bytes")
    with pytest.raises(DataError, match="too short for seq_len"):
        load_token_data(data_config(f"data.source={tmp_path}/short.txt"), seq_len=64)
    with pytest.raises(DataError, match="matched no files"):
        load_token_data(data_config(f"data.source={tmp_path}/*.md"), seq_len=4)
    with pytest.raises(ConfigError, match="unknown data source 'wikipedia'"):
        data_config("data.source=wikipedia")
    with pytest.raises(ConfigError, match="text_errors"):
        data_config("data.text_errors=ignore")


@pytest.mark.parametrize("policy", ["strict", "skip", "replace"])
def test_empty_files_and_records_are_counted_empty_documents(tmp_path, policy):
    root = tmp_path / "corpus"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_bytes(b"")
    (root / "pkg" / "blank.txt").write_text(" \n\n")
    (root / "pkg" / "mod.py").write_text("x = 1\n" * 40)
    (root / "none.jsonl").write_text("\n")  # a .jsonl without records: one empty document
    write_jsonl(root / "docs.jsonl", ["first", "", "second"])  # a record with no text: one more
    data = load_token_data(data_config(f"data.source={root}/**/*", f"data.text_errors={policy}"), seq_len=8)
    expected = b"first\n\nsecond\n\n" + b"x = 1\n" * 40  # sorted paths: docs.jsonl, none.jsonl, pkg/...
    assert bytes(np.concatenate([data.train, data.tune, data.val]).astype(np.uint8)) == expected
    assert data.empty_documents == 4
    in_memory = build_token_data("files", paths=(f"{root}/**/*",), seq_len=8)  # the path without the token cache
    assert in_memory.empty_documents == 4
    np.testing.assert_array_equal(in_memory.train, data.train)


def test_empty_documents_past_max_bytes_are_not_counted(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 300)
    (tmp_path / "b.txt").write_bytes(b"")  # after the cut: not part of the corpus
    (tmp_path / "c.txt").write_text("y" * 300)
    cut = load_token_data(data_config(f"data.source={tmp_path}/*.txt", "data.max_bytes=200"), seq_len=8)
    whole = load_token_data(data_config(f"data.source={tmp_path}/*.txt"), seq_len=8)
    assert (cut.empty_documents, whole.empty_documents) == (0, 1)
    assert build_token_data("files", max_bytes=200, seq_len=8, paths=(f"{tmp_path}/*.txt",)).empty_documents == 0


def test_empty_document_count_survives_the_token_cache(tmp_path, token_cache, monkeypatch):
    from bitnet_jax.data import pipeline

    (tmp_path / "__init__.py").write_bytes(b"")
    (tmp_path / "a.py").write_text("def f():\n    return 1\n" * 30)
    (tmp_path / "b.py").write_text("import os\n" * 30)
    cfg = data_config(f"data.source={tmp_path}/*.py")
    first = load_token_data(cfg, seq_len=8)
    tokenised = []
    monkeypatch.setattr(pipeline, "iter_text", lambda c: tokenised.append(c))  # a cache hit does not read the text
    again = load_token_data(cfg, seq_len=8)
    assert first.empty_documents == again.empty_documents == 1 and not tokenised
    (manifest,) = (token_cache / "tokens").glob("*.json")
    assert json.loads(manifest.read_text())["empty_documents"] == 1


def test_manifest_without_empty_document_count_is_rebuilt(tmp_path, token_cache):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "full.txt").write_text("some text " * 50)
    cfg = data_config(f"data.source={tmp_path}/*.txt")
    load_token_data(cfg, seq_len=8)
    (manifest_path,) = (token_cache / "tokens").glob("*.json")
    old = json.loads(manifest_path.read_text())
    del old["empty_documents"]  # as written before the count was kept: unknown, not zero
    manifest_path.write_text(json.dumps(old))
    assert load_token_data(cfg, seq_len=8).empty_documents == 1
    assert json.loads(manifest_path.read_text())["empty_documents"] == 1


def test_pretokenized_npy_and_bin(tmp_path):
    ids = (np.arange(5000) * 7919 % 1000).astype(np.int32)
    np.save(tmp_path / "ids.npy", ids)
    ids.astype(np.uint16).tofile(tmp_path / "ids.bin")
    a = load_token_data(data_config(f"data.source={tmp_path}/ids.npy", "data.tokens_bytes_per_token=3.5"), seq_len=8)
    b = load_token_data(data_config(f"data.source={tmp_path}/ids.bin", "data.token_dtype=uint16",
                                    "data.tokens_vocab_size=1024"), seq_len=8)
    np.testing.assert_array_equal(np.concatenate([a.train, a.tune, a.val]), ids)
    np.testing.assert_array_equal(np.concatenate([b.train, b.tune, b.val]), ids)
    assert isinstance(b.train, np.memmap)
    assert a.vocab_size == 1000 and b.vocab_size == 1024
    assert a.bytes_per_token == 3.5 and np.isnan(b.bytes_per_token)  # unknown: bits per byte reported as null
    with pytest.raises(DataError, match="outside the vocabulary"):
        load_token_data(data_config(f"data.source={tmp_path}/ids.npy", "data.tokens_vocab_size=500"), seq_len=8)
    (tmp_path / "odd.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="not a whole number of uint16 tokens"):
        load_token_data(data_config(f"data.source={tmp_path}/odd.bin"), seq_len=8)


def test_data_prepare_command_fills_the_cache(tmp_path, token_cache, capsys):
    (tmp_path / "a.txt").write_text("abc " * 250)
    assert cli.main(["data", "prepare", f"data.source={tmp_path}/a.txt", "data.tune_fraction=0",
                     "model.seq_len=16"]) == 0
    assert "1000 tokens (950 train, 0 tune, 50 val), tokenizer byte (vocab 256), 1.000 bytes/token" in capsys.readouterr().out
    assert len(list((token_cache / "tokens").glob("*.json"))) == 1


def test_cli_prints_bad_data_as_one_line(tmp_path, tiny, capsys):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "short.txt").write_text("tiny")
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "x" * 5000}) + "\n")
    cases = [
        (["data.source=" + str(tmp_path / "empty.txt")], "is empty: 1 empty documents and no text"),
        (["data.source=" + str(tmp_path / "latin1.txt")], "latin1.txt: not UTF-8 at byte offset 3"),
        (["data.source=" + str(tmp_path / "short.txt")], "too short for seq_len+1 = 33"),
        (["data.source=" + str(tmp_path / "c.jsonl")], "no field 'text' (has: body)"),
        (["data.source=tfds", "data.tfds_name=lm1b", f"data.tfds_data_dir={tmp_path}"], "tfds build lm1b"),
    ]
    for overrides, expected in cases:
        assert cli.main(["train", *tiny, *overrides, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert not (tmp_path / "run" / "summary.json").exists()  # nothing that would block a corrected run
