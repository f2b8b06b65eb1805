"""Large corpora: batches gathered on the host from a memory-mapped stream equal the device-drawn batches."""

import jax
import numpy as np

from bitnet_jax.data import TrainBatches, host_train_batch, train_batch


def test_host_and_device_paths_give_identical_batches(tmp_path):
    rng = np.random.default_rng(0)
    rng.integers(0, 50_000, size=100_003, dtype=np.uint16).tofile(tmp_path / "tokens.bin")
    tokens = np.memmap(tmp_path / "tokens.bin", dtype=np.uint16, mode="r")
    device = TrainBatches(tokens, seed=5, batch_size=8, seq_len=16, on_device=True)
    host = TrainBatches(tokens, seed=5, batch_size=8, seq_len=16, on_device=False)
    assert device.on_device and not host.on_device and isinstance(host.tokens, np.memmap)
    for step in (0, 1, 17, 123_456):
        a, b = device(step, jax.numpy.asarray(step)), host(step)
        assert a.dtype == b.dtype == np.int32 and a.shape == (8, 17)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Each host row is the memmap slice at the start train_batch draws (read off an index stream).
    starts = np.asarray(train_batch(np.arange(len(tokens)), 5, 17, batch_size=8, seq_len=16))[:, 0]
    rows = host_train_batch(tokens, 5, 17, batch_size=8, seq_len=16)
    for row, s in zip(rows, starts):
        np.testing.assert_array_equal(row, tokens[s : s + 17])


def test_auto_switch_on_stream_length():
    tokens = np.arange(1000, dtype=np.uint16)
    assert TrainBatches(tokens, 0, 2, 8, on_device=None, device_max_tokens=1000).on_device
    assert not TrainBatches(tokens, 0, 2, 8, on_device=None, device_max_tokens=999).on_device
