import json

import pytest

from bitnet_jax.errors import DataError
from bitnet_jax.eval import load_task


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_every_shape_is_parsed_into_lm_eval_prompts(tmp_path):
    hellaswag = {"activity_label": "Baking", "ctx_a": "She mixes the flour.", "ctx_b": "then she",
                 "ctx": "She mixes the flour. then she", "endings": ["bakes it [title] Done.", "x", "y", "z"],
                 "label": "2"}
    piqa = {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "hit it", "label": 0}
    wino = {"sentence": "The cup fell off the table because _ was unstable.", "option1": "the cup",
            "option2": "the table", "answer": "2"}
    arc = {"question": "What is 2+2?", "choices": {"text": ["3", "4", "5"], "label": ["A", "B", "C"]},
           "answerKey": "B"}
    generic = {"context": "def f():", "choices": ["return 1", "pass"], "label": 1}
    [h], [p], [w], [a], [g] = (load_task(write_jsonl(tmp_path / f"{i}.jsonl", [r]))
                               for i, r in enumerate((hellaswag, piqa, wino, arc, generic)))

    assert h.contexts == ("Baking: She mixes the flour. Then she",) * 4 and h.label == 2
    assert h.continuations == (" bakes it. Done.", " x", " y", " z") and h.norm_lengths == (15, 1, 1, 1)
    assert p.contexts == ("Question: Open a jar\nAnswer:",) * 2
    assert p.continuations == (" twist the lid", " hit it") and p.label == 0 and p.norm_lengths == (13, 6)
    # WinoGrande partial scoring: the option goes into the context, the rest of the sentence is scored
    assert w.contexts == ("The cup fell off the table because the cup", "The cup fell off the table because the table")
    assert w.continuations == (" was unstable.", " was unstable.") and w.label == 1
    assert a.contexts == ("Question: What is 2+2?\nAnswer:",) * 3 and a.continuations == (" 3", " 4", " 5")
    assert a.label == 1
    assert g.contexts == ("def f():",) * 2 and g.continuations == (" return 1", " pass") and g.label == 1
    assert g.where.endswith("4.jsonl:1")


def test_blank_lines_are_skipped_and_limit_counts_examples(tmp_path):
    rec = {"context": "a", "choices": ["b", "c"], "label": 0}
    path = write_jsonl(tmp_path / "t.jsonl", [rec, "", {**rec, "label": 1}, {**rec, "label": 1}])
    assert [e.label for e in load_task(path)] == [0, 1, 1]
    assert [e.label for e in load_task(path, limit=2)] == [0, 1]


GOOD = {"context": "a", "choices": ["b", "c"], "label": 0}


@pytest.mark.parametrize("bad, line, message", [
    ({"goal": "g", "sol1": "a", "label": 0}, 2, "missing field(s) sol2 for the piqa shape"),
    ({"context": "a", "choices": ["b", "c"], "label": 2}, 2, "label=2 is out of range for 2 choices"),
    ({"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}, 2, "exactly one '_'"),
    ({"sentence": "a _ b", "option1": "a", "option2": "b", "answer": "3"}, 2, "answer='3' is out of range"),
    ({"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}, 2,
     "answerKey='E' is out of range"),
    ({"ctx": "c", "endings": "not a list", "label": 0}, 2, "endings must be a list of at least 2 strings"),
    ({"text": "what"}, 2, "unrecognised record"),
    ("[1, 2]", 2, "expected a JSON object"),
    ('{"context": "a", "choices": ["b"', 2, "not valid JSON"),
])
def test_bad_lines_name_file_and_line(tmp_path, bad, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, bad])
    with pytest.raises(DataError) as e:
        load_task(path)
    text = str(e.value)
    assert text.startswith(f"{path}:{line}: ") and message in text and "\n" not in text


def test_empty_missing_and_non_utf8_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(DataError, match=r"empty\.jsonl: no examples"):
        load_task(empty)
    with pytest.raises(DataError, match=r"missing\.jsonl: cannot read"):
        load_task(tmp_path / "missing.jsonl")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(GOOD).encode() + b'\n{"context": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl:2: not UTF-8"):
        load_task(latin)
