"""The loss-law fitter: the published Chinchilla refit, the plain scipy optimum, recovery of
known laws by both approaches, the bootstrap, and every kind of bad input."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.errors import DataError, FitError
from scaling.laws.fit import (HOFFMANN_GRID, PRUNE_SCHEDULE, Grid, HuberObjective, batched_lbfgs,
                         fit_parametric, fit_parametric_plain, resample_counts)
from scaling.laws.isoflop import fit_isoflop, group_budgets
from scaling.laws.points import (CHINCHILLA_POINTS, law_data, law_data_from_frame, load_law_data,
                             parse_columns)
from scaling.laws.forms import law_presets

TRUE = law_presets()["epoch-2024"]
SMALL_GRID = Grid(a=(0.0, 10.0), b=(0.0, 10.0), e=(0.0, 1.0), alpha=(0.5, 1.0), beta=(0.5, 1.0))


def synthetic_runs(n=120, noise=0.003, seed=0, law=TRUE):
    """Runs drawn from a known law: N log-uniform in 5e7..1e10, 2..200 tokens per parameter,
    multiplicative log-normal noise on the loss."""
    rng = np.random.default_rng(seed)
    n_params = np.exp(rng.uniform(math.log(5e7), math.log(1e10), n))
    tokens = n_params * np.exp(rng.uniform(math.log(2), math.log(200), n))
    loss = law.loss(n_params, tokens) * np.exp(rng.normal(0, noise, n))
    return law_data(n_params, tokens, loss, source="synthetic")


def isoflop_runs(budgets=(1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21), per_budget=9, noise=0.0,
                 seed=0, law=TRUE):
    """isoFLOP profiles: at each budget, model sizes spread around the law's optimum."""
    rng = np.random.default_rng(seed)
    n, d, c = [], [], []
    for budget in budgets:
        n_opt = law.allocate(budget).params
        for factor in np.exp(np.linspace(-1.5, 1.5, per_budget)):
            n.append(n_opt * factor)
            d.append(budget / (6 * n_opt * factor))
            c.append(budget)
    n, d, c = map(np.array, (n, d, c))
    loss = law.loss(n, d) * np.exp(rng.normal(0, noise, n.size))
    return law_data(n, d, loss, c, source="isoflops")


# -- Approach 3 ----------------------------------------------------------------------------


def test_chinchilla_points_reproduce_the_published_grid_fit():
    """Besiroglu et al. 2024 with Hoffmann's 4,500-start grid, 5 highest-loss points dropped:
    E 1.8172, alpha 0.3473, beta 0.3672, A 477.8, B 2143.4."""
    data = load_law_data(CHINCHILLA_POINTS)
    assert len(data) == 245
    fit = fit_parametric(data, drop_highest=5)
    law = fit.law
    assert fit.n_points == 240 and fit.converged
    assert law.E == pytest.approx(1.8172, rel=0.01)
    assert law.alpha == pytest.approx(0.3473, rel=0.01)
    assert law.beta == pytest.approx(0.3672, rel=0.01)
    assert law.A == pytest.approx(477.8, rel=0.01)
    assert law.B == pytest.approx(2143.4, rel=0.01)
    # The optimum found by scipy's L-BFGS-B from all 4,500 starts (default tolerances) is
    # 1.018274017827673e-3; tighter tolerances reach 1.0182740178006e-3.
    assert fit.objective == pytest.approx(1.0182740178e-3, abs=1e-9)
    assert fit.details["grid_edge"] == []
    assert fit.details["starts"] == 4500


def test_batched_fit_reaches_the_plain_scipy_optimum():
    """On a reduced grid (32 starts, pruned to 4 after 2 iterations) the batched fit and
    scipy's L-BFGS-B run once per start agree within 1e-9 in objective."""
    data = synthetic_runs(n=60, noise=0.01, seed=5)
    plain_f, plain_x = fit_parametric_plain(data, grid=SMALL_GRID)
    fit = fit_parametric(data, grid=SMALL_GRID, prune={2: 0.25, 4: 0.5}, prune_min_keep=4)
    assert fit.details["starts_pruned"] > 0
    assert fit.objective == pytest.approx(plain_f, abs=1e-9)
    assert fit.objective <= plain_f + 1e-12
    a, b, e, alpha, beta = plain_x
    assert fit.law.alpha == pytest.approx(alpha, rel=1e-3)
    assert fit.law.E == pytest.approx(math.exp(e), rel=1e-3)


def test_objective_gradient_matches_finite_differences():
    data = synthetic_runs(n=40, noise=0.02, seed=1)
    objective = HuberObjective(data, delta=1e-3)
    rng = np.random.default_rng(0)
    for x in [np.array([6.0, 7.5, 0.6, 0.35, 0.37]), *rng.uniform([0, 0, -1, 0, 0], [25, 25, 1, 2, 2], (4, 5))]:
        f, g = objective(x)
        # the Huber objective in long double by hand, for the value
        ln, ld, ll = (np.log(v).astype(np.longdouble) for v in (data.params, data.tokens, data.loss))
        r = np.log(np.exp(x[0] - x[3] * ln) + np.exp(x[1] - x[4] * ld) + np.exp(np.longdouble(x[2]))) - ll
        h = np.where(np.abs(r) <= 1e-3, 0.5 * r * r, 1e-3 * (np.abs(r) - 0.5e-3)).sum()
        assert f == pytest.approx(float(h), rel=1e-10)
        for i in range(5):
            step = np.zeros(5)
            step[i] = 1e-6 * max(1.0, abs(x[i]))
            numeric = (objective(x + step)[0] - objective(x - step)[0]) / (2 * step[i])
            assert g[i] == pytest.approx(numeric, rel=1e-4, abs=1e-9)


def test_recovers_a_known_law_from_noisy_runs():
    data = synthetic_runs(n=150, noise=0.002, seed=2)
    fit = fit_parametric(data)
    law = fit.law
    assert law.E == pytest.approx(TRUE.E, rel=0.02)
    assert law.alpha == pytest.approx(TRUE.alpha, rel=0.05)
    assert law.beta == pytest.approx(TRUE.beta, rel=0.05)
    a, b = law.optimal_exponents()
    assert a == pytest.approx(TRUE.optimal_exponents()[0], abs=0.02)
    # what the planner uses: the allocation at 10x Llama 3 compute
    assert law.allocate(3.8e26).params == pytest.approx(TRUE.allocate(3.8e26).params, rel=0.25)


def test_noiseless_runs_are_recovered_exactly():
    fit = fit_parametric(synthetic_runs(n=60, noise=0.0, seed=3), grid=SMALL_GRID)
    for key, value in TRUE.parameters.items():
        assert getattr(fit.law, key) == pytest.approx(value, rel=1e-4), key
    assert fit.objective < 1e-12


def test_bootstrap_is_reproducible_with_a_seed_and_brackets_the_fit():
    data = synthetic_runs(n=60, noise=0.005, seed=4)
    one = fit_parametric(data, grid=SMALL_GRID, bootstrap=20, seed=7)
    two = fit_parametric(data, grid=SMALL_GRID, bootstrap=20, seed=7)
    other = fit_parametric(data, grid=SMALL_GRID, bootstrap=20, seed=8)
    assert one.law.bootstrap == two.law.bootstrap
    assert one.law.bootstrap != other.law.bootstrap
    assert len(one.law.bootstrap) + one.details["bootstrap_failed"] == 20
    intervals = one.details["intervals"]
    for key in ("E", "alpha", "beta", "a", "b"):
        lo, hi = intervals[key]
        value = getattr(one.law, key) if key not in "ab" else \
            one.law.optimal_exponents()["ab".index(key)]
        assert lo < hi and lo <= value * 1.001 and value <= hi * 1.001, key
    alloc = one.law.allocate(3.8e26)
    assert alloc.intervals["params"][0] < alloc.params < alloc.intervals["params"][1]
    assert alloc.intervals["loss"][0] < alloc.loss < alloc.intervals["loss"][1]


def test_each_bootstrap_fit_is_the_full_grid_fit_of_its_resample():
    """Resamples start from the full-data fit's local minima; that finds the same optimum as
    the whole 4,500-start grid run on the resample."""
    data = synthetic_runs(n=60, noise=0.01, seed=9)
    fit = fit_parametric(data, bootstrap=3, seed=2)
    weights = resample_counts(np.random.default_rng(2), len(data), 3)
    objective = HuberObjective(data)
    starts = HOFFMANN_GRID.points()
    for w, params in zip(weights, fit.law.bootstrap):
        grid = batched_lbfgs(objective, starts, np.tile(w, (len(starts), 1)), prune=PRUNE_SCHEDULE)
        best = np.min(np.where(grid.converged, grid.f, np.inf))
        x = np.array([math.log(params["A"]), math.log(params["B"]), math.log(params["E"]),
                      params["alpha"], params["beta"]])
        assert objective.batch(x[None], w[None])[0][0] == pytest.approx(best, abs=1e-12)


def test_grid_edge_is_reported():
    # A grid whose alpha values all lie above the true 0.3478: the optimum sits below its span.
    grid = Grid(a=(5.0, 10.0), b=(5.0, 10.0), e=(0.0, 1.0), alpha=(0.5, 1.0), beta=(0.5, 1.0))
    fit = fit_parametric(synthetic_runs(n=60, noise=0.001, seed=6), grid=grid)
    assert "alpha" in fit.details["grid_edge"] and "beta" in fit.details["grid_edge"]
    assert HOFFMANN_GRID.size == 4500 and len(HOFFMANN_GRID.points()) == 4500
    assert HOFFMANN_GRID.edges([6.0, 7.7, 0.6, 0.35, 0.37]) == []


def test_a_fit_that_does_not_converge_says_so():
    with pytest.raises(FitError, match="did not converge"):
        fit_parametric(synthetic_runs(n=30, noise=0.01), grid=SMALL_GRID, max_iter=1)


def test_parametric_bad_input():
    data = synthetic_runs(n=20)
    with pytest.raises(DataError, match="5 runs, but the parametric fit .* needs at least 6"):
        fit_parametric(data.subset(np.arange(5)))
    same_n = law_data(np.full(10, 1e9), np.geomspace(1e9, 1e11, 10), np.linspace(3, 2, 10))
    with pytest.raises(DataError, match="same params"):
        fit_parametric(same_n)
    same_d = law_data(np.geomspace(1e8, 1e10, 10), np.full(10, 1e10), np.linspace(3, 2, 10))
    with pytest.raises(DataError, match="same tokens"):
        fit_parametric(same_d)
    with pytest.raises(DataError, match="drop the 20 highest"):
        fit_parametric(data, drop_highest=20)
    with pytest.raises(DataError, match="delta"):
        fit_parametric(data, delta=0)
    with pytest.raises(DataError, match="at least 2 resamples"):
        fit_parametric(data, grid=SMALL_GRID, bootstrap=1)


def test_drop_highest_drops_the_highest_losses():
    data = synthetic_runs(n=30)
    kept = data.drop_highest(4)
    assert len(kept) == 26
    assert kept.loss.max() == np.sort(data.loss)[-5]
    assert list(kept.rows) == sorted(kept.rows)


# -- Approach 2 ----------------------------------------------------------------------------


def test_isoflop_recovers_the_compute_optimal_exponents():
    fit = fit_isoflop(isoflop_runs())
    a_true, b_true = TRUE.optimal_exponents()
    law = fit.law
    assert law.form == "tokens-power"
    a, b = law.optimal_exponents()
    assert a == pytest.approx(a_true, abs=0.01)
    assert b == pytest.approx(b_true, abs=0.01)
    assert len(fit.details["budgets"]) == 7
    for budget in fit.details["budgets"]:
        assert budget["params"] == pytest.approx(TRUE.allocate(budget["compute_flops"]).params,
                                                 rel=0.05)
        assert budget["inside"]
    assert law.allocate(1e22).params == pytest.approx(TRUE.allocate(1e22).params, rel=0.1)


def test_isoflop_against_tokens_and_with_noise():
    fit = fit_isoflop(isoflop_runs(noise=0.002, seed=3), against="tokens", bootstrap=50, seed=1)
    a_true, _ = TRUE.optimal_exponents()
    assert fit.law.optimal_exponents()[0] == pytest.approx(a_true, abs=0.03)
    lo, hi = fit.details["intervals"]["tokens_exp"]
    assert lo < fit.law.tokens_exp < hi
    again = fit_isoflop(isoflop_runs(noise=0.002, seed=3), against="tokens", bootstrap=50, seed=1)
    assert again.law.bootstrap == fit.law.bootstrap


def test_isoflop_bad_input():
    runs = isoflop_runs()
    few = runs.subset(np.r_[0:9, 9:11])  # the second budget keeps only 2 runs: skipped,
    # which leaves one budget
    with pytest.raises(DataError, match="budget 3e\\+18 FLOPs has 2 run"):
        fit_isoflop(few)
    with pytest.raises(DataError, match="one compute budget"):
        fit_isoflop(runs.subset(np.arange(9)))
    # a budget whose loss falls monotonically: the parabola has no minimum
    n = np.geomspace(1e8, 1e9, 5)
    flat = law_data(np.r_[n, n], None, np.r_[np.linspace(3, 2, 5) + [0, 0.1, 0.15, 0.1, 0],
                                             np.linspace(3, 2, 5)],
                    np.r_[np.full(5, 1e19), np.full(5, 1e20)])
    with pytest.raises(FitError, match="no minimum"):
        fit_isoflop(flat)
    with pytest.raises(DataError, match="'params' or 'tokens'"):
        fit_isoflop(runs, against="compute")


def test_group_budgets():
    labels = group_budgets(np.array([1e19, 1.05e19, 3e19, 0.98e19, 3.1e19, 1e20]))
    assert list(labels) == [0, 0, 1, 0, 1, 2]


# -- the loader ----------------------------------------------------------------------------


def test_loader_finds_columns_and_derives_tokens(tmp_path):
    frame = pd.DataFrame({"Model Size": [1e8, 2e8, 4e8], "Training FLOP": [6e18, 6e18, 6e18],
                          "Loss": [3.0, 2.9, 2.95]})
    data = law_data_from_frame(frame)
    assert data.columns["params"] == "Model Size" and data.columns["loss"] == "Loss"
    assert data.tokens == pytest.approx(6e18 / (6 * np.array([1e8, 2e8, 4e8])))
    path = tmp_path / "runs.parquet"
    frame.rename(columns={"Loss": "val loss", "Model Size": "weights"}).to_parquet(path)
    data = load_law_data(path, "params=weights, loss=val loss")
    assert data.loss == pytest.approx([3.0, 2.9, 2.95]) and data.params[2] == 4e8
    with pytest.raises(DataError, match="no column for params"):
        load_law_data(path)


@pytest.mark.parametrize("text, message", [
    ("params,tokens,loss\n1e8,2e9,3.1\n2e8,abc,3.0\n",
     "column 'tokens' row 2: 'abc' is not a number"),
    ("params,tokens,loss\n1e8,2e9,3.1\n2e8,4e9,\n", "column 'loss' row 2 is nan"),
    ("params,tokens,loss\n1e8,2e9,3.1\n-2e8,4e9,3\n",
     "column 'params' row 2 is -2e\\+08; it must be positive"),
    ("size,foo\n1,2\n", "no column for loss, tokens \\(or compute\\)"),
    ("", "cannot read as CSV"),
])
def test_loader_errors_name_the_problem(tmp_path, text, message):
    csv = tmp_path / "runs.csv"
    csv.write_text(text)
    with pytest.raises(DataError, match=message):
        load_law_data(csv)


def test_loader_errors_for_missing_files_and_mappings(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_law_data(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="FIELD=COLUMN"):
        parse_columns("params:size")
    with pytest.raises(DataError, match="no column 'weights'"):
        law_data_from_frame(pd.DataFrame({"params": [1.0], "tokens": [1.0], "loss": [1.0]}),
                            {"params": "weights"})


_SPELLINGS = {"params": ["params", "N", "Model Size", "n_params", "num-params", "PARAMETERS"],
              "tokens": ["tokens", "D", "Training Tokens", "n_tokens"],
              "loss": ["loss", "L", "Final Loss", "val_loss"]}


@settings(max_examples=40, deadline=None)
@given(names=st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _SPELLINGS.items()}),
       rows=st.integers(3, 20), bad_row=st.integers(0, 19), field=st.sampled_from(list(_SPELLINGS)),
       bad=st.sampled_from([float("nan"), -1.0, 0.0, "x1", float("inf")]))
def test_loader_spellings_and_bad_cells(names, rows, bad_row, field, bad):
    """Any spelling of each column is found; one bad cell anywhere is reported by column
    and (1-based) row."""
    rng = np.random.default_rng(rows)
    values = {"params": rng.uniform(1e7, 1e10, rows), "tokens": rng.uniform(1e8, 1e12, rows),
              "loss": rng.uniform(2, 4, rows)}
    frame = pd.DataFrame({names[k]: v for k, v in values.items()})
    data = law_data_from_frame(frame)
    for key, value in values.items():
        assert np.array_equal(getattr(data, key), value)
    bad_row %= rows
    frame = frame.astype(object)
    frame.loc[bad_row, names[field]] = bad
    with pytest.raises(DataError) as err:
        law_data_from_frame(frame)
    assert f"column '{names[field]}' row {bad_row + 1}" in str(err.value)
