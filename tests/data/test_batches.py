"""Training batches, the train | tune | val split and the unigram baseline."""

import math

import numpy as np
import pytest

from bitnet_jax.data import build_token_data, load_corpus, train_batch, unigram_bits_per_byte, val_batches
from bitnet_jax.data.batches import split_tokens
from bitnet_jax.errors import DataError

TOKENS = np.arange(10_000, dtype=np.int64)  # a row is contiguous iff it steps by exactly 1


def split_ids(n: int, val_fraction: float, tune_fraction: float, seq_len: int = 8):
    """The split of the index stream 0..n-1: each split's values are its positions in the stream."""
    return split_tokens(np.arange(n), val_fraction, tune_fraction, seq_len, "ids", vocab_size=n, bytes_per_token=1.0,
                        sha256="")


def test_train_batch_is_pure_function_of_seed_and_step():
    a = train_batch(TOKENS, seed=3, step=7, batch_size=16, seq_len=32)
    assert a.shape == (16, 33) and a.dtype == np.int32
    np.testing.assert_array_equal(a, train_batch(TOKENS, seed=3, step=7, batch_size=16, seq_len=32))
    assert not np.array_equal(a, train_batch(TOKENS, seed=3, step=8, batch_size=16, seq_len=32))
    assert not np.array_equal(a, train_batch(TOKENS, seed=4, step=7, batch_size=16, seq_len=32))


def test_train_rows_are_contiguous_slices():
    batch = train_batch(TOKENS, seed=0, step=0, batch_size=64, seq_len=20)
    assert (np.diff(batch, axis=1) == 1).all()
    # On a real token stream too: each row equals the slice at its own start.
    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog " * 5, dtype=np.uint8).astype(np.uint16)
    idx = np.arange(len(text))
    rows = train_batch(text, seed=1, step=2, batch_size=8, seq_len=10)
    starts = train_batch(idx, seed=1, step=2, batch_size=8, seq_len=10)[:, 0]
    for row, s in zip(rows, starts):
        np.testing.assert_array_equal(row, text[s : s + 11])


def test_train_starts_cover_range_uniformly():
    seq_len, n = 9, 100  # starts in [0, 90]: 91 values
    tokens = np.arange(n)
    starts = np.concatenate([train_batch(tokens, 0, step, 64, seq_len)[:, 0] for step in range(300)])
    assert starts.min() == 0 and starts.max() == n - seq_len - 1
    counts = np.bincount(starts, minlength=n - seq_len)
    expected = len(starts) / (n - seq_len)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 160  # 90 dof: mean 90, sd ~13.4; 160 is > 5 sd


def test_val_batches_tile_the_validation_stream():
    seq_len, bs = 8, 4
    val = np.arange(1000, 1000 + 200)
    out = val_batches(val, batch_size=bs, seq_len=seq_len, max_batches=100)
    # 199 // 8 = 24 windows -> 6 full batches
    assert out.shape == (6, bs, seq_len + 1) and out.dtype == np.int32
    windows = out.reshape(-1, seq_len + 1)
    np.testing.assert_array_equal(windows[:, 0], 1000 + np.arange(24) * seq_len)
    # targets (columns 1:) tile the text with no gap or overlap
    np.testing.assert_array_equal(windows[:, 1:].ravel(), val[1 : 1 + 24 * seq_len])
    assert val_batches(val, bs, seq_len, max_batches=2).shape == (2, bs, seq_len + 1)
    with pytest.raises(DataError, match="validation split has 20 tokens.*raise data.val_fraction"):
        val_batches(np.arange(20), batch_size=4, seq_len=8, max_batches=10)
    with pytest.raises(DataError, match="tuning split has 20 tokens.*raise data.tune_fraction"):
        val_batches(np.arange(20), batch_size=4, seq_len=8, max_batches=10, split="tuning")


def test_split_is_train_tune_val_in_stream_order():
    text = load_corpus("python_docs", max_bytes=50_000).text
    data = build_token_data("python_docs", "byte", val_fraction=0.1, max_bytes=50_000, seq_len=64, tune_fraction=0.04)
    assert (len(data.train), len(data.tune), len(data.val)) == (43_000, 2_000, 5_000)
    assert bytes(data.train.astype(np.uint8)) == text[:43_000]
    assert bytes(data.tune.astype(np.uint8)) == text[43_000:45_000]
    assert bytes(data.val.astype(np.uint8)) == text[45_000:]
    assert data.vocab_size == 256 and data.bytes_per_token == 1.0 and data.empty_documents == 0
    assert data.source == "python_docs" and len(data.sha256) == 64


def test_split_sizes_round_each_fraction_of_the_whole_stream():
    data = split_ids(1_001, val_fraction=0.05, tune_fraction=0.1)
    # round(50.05) = 50 validation tokens, round(100.1) = 100 tuning tokens, the other 851 train
    np.testing.assert_array_equal(data.train, np.arange(851))
    np.testing.assert_array_equal(data.tune, np.arange(851, 951))
    np.testing.assert_array_equal(data.val, np.arange(951, 1_001))


def test_no_tuning_split_when_tune_fraction_is_zero():
    data = split_ids(1_000, val_fraction=0.1, tune_fraction=0.0)
    assert len(data.tune) == 0 and data.tune.dtype == data.train.dtype
    np.testing.assert_array_equal(data.train, np.arange(900))
    np.testing.assert_array_equal(data.val, np.arange(900, 1_000))


def test_training_windows_never_reach_the_tuning_split():
    seq_len = 16
    data = split_ids(2_000, val_fraction=0.05, tune_fraction=0.05, seq_len=seq_len)
    first_tune = int(data.tune[0])
    assert first_tune == len(data.train) == 1_800
    windows = np.concatenate([np.asarray(train_batch(data.train, 0, step, 64, seq_len)) for step in range(200)])
    assert windows.max() == first_tune - 1  # the last training token is reached, the first tuning token never


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_bytes=1000, seq_len=128, val_fraction=0.05, tune_fraction=0.0), "validation"),
        (dict(max_bytes=1000, seq_len=128, val_fraction=0.85), "training"),
        (dict(max_bytes=1000, seq_len=128, tune_fraction=0.05), "tuning split; raise data.tune_fraction"),
        (dict(max_bytes=1000, seq_len=128, tune_fraction=0.0004), "tuning split"),  # rounds to no token at all
        (dict(val_fraction=0.0), "val_fraction"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(tune_fraction=-0.1), "tune_fraction"),
        (dict(tune_fraction=0.5, val_fraction=0.5), "tune_fraction.*val_fraction"),
        (dict(source="nope"), "python_docs"),
        (dict(tokenizer="bpe"), "byte"),
    ],
)
def test_build_token_data_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        build_token_data(**kwargs)


def test_unigram_bits_per_byte_closed_form():
    # add-one counts on vocab 4: [3, 2, 1, 1] / 7
    expected = -(math.log2(3 / 7) + math.log2(2 / 7)) / 2
    got = unigram_bits_per_byte(np.array([0, 0, 1]), np.array([0, 1]), vocab_size=4, bytes_per_token=1.0)
    assert got == pytest.approx(expected, rel=1e-12)
    assert unigram_bits_per_byte(np.array([0, 0, 1]), np.array([0, 1]), 4, 2.0) == pytest.approx(expected / 2)


def test_unigram_baseline_on_python_docs():
    data = build_token_data("python_docs", seq_len=256)
    bpb = unigram_bits_per_byte(data.train, data.val, data.vocab_size, data.bytes_per_token)
    assert 4.0 < bpb < 6.0
