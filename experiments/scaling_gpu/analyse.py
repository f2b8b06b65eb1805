"""The study's joint effective-parameter fit, from its results tables (bitnet_jax.scaling.joint):

    python experiments/scaling_gpu/analyse.py [--out OUT_JSON] [RESULTS_CSV ...]

L = E + A (rho_r N)^-alpha [+ B D^-beta] over every label at its chosen learning rate (seeds averaged), rho_fp16 = 1,
and rho per size bucket (does rho change with N?); and the learning-rate rule for the sizes past the grid: per
label, a least-squares line through log LR* against log N over the grid sizes, extrapolated and rounded to the
nearest 1e-3 x 2^k (from the first table, the size sweep: its sizes with a grid). Defaults:
experiments/scaling_gpu/results.csv -> experiments/scaling_gpu/joint.json. With the IsoFLOP grid's and the width check's tables added, N and D vary
independently and the joint fit takes its full form, L = E + A (rho_r N)^-alpha + B D^-beta.
"""

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np

from bitnet_jax.scaling.analysis import fit_rows, seed_means
from bitnet_jax.scaling.joint import fit_joint, rho_by_size

HERE = Path(__file__).parent
BOOTSTRAP = 100
LARGE_SIZES = (6.24e6, 1.24e7, 2.13e7)  # the family's sizes past the grid (d256 L8, d320 L10, d384 L12)


def load(path: Path) -> list[dict]:
    numeric = ("n_params_non_embedding", "tokens", "final_val_loss", "lr", "d_model", "n_layers", "d_ff")
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            r.update({k: float(r[k]) if r[k] else None for k in numeric})
            r.update(best_lr=r["best_lr"] == "True", budget=float(r["budget"]) if r["budget"] else None)
            rows.append(r)
    return rows


def summary(fit) -> dict:
    keep = ("E", "A", "alpha", "B", "beta", "rho", "form", "n_points", "intervals", "buckets", "drift")
    return {k: v for k, v in fit.to_dict().items() if k in keep}


def lr_rule(points: list[dict]) -> dict:
    """label -> the fitted LR* trend over the grid sizes and its extrapolation to LARGE_SIZES."""
    out = {}
    for label in dict.fromkeys(p["label"] for p in points):
        mine = [p for p in points if p["label"] == label]
        x = np.log([p["n_params_non_embedding"] for p in mine])
        y = np.log2([p["lr"] / 1e-3 for p in mine])
        slope, intercept = np.polyfit(x, y, 1)
        out[label] = {"grid_best": {f"{p['n_params_non_embedding']:.3g}": p["lr"] for p in mine},
                      "slope_log2_lr_per_log_n": float(slope),
                      "large": {f"{n:.3g}": 1e-3 * 2.0 ** round(intercept + slope * np.log(n)) for n in LARGE_SIZES}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path, default=[HERE / "results.csv"])
    parser.add_argument("--out", type=Path, default=HERE / "joint.json")
    args = parser.parse_args()
    results, out = args.results, args.out
    points = seed_means(fit_rows([row for path in results for row in load(path)]))
    cols = {k: np.array([p[k] for p in points]) for k in ("n_params_non_embedding", "tokens", "final_val_loss")}
    labels = np.array([p["label"] for p in points])
    data = (cols["n_params_non_embedding"], cols["tokens"], cols["final_val_loss"], labels)
    t0 = time.time()
    joint = fit_joint(*data, bootstrap=BOOTSTRAP, seed=0)
    by_size = rho_by_size(*data, buckets=2, bootstrap=BOOTSTRAP, seed=1)
    sweep_rows = load(results[0])
    tried = {}  # (label, N) -> learning rates tried: the rule is fitted on the grid sizes only
    for r in sweep_rows:
        tried.setdefault((r["label"], r["n_params_non_embedding"]), set()).add(r["lr"])
    # grid sizes: more than one rate tried, and below the sizes the rule was made for (part `median_rule` tried a
    # second rate at 12.4M after the rule was fixed; it must not move the rule)
    size_sweep = [p for p in seed_means(fit_rows(sweep_rows))
                  if len(tried[p["label"], p["n_params_non_embedding"]]) > 1
                  and p["n_params_non_embedding"] < 0.9 * min(LARGE_SIZES)]
    report = {"results": [os.path.relpath(p) for p in results], "points": len(points), "bootstrap": BOOTSTRAP,
              "lr_rule": lr_rule(size_sweep),
              "joint": summary(joint), "rho_by_size": summary(by_size), "seconds": round(time.time() - t0, 1)}
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
