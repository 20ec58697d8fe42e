"""`pytest --benchmark` end to end, in a subprocess, on this machine's CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.records import load_results

REPO = Path(__file__).resolve().parents[1]
SELECT = "gemm-bf16-rr-torch-256x256x256 or attention-fwd-bf16-torch-1x8x8x256x64"


def run_pytest(*args, cwd=REPO, timeout=240):
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    proc = run_pytest("bench/bench_kernels.py", "--benchmark", "--sweep", "quick", "-k", SELECT,
                      "--power-window", "0.05", "--results-dir", str(tmp / "results"),
                      "--benchmark-storage", str(tmp / "storage"), "--benchmark-save", "base",
                      "--benchmark-json", str(tmp / "pb.json"))
    return tmp, proc


def test_benchmark_run_writes_a_loadable_results_file(bench_run):
    tmp, proc = bench_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = list((tmp / "results").glob("flopcast-*.json"))
    assert len(files) == 1
    df = load_results(files[0])
    assert set(df["name"]) == {"gemm-bf16-rr-torch-256x256x256",
                               "attention-fwd-bf16-torch-1x8x8x256x64"}
    assert (df["device"] == "cpu").all()
    assert (df["time_s"] > 0).all() and (df["tflops"] > 0).all()
    gemm = df[df["kernel"] == "gemm"].iloc[0]
    assert gemm["flops"] == 2 * 256**3
    assert gemm["tflops"] == pytest.approx(gemm["flops"] / gemm["time_s"] / 1e12)
    assert gemm["rel_error"] < 1e-2
    # power: measured where this machine allows it, else null with the reason
    assert gemm["telemetry_backend"] in ("rapl", "none")
    if gemm["telemetry_backend"] == "none":
        assert gemm["energy_j"] is None or gemm["energy_j"] != gemm["energy_j"]
        assert gemm["power_missing_reason"]


def test_progress_lines_and_skips_are_visible(bench_run):
    _, proc = bench_run
    assert "flopcast: benchmarking on cpu" in proc.stdout
    assert "[1/" in proc.stdout and "TFLOP/s" in proc.stdout
    assert "records written to" in proc.stdout


def test_pytest_benchmark_json_carries_the_same_run(bench_run):
    tmp, proc = bench_run
    doc = json.loads((tmp / "pb.json").read_text())
    pb = {b["extra_info"]["kernel"]: b for b in doc["benchmarks"]}
    section = doc["flopcast"]
    record = next(r for r in section["records"] if r["kernel"] == "gemm")
    # pytest-benchmark's own median is the device-correct time flopcast records
    assert pb["gemm"]["stats"]["median"] == pytest.approx(record["time_s"])
    assert pb["gemm"]["extra_info"]["tflops"] > 0
    saved = next((tmp / "storage").rglob("0001_base.json"))
    assert json.loads(saved.read_text())["flopcast"]["run_id"] == section["run_id"]
    # loading all three copies of the run counts it once
    with pytest.warns(UserWarning, match="counted once"):
        df = load_results([tmp / "results", tmp / "pb.json", saved])
    assert df["run_id"].nunique() == 1 and len(df) == 2


def test_benchmark_compare_against_the_saved_run(bench_run):
    tmp, _ = bench_run
    proc = run_pytest("bench/bench_kernels.py", "--benchmark", "-k", "gemm-bf16-rr-torch-256x256x256",
                      "--power-window", "0", "--results-dir", str(tmp / "results2"),
                      "--benchmark-storage", str(tmp / "storage"), "--benchmark-compare", "0001")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0001_base" in proc.stdout


def test_without_the_flag_cases_are_skipped():
    proc = run_pytest("bench/bench_kernels.py", "-k", "gemm-bf16-rr-torch-256x256x256", "-rs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run with `pytest --benchmark`" in proc.stdout
