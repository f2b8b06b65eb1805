"""From a results table to fits and recipe comparisons: which law is fitted to what, and each recipe against fp16.

Per recipe (finished runs at their best learning rate, final validation loss):
- loss vs training compute C, loss vs parameters N, loss vs inference energy per token (L = E + A x^-alpha);
- Chinchilla Approach 3 when log N and log D vary independently (not at fixed D, nor with D = k N);
- Approach 2 (IsoFLOP) when the sweep has compute budgets.
Against the fp16 baseline: the loss gap per size, the compute multiplier k(L) = C_recipe(L) / C_fp16(L) at matched
loss, the effective-parameter ratio N_fp16(L_recipe(N)) / N, and the energy ratio E_recipe(L) / E_fp16(L).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from bitnet_jax.scaling.fit import fit_chinchilla, fit_isoflop, fit_power_law

BASELINE = "fp16"
AXES = {"compute": "flops", "params": None, "energy": "energy_per_token_7nm_j"}


@dataclass
class Analysis:
    fits: dict[str, dict] = field(default_factory=dict)  # recipe -> {law name: fit object}
    comparison: dict[str, dict] = field(default_factory=dict)  # recipe -> comparison tables
    notes: list[str] = field(default_factory=list)  # fits skipped and why

    def to_dict(self) -> dict:
        return {"fits": {r: {k: f.to_dict() for k, f in fs.items()} for r, fs in self.fits.items()},
                "comparison": self.comparison, "notes": self.notes}


def n_column(with_embeddings: bool) -> str:
    return "n_params" if with_embeddings else "n_params_non_embedding"


def analyse(rows: list[dict], *, bootstrap: int = 200, ci: float = 0.8, n_with_embeddings: bool = False,
            seed: int = 0) -> Analysis:
    """Fits per recipe and comparisons against fp16, from the rows that enter the fits (see results.fit_rows)."""
    result = Analysis()
    ncol = n_column(n_with_embeddings)
    by_recipe: dict[str, list[dict]] = {}
    for r in rows:
        by_recipe.setdefault(r["recipe"], []).append(r)
    for recipe, rs in by_recipe.items():
        loss = np.array([r["final_val_loss"] for r in rs], dtype=float)
        x = {"compute": _col(rs, "flops"), "params": _col(rs, ncol), "energy": _col(rs, "energy_per_token_7nm_j"),
             "tokens": _col(rs, "tokens")}
        fits = {}
        for axis in ("compute", "params", "energy"):
            _try(result, fits, f"loss_vs_{axis}", recipe,
                 lambda a=axis: fit_power_law(x[a], loss, bootstrap=bootstrap, seed=seed, ci=ci))
        if _independent(np.log(x["params"]), np.log(x["tokens"])):
            _try(result, fits, "chinchilla", recipe,
                 lambda: fit_chinchilla(x["params"], x["tokens"], loss, bootstrap=bootstrap, seed=seed, ci=ci))
        budgets = [r["budget"] for r in rs if r["budget"]]
        if budgets:
            _try(result, fits, "isoflop", recipe,
                 lambda: fit_isoflop(x["params"], np.array([r["budget"] for r in rs], float), loss,
                                     bootstrap=bootstrap, seed=seed, ci=ci))
        result.fits[recipe] = fits
    base = by_recipe.get(BASELINE)
    if base is None:
        result.notes.append("no fp16 runs: recipe comparisons need the fp16 baseline")
        return result
    for recipe, rs in by_recipe.items():
        if recipe != BASELINE:
            result.comparison[recipe] = compare(rs, base, result.fits[recipe], result.fits[BASELINE], ncol)
    return result


def _independent(u: np.ndarray, v: np.ndarray) -> bool:
    """True when log N and log D vary independently (not at fixed D, nor with D = k N up to rounding)."""
    centered = np.stack([u - u.mean(), v - v.mean()], axis=1)
    sv = np.linalg.svd(centered, compute_uv=False)
    return len(u) >= 5 and sv[0] > 0 and sv[-1] / sv[0] > 0.05


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r[key] for r in rows], dtype=float)


def _try(result: Analysis, fits: dict, name: str, recipe: str, fit) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fits[name] = fit()
    except ValueError as e:
        result.notes.append(f"{recipe}: {name} not fitted: {e}")


def compare(rows: list[dict], base_rows: list[dict], fits: dict, base_fits: dict, ncol: str) -> dict:
    """One recipe against fp16: per-size gaps, and multipliers at matched loss from the fitted curves."""
    out: dict = {"loss_gap": []}
    base_by_size = {_size_key(r): r for r in base_rows}
    for r in sorted(rows, key=lambda r: r[ncol]):
        b = base_by_size.get(_size_key(r))
        if b is not None:
            out["loss_gap"].append({"d_model": r["d_model"], "n_layers": r["n_layers"], "N": r[ncol],
                                    "tokens": r["tokens"], "loss": r["final_val_loss"],
                                    "fp16_loss": b["final_val_loss"],
                                    "gap": r["final_val_loss"] - b["final_val_loss"]})
    losses = _matched_losses(rows, base_rows, fits, base_fits)
    for axis, key in (("compute", "compute_multiplier"), ("energy", "energy_ratio")):
        f, g = fits.get(f"loss_vs_{axis}"), base_fits.get(f"loss_vs_{axis}")
        if f is not None and g is not None:
            out[key] = [_ratio_at(f, g, L) for L in losses]
    f, g = fits.get("loss_vs_params"), base_fits.get("loss_vs_params")
    if f is not None and g is not None:
        out["effective_param_ratio"] = []
        for r in sorted(rows, key=lambda r: r[ncol]):
            n = r[ncol]
            n_fp16 = float(g.inverse(f.predict(n)))
            out["effective_param_ratio"].append({"N": n, "loss": float(f.predict(n)), "fp16_N_same_loss": n_fp16,
                                                 "ratio": n_fp16 / n if math.isfinite(n_fp16) else None})
    return out


def _size_key(r: dict) -> tuple:
    return r["d_model"], r["n_layers"], r["d_ff"], r["tokens"], r["budget"]


def _matched_losses(rows, base_rows, fits, base_fits) -> list[float]:
    """Three target losses inside the range both recipes reached and above both fitted floors E."""
    lo = max(min(r["final_val_loss"] for r in rows), min(r["final_val_loss"] for r in base_rows))
    hi = min(max(r["final_val_loss"] for r in rows), max(r["final_val_loss"] for r in base_rows))
    floors = [f.E for f in (fits.get("loss_vs_compute"), base_fits.get("loss_vs_compute")) if f is not None]
    lo = max([lo] + [e * 1.001 for e in floors])
    if hi <= lo:
        return []
    return [float(v) for v in np.linspace(lo, hi, 3)]


def _ratio_at(fit, base, loss: float) -> dict:
    """x_recipe(L) / x_fp16(L) with a bootstrap interval from paired draws when both fits have them."""
    ratio = float(fit.inverse(loss) / base.inverse(loss))
    row = {"loss": loss, "ratio": ratio if math.isfinite(ratio) else None}
    if fit.samples and base.samples:
        k = min(len(fit.samples["A"]), len(base.samples["A"]))
        draws = np.array([_inverse(fit.samples, i, loss) / _inverse(base.samples, i, loss) for i in range(k)])
        draws = draws[np.isfinite(draws)]
        if len(draws) >= 10:
            tail = (1 - fit.ci) / 2 * 100
            row["interval"] = [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]
    return row


def _inverse(samples: dict, i: int, loss: float) -> float:
    a, alpha, e = samples["A"][i], samples["alpha"][i], samples["E"][i]
    return (a / (loss - e)) ** (1 / alpha) if loss > e and alpha > 0 else math.nan
