"""Large corpora: batches gathered on the host from a memory-mapped stream equal the device-drawn batches."""

import jax
import numpy as np

from bitnet_jax.data import TrainBatches, host_train_batch, train_batch


def test_host_and_device_paths_give_identical_batches(tmp_path):
    rng = np.random.default_rng(0)
    rng.integers(0, 50_000, size=100_003, dtype=np.uint16).tofile(tmp_path / "tokens.bin")
    tokens = np.memmap(tmp_path / "tokens.bin", dtype=np.uint16, mode="r")
    seeds = [5, 9]
    device = TrainBatches(tokens, seeds, batch_size=8, seq_len=16, on_device=True, steps_per_call=3)
    host = TrainBatches(tokens, seeds, batch_size=8, seq_len=16, on_device=False, steps_per_call=3)
    assert device.on_device and not host.on_device and isinstance(host.tokens, np.memmap)
    steps = [17, 123_456]  # the runs of a group may stand at different steps
    on_device, on_host = device.inputs(steps), host.inputs(steps)
    for i in range(3):
        here = jax.numpy.asarray([s + i for s in steps])
        a, b = device.draw(on_device, i, here), host.draw(on_host, i, here)
        assert a.dtype == b.dtype == np.int32 and a.shape == (2, 8, 17)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for g, seed in enumerate(seeds):  # each run's batch is the single-run batch of its seed and step
            np.testing.assert_array_equal(np.asarray(a[g]), np.asarray(train_batch(jax.numpy.asarray(tokens), seed,
                                                                                   steps[g] + i, 8, 16)))
    # Each host row is the memmap slice at the start train_batch draws (read off an index stream).
    starts = np.asarray(train_batch(np.arange(len(tokens)), 5, 17, batch_size=8, seq_len=16))[:, 0]
    rows = host_train_batch(tokens, 5, 17, batch_size=8, seq_len=16)
    for row, s in zip(rows, starts):
        np.testing.assert_array_equal(row, tokens[s : s + 17])


def test_auto_switch_on_stream_length():
    tokens = np.arange(1000, dtype=np.uint16)
    assert TrainBatches(tokens, [0], 2, 8, on_device=None, device_max_tokens=1000).on_device
    assert not TrainBatches(tokens, [0], 2, 8, on_device=None, device_max_tokens=999).on_device
