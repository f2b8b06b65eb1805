import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# tiny test models spend far more time compiling than running: LLVM's cheapest code generation cuts a training
# subprocess's start by about a third (the flag reaches every process the tests start)
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
# token and compilation caches of the whole session (and of the processes it starts) away from ~/.cache
os.environ.setdefault("BITNET_JAX_CACHE", tempfile.mkdtemp(prefix="bitnet-jax-test-cache-"))

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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """trained_run(*overrides) -> the directory of a finished tiny run trained with TINY + overrides (cached for
    the session: eval, inference and export tests share runs)."""
    from bitnet_jax import config, train

    cache: dict[tuple[str, ...], object] = {}

    def make(*overrides: str):
        key = tuple(overrides)
        if key not in cache:
            out = tmp_path_factory.mktemp("run")
            train.run(config.load(None, TINY + ["train.steps=30", *overrides]), out)
            cache[key] = out
        return cache[key]

    return make
