"""A sweep directory's results table, fits, plots and report, rebuilt from its run files alone:
OUT/report/{results.csv, fits.json, *.png, *.svg, report.md}."""

from __future__ import annotations

from pathlib import Path

from bitnet_jax.files import read_metrics
from bitnet_jax.scaling.analysis import Analysis, fit_rows
from bitnet_jax.scaling.report import ReportSettings, write_fits, write_report
from bitnet_jax.sweep.results import collect, mark_best_lr, write_csv
from bitnet_jax.sweep.spec import baseline_label, load


def _settings(out: Path, rows: list[dict]) -> ReportSettings:
    spec = load(out / "sweep.yaml")
    return ReportSettings(name=spec.name, description=spec.description, baseline=baseline_label(spec),
                          bootstrap=spec.fit.bootstrap, ci=spec.fit.ci, n_with_embeddings=spec.fit.n_with_embeddings,
                          lr_selection=mark_best_lr(rows))


def write_tables(out_dir: str | Path) -> tuple[list[dict], ReportSettings, Analysis]:
    """OUT/report/results.csv and OUT/report/fits.json."""
    out = Path(out_dir)
    rows = collect(out)
    settings = _settings(out, rows)
    write_csv(rows, out / "report" / "results.csv")
    return rows, settings, write_fits(out / "report", rows, settings)


def write_reports(out_dir: str | Path) -> Path:
    """Everything: results, fits, plots and report.md; returns the report's path."""
    out = Path(out_dir)
    rows, settings, analysis = write_tables(out)
    curves = {r["run_id"]: read_metrics(out / r["run_id"] / "metrics.jsonl") for r in fit_rows(rows)}
    return write_report(out / "report", rows, analysis, settings, curves)
