"""How much of the IsoFLOP result survives run-to-run noise? The report's intervals resample the runs of a budget;
they do not say what another seed would have given. Here each run's validation loss is perturbed by Gaussian noise
of the size the size sweep's seed pairs show (per-run sd 0.015-0.034 nats at 0.33M-1.5M), Approach 2 is refitted
for fp16 and b1.58, and the spread of the N_opt ratio per budget and of the exponents a is reported:

    python experiments/scaling_gpu/isoflop_noise.py [--draws 2000] [--out experiments/scaling_gpu/isoflop/noise.json]
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from bitnet_jax.scaling.fit import fit_isoflop

HERE = Path(__file__).parent
SDS = (0.01, 0.02, 0.03)  # per-run loss noise, nats


def load(path: Path) -> dict[str, tuple[np.ndarray, ...]]:
    rows = [r for r in csv.DictReader(open(path)) if r["status"] == "finished"]
    out = {}
    for label in ("fp16", "bitnet_b158"):
        mine = [r for r in rows if r["label"] == label]
        out[label] = tuple(np.array([float(r[k]) for r in mine]) for k in
                           ("n_params_non_embedding", "budget", "tokens", "final_val_loss"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=HERE / "isoflop" / "noise.json")
    args = parser.parse_args()
    data = load(HERE / "isoflop" / "results.csv")
    rng = np.random.default_rng(0)
    report = {"draws": args.draws, "noise": {}}
    for sd in SDS:
        ratios, a_diff, failed = [], [], 0
        for _ in range(args.draws):
            fits = {}
            try:
                for label, (n, c, d, loss) in data.items():
                    fits[label] = fit_isoflop(n, c, loss + rng.normal(0, sd, loss.shape), D=d)
            except ValueError:  # fewer than 2 budgets with a vertex inside their sizes
                failed += 1
                continue
            f, b = fits["bitnet_b158"], fits["fp16"]
            per_budget = {float(c): float(f.n_opt_per_budget[list(f.budgets).index(c)] /
                                          b.n_opt_per_budget[list(b.budgets).index(c)])
                          for c in set(map(float, f.budgets)) & set(map(float, b.budgets))}
            ratios.append(per_budget)
            a_diff.append(f.a - b.a)
        summary = {}
        for c in (1e14, 3e14, 1e15):
            got = np.array([r[c] for r in ratios if c in r])
            summary[f"{c:.0e}"] = {"usable": len(got), "median": float(np.median(got)),
                                   "p10_p90": [float(q) for q in np.percentile(got, [10, 90])],
                                   "share_above_1": float(np.mean(got > 1))}
        a_diff = np.array(a_diff)
        spread = {"median": float(np.median(a_diff)), "p10_p90": [float(q) for q in np.percentile(a_diff, [10, 90])],
                  "share_above_0": float(np.mean(a_diff > 0))}
        report["noise"][str(sd)] = {"failed_fits": failed, "n_opt_ratio": summary, "a_b158_minus_fp16": spread}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
