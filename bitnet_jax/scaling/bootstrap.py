"""Bootstrap helpers: a resample is a row of weights on the data points, so a weighted objective keeps one fixed
shape for every resample and many resamples can be fitted in one batch.

The weights are Rubin's (1981) Bayesian bootstrap: n times a flat Dirichlet draw, continuous and positive. The
classic resample with replacement (integer draw counts) drops about a third of the points from each resample; with
the 5-15 points of a scaling sweep, resamples that lose the smallest or largest sizes leave the exponent nearly
unconstrained, and their wild fits widen the intervals. On power laws with 8-10 points the 80 % percentile interval
of the exponent held the truth 88 % of the time with draw counts and 76-83 % with Dirichlet weights (200 synthetic
data sets each; tests/scaling/test_coverage.py keeps the check).
"""

import numpy as np

__all__ = ["resample_weights", "percentile_intervals"]


def resample_weights(n, n_resamples, rng):
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
