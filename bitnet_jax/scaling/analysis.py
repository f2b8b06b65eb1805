"""From a sweep's rows to fitted laws per curve label, and each label against a baseline label.

Per label (`fit_rows`: finished runs at their best learning rate, final validation loss; the seeds of one config
enter as one point, their mean loss):
- loss vs training compute C, on the compute frontier: per compute level (the IsoFLOP budget when a row has one,
  else C to 3 significant digits) only the run with the lowest loss, since at one compute level only the best
  allocation of it says what that compute buys;
- loss vs parameters N and loss vs inference energy per token e, likewise on the lowest loss per N (per e), the
  best each model size reached over the token counts tried;
- Chinchilla Approach 3 on every run, when log N and log D vary independently (not at fixed D, nor with D = k N);
- Approach 2 (IsoFLOP) on every run that has a budget.
Against the baseline label (default fp16): the loss gap per size (no fit needed), and at matched loss from the
fitted curves the compute multiplier C_label(L) / C_base(L), the energy ratio e_label(L) / e_base(L), and the
effective-parameter ratio N_base(L_label(N)) / N. A ratio is withheld, with the reason, when a fit it rests on is
unresolved (fit.py), when its bootstrap interval is unbounded, or when its point estimate falls outside its own
interval (the fit is then unstable: the full-data optimum is not where the resampled fits are).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from bitnet_jax.scaling.bootstrap import percentile_intervals
from bitnet_jax.scaling.fit import fit_chinchilla, fit_isoflop, fit_power_law

ENERGY = "energy_per_token_7nm_j"
MIN_DRAWS = 10  # fewer usable bootstrap draws than this give no interval
TOKENS_MATCH = 0.05  # token counts this close (relative) count as the same budget in per-size loss gaps
UNSTABLE = "point estimate outside its bootstrap interval: the fit is unstable"
SELECTION = {
    "loss_vs_compute": "lowest loss per compute level (budget, else C to 3 significant digits)",
    "loss_vs_params": "lowest loss per N, runs without a compute budget",
    "loss_vs_energy": "lowest loss per inference energy per token, runs without a compute budget",
    "chinchilla": "every run",
    "isoflop": "every run with a compute budget",
}


@dataclass
class Analysis:
    baseline: str
    ci: float
    n_with_embeddings: bool
    fits: dict[str, dict] = field(default_factory=dict)  # label -> {law: fit object}
    run_ids: dict[str, dict] = field(default_factory=dict)  # label -> {law: run ids of the points it used}
    comparison: dict[str, dict] = field(default_factory=dict)  # label -> tables against the baseline
    notes: list[str] = field(default_factory=list)  # fits not made and comparisons skipped, and why

    def unresolved(self) -> list[tuple[str, str, str]]:
        """(label, law, reason) of every fitted law the data could not pin down."""
        return [(label, law, fit.reason) for label, fits in self.fits.items() for law, fit in fits.items()
                if not getattr(fit, "resolved", True)]

    def to_dict(self) -> dict:
        fits = {label: {law: {**fit.to_dict(), "selection": SELECTION[law], "run_ids": self.run_ids[label][law]}
                        for law, fit in fs.items()} for label, fs in self.fits.items()}
        return {"fits": fits, "comparison": self.comparison,
                "unresolved": [{"label": lb, "law": law, "reason": why} for lb, law, why in self.unresolved()],
                "notes": self.notes}


def fit_rows(rows: list[dict]) -> list[dict]:
    """The rows that enter the fits: finished runs at their chosen learning rate, with a validation loss."""
    return [r for r in rows if r["status"] == "finished" and r["best_lr"] and r["final_val_loss"] is not None]


def n_column(with_embeddings: bool) -> str:
    return "n_params" if with_embeddings else "n_params_non_embedding"


def labels_of(rows: list[dict], baseline: str) -> list[str]:
    """Labels in a stable order: the baseline first, then the others as they first appear."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    return sorted(labels, key=lambda label: label != baseline)


def law_text(fit, variable: str) -> str:
    """A fitted power law with its real variable, e.g. 'L = 1.82 + 410 N^-0.35'."""
    return f"L = {short_number(fit.E)} + {short_number(fit.A)} {variable}^{-fit.alpha:.2g}"


def short_number(value: float) -> str:
    """Three significant digits, and a compact exponent (4.1e5, not 4.1e+05) outside 0.01 .. 999."""
    if not math.isfinite(value) or value == 0 or 1e-2 <= abs(value) < 999.5:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def compute_level(row: dict) -> float:
    """The compute level a run belongs to: its IsoFLOP budget, else its FLOPs to 3 significant digits."""
    return float(row["budget"]) if row["budget"] else float(f"{row['flops']:.2e}")


def seed_means(rows: list[dict]) -> list[dict]:
    """One point per config trained with several seeds: the first seed's row with the mean final validation loss,
    `seeds` (how many it averages) and `run_ids` (theirs); in first-seen order."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["label"], r["d_model"], r["n_layers"], r["d_ff"], r["tokens"], r["budget"], r["lr"]),
                          []).append(r)
    return [{**rs[0], "final_val_loss": _mean_loss(rs), "seeds": len(rs), "run_ids": [r["run_id"] for r in rs]}
            for rs in groups.values()]


def lowest_loss_per(rows: list[dict], key) -> list[dict]:
    """Of the rows sharing key(row), the one with the lowest final validation loss; in first-seen order."""
    best: dict = {}
    for r in rows:
        k = key(r)
        if k not in best or r["final_val_loss"] < best[k]["final_val_loss"]:
            best[k] = r
    return list(best.values())


def analyse(rows: list[dict], *, baseline: str = "fp16", bootstrap: int = 200, ci: float = 0.8,
            n_with_embeddings: bool = False, seed: int = 0) -> Analysis:
    """Fits per label of the fit rows among `rows`, and every other label against `baseline`."""
    result = Analysis(baseline=baseline, ci=ci, n_with_embeddings=n_with_embeddings)
    ncol = n_column(n_with_embeddings)
    by_label = {label: [r for r in fit_rows(rows) if r["label"] == label] for label in labels_of(fit_rows(rows),
                                                                                                  baseline)}
    points = {label: seed_means(rs) for label, rs in by_label.items()}
    for i, (label, rs) in enumerate(by_label.items()):
        result.fits[label], result.run_ids[label] = {}, {}
        # a seed per label: ratios pair the i-th resample of two labels, which must be drawn independently (the
        # same weights on the same sizes would make the pair's errors move together and the interval too narrow)
        options = {"bootstrap": bootstrap, "seed": seed + i, "ci": ci}
        for law, used, fit in _laws(points[label], ncol, options):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    result.fits[label][law] = fit(used)
                result.run_ids[label][law] = [i for r in used for i in r["run_ids"]]
            except ValueError as e:
                result.notes.append(f"{label}: {law} not fitted ({SELECTION[law]}, {len(used)} points): {e}")
    if any(r["budget"] for r in fit_rows(rows)):
        result.notes.append("L(N) and L(e) are fitted on the runs without a compute budget only (none: not fitted): "
                            "across IsoFLOP budgets the lowest loss per N mixes token counts; Approach 2 and 3 "
                            "describe those runs")
    if baseline not in by_label:
        result.notes.append(f"no finished runs labelled {baseline!r} (the baseline): comparisons skipped")
        return result
    for label in by_label:
        if label != baseline:
            result.comparison[label] = compare(by_label[label], by_label[baseline], result.fits[label],
                                               result.fits[baseline], ncol, baseline)
    return result


def _laws(rows: list[dict], ncol: str, options: dict):
    """(law, the rows it is fitted on, fit(rows)) for every law the rows can support."""
    def power(column):
        return lambda rs: fit_power_law(_col(rs, column), _col(rs, "final_val_loss"), **options)

    def loss(rs):
        return _col(rs, "final_val_loss")

    yield "loss_vs_compute", lowest_loss_per(rows, compute_level), power("flops")
    fixed = [r for r in rows if not r["budget"]]  # across IsoFLOP budgets, the lowest loss per N mixes token counts
    if fixed:
        yield "loss_vs_params", lowest_loss_per(fixed, lambda r: r[ncol]), power(ncol)
        yield "loss_vs_energy", lowest_loss_per(fixed, lambda r: r[ENERGY]), power(ENERGY)
    if _independent(np.log(_col(rows, ncol)), np.log(_col(rows, "tokens"))):
        yield "chinchilla", rows, lambda rs: fit_chinchilla(_col(rs, ncol), _col(rs, "tokens"), loss(rs), **options)
    budgeted = [r for r in rows if r["budget"]]
    if budgeted:
        yield "isoflop", budgeted, lambda rs: fit_isoflop(_col(rs, ncol), _col(rs, "budget"), loss(rs),
                                                          D=_col(rs, "tokens"), **options)


def _independent(u: np.ndarray, v: np.ndarray) -> bool:
    """True when log N and log D vary independently (not at fixed D, nor with D = k N up to rounding)."""
    if len(u) < 5 or not (np.all(np.isfinite(u)) and np.all(np.isfinite(v))):
        return False
    sv = np.linalg.svd(np.stack([u - u.mean(), v - v.mean()], axis=1), compute_uv=False)
    return sv[0] > 0 and sv[-1] / sv[0] > 0.05


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)


# ---------------------------------------------------------------- one label against the baseline


def compare(rows: list[dict], base_rows: list[dict], fits: dict, base_fits: dict, ncol: str,
            baseline: str = "fp16") -> dict:
    """One label against the baseline: per-size loss gaps, ratios at matched loss from the fitted curves, and the
    reason for every ratio withheld."""
    out: dict = {"loss_gap": loss_gaps(rows, base_rows, ncol), "withheld": {}}
    for axis, key in (("compute", "compute_multiplier"), ("energy", "energy_ratio"), ("params",
                                                                                    "effective_param_ratio")):
        law = f"loss_vs_{axis}"
        f, g = fits.get(law), base_fits.get(law)
        reason = _missing_or_unresolved(f, law, "this label") or _missing_or_unresolved(g, law, baseline)
        if reason:
            out["withheld"][key] = reason
        elif axis == "params":
            out[key] = [_effective_params(f, g, n) for n in sorted({r[ncol] for r in rows})]
        else:
            out[key] = [_ratio_at(f, g, L) for L in _matched_losses(f, g)]
    if fits.get("isoflop") is not None and base_fits.get("isoflop") is not None:
        out["compute_optimal"] = compute_optimal(fits["isoflop"], base_fits["isoflop"])
    return out


def compute_optimal(fit, base) -> list[dict]:
    """Approach 2 against the baseline at each budget both fitted: N_opt and D_opt of each and their ratios
    (label / baseline), with intervals from independently drawn bootstrap resamples (paired by index)."""
    rows = []
    for c in sorted(set(map(float, fit.budgets)) & set(map(float, base.budgets))):
        i, j = list(fit.budgets).index(c), list(base.budgets).index(c)
        row = {"budget": c}
        for name, values in (("N_opt", "n_opt_per_budget"), ("D_opt", "d_opt_per_budget")):
            mine, theirs = getattr(fit, values), getattr(base, values)
            if mine is None or theirs is None:
                continue
            row[name], row[f"baseline_{name}"] = float(mine[i]), float(theirs[j])
            draws = None
            if values in fit.samples and values in base.samples:
                n = min(len(fit.samples[values]), len(base.samples[values]))
                draws = fit.samples[values][:n, i] / base.samples[values][:n, j]
                row[f"{name}_interval"] = draw_interval(fit.samples[values][:, i], fit.ci)
                row[f"baseline_{name}_interval"] = draw_interval(base.samples[values][:, j], base.ci)
            row[f"{name}_ratio"] = _checked({}, float(mine[i] / theirs[j]), draws, fit.ci)
        rows.append(row)
    return rows


def draw_interval(draws: np.ndarray, ci: float) -> list[float] | None:
    """The central `ci` percentile interval of the finite bootstrap draws; None with fewer than MIN_DRAWS."""
    if np.isfinite(draws).sum() < MIN_DRAWS:
        return None
    return list(percentile_intervals({"x": draws}, ci)["x"])


def loss_gaps(rows: list[dict], base_rows: list[dict], ncol: str) -> list[dict]:
    """Loss minus the baseline's loss for every size both ran: same shape and budget, and token counts within
    TOKENS_MATCH of each other (a recipe whose layout adds norm parameters gets a few more tokens at D = k N); seeds
    averaged."""
    mine, base = _by_size(rows), _by_size(base_rows)
    gaps = []
    for key in sorted(mine, key=lambda k: (mine[k][0][ncol], k[3] or 0)):
        d_model, n_layers, d_ff, tokens, budget = key
        match = [k for k in base if k[:3] == key[:3] and k[4] == budget and abs(k[3] / tokens - 1) <= TOKENS_MATCH]
        if not match:
            continue
        base_key = min(match, key=lambda k: abs(k[3] / tokens - 1))
        loss, base_loss = _mean_loss(mine[key]), _mean_loss(base[base_key])
        gaps.append({"d_model": d_model, "n_layers": n_layers, "d_ff": d_ff, "N": mine[key][0][ncol],
                     "tokens": tokens, "baseline_tokens": base_key[3], "budget": budget, "loss": loss,
                     "baseline_loss": base_loss, "gap": loss - base_loss, "runs": len(mine[key]),
                     "baseline_runs": len(base[base_key])})
    return gaps


def _by_size(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r["d_model"], r["n_layers"], r["d_ff"], r["tokens"], r["budget"]), []).append(r)
    return out


def _mean_loss(rows: list[dict]) -> float:
    return float(np.mean([r["final_val_loss"] for r in rows]))


def _missing_or_unresolved(fit, law: str, whose: str) -> str:
    if fit is None:
        return f"{whose} has no {law} fit"
    if not fit.resolved:
        return f"{law} of {whose} is unresolved: {fit.reason}"
    return ""


def _matched_losses(fit, base) -> list[float]:
    """Three target losses inside the range both fits were fitted on and above both fitted floors E."""
    lo = max(fit.loss_range[0], base.loss_range[0], fit.E * 1.001, base.E * 1.001)
    hi = min(fit.loss_range[1], base.loss_range[1])
    return [float(v) for v in np.linspace(lo, hi, 3)] if hi > lo else []


def _ratio_at(fit, base, loss: float) -> dict:
    """x_label(L) / x_base(L), with an interval from paired bootstrap draws when both fits have them."""
    point = float(fit.inverse(loss) / base.inverse(loss))
    draws = None
    if fit.samples and base.samples:
        draws = _inverse_draws(fit.samples, loss) / _inverse_draws(base.samples, loss)
    return _checked({"loss": loss}, point, draws, fit.ci)


def _effective_params(fit, base, n: float) -> dict:
    """N_base(L_label(N)) / N: the share of a baseline model that a model of this label with N parameters is worth."""
    loss = float(fit.predict(n))
    point = float(base.inverse(loss)) / n
    draws = None
    if fit.samples and base.samples:
        draws = _inverse_draws(base.samples, _predict_draws(fit.samples, n)) / n
    return _checked({"N": n, "loss": loss}, point, draws, fit.ci)


def _checked(row: dict, point: float, draws, ci: float) -> dict:
    """The row with its ratio and interval, or with the reason it is withheld."""
    if not math.isfinite(point):
        return {**row, "ratio": None, "withheld": "a fitted curve never reaches this loss"}
    row = {**row, "ratio": point}
    if draws is None:
        return row
    draws = draws[~np.isnan(draws)]  # NaN: a resample without a falling curve; inf: one that never reaches L
    if len(draws) < MIN_DRAWS:
        return {**row, "ratio": None, "withheld": f"only {len(draws)} bootstrap draws give a ratio"}
    lo, hi = np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2], method="inverted_cdf")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return {**row, "ratio": None, "withheld": "the bootstrap interval is unbounded: some resampled curves "
                                                  "never reach this loss"}
    if not lo <= point <= hi:
        return {**row, "ratio": None, "withheld": UNSTABLE}
    return {**row, "interval": [float(lo), float(hi)]}


def _inverse_draws(samples: dict, loss) -> np.ndarray:
    """x at which each bootstrap curve reaches `loss`: inf at or below its floor E, NaN where it does not fall."""
    a, alpha, e = samples["A"], samples["alpha"], samples["E"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = np.where(loss > e, (a / (loss - e)) ** (1 / alpha), np.inf)
    return np.where(alpha > 0, x, np.nan)


def _predict_draws(samples: dict, x: float) -> np.ndarray:
    with np.errstate(over="ignore"):
        return samples["E"] + samples["A"] * x ** -samples["alpha"]
