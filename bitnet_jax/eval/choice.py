"""Zero-shot multiple choice by log-likelihood, in the convention of lm-evaluation-harness.

For each example and choice: score = sum of log p(continuation tokens | context), the pair left-truncated to the
model's window. acc takes the argmax of the scores; acc_norm the argmax of score / the choice's length in characters
(lm-eval's `completion_len`), which removes the bias towards short answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from flax import nnx

from bitnet_jax.errors import DataError
from bitnet_jax.eval.scoring import Scorer
from bitnet_jax.eval.tasks import Example, parse_example


@dataclass
class ChoiceResult:
    acc: float
    acc_norm: float
    n: int
    loglikelihoods: list[np.ndarray] = field(repr=False)  # per example: the summed log p of each choice

    @property
    def acc_stderr(self) -> float:
        """Standard error of acc over examples (sample standard deviation / sqrt(n), as lm-eval reports it)."""
        return math.sqrt(self.acc * (1 - self.acc) / (self.n - 1)) if self.n > 1 else float("nan")

    def to_dict(self) -> dict:
        return {"acc": self.acc, "acc_norm": self.acc_norm, "acc_stderr": self.acc_stderr, "n": self.n}


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[np.ndarray, int]:
    """(context + continuation tokens, number of continuation tokens), split as lm-eval does: trailing whitespace of
    the context moves to the continuation, and the continuation is what encoding the whole adds after the context."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = np.asarray(tokenizer.encode(context + continuation))
    n_context = len(tokenizer.encode(context))
    return whole, len(whole) - n_context


def _as_example(example, index: int) -> Example:
    if isinstance(example, Example):
        return example
    try:
        return parse_example(example, f"example {index}")
    except DataError as e:
        raise DataError(f"example {index}: {e}") from None


def multiple_choice(model: nnx.Module, tokenizer, examples: list[Example], *, batch_size: int = 32,
                    seq_len: int | None = None) -> ChoiceResult:
    """acc and acc_norm of `model` on `examples` (Examples from tasks.load_task, or task records as dicts in any of
    the tasks.SHAPES), every choice scored in batches."""
    examples = [_as_example(ex, i) for i, ex in enumerate(examples)]
    if not examples:
        raise DataError("no examples to evaluate")
    scorer = Scorer(model, batch_size, seq_len)
    requests = []
    for ex in examples:
        for context, continuation in zip(ex.contexts, ex.continuations):
            try:
                requests.append(scorer.window(*encode_pair(tokenizer, context, continuation)))
            except DataError as e:
                raise DataError(f"{ex.where or 'example'}: {e}") from None
    scores = scorer(requests)
    per_example, correct, correct_norm, at = [], 0, 0, 0
    for ex in examples:
        ll = scores[at:at + len(ex.continuations)]
        at += len(ex.continuations)
        per_example.append(ll)
        correct += int(np.argmax(ll)) == ex.label
        correct_norm += int(np.argmax(ll / np.maximum(np.asarray(ex.norm_lengths, np.float64), 1.0))) == ex.label
    n = len(examples)
    return ChoiceResult(correct / n, correct_norm / n, n, per_example)
