"""Joint effective-parameter fit across recipes (labels), numpy in and out (float64).

  L(N, D, r) = E + A (rho_r N)^-alpha + B D^-beta        rho_baseline = 1

E, A, alpha, B, beta are shared by every label; rho_r is what one parameter of recipe r is worth relative to one of
the baseline (fp16). Kumar et al. 2024 ("Scaling Laws for Precision") model it as N_eff = N (1 - exp(-P / 2.67)),
about 0.45-0.6 near 1.58 bits. rho_r is identified through the shared alpha: it rescales label r's N term only, by
rho_r^-alpha, so it is well determined when the N term is large against the noise and alpha is clearly non-zero.

Objective and search follow fit.py: sum_i w_i Huber_1e-3(LSE(e, a - alpha (log N_i + log rho_r(i)),
b - beta log D_i) - log L_i), log rho free for the non-baseline labels, optax L-BFGS from a grid of starts batched
with jax.vmap in float64 under `jax.enable_x64(True)`; every start is screened for a few steps and the best KEEP run
to convergence. The grid is a coarse Hoffmann grid (3 values per parameter instead of 5-6) times a few log-rho starts
shared by all labels, so its size does not grow with the number of labels.

When log N and log D are collinear (D fixed, or D proportional to N) B and beta cannot be told apart from E or from
the N term, so the fit drops B D^-beta and reports form "N": L = E + A (rho_r N)^-alpha. At fixed D, E absorbs
B D^-beta and rho_r means what it means in form "N,D". With D = k N it does not: the fp16 model it is matched
against at rho_r N parameters also gets rho_r D tokens, so rho_r is the size ratio at equal loss along D = k N,
larger than the effective-parameter fraction (true rho 0.3 reads ~0.53 at Chinchilla-like exponents and k = 20).

Bootstrap: each resample redraws points with replacement within each label (so no label loses all its points), is a
row of draw counts (weights), and is fitted from the distinct full-data optima; intervals are percentiles.

`rho_by_size` fits one rho per (label, size bucket) on the same shared curve, with the ratio of the largest bucket's
rho to the smallest's ("drift") and its interval, to say whether rho changes with N. On synthetic data with a
constant rho, 6 of 40 nominal-80% drift intervals excluded 1, so read a lone exclusion as weak evidence.
"""

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax.scaling.bootstrap import percentile_intervals, resample_weights
from bitnet_jax.scaling.fit import (BOOT_ITERS, BOOT_LS, BOOT_STARTS, DELTA, KEEP, POLISH_ITERS, POLISH_LS,
                                    SCREEN_ITERS, SCREEN_LS, TOL, _check_options, _distinct, _positive, _Result,
                                    lbfgs_best)

__all__ = ["JointFit", "fit_joint", "rho_by_size"]

# Coarse Hoffmann grid, rows (e, a, alpha, b, beta): every other value of e in {-1, ..., 1} and of a, b in
# {0, ..., 25}, and the inner alpha, beta in {0.5, 1, 1.5}. On the tests' data the full 4,500-row grid (times the
# rho starts) reached the same optimum, as did 83 of these 729 starts run to convergence.
_HEAD_GRID = np.stack(np.meshgrid([-1.0, 0.0, 1.0], [0.0, 10.0, 20.0], [0.5, 1.0, 1.5], [0.0, 10.0, 20.0],
                                  [0.5, 1.0, 1.5], indexing="ij"), -1).reshape(-1, 5)
LOG_RHO_STARTS = np.log([1.0, 0.5, 0.25])
FORMS = {"N,D": 5, "N": 3}  # form -> number of shared parameters (e, a, alpha[, b, beta])


# ---------------------------------------------------------------- objective and batched L-BFGS


def _log_model(p, x, z, g, n_head):
    """log L per point; x, z are centred log N, log D, g the label index (0: the baseline, whose log rho is 0)."""
    log_rho = jnp.concatenate([jnp.zeros(1), p[n_head:]])
    terms = [jnp.full_like(x, p[0]), p[1] - p[2] * (x + log_rho[g])]
    if n_head == 5:
        terms.append(p[3] - p[4] * z)
    return jax.nn.logsumexp(jnp.stack(terms), axis=0)


def _huber(p, w, data, n_head):
    x, z, g, y = data
    r = _log_model(p, x, z, g, n_head) - y
    c = jnp.clip(r, -DELTA, DELTA)  # Huber'(r); c (r - c/2) is Huber(r) on both branches
    return jnp.sum(w * c * (r - 0.5 * c))


def _lbfgs(p0, w, data, iters, n_head, ls_steps):
    return lbfgs_best(lambda p: _huber(p, w, data, n_head), p0, iters, ls_steps, TOL)


# one compiled program per (parameter count, form, point count): iteration and line-search limits are traced, and
# every batch runs in chunks of CHUNK starts, so screening, polishing and the bootstrap share it (compiling one
# takes ~5 s on 2 CPU cores, far longer than running it)
_lbfgs_batch = jax.jit(jax.vmap(_lbfgs, in_axes=(0, 0, None, None, None, None)), static_argnums=4)
CHUNK = 16


def _minimise(starts, W, data, n_head, iters, ls_steps):
    """L-BFGS from each row of `starts` with the weights in the matching row of W: (params, objectives)."""
    J = len(starts)
    rows = np.concatenate([np.arange(J), np.zeros(-J % CHUNK, int)])
    out = []
    with jax.enable_x64(True):
        data = tuple(jnp.asarray(a) for a in data)
        for chunk in rows.reshape(-1, CHUNK):
            p, v = _lbfgs_batch(jnp.asarray(starts[chunk], jnp.float64), jnp.asarray(W[chunk], jnp.float64), data,
                                iters, n_head, ls_steps)
            out.append((np.asarray(p, np.float64), np.asarray(v, np.float64)))
    p, v = (np.concatenate(parts)[:J] for parts in zip(*out))
    return p, np.where(np.isfinite(v), v, np.inf)


# ---------------------------------------------------------------- search and bootstrap


def _starts(n_head, n_rho):
    """Grid rows (head..., log rho...): the coarse head grid times LOG_RHO_STARTS, one value for every label."""
    head = np.unique(_HEAD_GRID[:, :n_head], axis=0)
    rho = np.repeat(LOG_RHO_STARTS[:, None], n_rho, 1)
    return np.concatenate([np.repeat(head, len(rho), 0), np.tile(rho, (len(head), 1))], 1)


def _centre(p, x0, z0, n_head):
    """p for log-inputs shifted by -(x0, z0): a - alpha log N = (a - alpha x0) - alpha (log N - x0), likewise b.
    L-BFGS runs centred because log N ~ 20 makes a and alpha nearly collinear and convergence slow."""
    p = p.copy()
    p[..., 1] -= p[..., 2] * x0
    if n_head == 5:
        p[..., 3] -= p[..., 4] * z0
    return p


def _stratified_weights(g, n_boot, rng):
    """(n_boot, n) draw counts, resampling with replacement within each label so that every label keeps its count."""
    W = np.zeros((n_boot, len(g)))
    for k in np.unique(g):
        idx = np.flatnonzero(g == k)
        W[:, idx] = resample_weights(idx.size, n_boot, rng)
    return W


def _search(starts, data, n_head, bootstrap, rng):
    """Best parameters, their objective, and the (bootstrap, P) best fit of each resample (NaN where it failed)."""
    ones = np.ones((len(starts), len(data[0])))
    p, v = _minimise(starts, ones, data, n_head, SCREEN_ITERS, SCREEN_LS)
    top = np.argsort(v, kind="stable")[:KEEP]
    p, v = _minimise(p[top], ones[top], data, n_head, POLISH_ITERS, POLISH_LS)
    order = np.argsort(v, kind="stable")
    p, v = p[order], v[order]
    if not np.isfinite(v[0]):
        raise ValueError("the joint fit failed from every start (non-finite objective); check the data")
    if not bootstrap:
        return p[0], float(v[0]), np.empty((0, p.shape[1]))
    optima = _distinct(p, v, BOOT_STARTS)
    k = len(optima)
    W = np.repeat(_stratified_weights(data[2], bootstrap, rng), k, 0)
    q, u = _minimise(np.tile(optima, (bootstrap, 1)), W, data, n_head, BOOT_ITERS, BOOT_LS)
    q, u = q.reshape(bootstrap, k, -1), u.reshape(bootstrap, k)
    best = q[np.arange(bootstrap), np.argmin(u, 1)]
    return p[0], float(v[0]), np.where(np.isfinite(u.min(1))[:, None], best, np.nan)


# ---------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class JointFit(_Result):
    """L(N, D, r) = E + A (rho_r N)^-alpha + B D^-beta; B and beta are None for form "N" (no D term)."""

    E: float
    A: float
    alpha: float
    B: float | None
    beta: float | None
    rho: dict  # key -> effective-parameter fraction; the baseline's is 1. rho_by_size keys are "label@bucket"
    form: str  # "N,D", or "N" when log N and log D are collinear
    baseline: str
    objective: float
    n_points: int
    ci: float = 0.8
    intervals: dict = field(default_factory=dict)  # E, A, alpha[, B, beta], "rho[key]"[, "drift[label]"]: (lo, hi)
    samples: dict = field(default_factory=dict)  # the same names -> bootstrap draws
    buckets: tuple = ()  # rho_by_size: (smallest N, largest N) of each bucket, in bucket order
    drift: dict = field(default_factory=dict)  # rho_by_size: label -> rho in the largest bucket / in the smallest

    def predict(self, N, D, label):
        """Loss of recipe `label` (a key of rho) at N parameters and D tokens; D is ignored for form "N"."""
        if label not in self.rho:
            raise ValueError(f"unknown label {label!r}; fitted: {', '.join(self.rho)}")
        N = np.asarray(N, np.float64)
        loss = self.E + self.A * (self.rho[label] * N) ** -self.alpha
        return loss if self.form == "N" else loss + self.B * np.asarray(D, np.float64) ** -self.beta


def _quantities(p, n_head, keys):
    """Named physical quantities of parameter rows p (raw, not centred)."""
    p = np.atleast_2d(p)
    q = {"E": np.exp(p[:, 0]), "A": np.exp(p[:, 1]), "alpha": p[:, 2]}
    if n_head == 5:
        q.update(B=np.exp(p[:, 3]), beta=p[:, 4])
    q.update({f"rho[{key}]": np.exp(p[:, n_head + i]) for i, key in enumerate(keys)})
    return q


# ---------------------------------------------------------------- inputs


def _separable(log_n, log_d):
    """True when B D^-beta can be fitted: log N and log D not collinear (the centred pair's smaller singular value
    above 5% of the larger, as analysis._independent) and >= 3 distinct D (2 give one equation for B and beta)."""
    centred = np.stack([log_n - log_n.mean(), log_d - log_d.mean()], 1)
    sv = np.linalg.svd(centred, compute_uv=False)
    return len(np.unique(log_d)) >= 3 and sv[0] > 0 and sv[-1] / sv[0] > 0.05


def _inputs(N, D, loss, labels, baseline):
    N, D, loss = (_positive(name, a) for name, a in (("N", N), ("D", D), ("loss", loss)))
    labels = np.asarray(labels).astype(str)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    lengths = [len(N), len(D), len(loss), len(labels)]
    if len(set(lengths)) > 1:
        raise ValueError(f"N, D, loss and labels must have equal lengths, got {lengths}")
    if not np.any(labels == baseline):
        raise ValueError(f"no rows of the baseline label {baseline!r}; labels present: {_others(labels, None)}")
    return N, D, loss, labels


def _others(keys, baseline):
    """Distinct keys other than the baseline, sorted, as plain str (not numpy's, which would leak into to_dict)."""
    return sorted({str(k) for k in keys} - {baseline})


def _joint(N, D, loss, keys, baseline, bootstrap, seed):
    """Fit with one free log rho per distinct key other than the baseline: (point, samples, form, objective), where
    point and samples map the names of _quantities to a value and to the bootstrap draws."""
    names = _others(keys, baseline)
    g = np.array([0 if k == baseline else 1 + names.index(k) for k in keys])
    form = "N,D" if _separable(np.log(N), np.log(D)) else "N"
    n_head = FORMS[form]
    if len(N) < n_head + len(names):
        raise ValueError(f"need at least {n_head + len(names)} points for form {form!r} with {len(names)} rho, "
                         f"got {len(N)}")
    x0, z0 = np.log(N).mean(), np.log(D).mean()
    data = (np.log(N) - x0, np.log(D) - z0, g, np.log(loss))
    starts = _centre(_starts(n_head, len(names)), x0, z0, n_head)  # the grid is for raw log inputs, like fit.py's
    p, objective, draws = _search(starts, data, n_head, bootstrap, np.random.default_rng(seed))
    p, draws = _centre(p, -x0, -z0, n_head), _centre(draws, -x0, -z0, n_head)
    point = {k: float(v[0]) for k, v in _quantities(p, n_head, names).items()}
    samples = _quantities(draws, n_head, names) if bootstrap else {}
    return point, samples, form, objective


def _result(point, samples, form, objective, baseline, n_points, ci, **extra):
    shared = {k: point.get(k) for k in ("E", "A", "alpha", "B", "beta")}
    rho = {baseline: 1.0} | {k[4:-1]: v for k, v in point.items() if k.startswith("rho[")}
    intervals = percentile_intervals(samples, ci) if samples else {}
    return JointFit(**shared, rho=rho, form=form, baseline=baseline, objective=objective, n_points=n_points, ci=ci,
                    intervals=intervals, samples=samples, **extra)


def fit_joint(N, D, loss, labels, *, baseline="fp16", bootstrap=0, seed=0, ci=0.8):
    """Fit L = E + A (rho_r N)^-alpha + B D^-beta jointly over every label r (rho_baseline = 1), or form "N" without
    the D term when log N and log D are collinear; bootstrap > 0 adds percentile intervals for every parameter."""
    _check_options(bootstrap, ci)
    N, D, loss, labels = _inputs(N, D, loss, labels, baseline)
    point, samples, form, objective = _joint(N, D, loss, labels, baseline, bootstrap, seed)
    return _result(point, samples, form, objective, baseline, len(N), ci)


def _size_buckets(N, buckets):
    """Bucket index of each point: the distinct sizes, ascending, cut into `buckets` runs of near-equal count; and
    each bucket's (smallest, largest) size."""
    sizes = np.unique(N)
    if not isinstance(buckets, (int, np.integer)) or not 2 <= buckets <= len(sizes):
        raise ValueError(f"buckets must be an integer from 2 to the number of distinct sizes ({len(sizes)}), "
                         f"got {buckets!r}")
    runs = np.array_split(sizes, buckets)
    index = np.searchsorted([run[-1] for run in runs[:-1]], N, side="left")
    return index, tuple((float(run[0]), float(run[-1])) for run in runs)


def _drift(quantities, label, buckets):
    return quantities[f"rho[{label}@{buckets - 1}]"] / quantities[f"rho[{label}@0]"]


def rho_by_size(N, D, loss, labels, *, baseline="fp16", buckets=2, bootstrap=0, seed=0, ci=0.8):
    """fit_joint with one rho per (label, size bucket), keys "label@k" (k = 0 the smallest sizes), on one shared
    curve (the baseline is not bucketed: rho = 1 at every size). `drift[label]` is rho in the largest bucket over
    rho in the smallest, with its bootstrap interval: an interval excluding 1 says rho changes with N."""
    _check_options(bootstrap, ci)
    N, D, loss, labels = _inputs(N, D, loss, labels, baseline)
    index, edges = _size_buckets(N, buckets)
    keys = np.array([lab if lab == baseline else f"{lab}@{k}" for lab, k in zip(labels, index)])
    missing = [f"{lab}@{k}" for lab in _others(labels, baseline) for k in range(buckets) if f"{lab}@{k}" not in keys]
    if missing:
        raise ValueError(f"no points in size buckets {', '.join(missing)}; use fewer buckets")
    point, samples, form, objective = _joint(N, D, loss, keys, baseline, bootstrap, seed)
    drift = {lab: float(_drift(point, lab, buckets)) for lab in _others(labels, baseline)}
    if samples:
        samples |= {f"drift[{lab}]": _drift(samples, lab, buckets) for lab in drift}
    return _result(point, samples, form, objective, baseline, len(N), ci, buckets=edges, drift=drift)
