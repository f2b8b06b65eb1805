"""A four-variant recipe ablation through the CLI, shared by the tests that read its results (its own module, so
that pytest-xdist's loadscope schedules it apart from the other sweep tests)."""

import json
import subprocess

import pytest
import yaml

from bitnet_jax.cli import main
from bitnet_jax.files import read_json

from test_sweep import ENV, TINY_SPEC, VARIANTS, results, sweep_cmd, write_spec

@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """The README's four-variant ablation at toy scale: fp16 and three b1.58 variants, three sizes, a 2-point LR grid
    for the clipped variant (tuned on the tuning split)."""
    tmp = tmp_path_factory.mktemp("ablation")
    sizes = [{"d_model": d, "n_layers": 1, "n_heads": 2, "d_ff": 2 * d} for d in (16, 24, 32)]
    spec = write_spec(tmp / "s.yaml", recipes=VARIANTS, family={"sizes": sizes, "base": {"seq_len": 16}},
                      lr={"bitnet_b158+ste=clipped": [2e-3, 6e-3], "fp16": [2e-3, 1e30]},  # 1e30 diverges
                      executor={"parallel": 2}, train={**TINY_SPEC["train"], "log_every": 2, "ckpt_every": 10})
    proc = subprocess.run(sweep_cmd(spec, tmp / "out"), env=ENV, capture_output=True, text=True)
    assert proc.returncode == 1 and "did not finish" in proc.stderr, proc.stderr[-3000:]  # the diverged runs
    return tmp / "out"


def test_a_four_variant_ablation_gives_four_curves(ablation):
    rows = results(ablation)
    assert len(rows) == 3 * 6
    diverged = [r for r in rows if r["status"] != "finished"]
    assert [(r["label"], r["lr"], r["status"], r["best_lr"]) for r in diverged] == [("fp16", "1e+30", "diverged",
                                                                                      "False")] * 3
    labels = ["fp16", "bitnet_b158", "bitnet_b158+ste=clipped", "b158_median"]
    assert list(dict.fromkeys(r["label"] for r in rows)) == labels
    fits = json.loads((ablation / "report" / "fits.json").read_text())
    assert set(fits["fits"]) == set(labels) and all("loss_vs_compute" in fits["fits"][x] for x in labels)
    assert set(fits["comparison"]) == set(labels[1:])
    report = (ablation / "report" / "report.md").read_text()
    assert all(x in report for x in labels)
    grid = [r for r in rows if r["label"] == "bitnet_b158+ste=clipped"]
    for d in ("16", "24", "32"):  # per size, one of the two learning rates is chosen, on the tuning split
        pair = [r for r in grid if r["d_model"] == d]
        assert sorted(r["best_lr"] for r in pair) == ["False", "True"]
        best = min(pair, key=lambda r: float(r["final_tune_loss"]))
        assert best["best_lr"] == "True"
    assert len(list((ablation / "logs").iterdir())) == 3 * 4  # each LR pair of a size trained as one job
    pair_summary = read_json(ablation / grid[0]["run_id"] / "summary.json")
    assert pair_summary["group_size"] == 2


def test_results_fit_and_report_commands_rebuild_from_run_files(ablation, capsys, tmp_path):
    for f in (ablation / "report").iterdir():
        f.unlink()
    assert main(["results", str(ablation)]) == 0
    out = capsys.readouterr().out
    assert "fp16_d16L1f32_D640_lr0.002_s0" in out and "N_total" in out and "tune" in out
    assert main(["fit", str(ablation)]) == 0
    assert {p.name for p in (ablation / "report").iterdir()} == {"results.csv", "fits.json"}
    assert main(["report", str(ablation)]) == 0
    assert (ablation / "report" / "report.md").exists() and (ablation / "report" / "training_curves.png").exists()
    assert main(["results", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_a_changed_spec_is_refused_unless_restarted(ablation, tmp_path, capsys):
    spec = yaml.safe_load((ablation / "sweep.yaml").read_text())
    spec["train"]["batch_size"] = 8  # every run would train on other batches
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(spec))
    before = {p: p.read_bytes() for p in ablation.glob("*/summary.json")}
    assert main(["sweep", str(changed), "--out", str(ablation)]) == 2
    err = capsys.readouterr().err
    assert "plans 18 run(s) differently" in err and "(train.batch_size)" in err and "--restart-changed" in err
    assert {p: p.read_bytes() for p in ablation.glob("*/summary.json")} == before  # nothing touched
    assert read_json(ablation / "fp16_d16L1f32_D640_lr0.002_s0" / "summary.json")["status"] == "finished"
