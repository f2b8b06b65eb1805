"""Multiple-choice task files: JSONL in the shapes of HellaSwag, PIQA, WinoGrande, ARC, or a generic shape.

Each line becomes an `Example`: for every choice, the text the model is conditioned on (the context) and the text
whose log-likelihood is scored (the continuation), in the prompts of lm-evaluation-harness:

- HellaSwag  {"ctx", "endings": [4 strings], "label"}  (optional "activity_label", "ctx_a"/"ctx_b"):
  context `activity_label: ctx` cleaned as lm-eval does; continuations " " + ending.
- PIQA       {"goal", "sol1", "sol2", "label"}: context "Question: {goal}\\nAnswer:"; continuations " " + sol.
- WinoGrande {"sentence" with one "_", "option1", "option2", "answer": "1" | "2"}: partial scoring, the context is
  the sentence up to "_" with the option filled in, the continuation (the same for both) is the rest of the sentence.
- ARC        {"question", "choices": {"text": [...], "label": [...]}, "answerKey"}:
  context "Question: {question}\\nAnswer:"; continuations " " + choice text.
- generic    {"context", "choices": [...], "label"}: continuations " " + choice.

Labels are 0-based integers (or strings of digits, as the Hugging Face copies of these datasets store them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from bitnet_jax.errors import DataError

SHAPES = ("hellaswag {ctx, endings, label}", "piqa {goal, sol1, sol2, label}",
          "winogrande {sentence, option1, option2, answer}", "arc {question, choices{text,label}, answerKey}",
          "generic {context, choices, label}")


@dataclass(frozen=True)
class Example:
    contexts: tuple[str, ...]  # per choice: the conditioning text (the same for every choice except WinoGrande)
    continuations: tuple[str, ...]  # per choice: the scored text
    label: int  # index of the right choice
    norm_lengths: tuple[int, ...]  # per choice: the acc_norm divisor, the choice's length in characters (lm-eval)
    where: str = ""  # "file:line", for error messages

    @classmethod
    def from_choices(cls, context: str, choices: list[str], label: int, where: str = "") -> Example:
        """One shared context, each choice scored after lm-eval's default target delimiter (a space)."""
        return cls((context,) * len(choices), tuple(" " + c for c in choices), label,
                   tuple(len(c) for c in choices), where)


class _LineError(DataError):
    """What is wrong with one record; load_task adds the file and line number."""


def load_task(path: str | Path, limit: int | None = None) -> list[Example]:
    """The examples of a JSONL task file (the first `limit` of them), or a one-line DataError naming file and line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the task file ({e.strerror}); check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text; save the task file as UTF-8 JSONL") from None
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if limit is not None and len(examples) >= limit:
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno}); "
                            f"a task file holds one JSON object per line") from None
        try:
            examples.append(parse_example(record, f"{path}:{number}"))
        except _LineError as e:
            raise DataError(f"{path}:{number}: {e}") from None
    if not examples:
        raise DataError(f"{path}: no examples (the file is empty); a task file holds one JSON object per line")
    return examples


def parse_example(record, where: str = "") -> Example:
    """One task record in any of the SHAPES as an Example (raises _LineError when it does not fit)."""
    if not isinstance(record, dict):
        raise _LineError(f"expected a JSON object, got {type(record).__name__}")
    for key, parse in (("sentence", _winogrande), ("goal", _piqa), ("endings", _hellaswag), ("answerKey", _arc),
                       ("question", _arc), ("context", _generic), ("choices", _generic)):
        if key in record:
            return parse(record, where)
    raise _LineError(f"unrecognised record (keys: {', '.join(sorted(record)) or 'none'}); expected one of the "
                     f"shapes {'; '.join(SHAPES)}")


def _need(record: dict, shape: str, *keys: str) -> None:
    missing = [k for k in keys if k not in record or record[k] is None]
    if missing:
        raise _LineError(f"missing field(s) {', '.join(missing)} for the {shape} shape "
                         f"({next(s for s in SHAPES if s.startswith(shape))})")


def _text(record: dict, key: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise _LineError(f"field {key} must be a string, got {value!r}")
    return value


def _choices(value, key: str) -> list[str]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) for c in value):
        raise _LineError(f"field {key} must be a list of at least 2 strings, got {value!r}")
    return value


def _label(value, n_choices: int, key: str = "label") -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _LineError(f"field {key} must be a choice index (an integer), got {value!r}")
    if not 0 <= value < n_choices:
        raise _LineError(f"{key}={value} is out of range for {n_choices} choices (labels are 0-based)")
    return value


def _hellaswag_clean(text: str) -> str:
    """lm-eval's HellaSwag preprocessing: WikiHow '[title]' marks become sentence breaks, other brackets go."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(record: dict, where: str) -> Example:
    _need(record, "hellaswag", "ctx", "endings", "label")
    ctx = _text(record, "ctx")
    if isinstance(record.get("ctx_a"), str) and isinstance(record.get("ctx_b"), str):
        ctx = record["ctx_a"] + " " + record["ctx_b"].capitalize()
    if isinstance(record.get("activity_label"), str) and record["activity_label"]:
        ctx = record["activity_label"] + ": " + ctx
    endings = [_hellaswag_clean(e) for e in _choices(record["endings"], "endings")]
    return Example.from_choices(_hellaswag_clean(ctx), endings, _label(record["label"], len(endings)), where)


def _piqa(record: dict, where: str) -> Example:
    _need(record, "piqa", "goal", "sol1", "sol2", "label")
    sols = [_text(record, "sol1"), _text(record, "sol2")]
    return Example.from_choices(f"Question: {_text(record, 'goal')}\nAnswer:", sols, _label(record["label"], 2), where)


def _winogrande(record: dict, where: str) -> Example:
    _need(record, "winogrande", "sentence", "option1", "option2", "answer")
    sentence = _text(record, "sentence")
    if sentence.count("_") != 1:
        raise _LineError(f"field sentence must hold exactly one '_' (the blank), got {sentence!r}")
    options = [_text(record, "option1"), _text(record, "option2")]
    answer = record["answer"]
    if answer not in ("1", "2", 1, 2):
        raise _LineError(f"answer={answer!r} is out of range: WinoGrande answers are '1' or '2'")
    blank = sentence.index("_")
    rest = " " + sentence[blank + 1:].strip()
    return Example(tuple(sentence[:blank] + o for o in options), (rest, rest), int(answer) - 1,
                   (len(rest), len(rest)), where)


def _arc(record: dict, where: str) -> Example:
    _need(record, "arc", "question", "choices", "answerKey")
    choices = record["choices"]
    if not isinstance(choices, dict) or "text" not in choices or "label" not in choices:
        raise _LineError(f"field choices must be {{\"text\": [...], \"label\": [...]}}, got {choices!r}")
    texts, labels = _choices(choices["text"], "choices.text"), choices["label"]
    if not isinstance(labels, list) or len(labels) != len(texts):
        raise _LineError(f"choices.label must list one label per choice text ({len(texts)}), got {labels!r}")
    key = record["answerKey"]
    if key not in labels:
        raise _LineError(f"answerKey={key!r} is out of range: not one of the choice labels {labels}")
    return Example.from_choices(f"Question: {_text(record, 'question')}\nAnswer:", texts, labels.index(key), where)


def _generic(record: dict, where: str) -> Example:
    _need(record, "generic", "context", "choices", "label")
    choices = _choices(record["choices"], "choices")
    return Example.from_choices(_text(record, "context"), choices, _label(record["label"], len(choices)), where)
