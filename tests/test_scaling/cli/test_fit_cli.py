"""`flopcast fit`: JSON keys, text output, plots, saved laws, and one-line errors."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from scaling.cli.main import main
from scaling.laws.forms import law_presets, load_law

TRUE = law_presets()["epoch-2024"]


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    """60 runs from the Epoch law with 0.3% noise, in a CSV with the Chinchilla column names
    (tokens derived from the compute column)."""
    rng = np.random.default_rng(11)
    n = np.exp(rng.uniform(math.log(5e7), math.log(1e10), 60))
    d = n * np.exp(rng.uniform(math.log(2), math.log(200), 60))
    loss = TRUE.loss(n, d) * np.exp(rng.normal(0, 0.003, 60))
    path = tmp_path_factory.mktemp("fit") / "runs.csv"
    pd.DataFrame({"Model Size": n, "Training FLOP": 6 * n * d, "loss": loss}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def isoflop_parquet(tmp_path_factory):
    rows = []
    for c in (1e18, 1e19, 1e20, 1e21):
        n_opt = TRUE.allocate(c).params
        for f in np.exp(np.linspace(-1.2, 1.2, 7)):
            rows.append({"params": n_opt * f, "compute": c,
                         "val_loss": TRUE.loss(n_opt * f, c / (6 * n_opt * f))})
    path = tmp_path_factory.mktemp("fit") / "iso.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def run_cli(capsys, *argv):
    code = main(["fit", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_the_documented_keys(runs_csv, capsys, tmp_path):
    law_path = tmp_path / "law.json"
    code, out, err = run_cli(capsys, runs_csv, "--json", "--bootstrap", "20", "--seed", "3",
                             "--at", "10x-llama3", "--save", law_path)
    assert code == 0, err
    result = json.loads(out)
    for key in ("E", "A", "B", "alpha", "beta", "a", "b", "objective", "n_points", "seconds",
                "intervals", "allocation"):
        assert key in result, key
    assert result["n_points"] == 60
    assert result["E"] == pytest.approx(TRUE.E, rel=0.03)
    assert result["a"] + result["b"] == pytest.approx(1.0)
    assert result["a"] == pytest.approx(result["beta"] / (result["alpha"] + result["beta"]))
    alloc = result["allocation"]
    assert set(alloc) >= {"compute_flops", "params", "tokens", "tokens_per_param", "loss",
                          "intervals"}
    assert alloc["compute_flops"] == 3.8e26
    assert 6 * alloc["params"] * alloc["tokens"] == pytest.approx(3.8e26)
    lo, hi = alloc["intervals"]["params"]
    assert lo < alloc["params"] < hi
    lo, hi = result["intervals"]["alpha"]
    assert lo <= result["alpha"] <= hi
    assert result["data"]["columns"]["params"] == "Model Size"
    saved = load_law(str(law_path))
    assert saved.alpha == result["alpha"] and len(saved.bootstrap) == 20 - result["bootstrap_failed"]
    assert saved.allocate(3.8e26).params == pytest.approx(alloc["params"])


def test_text_output_and_plot(runs_csv, capsys, tmp_path):
    png = tmp_path / "fit.png"
    code, out, err = run_cli(capsys, runs_csv, "--at", "llama3", "--plot", png,
                             "--bootstrap", "10")
    assert code == 0, err
    assert "alpha" in out and "compute-optimal at 3.8e25 FLOPs" in out and "97.5%" in out
    assert "e+" not in out.split("compute-optimal")[1]  # params and tokens in T, B, M
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_approach_2_json_and_plot(isoflop_parquet, capsys, tmp_path):
    png = tmp_path / "iso.png"
    code, out, err = run_cli(capsys, isoflop_parquet, "--approach", "2", "--json", "--at",
                             "3.8e26", "--plot", png)
    assert code == 0, err
    result = json.loads(out)
    assert result["approach"] == 2 and result["E"] is None
    assert result["a"] == pytest.approx(TRUE.optimal_exponents()[0], abs=0.01)
    assert len(result["budgets"]) == 4
    assert result["allocation"]["loss"] is None
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["{missing}"], "no such file"),
    (["{csv}", "--at", "1e40"], "outside 1e+18..1e+30"),
    (["{csv}", "--at", "gpt5"], "unknown compute budget"),
    (["{csv}", "--columns", "params"], "FIELD=COLUMN"),
    (["{csv}", "--columns", "loss=val"], "no column 'val'"),
    (["{csv}", "--drop-highest", "60"], "cannot drop the 60 highest-loss runs"),
    (["{csv}", "--approach", "2", "--budget-tolerance", "1e-9"], "has 1 run(s)"),
    (["{csv}", "--approach", "2", "--budget-tolerance", "9"], "one compute budget"),
    (["{bad}"], "column 'loss' row 3"),
])
def test_errors_are_one_line_on_stderr(runs_csv, tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("params,tokens,loss\n1e8,1e9,3\n2e8,2e9,2.9\n3e8,3e9,nan\n")
    argv = [a.format(csv=runs_csv, missing=tmp_path / "none.csv", bad=bad) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flopcast fit: error:")
    assert message in lines[0]


def test_the_installed_command_runs(runs_csv):
    proc = subprocess.run([sys.executable, "-m", "scaling.cli.main", "fit", str(runs_csv), "--at",
                           "nonsense"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_compute_tokens_loss_csv_derives_params(tmp_path, capsys):
    """Without a params column, N = C / (6 D) (the C = 6 N D convention)."""
    from scaling.laws.points import load_law_data

    n = np.array([1e8, 4e8, 1.6e9, 2e8, 8e8, 3.2e9, 1.2e8])
    d = np.array([2e9, 8e9, 3e10, 1e10, 4e9, 6e10, 5e10])
    path = tmp_path / "ctl.csv"
    pd.DataFrame({"compute": 6 * n * d, "tokens": d, "loss": TRUE.loss(n, d)}).to_csv(path, index=False)
    data = load_law_data(path)
    np.testing.assert_allclose(data.params, n, rtol=1e-12)
    assert data.columns["params"] == "compute / (6 D)"


def test_approach_2_skips_a_thin_budget_with_a_warning(tmp_path, capsys):
    rows = []
    for c in (1e18, 1e19, 1e20):
        n_opt = TRUE.allocate(c).params
        for f in np.exp(np.linspace(-1.2, 1.2, 7)):
            rows.append({"params": n_opt * f, "compute": c,
                         "loss": TRUE.loss(n_opt * f, c / (6 * n_opt * f))})
    rows += [{"params": 1e10, "compute": 1e22, "loss": 2.0},
             {"params": 2e10, "compute": 1e22, "loss": 1.99}]
    path = tmp_path / "thin.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    code, out, err = run_cli(capsys, path, "--approach", "2", "--json")
    assert code == 0, err
    assert "skipped the budget of 1e+22 FLOPs: 2 run(s)" in err
    result = json.loads(out)
    assert len(result["budgets"]) == 3 and result["skipped_budgets"][0]["runs"] == 2
