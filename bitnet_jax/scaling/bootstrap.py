"""Bootstrap helpers: a resample with replacement is a row of integer weights (how often each point was drawn),
so a weighted objective keeps one fixed shape for every resample and many resamples can be fitted in one batch.
"""

import numpy as np

__all__ = ["resample_weights", "percentile_intervals"]


def resample_weights(n, n_resamples, rng):
    """(n_resamples, n) float64 draw counts of n points drawn with replacement; each row sums to n."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)


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
