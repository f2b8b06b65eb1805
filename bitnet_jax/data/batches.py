"""Deterministic training batches, the held-out tuning and validation tail, and the unigram baseline."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax.data import synthetic
from bitnet_jax.data.corpus import SOURCES, load_corpus
from bitnet_jax.data.tokenizer import get_tokenizer
from bitnet_jax.errors import DataError

_COUNT_BLOCK = 1 << 24


# eq=False: numpy arrays have no truth value, so generated __eq__/__hash__ would fail.
@dataclass(frozen=True, eq=False)
class TokenData:
    train: np.ndarray
    tune: np.ndarray  # between train and val: for choosing learning rates, so val stays unseen (empty: no split)
    val: np.ndarray
    vocab_size: int
    bytes_per_token: float  # corpus bytes / corpus tokens, to turn nats per token into bits per byte
    source: str
    sha256: str
    entropy_floor: float | None = None  # synthetic sources: the lowest reachable mean loss (nats/token) on windows
    tokenizer: str = "byte"
    tokenizer_sha256: str = "byte"  # identity of the tokenizer model: a resumed run must use the same one
    empty_documents: int = 0  # files or records with no text: left out of the stream, reported with the run


def build_token_data(
    source: str = "python_docs",
    tokenizer: str = "byte",
    val_fraction: float = 0.05,
    max_bytes: int | None = None,
    seq_len: int = 256,
    markov: synthetic.MarkovSpec | None = None,
    paths: tuple[str, ...] = (),
    tune_fraction: float = 0.05,
) -> TokenData:
    """Tokenize a corpus (or draw the synthetic Markov source) and split it into train | tune | val (`split_tokens`).

    The in-memory path for the embedded corpora (benchmarks, tests); runs use `load_token_data(data_config)`, which
    adds every source, tokenizer and the token cache."""
    if source == "markov":
        return split_tokens(synthetic.sample(markov), val_fraction, tune_fraction, seq_len, source,
                            vocab_size=markov.vocab, bytes_per_token=1.0, sha256=synthetic.digest(markov),
                            entropy_floor=synthetic.window_floor(markov, seq_len))
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; available: {', '.join(SOURCES)}, markov")
    tok = get_tokenizer(tokenizer)
    corpus = load_corpus(source, max_bytes, paths)
    ids = tok.encode(corpus.text)
    return split_tokens(ids, val_fraction, tune_fraction, seq_len, source, vocab_size=tok.vocab_size,
                        bytes_per_token=len(corpus.text) / len(ids), sha256=corpus.sha256,
                        empty_documents=corpus.empty_documents)


_SPLIT_FIXES = {
    "training": "lower data.val_fraction, data.tune_fraction or model.seq_len, or raise data.max_bytes",
    "tuning": "raise data.tune_fraction (or set it to 0 for no tuning split) or lower model.seq_len",
    "validation": "raise data.val_fraction or lower model.seq_len",
}


def split_tokens(ids: np.ndarray, val_fraction: float, tune_fraction: float, seq_len: int, source: str,
                 **fields) -> TokenData:
    """The stream cut into three contiguous pieces, train | tune | val: val is the last val_fraction, tune the
    tune_fraction before it, train the rest, so no training window overlaps the text that learning rates are chosen
    on or the loss is reported on. Slices of a memory-mapped stream stay memory-mapped."""
    _check_fractions(val_fraction, tune_fraction)
    n_val, n_tune = int(round(len(ids) * val_fraction)), int(round(len(ids) * tune_fraction))
    tune_start, val_start = len(ids) - n_val - n_tune, len(ids) - n_val
    splits = {"training": ids[:tune_start], "tuning": ids[tune_start:val_start], "validation": ids[val_start:]}
    for split, arr in splits.items():
        asked = split != "tuning" or tune_fraction > 0  # a tuning split asked for but rounded to nothing is too short
        if asked and len(arr) < seq_len + 1:
            raise DataError(
                f"corpus {source!r} has {len(ids)} tokens: too short for seq_len+1 = {seq_len + 1} "
                f"in the {split} split; {_SPLIT_FIXES[split]}"
            )
    return TokenData(train=splits["training"], tune=splits["tuning"], val=splits["validation"], source=source,
                     **fields)


def _check_fractions(val_fraction: float, tune_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"data.val_fraction must be in (0, 1), got {val_fraction}; use e.g. 0.05")
    if not 0.0 <= tune_fraction < 1.0 or tune_fraction + val_fraction >= 1.0:
        raise DataError(f"data.tune_fraction={tune_fraction} with data.val_fraction={val_fraction}: need "
                        f"0 <= tune_fraction and tune_fraction + val_fraction < 1; use e.g. 0.05 and 0.05")


@functools.partial(jax.jit, static_argnames=("batch_size", "seq_len"))
def train_batch(tokens, seed, step, batch_size: int, seq_len: int) -> jax.Array:
    """(batch_size, seq_len+1) int32 windows at random starts: a pure function of (seed, step).

    Written in JAX so the training step draws its batch on the device from the token array already there (no
    host-to-device copy per step); threefry random bits are the same on every backend, so a batch is the same on a
    CPU and a GPU. Callers check that the stream holds at least one window (`check_window`).
    """
    starts = window_starts(seed, step, tokens.shape[0], batch_size, seq_len)
    return jnp.asarray(tokens)[starts[:, None] + jnp.arange(seq_len + 1)].astype(jnp.int32)


def window_starts(seed, step, n_tokens: int, batch_size: int, seq_len: int) -> jax.Array:
    """The batch's window starts, uniform in [0, n_tokens - seq_len): the one definition both batch paths use."""
    key = jax.random.fold_in(jax.random.key(seed), step)
    return jax.random.randint(key, (batch_size,), 0, n_tokens - seq_len)


_host_starts = jax.jit(window_starts, static_argnums=(2, 3, 4))


def host_train_batch(tokens: np.ndarray, seed: int, step: int, batch_size: int, seq_len: int) -> np.ndarray:
    """The same (batch_size, seq_len+1) int32 windows as `train_batch`, gathered on the host from a (memory-mapped)
    stream too large for the device: the starts are drawn by the same threefry function on the CPU backend."""
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        starts = np.asarray(_host_starts(seed, step, len(tokens), batch_size, seq_len))
    return np.asarray(tokens[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int32)


class TrainBatches:
    """The training batches of a group of runs (one or more) that share a token stream, each with its data seed:
    run g at step s gets train_batch(stream, seed_g, s), drawn inside the jitted training call from the stream held
    on the device, or, for a stream longer than `device_max_tokens` (or on_device=False), gathered on the host for
    the `steps_per_call` steps of a call and copied over. Both paths give identical batches.

    `inputs(steps)` is what a call takes (the runs' current steps); `draw(inputs, i, steps)` gives the batches of the
    call's i-th step inside it: (group, batch_size, seq_len + 1) int32."""

    def __init__(self, tokens: np.ndarray, seeds: list[int], batch_size: int, seq_len: int,
                 on_device: bool | None = None, device_max_tokens: int = 1 << 28, steps_per_call: int = 1,
                 put=jnp.asarray, put_batches=jnp.asarray):
        check_window(tokens, seq_len)
        self.on_device = len(tokens) <= device_max_tokens if on_device is None else on_device
        self.seeds, self.batch_size, self.seq_len, self.steps_per_call = list(seeds), batch_size, seq_len, steps_per_call
        self.put_batches = put_batches  # host batches -> device (several processes: each copies its devices' part)
        self.tokens = put(np.asarray(tokens)) if self.on_device else tokens
        self.seed_array = put(np.asarray(self.seeds, np.int32))

    def inputs(self, steps: list[int]) -> dict:
        if self.on_device:
            return {"tokens": self.tokens, "seeds": self.seed_array}
        batches = [[host_train_batch(self.tokens, seed, s + i, self.batch_size, self.seq_len)
                    for seed, s in zip(self.seeds, steps)] for i in range(self.steps_per_call)]
        return {"batches": self.put_batches(np.array(batches))}

    def draw(self, inputs: dict, i, steps) -> jax.Array:
        if "batches" in inputs:
            return inputs["batches"][i]
        one = functools.partial(train_batch, batch_size=self.batch_size, seq_len=self.seq_len)
        return jax.vmap(lambda seed, step: one(inputs["tokens"], seed, step))(inputs["seeds"], steps)


def check_window(tokens, seq_len: int) -> None:
    if len(tokens) < seq_len + 1:
        raise DataError(f"{len(tokens)} training tokens cannot fill a window of seq_len+1 = {seq_len + 1}; "
                        f"lower model.seq_len")


def val_batches(tokens: np.ndarray, batch_size: int, seq_len: int, max_batches: int,
                split: str = "validation") -> np.ndarray:
    """(n, batch_size, seq_len+1) int32 windows starting at i*seq_len, so the targets tile the held-out text
    (the validation split, or the tuning split with split="tuning")."""
    n_windows = (len(tokens) - 1) // seq_len
    n = min(max_batches, n_windows // batch_size)
    if n < 1:
        fraction = {"validation": "data.val_fraction", "tuning": "data.tune_fraction"}[split]
        raise DataError(
            f"{split} split has {len(tokens)} tokens: fewer than one batch of {batch_size} windows of "
            f"seq_len {seq_len}; raise {fraction} or lower eval batch size / model.seq_len"
        )
    starts = np.arange(n * batch_size) * seq_len
    windows = tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int32)
    return windows.reshape(n, batch_size, seq_len + 1)


def unigram_bits_per_byte(train: np.ndarray, val: np.ndarray, vocab_size: int, bytes_per_token: float) -> float:
    """Cross-entropy of val under the add-one smoothed unigram of train, in bits per byte: the baseline to beat."""
    counts = np.ones(vocab_size, dtype=np.float64)
    for start in range(0, len(train), _COUNT_BLOCK):  # in blocks: a memory-mapped stream is never read whole
        counts += np.bincount(np.asarray(train[start : start + _COUNT_BLOCK], dtype=np.int64), minlength=vocab_size)
    log2_p = np.log2(counts) - np.log2(counts.sum())
    bits_per_token = -log2_p[np.asarray(val, dtype=np.int64)].mean()
    return float(bits_per_token / bytes_per_token)
