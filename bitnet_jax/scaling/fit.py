"""Scaling-law fits, numpy in and out (float64).

  fit_power_law   L(x) = E + A x^-alpha                       Kaplan et al. 2020, BitNet 2023 (x = N, C or energy)
  fit_chinchilla  L(N, D) = E + A/N^alpha + B/D^beta           Hoffmann et al. 2022 Approach 3, Besiroglu et al. 2024
  fit_isoflop     N_opt = k C^a, D_opt = k_d C^b (parabolas)   Hoffmann et al. 2022 Approach 2

The first two minimise sum_i w_i Huber_delta(LSE(a_k - alpha_k log x_ik, e) - log L_i) (delta = 1e-3, w_i = 1, or
the draw counts of a bootstrap resample) with optax L-BFGS (zoom line search) from a grid of starts, all starts
batched with `jax.vmap` in one jitted call, in float64 inside `jax.enable_x64(True)` (a context manager in
jax 0.10; the process-wide flag is left alone).

Search: every start of the grid (Approach 3: Hoffmann's 4,500) runs SCREEN_ITERS L-BFGS steps; the best KEEP of
them then run to convergence and the best final objective wins. Running all 4,500 to convergence reaches the same
optimum (checked on Chinchilla's Figure 4 data: 1,388 of the 4,500 starts end within 1e-9 of it) but takes ~300 s
instead of ~1.2 s on 2 CPU cores, because a batched line search runs as many steps as its slowest member.
Bootstrap: resamples are rows of Bayesian-bootstrap weights (bootstrap.py says why not draw counts), so every
resample has the data's shape and all of them are fitted in one batch, each from the distinct optima among the KEEP
converged full-data fits (at most BOOT_STARTS), not from the whole grid. Intervals are percentile intervals of the
resampled fits.

A power law is `resolved` only when the data pin down a falling curve: its parameters are finite, alpha lies within
the start grid's edges (0, 2] (at 0 the curve is flat, beyond 2 it is a cliff that one point decides), it rests on
at least MIN_POINTS points, and, with a bootstrap, the interval of alpha is finite, stays within those edges and
holds the point estimate. Otherwise `reason` says which test failed.
"""

import dataclasses
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bitnet_jax.scaling.bootstrap import bayesian_weights, percentile_intervals

__all__ = ["PowerLaw", "Chinchilla", "IsoFlop", "fit_power_law", "fit_chinchilla", "fit_isoflop", "CHINCHILLA_GRID"]

DELTA = 1e-3
SCREEN_ITERS, SCREEN_LS = 10, 2  # short screening steps; a 2-step line search keeps the batch's cost per step low
POLISH_ITERS, POLISH_LS, TOL = 300, 20, 1e-12
BOOT_ITERS, BOOT_LS = 100, 8  # resamples start at a full-data optimum, so they need fewer steps
KEEP, BOOT_STARTS = 16, 4
SEARCHES = ("screened", "exhaustive")


def _product(*axes):
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))


# Hoffmann et al.'s grid as rows (e, a, alpha, b, beta):
# alpha, beta in {0, .5, .., 2}, e in {-1, -.5, .., 1}, a, b in {0, 5, .., 25}
CHINCHILLA_GRID = _product(np.arange(-1, 1.01, 0.5), np.arange(0, 26, 5.0), np.arange(0, 2.01, 0.5),
                           np.arange(0, 26, 5.0), np.arange(0, 2.01, 0.5))
# Power law (e, a, alpha) relative to the data, so it serves any x or loss scale: e and a are offsets from log min(L)
# (E from 1% to 90% of the lowest loss; A x^-alpha at the geometric-mean x from e^-5 to e^2 times it)
# A power law with fewer points is not resolved: with 3 it interpolates them exactly, with 4 the 80 % bootstrap
# interval of alpha held the true exponent 62 % of the time on synthetic sweeps (76-83 % from 5 points on).
MIN_POINTS = 5
ALPHA_EDGES = (0.0, 2.0)  # the start grid's exponents: beyond them a "power law" is a flat line or a cliff
_POWER_GRID = _product([-4.6, -2.0, -1.0, -0.4, -0.1], [-5.0, -3.5, -2.0, -1.0, 0.0, 1.0, 2.0],
                       np.arange(ALPHA_EDGES[0], ALPHA_EDGES[1] + 0.01, 0.25))


# ---------------------------------------------------------------- input checks


def _positive(name, values):
    x = np.asarray(values, np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"{name} must be finite and positive everywhere")
    return x


def _inputs(names, arrays, n_params):
    out = [_positive(name, a) for name, a in zip(names, arrays)]
    if len({len(a) for a in out}) > 1:
        raise ValueError(f"{', '.join(names)} must have equal lengths, got {[len(a) for a in out]}")
    if len(out[0]) < n_params:
        raise ValueError(f"need at least {n_params} points to fit {n_params} parameters, got {len(out[0])}")
    return out


def _check_options(bootstrap, ci, search="screened"):
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    if not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ValueError(f"bootstrap must be a non-negative integer, got {bootstrap!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}")


# ---------------------------------------------------------------- objective


def _huber_parts(p, X, y, w, delta):
    """Objective and gradient for p = (e, a_1, alpha_1, ..., a_K, alpha_K), log L = LSE(e, a_k - alpha_k X_k)."""
    e, a, alpha = p[0], p[1::2], p[2::2]
    # shift by a per-start bound on every exponent: no overflow, and one max per start instead of one per point
    bound = jnp.max(a - alpha * jnp.where(alpha > 0, X.min(0), X.max(0)))
    m = jax.lax.stop_gradient(jnp.maximum(e, bound))
    terms, const = jnp.exp(a - alpha * X - m), jnp.exp(e - m)
    s = const + terms.sum(1)
    r = m + jnp.log(s) - y
    c = jnp.clip(r, -delta, delta)  # Huber'(r); c (r - c/2) is Huber(r) on both branches
    q = w * c / s
    grad_a, grad_alpha = q @ terms, -(q @ (terms * X))
    grad = jnp.concatenate([(const * q.sum())[None], jnp.stack([grad_a, grad_alpha], 1).reshape(-1)])
    return jnp.sum(w * c * (r - 0.5 * c)), grad


@jax.custom_vjp
def _huber(p, X, y, w, delta):
    return _huber_parts(p, X, y, w, delta)[0]


# the hand-written gradient is one fused pass over the points; autodiff through logsumexp was ~1.5x slower
_huber.defvjp(_huber_parts, lambda grad, ct: (ct * grad, None, None, None, None))


# ---------------------------------------------------------------- batched L-BFGS


def lbfgs_best(f, p0, iters, ls_steps, tol):
    """L-BFGS on f from p0 (at most `iters` steps, until the largest gradient entry is below `tol`); returns the best
    point seen and its value, since a line search that gives up may step uphill. Traceable: vmap it over starts."""
    opt = optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=ls_steps))
    value_and_grad = optax.value_and_grad_from_state(f)

    def step(carry):
        p, state, i, best_p, best_v = carry
        v, g = value_and_grad(p, state=state)
        updates, state = opt.update(g, state, p, value=v, grad=g, value_fn=f)
        p, v = optax.apply_updates(p, updates), optax.tree.get(state, "value")
        better = v < best_v
        return p, state, i + 1, jnp.where(better, p, best_p), jnp.where(better, v, best_v)

    def running(carry):
        _, state, i, _, _ = carry
        return (i < iters) & ((i == 0) | (jnp.max(jnp.abs(optax.tree.get(state, "grad"))) > tol))

    carry = jax.lax.while_loop(running, step, (p0, opt.init(p0), 0, p0, f(p0)))
    return carry[3], carry[4]


def _lbfgs(p0, X, y, w, delta, iters, ls_steps, tol):
    return lbfgs_best(lambda p: _huber(p, X, y, w, delta), p0, iters, ls_steps, tol)


_lbfgs_batch = jax.jit(jax.vmap(_lbfgs, in_axes=(0, None, None, 0, None, None, None, None)))


def _round_up(n, multiple):
    return -(-n // multiple) * multiple


def _minimise(starts, X, y, W, delta, iters, ls_steps):
    """Run L-BFGS from each row of `starts` with the weights in the matching row of W: (params, objectives).

    Points are padded (weight 0) to a multiple of 32 and starts to a multiple of 16, so similar sizes share one
    compiled program."""
    J, n = starts.shape[0], len(y)
    pts = np.concatenate([np.arange(n), np.zeros(_round_up(n, 32) - n, int)])
    rows = np.concatenate([np.arange(J), np.zeros(_round_up(J, 16) - J, int)])
    W = np.pad(W, ((0, 0), (0, len(pts) - n)))[rows]
    with jax.enable_x64(True):
        p, v = _lbfgs_batch(jnp.asarray(starts[rows], jnp.float64), jnp.asarray(X[pts]), jnp.asarray(y[pts]),
                            jnp.asarray(W), delta, iters, ls_steps, TOL)
        p, v = np.asarray(p, np.float64)[:J], np.asarray(v, np.float64)[:J]
    return p, np.where(np.isfinite(v), v, np.inf)


def _multistart(grid, X, y, delta, search):
    """Screen every start of `grid` and run the best KEEP to convergence (search='screened'), or run every start to
    convergence (search='exhaustive', Hoffmann et al.'s literal procedure): (params, objectives), best first."""
    ones = np.ones((len(grid), len(y)))
    p, top = grid, np.arange(len(grid))
    if search == "screened":
        p, v = _minimise(grid, X, y, ones, delta, SCREEN_ITERS, SCREEN_LS)
        top = np.argsort(v, kind="stable")[:KEEP]
    p, v = _minimise(p[top], X, y, ones[top], delta, POLISH_ITERS, POLISH_LS)
    order = np.argsort(v, kind="stable")
    return p[order], v[order]


def _distinct(p, v, k):
    """Up to k rows of p (sorted best first) that differ from every row kept before them."""
    kept = []
    for row in p[np.isfinite(v)]:
        if all(not np.allclose(row, other, rtol=1e-4, atol=1e-6) for other in kept):
            kept.append(row)
    return np.array(kept[:k])


def _bootstrap(starts, X, y, delta, n_boot, rng):
    """(n_boot, P): the best fit of each resample, from each of `starts`; NaN where every start failed."""
    W = bayesian_weights(len(y), n_boot, rng)
    k = len(starts)
    p, v = _minimise(np.tile(starts, (n_boot, 1)), X, y, np.repeat(W, k, 0), delta, BOOT_ITERS, BOOT_LS)
    p, v = p.reshape(n_boot, k, -1), v.reshape(n_boot, k)
    best = p[np.arange(n_boot), np.argmin(v, 1)]
    return np.where(np.isfinite(v.min(1))[:, None], best, np.nan)


def _shift(p, x0):
    """Move p to log-inputs shifted by -x0: a_k - alpha_k X_k = (a_k - alpha_k x0_k) - alpha_k (X_k - x0_k)."""
    p = p.copy()
    p[..., 1::2] -= p[..., 2::2] * x0
    return p


def _fit(grid, X, y, delta, bootstrap, seed, search="screened"):
    """Best parameters, their objective, and the (bootstrap, P) resampled parameters (empty when bootstrap=0).

    L-BFGS runs in centred log-inputs, which decorrelates a_k from alpha_k (log N ~ 20 makes them nearly collinear
    and convergence slow); starts and results are mapped exactly, so the grid's starts are the same functions."""
    x0 = X.mean(0)
    p, v = _multistart(_shift(grid, x0), X - x0, y, delta, search)
    if not np.isfinite(v[0]):
        raise ValueError("the fit failed from every start (non-finite objective); check the data")
    draws = np.empty((0, grid.shape[1]))
    if bootstrap:
        starts = _distinct(p, v, BOOT_STARTS)
        draws = _bootstrap(starts, X - x0, y, delta, bootstrap, np.random.default_rng(seed))
    return _shift(p[0], -x0), float(v[0]), _shift(draws, -x0)


# ---------------------------------------------------------------- results


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list, np.ndarray)):
        return np.asarray(value, np.float64).tolist()
    return value


class _Result:
    _derived = ()  # properties that to_dict reports next to the fields

    def to_dict(self, samples=False):
        """Plain JSON-ready dict of the fit; bootstrap draws only when samples=True."""
        out = {"kind": type(self).__name__}
        for f in dataclasses.fields(self):
            if f.name != "samples" or samples:
                out[f.name] = _jsonable(getattr(self, f.name))
        out.update({name: _jsonable(getattr(self, name)) for name in self._derived})
        return out


def _uncertainty(quantities, draws, ci):
    """(intervals, samples) of every named quantity from the bootstrap draws of the parameters."""
    if not len(draws):
        return {}, {}
    samples = quantities(draws)
    return percentile_intervals(samples, ci), samples


@dataclass(frozen=True, eq=False)
class PowerLaw(_Result):
    """L(x) = E + A x^-alpha."""

    A: float
    alpha: float
    E: float
    objective: float
    n_points: int
    ci: float = 0.8
    intervals: dict = field(default_factory=dict)  # name -> (lo, hi), central `ci` bootstrap interval
    samples: dict = field(default_factory=dict)  # name -> bootstrap draws, for plotting bands
    resolved: bool = True  # the data pin down a falling curve (module docstring)
    reason: str = ""  # why not, when resolved is False
    x_range: tuple = ()  # (min, max) of the x fitted
    loss_range: tuple = ()  # (min, max) of the losses fitted

    def predict(self, x):
        return self.E + self.A * np.asarray(x, np.float64) ** -self.alpha

    def inverse(self, loss):
        """x at which the curve reaches `loss`: inf for a loss at or below E, which the curve never reaches."""
        gap = np.asarray(loss, np.float64) - self.E
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(gap > 0, (self.A / np.where(gap > 0, gap, 1.0)) ** (1.0 / self.alpha), np.inf)


@dataclass(frozen=True, eq=False)
class Chinchilla(_Result):
    """L(N, D) = E + A/N^alpha + B/D^beta, and its compute-optimal frontier under C = 6 N D."""

    A: float
    B: float
    E: float
    alpha: float
    beta: float
    objective: float
    n_points: int
    ci: float = 0.8
    intervals: dict = field(default_factory=dict)  # every parameter and G, a, b
    samples: dict = field(default_factory=dict)
    _derived = ("G", "a", "b")

    @property
    def G(self):
        return _frontier(self.A, self.B, self.alpha, self.beta)[0]

    @property
    def a(self):
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self):
        return self.alpha / (self.alpha + self.beta)

    def predict(self, N, D):
        N, D = np.asarray(N, np.float64), np.asarray(D, np.float64)
        return self.E + self.A * N**-self.alpha + self.B * D**-self.beta

    def n_opt(self, C):
        return self.G * (np.asarray(C, np.float64) / 6) ** self.a

    def d_opt(self, C):
        return (np.asarray(C, np.float64) / 6) ** self.b / self.G


@dataclass(frozen=True, eq=False)
class IsoFlop(_Result):
    """Approach 2: per budget, loss = polyval(parabola, ln N); its vertex is N_opt(C); then N_opt = k C^a. Given each
    run's tokens D, the same profiles as parabolas in ln D give D_opt(C) = k_d C^b (without D: D_opt = C / 6 N_opt)."""

    k: float
    a: float
    budgets: np.ndarray  # compute of each budget used, ascending
    n_opt_per_budget: np.ndarray
    loss_opt_per_budget: np.ndarray
    parabolas: np.ndarray  # (budgets, 3): coefficients of ln N, highest power first (np.polyval order)
    skipped: tuple  # budgets with < 3 distinct sizes or a parabola without a minimum
    n_points: int
    out_of_range: tuple = ()  # budgets whose vertex lies outside their sampled ln N (or ln D): an extrapolation
    ci: float = 0.8
    intervals: dict = field(default_factory=dict)  # k, a (and k_d, b)
    samples: dict = field(default_factory=dict)  # k, a, n_opt_per_budget (resamples, budgets); k_d, b, d_opt_...
    k_d: float | None = None
    b: float | None = None
    d_opt_per_budget: np.ndarray | None = None

    def n_opt(self, C):
        return self.k * np.asarray(C, np.float64) ** self.a

    def d_opt(self, C):
        if self.k_d is None:
            return np.asarray(C, np.float64) / (6 * self.n_opt(C))
        return self.k_d * np.asarray(C, np.float64) ** self.b


# ---------------------------------------------------------------- power law and Approach 3


def _power_quantities(p):
    p = np.atleast_2d(p)
    return {"A": np.exp(p[:, 1]), "alpha": p[:, 2], "E": np.exp(p[:, 0])}


def fit_power_law(x, loss, *, bootstrap=0, seed=0, ci=0.8, delta=DELTA, search="screened"):
    """Fit L(x) = E + A x^-alpha by the Huber-on-log-loss objective; bootstrap > 0 adds percentile intervals."""
    x, loss = _inputs(("x", "loss"), (x, loss), 3)
    _check_options(bootstrap, ci, search)
    X, shift = np.log(x)[:, None], np.log(loss.min())
    grid = _shift(_POWER_GRID + np.array([shift, shift, 0.0]), -X.mean(0))  # a: from centred to raw log x
    best, objective, draws = _fit(grid, X, np.log(loss), delta, bootstrap, seed, search)
    point = {k: float(v[0]) for k, v in _power_quantities(best).items()}
    intervals, samples = _uncertainty(_power_quantities, draws, ci)
    reason = _unresolved_reason(point, intervals.get("alpha"), ci, len(x))
    return PowerLaw(**point, objective=objective, n_points=len(x), ci=ci, intervals=intervals, samples=samples,
                    resolved=not reason, reason=reason, x_range=(float(x.min()), float(x.max())),
                    loss_range=(float(loss.min()), float(loss.max())))


def _percent(ci):
    return f"{round(100 * ci, 6):g} %"


def _unresolved_reason(point, interval, ci, n_points):
    """'' when the fit pins down a falling power law, else why not. With A > 0, E + A x^-alpha falls over any range
    of x exactly when alpha > 0; `interval` (of alpha) is None without a bootstrap."""
    alpha, top = point["alpha"], ALPHA_EDGES[1]
    if not all(np.isfinite(v) for v in point.values()):
        return "the fit is not finite ({}): a cliff or a flat line, not a power law".format(
            ", ".join(f"{k} = {v:.3g}" for k, v in point.items()))
    if not alpha > 0:
        return f"the fitted curve does not decrease over the data range (alpha = {alpha:.3g})"
    if alpha > top:
        return f"alpha = {alpha:.3g} lies beyond {top:g}, the start grid's upper edge: a cliff, not a power law"
    if n_points < MIN_POINTS:
        return (f"{n_points} points for 3 parameters: at least {MIN_POINTS} are needed before the curve and its "
                "interval are tested by the data")
    if interval is None:
        return ""
    lo, hi = interval
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"the {_percent(ci)} interval of alpha is not finite"
    if not lo <= alpha <= hi:
        return f"alpha = {alpha:.3g} lies outside its own {_percent(ci)} interval [{lo:.3g}, {hi:.3g}]: an unstable fit"
    if lo <= 0:
        return f"the {_percent(ci)} interval of alpha holds 0 ([{lo:.3g}, {hi:.3g}]): the data allow a flat curve"
    if hi > top:
        return (f"the {_percent(ci)} interval of alpha reaches beyond {top:g}, the start grid's upper edge "
                f"([{lo:.3g}, {hi:.3g}]): the data allow a cliff")
    return ""


def _frontier(A, B, alpha, beta):
    """(G, a, b) of N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        return G, beta / (alpha + beta), alpha / (alpha + beta)


def _chinchilla_quantities(p):
    p = np.atleast_2d(p)
    q = {"A": np.exp(p[:, 1]), "B": np.exp(p[:, 3]), "E": np.exp(p[:, 0]), "alpha": p[:, 2], "beta": p[:, 4]}
    q["G"], q["a"], q["b"] = _frontier(q["A"], q["B"], q["alpha"], q["beta"])
    return q


def fit_chinchilla(N, D, loss, *, bootstrap=0, seed=0, ci=0.8, delta=DELTA, search="screened"):
    """Chinchilla Approach 3 from Hoffmann et al.'s 4,500-start grid; bootstrap > 0 adds percentile intervals for
    A, B, E, alpha, beta and the frontier's G, a, b. search='exhaustive' runs every start to convergence (the
    paper's literal procedure, ~300x slower); the default screens them first (same optimum on Chinchilla's data)."""
    N, D, loss = _inputs(("N", "D", "loss"), (N, D, loss), 5)
    _check_options(bootstrap, ci, search)
    X = np.stack([np.log(N), np.log(D)], 1)
    best, objective, draws = _fit(CHINCHILLA_GRID, X, np.log(loss), delta, bootstrap, seed, search)
    point = {k: float(v[0]) for k, v in _chinchilla_quantities(best).items() if k in ("A", "B", "E", "alpha", "beta")}
    intervals, samples = _uncertainty(_chinchilla_quantities, draws, ci)
    return Chinchilla(**point, objective=objective, n_points=len(N), ci=ci, intervals=intervals, samples=samples)


# ---------------------------------------------------------------- Approach 2 (IsoFLOP)


def _parabolas(u, loss, W):
    """Weighted least-squares loss = c2 u^2 + c1 u + c0 for each row of W: (rows, 3), NaN where fewer than 3
    distinct u carry weight (the parabola is then undetermined)."""
    V = np.stack([u**2, u, np.ones_like(u)], 1)
    M = np.einsum("rn,ni,nj->rij", W, V, V)
    rhs = np.einsum("rn,ni,n->ri", W, V, loss)
    levels = np.unique(u)
    ok = ((W @ (u[:, None] == levels[None, :])) > 0).sum(1) >= 3
    coef = np.full((len(W), 3), np.nan)
    coef[ok] = np.linalg.solve(M[ok], rhs[ok][..., None])[..., 0]
    return coef


def _vertex(coef):
    """(u, loss) at each parabola's minimum; NaN where it curves down (no minimum)."""
    c2, c1, c0 = coef.T
    with np.errstate(divide="ignore", invalid="ignore"):
        u, lo = -c1 / (2 * c2), c0 - c1**2 / (4 * c2)
    return np.where(c2 > 0, u, np.nan), np.where(c2 > 0, lo, np.nan)


def _loglog_line(log_c, log_n):
    """Least-squares log_n = log k + a log_c per row of log_n (rows, budgets), ignoring NaN: (log k, a)."""
    m = np.isfinite(log_n)
    cnt = m.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xm = (m * log_c).sum(1) / cnt
        ym = np.where(m, log_n, 0).sum(1) / cnt
        dx, dy = np.where(m, log_c - xm[:, None], 0), np.where(m, log_n - ym[:, None], 0)
        a = (dx * dy).sum(1) / (dx * dx).sum(1)
    a = np.where(cnt >= 2, a, np.nan)
    return ym - a * xm, a


def _budget_groups(C):
    """Budget index of each point (C equal to 3 significant digits) and each budget's median compute."""
    _, group = np.unique(np.array([float(f"{c:.2e}") for c in C]), return_inverse=True)
    return group, np.array([np.median(C[group == g]) for g in range(group.max() + 1)])


def _budget_fit(log_n, loss, W):
    """One budget, each row of weights W: parabola in ln N (highest power first), ln N_opt and L_opt at its vertex."""
    centre = log_n.mean()  # centred ln N keeps the normal equations well conditioned
    coef = _parabolas(log_n - centre, loss, W)
    u, loss_opt = _vertex(coef)
    c2, c1, c0 = coef.T
    return np.stack([c2, c1 - 2 * c2 * centre, c2 * centre**2 - c1 * centre + c0], 1), u + centre, loss_opt


def fit_isoflop(N, C, loss, *, D=None, bootstrap=0, seed=0, ci=0.8):
    """Chinchilla Approach 2: a parabola in ln N through each budget's losses (>= 3 sizes), its vertex N_opt(C),
    then N_opt = k C^a by least squares in log-log; with the runs' tokens D, likewise a parabola in ln D per budget
    and D_opt = k_d C^b. A budget whose vertex lies outside the range of ln N (or ln D) it sampled is listed in
    `out_of_range` and left out of the lines: its optimum is an extrapolation of the parabola, not a measured
    minimum. bootstrap > 0 resamples points within each budget (one resample serves both parabolas)."""
    names = ("N", "C", "loss") + (("D",) if D is not None else ())
    N, C, loss, *tokens = _inputs(names, (N, C, loss) + ((D,) if D is not None else ()), 3)
    _check_options(bootstrap, ci)
    group, budgets = _budget_groups(C)
    rng = np.random.default_rng(seed)
    per_axis = {"n": [], "d": []}
    inside = np.ones(len(budgets), bool)
    for g in range(len(budgets)):
        idx = np.flatnonzero(group == g)
        W = np.vstack([np.ones((1, idx.size)), bayesian_weights(idx.size, bootstrap, rng)])  # row 0: the data
        for axis, x in (("n", N), ("d", tokens[0] if tokens else None)):
            if x is not None:
                per_axis[axis].append(_budget_fit(np.log(x[idx]), loss[idx], W))
                inside[g] &= x[idx].min() <= np.exp(per_axis[axis][-1][1][0]) <= x[idx].max()
    coef, log_n_opt, loss_opt = (np.stack(parts, 1) for parts in zip(*per_axis["n"]))  # (1 + bootstrap, budgets)
    log_d_opt = np.stack([f[1] for f in per_axis["d"]], 1) if tokens else None
    has_vertex = np.isfinite(log_n_opt[0]) & (np.isfinite(log_d_opt[0]) if tokens else True)
    used = has_vertex & inside
    if used.sum() < 2:
        raise ValueError(f"need >= 2 budgets with >= 3 distinct sizes and a convex parabola whose minimum lies "
                         f"within the sizes sampled, got {used.sum()}")
    log_k, a = _loglog_line(np.log(budgets[used]), log_n_opt[:, used])
    lines = {"k": np.exp(log_k), "a": a}
    if tokens:
        log_k_d, b = _loglog_line(np.log(budgets[used]), log_d_opt[:, used])
        lines.update(k_d=np.exp(log_k_d), b=b)
    intervals, samples = {}, {}
    if bootstrap:
        samples = {name: v[1:] for name, v in lines.items()} | {"n_opt_per_budget": np.exp(log_n_opt[1:, used])}
        if tokens:
            samples["d_opt_per_budget"] = np.exp(log_d_opt[1:, used])
        intervals = percentile_intervals({name: v[1:] for name, v in lines.items()}, ci)
    return IsoFlop(**{name: float(v[0]) for name, v in lines.items()}, budgets=budgets[used],
                   n_opt_per_budget=np.exp(log_n_opt[0, used]), loss_opt_per_budget=loss_opt[0, used],
                   d_opt_per_budget=np.exp(log_d_opt[0, used]) if tokens else None,
                   parabolas=coef[0, used], skipped=tuple(float(b) for b in budgets[~has_vertex]), n_points=len(N),
                   out_of_range=tuple(float(b) for b in budgets[has_vertex & ~used]), ci=ci, intervals=intervals,
                   samples=samples)
