import json
import shutil

import pytest

from bitnet_jax.cli import main
from bitnet_jax.data import load_corpus


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy of the shared trained run (evaluation writes into the run directory)."""
    dst = tmp_path / "run"
    shutil.copytree(trained_run(), dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def write_task(path, n: int, offset: int = 0):
    text = load_corpus("python_docs", 60000, ()).text.decode("utf-8", errors="ignore")
    lines = []
    for i in range(n):
        s = offset + 700 * i
        lines.append(json.dumps({"context": text[s:s + 30], "choices": [text[s + 30:s + 45], "~#}{@^`|\\~#}{@"],
                                 "label": 0}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_command_writes_eval_json_and_summary(run_copy, tmp_path, capsys):
    task = write_task(tmp_path / "real_or_junk.jsonl", 10)
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("The assert statement is a convenient way to insert debugging assertions into a program.\n")
    out_json = tmp_path / "out.json"
    argv = ["eval", str(run_copy), "--task", f"junk={task}", "--text", str(held_out), "--limit", "8", "--batch", "8",
            "--json", str(out_json)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "junk" in printed and "perplexity" in printed and "eval.json" in printed
    saved = json.loads((run_copy / "eval.json").read_text())
    summary = json.loads((run_copy / "summary.json").read_text())
    assert summary["eval"] == saved == json.loads(out_json.read_text())
    assert summary["status"] == "finished" and saved["step"] == summary["step"]
    junk = saved["tasks"]["junk"]
    assert junk["n"] == 8 and junk["file"] == str(task) and junk["acc"] == 1.0  # real text beats symbol soup
    assert saved["text"]["tokens"] == len(held_out.read_bytes()) - 1 and saved["text"]["bits_per_byte"] < 8

    # a second task on the same checkpoint is added; the first stays
    other = write_task(tmp_path / "other.jsonl", 3, offset=350)
    assert main(["eval", str(run_copy), "--task", str(other), "--batch", "8"]) == 0
    merged = json.loads((run_copy / "summary.json").read_text())["eval"]
    assert set(merged["tasks"]) == {"junk", "other"} and merged["tasks"]["other"]["n"] == 3
    assert merged["text"] == saved["text"]


def error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_eval_bad_input_is_one_line(run_copy, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "a", "choices": ["b", "c"], "label": 0}\n'
                   '{"context": "a", "choices": ["b"], "label": 0}\n')
    assert f"{bad}:2: field choices must be a list of at least 2 strings" in error_line(
        capsys, ["eval", str(run_copy), "--task", f"t={bad}"])
    missing = str(tmp_path / "no.jsonl")
    assert "cannot read the task file" in error_line(capsys, ["eval", str(run_copy), "--task", missing])
    assert "nothing to evaluate" in error_line(capsys, ["eval", str(run_copy)])
    assert "not a run directory" in error_line(capsys, ["eval", str(tmp_path / "nowhere"), "--text", str(bad)])
    assert not (tmp_path / "nowhere").exists()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "held-out text is empty" in error_line(capsys, ["eval", str(run_copy), "--text", str(empty)])
    assert not (run_copy / "eval.json").exists()
