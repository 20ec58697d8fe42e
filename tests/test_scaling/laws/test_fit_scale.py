"""Large and mixed fit inputs: repeated (N, D) points merged (exactly where losses agree),
progress while a long fit runs, a filter for files that stack conditions, a warning for
budgets far beyond the data; and size queries that answer at once."""

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from scaling.cli.main import main
from scaling.laws.fit import fit_parametric, merge_repeats
from scaling.laws.forms import law_presets
from scaling.laws.points import CHINCHILLA_POINTS, law_data, load_law_data
from scaling.errors import FitError

TRUE = law_presets()["epoch-2024"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def chinchilla():
    return load_law_data(CHINCHILLA_POINTS)


def _tiled(data, times):
    return law_data(np.tile(data.params, times), np.tile(data.tokens, times),
                    np.tile(data.loss, times), source=f"{times}x")


def test_identical_repeats_fit_exactly_as_the_rows(chinchilla):
    once = fit_parametric(chinchilla)
    started = time.perf_counter()
    thrice = fit_parametric(_tiled(chinchilla, 3))
    assert thrice.details["points_fitted"] == 245 and thrice.details["rows_merged"] == 490
    assert thrice.details["merged_with_different_losses"] == 0
    # count x Huber(r) is the sum of the three equal row terms: 3x the objective, same law.
    assert thrice.objective == pytest.approx(3 * once.objective, rel=1e-9)
    for k in ("E", "A", "B", "alpha", "beta"):
        assert getattr(thrice.law, k) == pytest.approx(getattr(once.law, k), rel=1e-6), k
    assert time.perf_counter() - started < 30
    # and the unmerged fit of the raw rows agrees (the reference for the claim)
    raw = fit_parametric(_tiled(chinchilla, 3), merge=False)
    assert raw.details["points_fitted"] == 735
    assert raw.objective == pytest.approx(thrice.objective, rel=1e-9)


def test_a_million_repeated_rows_fit_in_seconds(chinchilla):
    big = _tiled(chinchilla, 4082)  # 1,000,090 rows, 245 distinct points
    started = time.perf_counter()
    fit = fit_parametric(big)
    assert time.perf_counter() - started < 30  # per row it once took ~20 minutes
    assert fit.n_points == 1_000_090 and fit.details["points_fitted"] == 245


def test_repeats_with_different_losses_merge_at_their_mean_log_loss():
    rng = np.random.default_rng(5)
    n = np.repeat(np.exp(rng.uniform(math.log(5e7), math.log(5e9), 30)), 4)
    d = n * np.repeat(np.exp(rng.uniform(math.log(5), math.log(100), 30)), 4)
    loss = TRUE.loss(n, d) * np.exp(rng.normal(0, 0.01, n.size))
    data = law_data(n, d, loss)
    merged = merge_repeats(data)
    assert merged.counts.tolist() == [4.0] * 30 and merged.spread_groups == 30
    # the group's mean log-loss, computed by hand for one group
    # (matched in log space to a relative 1e-12: exp(log(x)) need not give x back bit for bit)
    group = np.flatnonzero(np.isclose(np.log(n), merged.log_n[0], rtol=0, atol=1e-12)
                           & np.isclose(np.log(d), merged.log_d[0], rtol=0, atol=1e-12))
    assert group.size == 4
    assert merged.log_l[0] == pytest.approx(np.log(loss[group]).mean(), rel=1e-12)
    # With every residual inside delta (delta large: least squares), the merged objective is
    # the per-row one less a constant, so the fits agree.
    kwargs = dict(delta=10.0)
    a, b = fit_parametric(data, **kwargs), fit_parametric(data, merge=False, **kwargs)
    for k in ("E", "A", "B", "alpha", "beta"):
        assert getattr(a.law, k) == pytest.approx(getattr(b.law, k), rel=1e-4), k


def test_a_long_fit_reports_progress_within_its_first_iteration():
    rng = np.random.default_rng(1)
    n = np.exp(rng.uniform(math.log(5e7), math.log(5e9), 5000))
    d = n * np.exp(rng.uniform(math.log(5), math.log(100), 5000))
    messages = []
    with pytest.raises(FitError):  # one iteration does not converge; progress came before
        fit_parametric(law_data(n, d, TRUE.loss(n, d)), max_iter=1, progress=messages.append)
    assert any("evaluated" in m and "of 4500 starts on 5,000 points" in m for m in messages)


def test_cli_says_how_rows_were_merged(tmp_path, capsys, chinchilla):
    path = tmp_path / "twice.csv"
    pd.DataFrame({"params": np.tile(chinchilla.params, 2), "tokens": np.tile(chinchilla.tokens, 2),
                  "loss": np.tile(chinchilla.loss, 2)}).to_csv(path, index=False)
    code, out, err = run_cli(capsys, "fit", path)
    assert code == 0, err
    assert "merged 490 runs into 245 points of distinct (N, D)" in out
    assert "exactly the per-row fit" in out


@pytest.fixture
def stacked_csv(tmp_path):
    """Two conditions on one (N, D) grid, and three learning rates in one of them."""
    rng = np.random.default_rng(2)
    n = np.exp(rng.uniform(math.log(5e7), math.log(5e9), 40))
    d = n * np.exp(rng.uniform(math.log(5), math.log(100), 40))
    frames = [pd.DataFrame({"params": n, "tokens": d, "loss": TRUE.loss(n, d) * scale,
                            "condition": name, "lr": 3e-4})
              for name, scale in (("raw_loss", 1.0), ("smoothed", 0.97))]
    path = tmp_path / "stacked.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path, n.size


def test_stacked_conditions_warn_and_where_filters(stacked_csv, capsys):
    path, size = stacked_csv
    code, out, err = run_cli(capsys, "fit", path, "--json")
    assert code == 0, err
    assert "40 (N, D) points appear in 80 runs with different losses" in err
    assert "'condition'" in err and "--where condition=raw_loss" in err
    assert "'lr'" not in err  # the same in every group: not what tells them apart
    assert json.loads(out)["repeats"]["varying"] == {"condition": "raw_loss, smoothed"}
    code, out, err = run_cli(capsys, "fit", path, "--json", "--where", "condition=raw_loss")
    assert code == 0, err
    assert "warning" not in err
    result = json.loads(out)
    assert result["n_points"] == size and result["rows_merged"] == 0
    assert result["E"] == pytest.approx(TRUE.E, rel=1e-3)
    # numbers match as numbers
    code, out, err = run_cli(capsys, "fit", path, "--json", "--where", "condition=smoothed",
                             "--where", "lr=0.0003")
    assert code == 0 and json.loads(out)["n_points"] == size


@pytest.mark.parametrize("where, needle", [
    ("nosuch=1", "no column 'nosuch'"),
    ("condition=other", "'condition' holds raw_loss, smoothed"),
    ("condition", "not COLUMN=VALUE"),
])
def test_where_mistakes_are_one_line(stacked_csv, capsys, where, needle):
    code, out, err = run_cli(capsys, "fit", stacked_csv[0], "--where", where)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_several_learning_rates_at_one_point_are_named(tmp_path, capsys):
    n = np.array([1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9] * 3)
    d = 20 * n
    lr = np.repeat([1e-4, 3e-4, 1e-3], 6)
    loss = TRUE.loss(n, d) * (1 + 0.02 * np.log10(lr / 3e-4) ** 2)
    path = tmp_path / "lr.csv"
    pd.DataFrame({"params": n, "tokens": d, "loss": loss,
                  "learning_rate": lr}).to_csv(path, index=False)
    code, out, err = run_cli(capsys, "fit", path, "--approach", "3")
    assert "6 (N, D) points appear in 18 runs" in err
    assert "'learning_rate'" in err and "--where learning_rate=0.0001" in err


def test_at_far_beyond_the_data_warns_with_decades(chinchilla, tmp_path, capsys):
    largest = float(chinchilla.compute.max())
    code, out, err = run_cli(capsys, "fit", CHINCHILLA_POINTS, "--json", "--at", largest * 1e4)
    assert code == 0, err
    assert json.loads(out)["allocation"]["decades_beyond_data"] == pytest.approx(4.0)
    assert "4.0 decades beyond the largest compute in the data" in err
    code, out, err = run_cli(capsys, "fit", CHINCHILLA_POINTS, "--at", largest * 5)
    assert code == 0 and "decades beyond" not in err  # within a decade: no warning


@pytest.mark.parametrize("argv", [
    ["model", "--params", "1e22"],
    ["model", "--params", "1e24"],
    ["plan", "--params", "1e30"],
])
def test_huge_sizes_answer_or_refuse_at_once(capsys, argv):
    started = time.perf_counter()
    code, out, err = run_cli(capsys, *argv)
    assert time.perf_counter() - started < 5  # once 246 s, over 300 s, and forever
    assert "Traceback" not in err
    if code != 0:
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    else:
        assert out.strip()
