"""`flopcast fit DATA`: fit a loss law to training runs and say what a budget buys.

    flopcast fit runs.csv                               # Approach 3, 4,500-start grid
    flopcast fit runs.csv --bootstrap 1000 --at 10x-llama3 --plot fit.png --save law.json
    flopcast fit isoflops.parquet --approach 2 --at 3.8e26 --json

Progress of long fits goes to stderr, so ``--json`` output stays clean.
"""

from __future__ import annotations

import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from scaling.laws.budget import BUDGETS, parse_compute
from scaling.errors import DataError
from scaling.laws.fit import HUBER_DELTA, LawFit, fit_parametric
from scaling.laws.isoflop import BUDGET_TOLERANCE_DECADES, fit_isoflop, group_budgets, thin_budgets
from scaling.laws.points import FIELDS, LawData, load_law_data, parse_columns, parse_where
from scaling.laws.forms import FLOPS_PER_PARAM_TOKEN, INTERVAL_PERCENTILES, LossLaw, optimum
from scaling.output import fmt_num, format_table, print_json
from scaling.units import format_count, format_flops, parse_number, parse_whole


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fit", help="fit a loss law (Chinchilla Approach 3 or 2) to training runs",
        description="Fit L(N, D) = E + A/N^alpha + B/D^beta (Approach 3, Hoffmann et al. 2022) "
                    "or isoFLOP power laws (Approach 2) to training runs, with bootstrap "
                    "intervals and the compute-optimal allocation at a budget.")
    p.add_argument("data", metavar="DATA",
                   help="CSV or Parquet file with params, tokens (or compute) and loss columns")
    p.add_argument("--approach", type=int, choices=(3, 2), default=3,
                   help="3: parametric Huber fit (default); 2: isoFLOP parabolas per budget")
    p.add_argument("--bootstrap", type=partial(parse_whole, what="--bootstrap"), default=0,
                   metavar="N",
                   help="bootstrap resamples for intervals (e.g. 1000); 0 for none")
    p.add_argument("--seed", type=partial(parse_whole, what="--seed"), default=0,
                   help="random seed of the bootstrap (default 0)")
    p.add_argument("--at", metavar="COMPUTE",
                   help=f"budget in FLOPs (3.8e26) or a name ({', '.join(BUDGETS)}): print "
                        f"the compute-optimal allocation there")
    p.add_argument("--drop-highest", type=partial(parse_whole, what="--drop-highest"),
                   default=0, metavar="K",
                   help="drop the K highest-loss runs first (Besiroglu et al. 2024 drop 5)")
    p.add_argument("--delta", type=partial(parse_number, what="--delta"), default=HUBER_DELTA,
                   help=f"Huber delta on log-loss residuals (default {HUBER_DELTA:g})")
    p.add_argument("--against", choices=("params", "tokens"), default="params",
                   help="Approach 2: fit the isoFLOP parabolas against log params or log tokens")
    p.add_argument("--budget-tolerance", type=partial(parse_number, what="--budget-tolerance"),
                   default=BUDGET_TOLERANCE_DECADES,
                   metavar="DECADES",
                   help="Approach 2: runs within this many decades of compute share a budget "
                        f"(default {BUDGET_TOLERANCE_DECADES:g})")
    p.add_argument("--columns", metavar="MAP",
                   help=f"column names the guesser misses, FIELD=COLUMN,... with FIELD one of "
                        f"{', '.join(FIELDS)} (e.g. 'params=Model Size,loss=val_loss')")
    p.add_argument("--where", action="append", metavar="COLUMN=VALUE", default=[],
                   help="fit only the rows where COLUMN has VALUE (e.g. --where "
                        "condition=raw_loss, --where lr=3e-4); repeat to combine")
    p.add_argument("--no-merge", dest="merge", action="store_false",
                   help="Approach 3: fit every row as its own point, instead of runs with the "
                        "same (N, D) as one point weighted by their count (the same fit when "
                        "their losses are equal; see scaling.laws.fit)")
    p.add_argument("--name", help="name of the fitted law (default: the data file's stem)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="draw the data, the fit and the frontier")
    p.add_argument("--save", metavar="LAW.json",
                   help="save the fitted law (with its bootstrap) as JSON; "
                        "scaling.laws.forms.load_law and the planner read it")
    p.set_defaults(func=run)


class _Progress:
    """Progress lines on stderr, only once a fit has run for a couple of seconds."""

    def __init__(self, after_s: float = 2.0, every_s: float = 1.0):
        self.start = time.perf_counter()
        self.after_s, self.every_s, self.last = after_s, every_s, -math.inf

    def __call__(self, message: str) -> None:
        now = time.perf_counter()
        if now - self.start >= self.after_s and now - self.last >= self.every_s:
            self.last = now
            print(f"flopcast fit: {message} ({now - self.start:.0f} s)", file=sys.stderr,
                  flush=True)


def run(args) -> int:
    budget = parse_compute(args.at) if args.at is not None else None
    if args.bootstrap < 0:
        raise DataError(f"--bootstrap must be 0 or more, not {args.bootstrap}")
    if args.seed < 0:
        raise DataError(f"--seed must be 0 or more (numpy's generators take no negative "
                        f"seeds), not {args.seed}")
    if args.plot:
        check_plot_path(args.plot)
    progress = _Progress()
    data = load_law_data(args.data, parse_columns(args.columns), parse_where(args.where))
    name = args.name or Path(args.data).stem
    _warn_repeats(data)
    if args.approach == 3:
        fit = fit_parametric(data, delta=args.delta, drop_highest=args.drop_highest,
                             bootstrap=args.bootstrap, seed=args.seed, progress=progress,
                             name=name, merge=args.merge)
    else:
        fit = fit_isoflop(data, against=args.against, drop_highest=args.drop_highest,
                          budget_tolerance=args.budget_tolerance, bootstrap=args.bootstrap,
                          seed=args.seed, progress=progress, name=name)
    out = fit.to_dict()
    out["data"] = {"path": str(args.data), "columns": data.columns}
    extrapolation = None
    if budget is not None:
        out["allocation"] = fit.law.allocate(budget).to_dict()
        extrapolation = extrapolation_decades(budget, data)
        out["allocation"]["decades_beyond_data"] = extrapolation
    if data.repeats:
        out["repeats"] = data.repeats
    if args.where:
        out["data"]["where"] = list(args.where)
    if args.save:
        out["saved"] = str(fit.law.save(args.save))
    if args.plot:
        out["plot"] = str(plot_fit(fit, data.drop_highest(args.drop_highest), args.plot,
                                   budget=budget))
    if args.json:
        print_json(out)
    else:
        print(_text(fit, out))
    for budget in fit.details.get("skipped_budgets", []):
        print(f"flopcast fit: warning: skipped the budget of {budget['compute_flops']:.3g} "
              f"FLOPs: {budget['runs']} run(s), fewer than the 3 distinct sizes an isoFLOP "
              f"parabola needs", file=sys.stderr)
    if extrapolation is not None and extrapolation > EXTRAPOLATION_WARN_DECADES:
        print(f"flopcast fit: warning: --at {budget:.3g} FLOPs is {extrapolation:.1f} decades "
              f"beyond the largest compute in the data ({data.compute.max():.3g} FLOPs): the "
              f"allocation is an extrapolation of the fitted law, not a measurement",
              file=sys.stderr)
    for name in fit.details.get("grid_edge", []):
        print(f"flopcast fit: warning: the optimum of '{name}' lies on the edge of the start "
              f"grid; a wider grid might find a better fit", file=sys.stderr)
    return 0


#: Decades of compute beyond the data's largest run past which ``--at`` warns. A stated
#: assumption: within one decade the law is checked by nearby runs; beyond it, not.
EXTRAPOLATION_WARN_DECADES = 1.0


def extrapolation_decades(budget: float, data: LawData) -> float:
    """How many decades ``budget`` lies beyond the data's largest compute (negative inside)."""
    return math.log10(budget / float(data.compute.max()))


def _warn_repeats(data: LawData) -> None:
    """Runs sharing (N, D) with different losses: one law assumes one condition."""
    repeats = data.repeats
    if not repeats:
        return
    line = (f"flopcast fit: warning: {repeats['points']:,} (N, D) points appear in "
            f"{repeats['rows']:,} runs with different losses")
    varying = repeats["varying"]
    if varying:
        column, values = next(iter(varying.items()))
        first = values.split(", ")[0]
        line += (f"; they differ in {', '.join(repr(c) for c in varying)} ('{column}': "
                 f"{values}): a loss law assumes one condition, so fit one at a time with "
                 f"--where {column}={first}")
    else:
        line += "; no other column tells them apart (repeated seeds?)"
    print(line, file=sys.stderr)


def _text(fit: LawFit, out: dict) -> str:
    law, intervals = fit.law, out.get("intervals", {})
    names = list(law.parameters) + ["a", "b"]
    values = dict(law.parameters, a=out["a"], b=out["b"])
    rows = [{"name": k, "value": values[k],
             "lo": intervals.get(k, [None])[0], "hi": intervals.get(k, [None, None])[1]}
            for k in names]
    lines = [f"{law.source}", f"{fit.n_points} runs, objective {fit.objective:.6g}, "
                               f"{fit.seconds:.2f} s"]
    if fit.approach == 3:
        if out.get("rows_merged"):
            lines.append(out["merge"])
        lines.append(f"starts: {out['starts']} ({out['starts_converged']} converged, "
                     f"{out['starts_pruned']} pruned early); local minima "
                     f"{', '.join(f'{m:.4g}' for m in out['local_minima'])}")
    else:
        lines.append(f"budgets: {len(out['budgets'])}; N_opt = {out['params_coef']:.4g} "
                     f"C^{out['a']:.4f}")
    columns = [("name", "parameter"), ("value", "value")]
    if intervals:
        columns += [("lo", "2.5%"), ("hi", "97.5%")]
        lines.append(f"bootstrap: {out['bootstrap']} resamples (seed {out['seed']}), "
                     f"{out['bootstrap_failed']} failed")
    lines += ["", format_table(rows, columns)]
    alloc = out.get("allocation")
    if alloc:
        iv = alloc["intervals"]
        fmt = {"params": format_count, "tokens": format_count}
        rows = [{"name": k} | {col: fmt.get(k, fmt_num)(v) for col, v in
                               (("value", alloc[k]), ("lo", iv.get(k, [None])[0]),
                                ("hi", iv.get(k, [None, None])[1]))}
                for k in ("params", "tokens", "tokens_per_param", "loss")]
        lines += ["", f"compute-optimal at {format_flops(alloc['compute_flops'])} FLOPs "
                      f"(C = 6 N D):",
                  format_table(rows, columns, align_right={"value", "lo", "hi"})]
    return "\n".join(lines)


# -- the plot ------------------------------------------------------------------------------


def _band(law: LossLaw, compute: np.ndarray):
    """The bootstrap interval of N_opt at each budget of ``compute`` (lows, highs), or None
    for a law without a bootstrap; every resample at once, one row each."""
    if not law.bootstrap:
        return None
    resamples = {k: np.array([p[k] for p in law.bootstrap])[:, None] for k in law.parameters}
    n, _, _ = optimum(law.form, resamples, compute)
    return np.percentile(n, INTERVAL_PERCENTILES, axis=0)


def check_plot_path(path) -> Path:
    """Refuse, before any fitting, a plot file matplotlib cannot write: an unknown format
    (``p.txt``) or a folder that does not exist."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    kind = path.suffix.lower().lstrip(".")
    if kind not in formats:
        raise DataError(f"--plot {path}: cannot draw a '{kind or 'suffix-less'}' file; end the "
                        f"name with one of {', '.join('.' + f for f in sorted(formats))}")
    if not path.parent.is_dir():
        raise DataError(f"--plot {path}: no folder {path.parent}")
    return path


def plot_fit(fit: LawFit, data: LawData, path, *, budget: float | None = None) -> Path:
    """Two panels: the data with the fit (iso-loss contours for Approach 3, isoFLOP parabolas
    for Approach 2), and the compute-optimal frontier extrapolated to ``budget`` (default
    ten times Llama 3) with its bootstrap band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    law = fit.law
    target = budget if budget is not None else BUDGETS["10x-llama3"].compute_flops
    c_lo, c_hi = data.compute.min() / 2, max(target, data.compute.max()) * 2
    compute = np.geomspace(c_lo, c_hi, 200)
    n_front, _, _ = optimum(law.form, law.parameters, compute)
    band = _band(law, compute)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)

    if fit.approach == 3:
        n_grid = np.geomspace(min(data.params.min(), n_front.min()) / 3,
                              max(data.params.max(), n_front.max()) * 3, 200)
        cc, nn = np.meshgrid(compute, n_grid)
        dd = cc / (FLOPS_PER_PARAM_TOKEN * nn)
        levels = np.quantile(data.loss, np.linspace(0.05, 0.95, 8))
        levels = np.unique(np.concatenate([np.round(levels, 2), [law.E + 0.1, law.E + 0.2]]))
        contours = left.contour(cc, nn, law.loss(nn, dd), levels=np.sort(levels),
                                colors="0.6", linewidths=0.8)
        left.clabel(contours, fontsize=7, fmt="%.2f")
        points = left.scatter(data.compute, data.params, c=data.loss, s=14, cmap="viridis")
        fig.colorbar(points, ax=left, label="final loss")
        left.set_ylabel("parameters N")
        left.set_title("runs and fitted iso-loss contours")
        left.plot(compute, n_front, "r-", lw=1.5, label="compute-optimal N")
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("training compute C (FLOPs)")
    else:
        labels = group_budgets(data.compute, fit.details["budget_tolerance_decades"])
        keep = thin_budgets(data, labels, fit.details["against"])
        data, labels = data.subset(np.flatnonzero(keep)), labels[keep]
        x_data = data.params if fit.details["against"] == "params" else data.tokens
        for label, budget_info in zip(np.unique(labels), fit.details["budgets"]):
            c = budget_info["compute_flops"]
            rows = labels == label
            xs = np.geomspace(x_data[rows].min(), x_data[rows].max(), 100)
            c2, c1, c0 = budget_info["parabola"]
            line = left.plot(xs, c0 + c1 * np.log(xs) + c2 * np.log(xs) ** 2, lw=1)[0]
            left.scatter(x_data[rows], data.loss[rows], s=12, color=line.get_color(),
                         label=f"{c:.2g} FLOPs")
            x_opt = budget_info["params" if fit.details["against"] == "params" else "tokens"]
            left.plot([x_opt], [budget_info["loss"]], "k*", ms=8)
        left.set_xscale("log")
        left.set_xlabel(fit.details["against"])
        left.set_ylabel("final loss")
        left.legend(fontsize=7)
        left.set_title("isoFLOP parabolas and their minima")

    right.plot(compute, n_front, "r-", lw=1.5, label="N_opt (fit)")
    if band is not None:
        right.fill_between(compute, band[0], band[1], color="r", alpha=0.2,
                           label="95% bootstrap band")
    if fit.approach == 2:
        mins = fit.details["budgets"]
        right.plot([m["compute_flops"] for m in mins], [m["params"] for m in mins], "ko",
                   ms=4, label="isoFLOP minima")
    right.axvline(target, color="0.4", ls="--", lw=1)
    alloc = law.allocate(target)
    right.plot([target], [alloc.params], "r*", ms=12,
               label=f"{fmt_num(alloc.params)} params, {fmt_num(alloc.tokens)} tokens "
                     f"at {target:.2g} FLOPs")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("training compute C (FLOPs)")
    right.set_ylabel("compute-optimal parameters")
    right.set_title("frontier, extrapolated to the budget")
    right.legend(fontsize=7, loc="upper left")
    fig.suptitle(law.source, fontsize=8)
    path = Path(path)
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise DataError(f"{path}: cannot write the plot: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path
