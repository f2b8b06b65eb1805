import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

# A model and run small enough that a test trains in a few seconds on 2 CPU cores.
TINY = [
    "model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64", "model.seq_len=32",
    "train.batch_size=4", "train.steps=12", "train.warmup_steps=2", "train.eval_every=6", "train.eval_batches=2",
    "train.log_every=1", "train.ckpt_every=6", "data.max_bytes=60000", "tracking.progress=false",
]


@pytest.fixture
def tiny():
    return list(TINY)
