"""The loss-law fit as a CPU benchmark case: Approach 3 from Hoffmann et al.'s 4,500-start
grid, and a 1,000-resample bootstrap, on the 245 Chinchilla points flopcast ships
(scaling/laws/data/), 5 highest-loss points dropped as Besiroglu et al. 2024 did.

Beside the batched fit, the plain approach (scipy's L-BFGS-B once per start) is timed on a
subset of the starts; the record carries its per-start time, the full-grid time that implies,
and the speedup. Runs only under ``python -m pytest --benchmark`` (the plugin adds this file
to a run without test paths, and the ``flopcast_benchmark`` marker makes its cases benchmark
cases). It lives here, not in bench/, because it measures the planning half's code, which the
measuring half does not import.
"""

from __future__ import annotations

import time

import pytest

from bench.cases import case_group
from bench.device import cpu_name
from scaling.laws.fit import HOFFMANN_GRID, fit_parametric, fit_parametric_plain
from scaling.laws.points import CHINCHILLA_POINTS, load_law_data
from scaling.schema import make_record

pytestmark = pytest.mark.flopcast_benchmark

PLAIN_STARTS = 90  # every 50th start of the grid
RESAMPLES = 1000
DROP_HIGHEST = 5  # Besiroglu et al. 2024 drop the 5 highest-loss points


def fit_data():
    """(data, drop_highest, label): the Chinchilla points."""
    return load_law_data(CHINCHILLA_POINTS), DROP_HIGHEST, CHINCHILLA_POINTS.name


def _record(name: str, n_points: int, variant: str, shape_extra: dict, extra: dict,
            time_s: float = 1.0) -> dict:
    """The fit case's record (`scaling.schema.make_record`), named as its test; the plugin
    builds it again with pytest-benchmark's final statistics."""
    return make_record("fit", name=name, kernel="fit",
                       impl="flopcast", dtype="fp64", direction="fwd", variant=variant,
                       layout="", shape={"points": n_points, "starts": HOFFMANN_GRID.size,
                                         **shape_extra},
                       flops=0, bytes=0, device="cpu", device_name=cpu_name(), time_s=time_s,
                       **extra)


def test_fit_approach3(benchmark, flopcast_session):
    data, drop, label = fit_data()
    benchmark.group = case_group(_record("test_fit_approach3", 0, "approach3", {}, {}))
    fit = benchmark.pedantic(fit_parametric, args=(data,), kwargs={"drop_highest": drop},
                             rounds=5, iterations=1, warmup_rounds=1)
    starts = HOFFMANN_GRID.points()[::HOFFMANN_GRID.size // PLAIN_STARTS]
    began = time.perf_counter()
    plain_f, _ = fit_parametric_plain(data, drop_highest=drop, starts=starts)
    plain_per_start = (time.perf_counter() - began) / len(starts)
    plain_full_s = plain_per_start * HOFFMANN_GRID.size
    # The subset's best can only be worse than (or equal to) the full grid's optimum.
    assert fit.objective <= plain_f + 1e-9
    median_s = benchmark.stats.stats.median
    benchmark.extra_info["flopcast"] = _record("test_fit_approach3", fit.n_points, "approach3", {}, {
        "data": label, "objective": fit.objective,
        "plain_starts_timed": len(starts), "plain_time_s_per_start": plain_per_start,
        "plain_time_s_full_grid_estimate": plain_full_s,
        "speedup_vs_plain": plain_full_s / median_s,
    }, median_s)


def test_fit_bootstrap(benchmark, flopcast_session):
    data, drop, label = fit_data()
    benchmark.group = case_group(_record("test_fit_bootstrap", 0, "approach3-bootstrap", {}, {}))
    fit = benchmark.pedantic(fit_parametric, args=(data,),
                             kwargs={"drop_highest": drop, "bootstrap": RESAMPLES, "seed": 0},
                             rounds=1, iterations=1)
    assert len(fit.law.bootstrap) + fit.details["bootstrap_failed"] == RESAMPLES
    benchmark.extra_info["flopcast"] = _record("test_fit_bootstrap", fit.n_points,
                                               "approach3-bootstrap", {"resamples": RESAMPLES}, {
        "data": label, "objective": fit.objective,
        "bootstrap_failed": fit.details["bootstrap_failed"],
        "intervals": fit.details["intervals"],
    }, benchmark.stats.stats.median)


PER_ROW_ROWS = 20_000  # distinct (N, D): every row is a point of the Huber sum
PER_ROW_REPEATS = 4082  # the 245 Chinchilla points repeated: 1,000,090 rows, merged to 245


def _distinct_rows(count: int, seed: int = 0):
    """``count`` runs of distinct (N, D) on the Epoch AI 2024 refit law (Besiroglu et al.
    2024), 0.3% log-normal noise: a fit that costs per row, with nothing to merge."""
    import math

    import numpy as np

    from scaling.laws.forms import law_presets
    from scaling.laws.points import law_data

    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(math.log(5e7), math.log(1e10), count))
    d = n * np.exp(rng.uniform(math.log(2), math.log(200), count))
    loss = law_presets()["epoch-2024"].loss(n, d) * np.exp(rng.normal(0, 0.003, count))
    return law_data(n, d, loss, source=f"{count} synthetic runs")


def test_fit_time_per_row(benchmark, flopcast_session):
    """Approach 3's time per input row: on distinct points (each row costs) and on one
    million rows of repeated points (merged: the cost is per distinct point)."""
    import numpy as np

    from scaling.laws.points import law_data

    distinct = _distinct_rows(PER_ROW_ROWS)
    chinchilla, _, label = fit_data()
    repeated = law_data(*(np.tile(getattr(chinchilla, k), PER_ROW_REPEATS)
                          for k in ("params", "tokens", "loss")), source=f"{label} repeated")
    benchmark.group = case_group(_record("test_fit_time_per_row", 0, "approach3-per-row", {}, {}))
    fit = benchmark.pedantic(fit_parametric, args=(distinct,), rounds=1, iterations=1)
    distinct_s = benchmark.stats.stats.median
    began = time.perf_counter()
    merged = fit_parametric(repeated)
    repeated_s = time.perf_counter() - began
    assert merged.details["points_fitted"] == len(chinchilla)
    benchmark.extra_info["flopcast"] = _record("test_fit_time_per_row", fit.n_points,
                                               "approach3-per-row",
                                               {"repeated_rows": len(repeated)}, {
        "data": distinct.source, "objective": fit.objective,
        "time_s_per_row": distinct_s / len(distinct),
        "repeated_data": repeated.source, "repeated_time_s": repeated_s,
        "repeated_time_s_per_row": repeated_s / len(repeated),
        "repeated_points_fitted": merged.details["points_fitted"],
    }, distinct_s)
