"""Approach 2 of Hoffmann et al. 2022: isoFLOP parabolas, then power laws through their minima.

Runs are grouped by compute budget. Within a budget, loss against log N (or log D) is a
parabola whose minimum is that budget's compute-optimal model; least squares in log space
through the minima gives N_opt = G C^a and D_opt = G' C^b, the way Hoffmann et al. (Sec. 3.2)
and Llama 3 (Sec. 3.2.1) did. The result is a ``tokens-power`` law, D_opt = G' C^b; its
bootstrap resamples runs within each budget.
"""

from __future__ import annotations

import math
import time

import numpy as np

from scaling.errors import DataError, FitError
from scaling.laws.fit import LawFit, Progress
from scaling.laws.points import LawData
from scaling.laws.forms import FLOPS_PER_PARAM_TOKEN, TOKENS_POWER, LossLaw

#: Runs whose compute differs by less than this (in decades, about 12%) share a budget.
BUDGET_TOLERANCE_DECADES = 0.05


def group_budgets(compute: np.ndarray, tolerance_decades: float = BUDGET_TOLERANCE_DECADES):
    """Budget label per run: runs are sorted by compute and a new budget starts wherever
    the gap to the previous run exceeds ``tolerance_decades``."""
    log_c = np.log10(compute)
    order = np.argsort(log_c, kind="stable")
    breaks = np.concatenate([[0], np.cumsum(np.diff(log_c[order]) > tolerance_decades)])
    labels = np.empty(compute.size, int)
    labels[order] = breaks
    return labels


def thin_budgets(data: LawData, labels, against: str) -> np.ndarray:
    """Which runs belong to a budget with at least 3 distinct sizes (what a parabola needs)."""
    x_all = data.params if against == "params" else data.tokens
    keep = np.ones(labels.size, dtype=bool)
    for label in np.unique(labels):
        rows = labels == label
        if np.unique(x_all[rows]).size < 3:
            keep[rows] = False
    return keep


def _isoflop_minima(data: LawData, labels, against):
    """Per budget: (compute, N_opt, D_opt, min loss, parabola, x-range), or raise."""
    x_all = np.log(data.params if against == "params" else data.tokens)
    out = []
    for label in np.unique(labels):
        rows = labels == label
        c = float(np.exp(np.mean(np.log(data.compute[rows]))))
        if rows.sum() < 3 or np.unique(x_all[rows]).size < 3:
            raise DataError(f"{data.source}: budget {c:.3g} FLOPs has {int(rows.sum())} run(s) "
                            f"({np.unique(x_all[rows]).size} distinct {against}); an isoFLOP "
                            f"parabola needs at least 3 (or group budgets with a larger "
                            f"tolerance)")
        x, loss = x_all[rows], data.loss[rows]
        c2, c1, c0 = np.polyfit(x, loss, 2)
        if not c2 > 0:
            raise FitError(f"{data.source}: the loss of budget {c:.3g} FLOPs does not curve "
                           f"upward in log {against}, so it has no minimum; add runs on both "
                           f"sides of the optimum")
        x_opt = -c1 / (2 * c2)
        opt = math.exp(x_opt)
        other = c / (FLOPS_PER_PARAM_TOKEN * opt)
        n_opt, d_opt = (opt, other) if against == "params" else (other, opt)
        out.append({"compute_flops": c, "runs": int(rows.sum()), "params": n_opt,
                    "tokens": d_opt, "loss": float(c0 + c1 * x_opt + c2 * x_opt ** 2),
                    "inside": bool(x.min() <= x_opt <= x.max()),
                    "parabola": [float(c2), float(c1), float(c0)]})
    return out


def _power_fit(minima):
    """Least squares in log space: log N_opt = log G + a log C, log D_opt = log G' + b log C."""
    log_c = np.log([m["compute_flops"] for m in minima])
    log_n = np.log([m["params"] for m in minima])
    log_d = np.log([m["tokens"] for m in minima])
    a, log_g = np.polyfit(log_c, log_n, 1)
    b, log_gd = np.polyfit(log_c, log_d, 1)
    rss = float(np.sum((log_n - (log_g + a * log_c)) ** 2))
    return float(a), math.exp(log_g), float(b), math.exp(log_gd), rss


def fit_isoflop(data: LawData, *, against: str = "params", drop_highest: int = 0,
                budget_tolerance: float = BUDGET_TOLERANCE_DECADES, bootstrap: int = 0,
                seed: int | None = None, progress: Progress | None = None,
                name: str = "fit") -> LawFit:
    """Approach 2: isoFLOP parabolas per budget, then power laws through their minima.

    The result is a ``tokens-power`` law D_opt = G' C^b (N_opt = C / 6 D_opt); the bootstrap
    resamples runs within each budget.
    """
    started = time.perf_counter()
    if against not in ("params", "tokens"):
        raise DataError(f"isoFLOP parabolas are fitted against 'params' or 'tokens', not {against!r}")
    if bootstrap and bootstrap < 2:
        raise DataError(f"--bootstrap needs at least 2 resamples, not {bootstrap}")
    data = data.drop_highest(drop_highest)
    labels = group_budgets(data.compute, budget_tolerance)
    keep = thin_budgets(data, labels, against)
    skipped = [{"compute_flops": float(np.exp(np.mean(np.log(data.compute[labels == k])))),
                "runs": int((labels == k).sum())}
               for k in np.unique(labels[~keep])]
    if skipped and np.unique(labels[keep]).size < 2:
        thin = "; ".join(f"budget {b['compute_flops']:.3g} FLOPs has {b['runs']} run(s)"
                         for b in skipped)
        raise DataError(f"{data.source}: fewer than 2 budgets have the 3 distinct {against} "
                        f"an isoFLOP parabola needs ({thin}); add runs, or group budgets "
                        f"with a larger tolerance")
    if skipped:  # fit the budgets that can be fitted; the command warns about the others
        data, labels = data.subset(np.flatnonzero(keep)), labels[keep]
    if np.unique(labels).size < 2:
        raise DataError(f"{data.source}: all runs share one compute budget; Approach 2 needs "
                        f"at least 2 budgets to fit how N_opt grows with compute")
    minima = _isoflop_minima(data, labels, against)
    a, g, b, g_tokens, rss = _power_fit(minima)
    details = {"budgets": minima, "against": against, "params_coef": g,
               "budget_tolerance_decades": budget_tolerance, "drop_highest": drop_highest,
               "skipped_budgets": skipped}
    fit_info = {"approach": 2, "objective": rss, "n_points": len(data), "data": data.source,
                "against": against, "params_coef": g, "params_exp": a}
    samples = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        groups = [np.flatnonzero(labels == k) for k in np.unique(labels)]
        samples, failed = [], 0
        for i in range(bootstrap):
            pick = np.concatenate([rng.choice(rows, rows.size) for rows in groups])
            try:
                _, _, b_i, g_i, _ = _power_fit(_isoflop_minima(data.subset(pick), labels[pick],
                                                               against))
            except (DataError, FitError):
                failed += 1  # a resample with < 3 distinct sizes in a budget, or no minimum
                continue
            samples.append({"tokens_coef": g_i, "tokens_exp": b_i})
            if progress and (i + 1) % 200 == 0:
                progress(f"bootstrap: {i + 1} of {bootstrap} resamples")
        if len(samples) < 2:
            raise FitError(f"{data.source}: only {len(samples)} of {bootstrap} bootstrap "
                           f"resamples gave a fit; add runs per budget")
        details.update(bootstrap=bootstrap, bootstrap_failed=failed, seed=seed)
        fit_info.update(bootstrap=bootstrap, seed=seed)
    law = LossLaw(name=name, label="fitted", form=TOKENS_POWER, tokens_coef=g_tokens,
                  tokens_exp=b, fit=fit_info, bootstrap=samples,
                  source=f"Approach 2 (isoFLOP parabolas in log {against}, "
                         f"{len(minima)} budgets) on {data.source}")
    if samples:
        details["intervals"] = {k: list(v) for k, v in law.intervals().items()}
    return LawFit(law, 2, rss, len(data), time.perf_counter() - started, True, details)
