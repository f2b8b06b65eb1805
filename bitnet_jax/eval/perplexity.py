"""Perplexity and bits per byte of a held-out text.

The text is cut into windows of seq_len+1 tokens starting every seq_len tokens (the windows of the training loop's
validation loss, so the two agree on the same text), plus a shorter last window for the remainder: every token
after the first is predicted exactly once, from up to seq_len tokens before it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from flax import nnx

from bitnet_jax.errors import DataError
from bitnet_jax.eval.scoring import Scorer


def perplexity(model: nnx.Module, tokenizer, text: str, *, batch_size: int = 16,
               seq_len: int | None = None) -> dict:
    """{"loss" (nats/token), "perplexity", "bits_per_byte", "tokens" (scored), "bytes"} of `model` on `text`."""
    tokens = np.asarray(tokenizer.encode(text))
    if len(tokens) < 2:
        raise DataError(f"held-out text encodes to {len(tokens)} token(s); perplexity needs at least 2")
    scorer = Scorer(model, batch_size, seq_len)
    step = scorer.seq_len
    requests = [(tokens[s:s + step + 1], len(tokens[s:s + step + 1]) - 1) for s in range(0, len(tokens) - 1, step)]
    total = float(scorer(requests).sum())
    scored = len(tokens) - 1
    loss = -total / scored
    n_bytes = len(text.encode("utf-8"))
    bytes_per_token = n_bytes / len(tokens)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),  # 700: exp stays finite for a diverged model
            "bits_per_byte": loss / math.log(2) / bytes_per_token, "tokens": scored, "bytes": n_bytes}


def read_text(path: str | Path) -> str:
    """A held-out text file as str, or a one-line DataError (missing, not UTF-8, empty)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the held-out text ({e.strerror}); check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 (invalid byte at offset {e.start}); convert it to UTF-8 text") from None
    if not text.strip():
        raise DataError(f"{path}: the held-out text is empty; give a file with some text to measure perplexity on")
    return text
