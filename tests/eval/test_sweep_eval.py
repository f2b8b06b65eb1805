import csv
import json

import pytest
import yaml

from bitnet_jax import sweep
from bitnet_jax.errors import ConfigError, DataError
from bitnet_jax.scaling.report import ReportSettings, render
from bitnet_jax.sweep.results import collect, format_eval_table

SPEC = {
    "name": "evalsweep",
    "recipes": ["bitnet_b158"],
    "family": {"sizes": [{"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}], "base": {"seq_len": 16}},
    "budget": {"tokens": 320},
    "data": {"max_bytes": 30000},
    "train": {"batch_size": 4, "warmup_steps": 1, "eval_every": 5, "eval_batches": 1, "log_every": 5},
    "fit": {"bootstrap": 5},
}


def write(path, **changes):
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return path


def test_a_sweep_with_an_eval_section_evaluates_every_finished_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative task paths are taken from where the sweep starts
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "toy.jsonl").write_text(
        "\n".join(json.dumps({"context": f"line {i}: the", "choices": [" value", " ~}|{"], "label": 0})
                  for i in range(4)) + "\n")
    (tmp_path / "held.txt").write_text("Assert statements are a convenient way to insert debugging assertions.\n")
    spec = write(tmp_path / "s.yaml", eval={"tasks": {"toy": "tasks/toy.jsonl"}, "text": "held.txt", "limit": 3,
                                           "batch_size": 4})
    result = sweep.run(spec, tmp_path / "out")
    [run_id] = [r.run_id for r in result.runs]
    summary = json.loads((tmp_path / "out" / run_id / "summary.json").read_text())
    assert summary["status"] == "finished" and "eval_error" not in summary
    ev = summary["eval"]
    assert ev["step"] == summary["step"] and ev["tasks"]["toy"]["n"] == 3 and 0 <= ev["tasks"]["toy"]["acc"] <= 1
    assert ev["text"]["tokens"] == len((tmp_path / "held.txt").read_bytes()) - 1
    report = (tmp_path / "out" / "report" / "report.md").read_text()
    assert "## Zero-shot evaluation" in report and "| bitnet_b158 |" in report.split("## Zero-shot evaluation")[1]
    with open(tmp_path / "out" / "report" / "results.csv") as f:
        [row] = list(csv.DictReader(f))
    assert float(row["eval_toy_acc"]) == ev["tasks"]["toy"]["acc"]
    assert float(row["eval_text_bits_per_byte"]) == pytest.approx(ev["text"]["bits_per_byte"])
    assert "toy" in format_eval_table(collect(tmp_path / "out"))


def test_no_eval_section_means_no_eval_table(tmp_path):
    spec = sweep.load(write(tmp_path / "s.yaml"))
    assert not spec.eval.active
    rows = [{"run_id": "a", "label": "fp16", "recipe": "fp16", "status": "finished", "best_lr": True, "eval": None,
             "n_params_non_embedding": 1e4, "tokens": 1e5, "flops": 1e9, "final_val_loss": 3.0,
             "val_bits_per_byte": 4.0, "tokens_per_sec": 1.0, "energy_per_token_7nm_j": 1e-9, "wall_s": 1.0}]
    assert format_eval_table(rows) == ""
    from bitnet_jax.scaling.analysis import analyse

    text = render(rows, analyse([], bootstrap=0), ReportSettings(name=spec.name), [])
    assert "Zero-shot" not in text and spec.name in text


def test_eval_section_is_validated_and_group_defaults_to_the_sweep_name(tmp_path):
    with pytest.raises(ConfigError, match="eval.limit=0"):
        sweep.load(write(tmp_path / "a.yaml", eval={"tasks": {"t": "t.jsonl"}, "limit": 0}))
    with pytest.raises(ConfigError, match="eval.tasks: expected a mapping"):
        sweep.load(write(tmp_path / "b.yaml", eval={"tasks": ["t.jsonl"]}))
    [run] = sweep.expand(sweep.load(write(tmp_path / "c.yaml")))
    assert run.config.tracking.group == "evalsweep" and run.config.tracking.name == run.run_id
    [run] = sweep.expand(sweep.load(write(tmp_path / "d.yaml", tracking={"group": "mine", "tags": ["x"]})))
    assert run.config.tracking.group == "mine" and run.config.tracking.tags == ("x",)


def test_a_bad_eval_file_stops_the_sweep_before_any_training(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "a", "choices": ["b", "c"], "label": 5}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: label=5 is out of range"):
        sweep.run(write(tmp_path / "s.yaml", eval={"tasks": {"bad": str(bad)}}), tmp_path / "out")
    with pytest.raises(DataError, match="cannot read the held-out text"):
        sweep.run(write(tmp_path / "s.yaml", eval={"text": str(tmp_path / "missing.txt")}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_restarted_sweep_evaluates_what_is_missing(tmp_path):
    from bitnet_jax.sweep.runner import _needs_eval
    from bitnet_jax.sweep.spec import EvalSpec
    from bitnet_jax.files import write_json

    spec = EvalSpec(tasks={"a": "a.jsonl", "b": "b.jsonl"}, text="t.txt")
    done = {"step": 5, "tasks": {"a": {"acc": 1.0}, "b": {"acc": 0.5}}, "text": {"loss": 2.0}}
    cases = [({"status": "running"}, False), ({"status": "finished"}, True),
             ({"status": "finished", "eval": done}, False),
             ({"status": "finished", "eval": {**done, "tasks": {"a": {"acc": 1.0}}}}, True),  # task b added since
             ({"status": "finished", "eval": {**done, "text": None}}, True)]
    for summary, expected in cases:
        write_json(tmp_path / "summary.json", summary)
        assert _needs_eval(tmp_path, spec) is expected, summary
