"""Bootstrap helpers: a resample is a row of weights on the data points, so a weighted objective keeps one fixed
shape for every resample and many resamples can be fitted in one batch.

Two kinds of weights:
- `resample_weights`: the classic resample with replacement, as integer draw counts;
- `bayesian_weights`: Rubin's (1981) Bayesian bootstrap, n times a flat Dirichlet draw, continuous and positive.
A resample with replacement leaves out about a third of the points; with the 5-15 points of a scaling sweep, one
that loses the smallest or largest sizes leaves the exponent nearly free, and such wild fits widen the intervals.
On power laws of 6-10 points the 80 % percentile interval of the exponent held the true exponent 87-88 % of the time
with draw counts and 76-83 % with Dirichlet weights (100-200 synthetic data sets per setting; with 5 points 84 % and
79 %, with 4 points 69 % and 62 %). fit.py uses the Bayesian weights; tests/scaling/test_coverage.py keeps the check.
"""

import numpy as np

__all__ = ["resample_weights", "bayesian_weights", "percentile_intervals"]


def resample_weights(n, n_resamples, rng):
    """(n_resamples, n) float64 draw counts of n points drawn with replacement; each row sums to n."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)


def bayesian_weights(n, n_resamples, rng):
    """(n_resamples, n) float64 Bayesian-bootstrap weights: n times a flat Dirichlet draw; each row sums to n."""
    return n * rng.dirichlet(np.ones(n), size=n_resamples)


def percentile_intervals(samples, ci):
    """Central `ci` percentile interval (lo, hi) of each sample array; NaN draws (failed resamples) are ignored."""
    q = [50.0 * (1.0 - ci), 50.0 * (1.0 + ci)]
    out = {}
    for name, values in samples.items():
        finite = np.asarray(values, np.float64)
        finite = finite[np.isfinite(finite)]
        lo, hi = np.percentile(finite, q) if finite.size else (np.nan, np.nan)
        out[name] = (float(lo), float(hi))
    return out
