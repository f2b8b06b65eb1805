"""The analysis, plots and report on a synthetic results table drawn from known laws (no training)."""

import json

import numpy as np
import pytest

from bitnet_jax.scaling.analysis import analyse
from bitnet_jax.scaling.plots import plot_all
from bitnet_jax.scaling.report import render
from bitnet_jax.sweep.spec import SweepSpec

TRUE = {"fp16": (1.7, 400.0, 410.0, 0.34, 0.28), "bitnet_b158": (1.8, 500.0, 410.0, 0.34, 0.28)}


def synthetic_rows(seed=0):
    """An IsoFLOP grid per recipe: 3 budgets x 5 sizes, loss from a Chinchilla law with 0.2 % noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for recipe, (e, a, b, alpha, beta) in TRUE.items():
        for budget in (1e18, 1e19, 1e20):
            n_star = 0.3 * (budget / 6) ** 0.5
            for n in n_star * np.geomspace(0.25, 4, 5):
                d = budget / (6 * n)
                loss = (e + a * n ** -alpha + b * d ** -beta) * (1 + 0.002 * rng.standard_normal())
                rows.append({"run_id": f"{recipe}_{budget:g}_{n:.3g}", "recipe": recipe, "status": "finished",
                             "d_model": int(n), "n_layers": 1, "d_ff": 1, "n_params": n * 1.1,
                             "n_params_non_embedding": n, "tokens": d, "flops": budget, "budget": budget,
                             "lr": 1e-3, "seed": 0, "final_train_loss": loss, "final_val_loss": loss,
                             "val_bits_per_byte": loss / np.log(2), "tokens_per_sec": 1e5,
                             "energy_per_token_7nm_j": n * (0.5e-12 if recipe == "fp16" else 0.01e-12),
                             "energy_per_token_45nm_j": n * 1e-12, "wall_s": 1.0, "best_lr": True,
                             "data_entropy_floor": None})
    return rows


def test_analysis_fits_and_compares_every_recipe(tmp_path):
    rows = synthetic_rows()
    result = analyse(rows, bootstrap=30)
    for recipe, (e, a, b, alpha, beta) in TRUE.items():
        fits = result.fits[recipe]
        assert set(fits) == {"loss_vs_compute", "loss_vs_params", "loss_vs_energy", "chinchilla", "isoflop"}
        chin = fits["chinchilla"]
        assert chin.E == pytest.approx(e, rel=0.05) and chin.alpha == pytest.approx(alpha, rel=0.15)
        assert fits["isoflop"].a == pytest.approx(beta / (alpha + beta), abs=0.1)
    comp = result.comparison["bitnet_b158"]
    assert all(g["gap"] > 0 for g in comp["loss_gap"])  # the recipe's law is 0.1 nats worse everywhere
    assert all(k["ratio"] > 1 for k in comp["compute_multiplier"] if k["ratio"] is not None)
    assert "bitnet_b158" in result.comparison and "fp16" not in result.comparison
    json.dumps(result.to_dict())  # fits.json is plain JSON

    plots = plot_all(tmp_path, rows, result, {}, n_with_embeddings=False)
    assert set(plots) == {"loss_vs_compute", "loss_vs_energy", "loss_vs_params", "isoflop"}
    for p in plots:
        assert (tmp_path / f"{p}.png").stat().st_size > 5000 and (tmp_path / f"{p}.svg").exists()
    text = render(SweepSpec(name="synthetic"), rows, result, plots)
    assert "Approach 3" in text and "compute multiplier" in text and "![isoflop](isoflop.png)" in text


def test_without_baseline_or_enough_points_the_report_says_why():
    rows = [r for r in synthetic_rows() if r["recipe"] == "bitnet_b158"][:2]
    result = analyse(rows, bootstrap=0)
    assert any("fp16 baseline" in n for n in result.notes)
    assert any("loss_vs_compute not fitted" in n for n in result.notes)
