"""Fitting the parametric loss law (Approach 3) to training runs, fast enough to bootstrap.

**Approach 3** of Hoffmann et al. 2022 fits L(N, D) = E + A/N^alpha + B/D^beta by minimising,
over x = (a, b, e, alpha, beta) with A = exp(a), B = exp(b), E = exp(e),

    sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i ),   delta = 1e-3,

with L-BFGS from each point of a 4,500-point grid, keeping the best. The objective has many
local minima (on the Chinchilla points: 1.018e-3, 2.31e-3, 1.10e-2, ...), hence the grid.

Run one start at a time (scipy's L-BFGS-B, ``fit_parametric_plain``) this takes minutes. Here
all starts run as *one batched L-BFGS*: every start is a row of an array, the objective and
its analytic gradient are evaluated for all rows at once (numpy, in cache-sized chunks), the
two-loop recursion and the backtracking line search are vectorised over rows, and rows leave
the batch when they converge. Starts are pruned early: after a few iterations the rows are
ranked by objective and only the best part continues. Pruning is a heuristic (a dropped start
might in principle have ended lower), but on the Chinchilla points the starts that end in the
global minimum rank at the top from the first iteration on, and on those points and six
synthetic data sets the pruned fit ends where running every start to the end does (within
1e-17; ``prune=None`` does that, about ten times slower) and where the plain fit does (checked
in tests and in ``tests/test_scaling/laws/test_fit_benchmark.py``). The best row is finally polished with tighter
tolerances.

The **bootstrap** resamples points with replacement. A resample is the same objective with
integer weights (how often each point was drawn), so all resamples run as one batch too, each
started from the distinct local minima that the full-data fit found rather than from the whole
grid (a test checks that this finds the whole grid's optimum of each resample).

**Repeated points.** Runs with identical (N, D) share one prediction, so they are fitted as
one point with weight = their count at their mean log-loss (`merge_repeats`). Where a group's
losses are identical (a file with repeated rows) this is exact: count x Huber(r) is the sum of
the rows' equal terms, the same objective and the same optimum. Where they differ (seeds, or
conditions the file stacks) it is exact only while every residual of the group is within
delta: there sum_i Huber(r - y_i) = sum_i (r - y_i)^2 / 2 = count (r - mean y)^2 / 2 + const,
the same gradient; beyond delta the per-row Huber is linear in each residual and pulls towards
the group's median instead, so the optimum can move. ``merge=False`` fits the rows as they
are. Merging makes a fit cost per distinct point, not per row: a million-row file of 245
distinct points fits as fast as the 245.

Both approaches return a `LawFit`; Approach 2 (isoFLOP parabolas) is in `scaling.laws.isoflop`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import Callable

import numpy as np

from scaling.errors import DataError, FitError
from scaling.laws.points import LawData
from scaling.laws.forms import FLOPS_PER_PARAM_TOKEN, PARAMETRIC, TOKENS_POWER, LossLaw

#: Huber threshold on log-loss residuals (Hoffmann et al. 2022, Sec. 3.3 / Appendix D.2).
HUBER_DELTA = 1e-3

#: Order of the optimisation variables; A = exp(a), B = exp(b), E = exp(e).
VARIABLES = ("a", "b", "e", "alpha", "beta")

Progress = Callable[[str], None]


# -- the grid of starts --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Grid:
    """Starting values per variable; the starts are their Cartesian product."""

    a: tuple[float, ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    alpha: tuple[float, ...]
    beta: tuple[float, ...]

    def points(self) -> np.ndarray:
        """All starts as rows (a, b, e, alpha, beta)."""
        return np.array(list(itertools.product(*(getattr(self, v) for v in VARIABLES))),
                        dtype=float)

    @property
    def size(self) -> int:
        return math.prod(len(getattr(self, v)) for v in VARIABLES)

    def edges(self, x) -> list[str]:
        """Variables whose optimum lies on or outside the grid's span: the grid may not have
        bracketed the optimum, so a wider grid could find another."""
        out = []
        for name, value in zip(VARIABLES, x):
            lo, hi = min(getattr(self, name)), max(getattr(self, name))
            tol = 1e-6 * max(1.0, hi - lo)
            if value <= lo + tol or value >= hi - tol:
                out.append(name)
        return out


def _steps(lo, hi, step):
    return tuple(float(v) for v in np.round(np.arange(lo, hi + step / 2, step), 12))


#: Hoffmann et al. 2022, Appendix D.2: alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
#: a, b in {0, 5, ..., 25}: 5 * 5 * 5 * 6 * 6 = 4,500 starts.
HOFFMANN_GRID = Grid(a=_steps(0, 25, 5), b=_steps(0, 25, 5), e=_steps(-1, 1, 0.5),
                     alpha=_steps(0, 2, 0.5), beta=_steps(0, 2, 0.5))


# -- the objective -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MergedPoints:
    """Runs with identical (N, D) as one point each (see the module's note on repeats)."""

    log_n: np.ndarray
    log_d: np.ndarray
    log_l: np.ndarray      # the group's mean log-loss
    counts: np.ndarray     # rows per point (float, a Huber weight)
    rows: int              # rows before merging
    spread_groups: int     # points whose rows had different losses

    @property
    def merged_rows(self) -> int:
        return self.rows - self.counts.size

    def describe(self) -> str:
        if not self.merged_rows:
            return f"{self.rows} runs, no two with the same (N, D)"
        text = (f"merged {self.rows:,} runs into {self.counts.size:,} points of distinct "
                f"(N, D), each weighted by its count in the Huber sum")
        if self.spread_groups:
            text += (f"; {self.spread_groups:,} of them had different losses, fitted at their "
                     f"mean log-loss (the per-row fit only where residuals are within delta)")
        else:
            text += " (identical losses: exactly the per-row fit)"
        return text


def merge_repeats(data: LawData, merge: bool = True) -> MergedPoints:
    """One point per distinct (N, D): mean log-loss, weight = count (``merge=False``: every
    row its own point, weight 1)."""
    log_n, log_d, log_l = np.log(data.params), np.log(data.tokens), np.log(data.loss)
    rows = log_l.size
    if not merge:
        return MergedPoints(log_n, log_d, log_l, np.ones(rows), rows, 0)
    # Sort by (N, D) and cut where either changes (np.unique(axis=0) does the same, slower).
    order = np.lexsort((data.tokens, data.params))
    n_sorted, d_sorted = data.params[order], data.tokens[order]
    new = np.ones(rows, dtype=bool)
    new[1:] = (n_sorted[1:] != n_sorted[:-1]) | (d_sorted[1:] != d_sorted[:-1])
    if new.all():  # nothing to merge: keep the rows' order
        return MergedPoints(log_n, log_d, log_l, np.ones(rows), rows, 0)
    inverse = np.empty(rows, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    first = order[new]
    unique = np.stack([data.params[first], data.tokens[first]], axis=1)
    counts = np.bincount(inverse)
    mean = np.bincount(inverse, weights=log_l, minlength=counts.size) / counts
    lo = np.full(counts.size, np.inf)
    hi = np.full(counts.size, -np.inf)
    np.minimum.at(lo, inverse, log_l)
    np.maximum.at(hi, inverse, log_l)
    return MergedPoints(np.log(unique[:, 0]), np.log(unique[:, 1]), mean,
                        counts.astype(float), rows, int(np.sum(hi > lo)))


class HuberObjective:
    """Sum over points of Huber(LSE(a - alpha log N, b - beta log D, e) - log L), for many x
    at once, with its analytic gradient. Runs with the same (N, D) are one point weighted by
    their count (`merge_repeats`); optional per-row point weights (bootstrap counts) replace
    those counts."""

    #: A batch of more elements (starts x points) than this reports progress as it goes.
    PROGRESS_ELEMENTS = 1 << 24

    def __init__(self, data: LawData, delta: float = HUBER_DELTA, chunk_elements: int = 1 << 14,
                 merge: bool = True, progress: Progress | None = None):
        self.points = merge_repeats(data, merge)
        self.log_n, self.log_d, self.log_l = self.points.log_n, self.points.log_d, self.points.log_l
        counts = self.points.counts
        self.counts = None if self.points.merged_rows == 0 else counts
        self.delta = float(delta)
        self.rows_per_chunk = max(1, chunk_elements // self.log_n.size)
        self.evaluations = 0  # rows evaluated so far
        self.progress = progress

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """One x: (objective, gradient); the form scipy.optimize.minimize(jac=True) takes."""
        f, g = self.batch(np.asarray(x, dtype=float)[None, :])
        return float(f[0]), g[0]

    def batch(self, x: np.ndarray, weights: np.ndarray | None = None):
        """Rows of x -> (objectives (rows,), gradients (rows, 5)). Non-finite where x
        overflows; the line search treats that as 'too far'."""
        f = np.empty(x.shape[0])
        g = np.empty(x.shape)
        report = (self.progress is not None
                  and x.shape[0] * self.log_n.size > self.PROGRESS_ELEMENTS)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for start in range(0, x.shape[0], self.rows_per_chunk):
                rows = slice(start, start + self.rows_per_chunk)
                w = self.counts if weights is None else weights[rows]
                self._chunk(x[rows], w, f[rows], g[rows])
                if report:
                    self.progress(f"evaluated {min(start + self.rows_per_chunk, x.shape[0])} "
                                  f"of {x.shape[0]} starts on {self.log_n.size:,} points")
        self.evaluations += x.shape[0]
        return f, g

    def _chunk(self, x, w, f, g):
        # Parameters stay in a range where exp() cannot overflow (a, b < ~700), so the
        # log-sum-exp needs no max-shift; a row that does overflow gets inf/nan and is rejected.
        t1 = np.multiply(x[:, 3:4], self.log_n)
        np.subtract(x[:, 0:1], t1, out=t1)
        np.exp(t1, out=t1)                      # A / N^alpha
        t2 = np.multiply(x[:, 4:5], self.log_d)
        np.subtract(x[:, 1:2], t2, out=t2)
        np.exp(t2, out=t2)                      # B / D^beta
        e = np.exp(x[:, 2])                     # E
        pred = t1 + t2
        pred += e[:, None]                      # predicted loss
        r = np.log(pred)
        r -= self.log_l                         # residual in log space
        dh = np.clip(r, -self.delta, self.delta)  # Huber'(r)
        r -= 0.5 * dh
        r *= dh                                 # Huber(r) = dh * (r - dh / 2)
        if w is not None:
            r *= w
            dh *= w
        r.sum(axis=1, out=f)
        dh /= pred                              # d LSE / d(term) = term / pred
        t1 *= dh
        t2 *= dh
        g[:, 0] = t1.sum(axis=1)
        g[:, 1] = t2.sum(axis=1)
        g[:, 2] = dh.sum(axis=1) * e
        # einsum, not @: BLAS threads would contend for the cores that the batch runs on.
        g[:, 3] = -np.einsum("ij,j->i", t1, self.log_n)
        g[:, 4] = -np.einsum("ij,j->i", t2, self.log_d)


# -- batched L-BFGS ------------------------------------------------------------------------


@dataclasses.dataclass
class BatchResult:
    x: np.ndarray          # (rows, 5) final points
    f: np.ndarray          # (rows,) final objectives
    iterations: np.ndarray  # per row
    converged: np.ndarray  # per row: met the tolerance (False: pruned, stalled or out of iterations)
    pruned: np.ndarray     # per row


def _two_loop(g, s, y, rho, gamma, newest_first):
    """L-BFGS direction -H g for every row at once (Nocedal and Wright, Algorithm 7.4)."""
    q = g.copy()
    alphas = []
    for j in newest_first:
        a = rho[:, j] * np.einsum("ij,ij->i", s[:, j], q)
        q -= a[:, None] * y[:, j]
        alphas.append(a)
    q *= gamma[:, None]
    for j, a in zip(reversed(newest_first), reversed(alphas)):
        b = rho[:, j] * np.einsum("ij,ij->i", y[:, j], q)
        q += s[:, j] * (a - b)[:, None]
    return -q


def batched_lbfgs(objective: HuberObjective, x0: np.ndarray, weights: np.ndarray | None = None,
                  *, memory: int = 10, max_iter: int = 1000, ftol: float = 1e-11,
                  gtol: float = 1e-11, prune: dict[int, float] | None = None,
                  min_keep: int = 64, groups: np.ndarray | None = None,
                  progress: Progress | None = None) -> BatchResult:
    """Minimise ``objective`` from every row of ``x0`` at once.

    A row stops when an iteration lowers its objective by less than ``ftol`` relative or its
    largest gradient component is below ``gtol``, or when its line search fails (no lower
    point along the direction: it is at a minimum to rounding). ``prune`` maps an iteration
    to the fraction of running rows kept there, the best by objective, at least ``min_keep``
    (per group when ``groups`` labels rows, e.g. one group per bootstrap resample).
    """
    n = len(x0)
    ids = np.arange(n)
    x = np.array(x0, dtype=float)
    f, g = objective.batch(x, weights)
    s = np.zeros((n, memory, x.shape[1]))
    y = np.zeros_like(s)
    rho = np.zeros((n, memory))
    gamma = np.ones(n)
    fresh = np.ones(n, dtype=bool)  # no curvature pair yet: scale the first step by 1/|g|
    out = BatchResult(x.copy(), f.copy(), np.zeros(n, int), np.zeros(n, bool), np.zeros(n, bool))
    slot = 0
    for it in range(max_iter):
        if ids.size == 0:
            break
        newest_first = [(slot - 1 - j) % memory for j in range(memory)]
        p = _two_loop(g, s, y, rho, gamma, newest_first)
        slope = np.einsum("ij,ij->i", g, p)
        uphill = ~(slope < 0)
        if uphill.any():  # lost curvature information: restart from steepest descent
            p[uphill] = -g[uphill]
            rho[uphill] = 0.0
            fresh[uphill] = True
            slope[uphill] = -np.einsum("ij,ij->i", g[uphill], g[uphill])
        step = np.ones(ids.size)
        step[fresh] = np.minimum(1.0, 1.0 / np.sqrt(np.maximum(-slope[fresh], 1e-300)))

        # Backtracking line search (Armijo), quadratic interpolation, only on rows still looking.
        x_new, f_new, g_new = x.copy(), f.copy(), g.copy()
        moved = np.zeros(ids.size, dtype=bool)
        look = np.arange(ids.size)
        for _ in range(60):
            xt = x[look] + step[look, None] * p[look]
            ft, gt = objective.batch(xt, None if weights is None else weights[ids[look]])
            ok = ft <= f[look] + 1e-4 * step[look] * slope[look]  # False for nan
            hit = look[ok]
            x_new[hit], f_new[hit], g_new[hit], moved[hit] = xt[ok], ft[ok], gt[ok], True
            look, ft, t = look[~ok], ft[~ok], step[look[~ok]]
            if look.size == 0:
                break
            curve = 2.0 * (ft - f[look] - slope[look] * t)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                tq = np.where(np.isfinite(ft) & (curve > 0), -slope[look] * t * t / curve, 0.1 * t)
            step[look] = np.clip(np.nan_to_num(tq, nan=0.1 * t), 0.1 * t, 0.5 * t)

        ds, dg = x_new - x, g_new - g
        sy, yy = np.einsum("ij,ij->i", ds, dg), np.einsum("ij,ij->i", dg, dg)
        good = moved & (sy > 1e-10 * yy) & (yy > 0)
        s[:, slot], y[:, slot] = ds, dg
        rho[:, slot] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
        gamma = np.where(good, sy / np.where(good, yy, 1.0), gamma)
        fresh &= ~good
        slot = (slot + 1) % memory
        small_step = (f - f_new) <= ftol * np.maximum(np.abs(f), np.abs(f_new))
        converged = moved & (small_step | (np.abs(g_new).max(axis=1) <= gtol))
        x, f, g = x_new, f_new, g_new

        keep = moved & ~converged
        pruned = np.zeros(ids.size, dtype=bool)
        if prune and it + 1 in prune:
            pruned = keep & ~_best_rows(f, keep, prune[it + 1], min_keep,
                                        None if groups is None else groups[ids])
            keep &= ~pruned
        if not keep.all():
            done = ~keep
            leave = ids[done]
            out.x[leave], out.f[leave], out.iterations[leave] = x[done], f[done], it + 1
            out.converged[leave] = converged[done] | (~moved[done] & ~pruned[done])
            out.pruned[leave] = pruned[done]
            ids, x, f, g = ids[keep], x[keep], f[keep], g[keep]
            s, y, rho, gamma, fresh = s[keep], y[keep], rho[keep], gamma[keep], fresh[keep]
        if progress:  # the caller throttles (the CLI prints at most once a second)
            progress(f"iteration {it + 1}: {ids.size} of {n} starts still running")
    if ids.size:
        out.x[ids], out.f[ids], out.iterations[ids] = x, f, max_iter
    return out


def _best_rows(f, running, fraction, min_keep, groups):
    """Mask of the running rows to keep: the best ``fraction`` by objective (per group)."""
    keep = np.zeros(f.size, dtype=bool)
    labels = np.zeros(f.size, int) if groups is None else groups
    for label in np.unique(labels[running]):
        rows = np.flatnonzero(running & (labels == label))
        count = max(min_keep, int(math.ceil(fraction * rows.size)))
        keep[rows[np.argsort(f[rows], kind="stable")[:count]]] = True
    return keep


# -- Approach 3 ----------------------------------------------------------------------------

#: Iteration -> fraction of running starts kept. Chosen on the Chinchilla points, where the
#: starts that reach the global minimum rank first by objective at every iteration.
PRUNE_SCHEDULE = {3: 0.25, 6: 0.25, 12: 0.25, 24: 0.5}


@dataclasses.dataclass(frozen=True)
class LawFit:
    """A fitted law and how it was obtained."""

    law: LossLaw
    approach: int
    objective: float
    n_points: int
    seconds: float
    converged: bool
    details: dict  # approach-specific diagnostics (starts, minima, grid edge, budgets, ...)

    def to_dict(self) -> dict:
        law = self.law
        a, b = law.optimal_exponents()
        out = {k: getattr(law, k) for k in ("E", "A", "B", "alpha", "beta")}
        out.update(a=a, b=b, objective=self.objective, n_points=self.n_points,
                   seconds=self.seconds, converged=self.converged, approach=self.approach,
                   form=law.form)
        if law.form == TOKENS_POWER:
            out.update(tokens_coef=law.tokens_coef, tokens_exp=law.tokens_exp,
                       params_coef=1.0 / (FLOPS_PER_PARAM_TOKEN * law.tokens_coef))
        out.update(self.details)
        return out


def _check_points(data: LawData, needed: int, what: str):
    if len(data) < needed:
        raise DataError(f"{data.source}: {len(data)} runs, but {what} needs at least {needed}")
    if np.unique(data.loss).size < 2:
        raise DataError(f"{data.source}: every run has the same loss ({data.loss[0]:g}); a "
                        f"loss law needs losses that fall with N and D")
    for field in ("params", "tokens"):
        if np.unique(getattr(data, field)).size < 2:
            raise DataError(f"{data.source}: every run has the same {field} "
                            f"({getattr(data, field)[0]:g}); {what} needs runs of different "
                            f"{field} to separate the two terms")


def _parameters(x) -> dict[str, float]:
    """The law's parameters at a point x = (a, b, e, alpha, beta) of the optimisation."""
    a, b, e, alpha, beta = (float(v) for v in x)
    return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta}


def _law_from_x(x, *, name, source, fit=None, bootstrap=None) -> LossLaw:
    return LossLaw(name=name, label="fitted", source=source, form=PARAMETRIC,
                   fit=fit, bootstrap=bootstrap, **_parameters(x))


def _polish(objective: HuberObjective, x0):
    """Finish the best start with tighter tolerances (the batch stops at 1e-11 relative)."""
    res = batched_lbfgs(objective, np.asarray(x0, dtype=float)[None, :], ftol=1e-15,
                        gtol=1e-13, max_iter=500)
    return res.x[0], float(res.f[0])


def _distinct_minima(result: BatchResult, limit: int, rel_tol: float = 1e-6) -> np.ndarray:
    """Rows of the converged minima with distinct objectives, best first."""
    rows = np.flatnonzero(result.converged & np.isfinite(result.f))
    rows = rows[np.argsort(result.f[rows], kind="stable")]
    picked: list[int] = []
    for r in rows:
        if all(abs(result.f[r] - result.f[p]) > rel_tol * abs(result.f[p]) for p in picked):
            picked.append(r)
            if len(picked) == limit:
                break
    return np.array(picked, dtype=int)


def fit_parametric(data: LawData, *, delta: float = HUBER_DELTA, grid: Grid = HOFFMANN_GRID,
                   drop_highest: int = 0, bootstrap: int = 0, seed: int | None = None,
                   prune: dict[int, float] | None = PRUNE_SCHEDULE, bootstrap_starts: int = 4,
                   prune_min_keep: int = 64, max_iter: int = 1000,
                   progress: Progress | None = None, name: str = "fit",
                   merge: bool = True) -> LawFit:
    """Approach 3: the Huber fit of L = E + A/N^alpha + B/D^beta from every start of ``grid``.

    ``bootstrap`` resamples (with ``seed``) give the law a bootstrap and percentile intervals.
    Runs with the same (N, D) are fitted as one weighted point unless ``merge`` is False
    (see the module's note on repeats).
    Raises ``DataError`` for data that cannot determine the law and ``FitError`` when the
    best start did not converge.
    """
    started = time.perf_counter()
    if delta <= 0 or not math.isfinite(delta):
        raise DataError(f"Huber delta must be positive, not {delta}")
    if bootstrap and bootstrap < 2:
        raise DataError(f"--bootstrap needs at least 2 resamples, not {bootstrap}")
    data = data.drop_highest(drop_highest)
    _check_points(data, len(VARIABLES) + 1, "the parametric fit (5 parameters)")
    say = (lambda m: progress(f"fit: {m}")) if progress else None
    objective = HuberObjective(data, delta, merge=merge, progress=say)
    starts = grid.points()
    result = batched_lbfgs(objective, starts, prune=prune, min_keep=prune_min_keep,
                           max_iter=max_iter, progress=say)
    minima = _distinct_minima(result, limit=max(1, bootstrap_starts))
    if minima.size == 0:
        raise FitError(f"{data.source}: the fit did not converge: no start of the "
                       f"{len(starts)}-point grid met the tolerance within {max_iter} "
                       f"iterations; check the data (loss should fall with N and D)")
    best_x, best_f = _polish(objective, result.x[minima[0]])
    if not best_f <= result.f[minima[0]]:
        best_x, best_f = result.x[minima[0]], float(result.f[minima[0]])
    if not np.all(np.isfinite(best_x)):
        raise FitError(f"{data.source}: the fit diverged (parameters {best_x})")
    details = {
        "delta": delta, "starts": len(starts), "drop_highest": drop_highest,
        "starts_converged": int(result.converged.sum()), "starts_pruned": int(result.pruned.sum()),
        "evaluations": objective.evaluations,
        "points_fitted": int(objective.log_n.size), "rows_merged": objective.points.merged_rows,
        "merged_with_different_losses": objective.points.spread_groups,
        "merge": objective.points.describe(),
        "local_minima": [float(result.f[m]) for m in minima],
        "grid_edge": grid.edges(best_x),
    }
    fit_info = {"approach": 3, "objective": best_f, "n_points": len(data), "delta": delta,
                "data": data.source, "drop_highest": drop_highest}
    source = f"Approach 3 (Huber delta {delta:g}, {len(starts)}-start L-BFGS) on {data.source}"
    samples = None
    if bootstrap:
        samples, failed = _bootstrap_parametric(
            data, delta, [result.x[m] for m in minima], bootstrap, seed, progress, merge)
        details.update(bootstrap=bootstrap, bootstrap_failed=failed, seed=seed)
        fit_info.update(bootstrap=bootstrap, seed=seed)
    law = _law_from_x(best_x, name=name, source=source, fit=fit_info, bootstrap=samples)
    if samples:
        details["intervals"] = {k: list(v) for k, v in law.intervals().items()}
    return LawFit(law, 3, best_f, len(data), time.perf_counter() - started, True, details)


def resample_counts(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``count`` bootstrap resamples of ``n`` points, as how often each point was drawn."""
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n)
                     for _ in range(count)]).astype(float)


def _bootstrap_parametric(data, delta, minima, resamples, seed, progress, merge=True,
                          chunk=250):
    """Parameter dicts of ``resamples`` bootstrap fits, run as batches of weighted fits, each
    resample started from every distinct local minimum of the full-data fit.

    Merged points are resampled as the rows they stand for: drawing n rows with replacement
    and counting them per point is a multinomial draw of n with probabilities count / n,
    which is drawn directly (the same distribution, without n random numbers per resample)."""
    rng = np.random.default_rng(seed)
    n = len(data)
    objective = HuberObjective(data, delta, merge=merge)
    points = objective.points
    starts = np.array(minima)
    samples, failed = [], 0
    for first in range(0, resamples, chunk):
        count = min(chunk, resamples - first)
        if points.merged_rows:
            weights = rng.multinomial(n, points.counts / n, size=count).astype(float)
        else:
            weights = resample_counts(rng, n, count)
        rows = np.repeat(np.arange(count), len(starts))
        say = None
        if progress:
            say = (lambda m, first=first, count=count: progress(
                f"bootstrap: resamples {first + 1}-{first + count} of {resamples}: {m}"))
        objective.progress = say
        res = batched_lbfgs(objective, np.tile(starts, (count, 1)), weights[rows],
                            prune=None, progress=say)
        f = np.where(res.converged, res.f, np.inf).reshape(count, len(starts))
        best = np.argmin(f, axis=1)
        for i, j in enumerate(best):
            if not np.isfinite(f[i, j]):  # no start of this resample converged
                failed += 1
                continue
            samples.append(_parameters(res.x[i * len(starts) + j]))
        if progress:
            progress(f"bootstrap: {first + count} of {resamples} resamples")
    if len(samples) < 2:
        raise FitError(f"{data.source}: only {len(samples)} of {resamples} bootstrap fits "
                       f"converged; the data do not determine the law")
    return samples, failed


def fit_parametric_plain(data: LawData, *, delta: float = HUBER_DELTA,
                         grid: Grid = HOFFMANN_GRID, drop_highest: int = 0,
                         starts: np.ndarray | None = None, merge: bool = True):
    """The reference: scipy's L-BFGS-B (default tolerances, analytic gradient) once per
    start, keeping the best. Returns (objective, x). Slow; for checking the batched fit."""
    from scipy.optimize import minimize

    data = data.drop_highest(drop_highest)
    objective = HuberObjective(data, delta, merge=merge)
    best_f, best_x = math.inf, None
    for x0 in (grid.points() if starts is None else starts):
        res = minimize(objective, x0, jac=True, method="L-BFGS-B")
        if res.fun < best_f:
            best_f, best_x = float(res.fun), res.x
    return best_f, best_x
