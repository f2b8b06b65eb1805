"""Zero-shot evaluation: multiple choice by log-likelihood (lm-eval-harness convention) and held-out perplexity."""

from bitnet_jax.eval.choice import ChoiceResult, encode_pair, multiple_choice
from bitnet_jax.eval.perplexity import perplexity, read_text
from bitnet_jax.eval.run import evaluate_run, format_results, task_files
from bitnet_jax.eval.tasks import SHAPES, Example, load_task, parse_example

__all__ = ["SHAPES", "ChoiceResult", "Example", "encode_pair", "evaluate_run", "format_results", "load_task",
           "multiple_choice", "parse_example", "perplexity", "read_text", "task_files"]
