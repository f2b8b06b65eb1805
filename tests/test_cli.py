import json
import subprocess

import pytest

from bitnet_jax.cli import main


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["bench", "--help"]])
def test_help_everywhere(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0 and "usage: bitnet-jax" in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run(["bitnet-jax", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "bench" in out.stdout


def error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: 3\n")
    assert "malformed YAML" in error_line(capsys, ["train", str(bad), "--out", str(tmp_path / "a")])
    assert "cannot read" in error_line(capsys, ["train", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "b")])
    assert "unknown recipe" in error_line(capsys, ["train", "recipe=bitnet_b1", "--out", str(tmp_path / "c")])
    assert "model.d_model=96 is not divisible" in error_line(
        capsys, ["train", "model.d_model=96", "model.n_heads=5", "--out", str(tmp_path / "d")])
    assert "train.steps: expected an integer" in error_line(capsys, ["train", "train.steps=ten"])
    assert "model.d_modl: unknown key" in error_line(capsys, ["train", "model.d_modl=3"])
    assert not any((tmp_path / n).exists() for n in "abcd")  # bad input writes nothing


def test_train_then_resume_through_the_cli(tmp_path, capsys, tiny):
    out = str(tmp_path / "run")
    assert main(["train", *tiny, "train.steps=6", "--out", out]) == 0
    assert capsys.readouterr().out.startswith("finished: ")
    assert "already holds a run" in error_line(capsys, ["train", *tiny, "--out", out])
    assert main(["train", "--out", out, "--resume"]) == 0  # config comes from the run directory
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"


def test_resume_needs_out(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--resume"])
    assert e.value.code == 2 and "--resume needs --out" in capsys.readouterr().err


def test_bench_runs_on_cpu(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--preset", "tiny", "--steps", "2", "--warmup", "1", "--batch", "2",
                 "--recipes", "fp16,bitnet_b158", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    assert "fp16" in text and "bitnet_b158" in text and "MFU" in text
    rows = json.loads(path.read_text())["rows"]
    assert [r["recipe"] for r in rows] == ["fp16", "bitnet_b158"] and rows[0]["step_ratio_vs_fp16"] == 1.0
    assert all(r["tokens_per_sec"] == pytest.approx(2 * 64 / (r["step_ms"] / 1e3)) for r in rows)
    assert "unknown bench preset" in error_line(capsys, ["bench", "--preset", "huge"])
