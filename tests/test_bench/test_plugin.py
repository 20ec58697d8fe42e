"""`python -m pytest --benchmark` end to end, in a subprocess, on this machine's CPU."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from scaling.records.load import load_results

REPO = Path(__file__).resolve().parents[2]
# Three GEMM sizes (a throughput curve needs three) and one attention case.
SELECT = "gemm-bf16-rr-torch or attention-fwd-bf16-sdpa-flash-1x8x8x256x64"
GEMMS = {f"gemm-bf16-rr-torch-{n}x{n}x{n}" for n in (256, 512, 1024)}
ONE_CASE = "gemm-bf16-rr-torch-256x256x256"


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
                      "--benchmark-json", str(tmp / "pb.json"),
                      "--upload", f"sqlite:///{tmp / 'shared.db'}")
    return tmp, proc


def test_benchmark_run_writes_a_loadable_results_file(bench_run):
    tmp, proc = bench_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = list((tmp / "results").glob("flopcast-*.json"))
    assert len(files) == 1
    df = load_results(files[0])
    assert set(df["name"]) == GEMMS | {"attention-fwd-bf16-sdpa-flash-1x8x8x256x64"}
    assert (df["device"] == "cpu").all()
    assert (df["time_s"] > 0).all() and (df["tflops"] > 0).all()
    gemm = df[df["name"] == ONE_CASE].iloc[0]
    assert gemm["flops"] == 2 * 256**3
    assert gemm["tflops"] == pytest.approx(gemm["flops"] / gemm["time_s"] / 1e12)
    assert gemm["rel_error"] < 1e-2
    # each record says whether it is a baseline and, for SDPA, which backend was pinned
    attn = df[df["kernel"] == "attention"].iloc[0]
    assert bool(gemm["baseline"]) and bool(attn["baseline"])
    assert attn["impl"] == "sdpa-flash" and attn["backend"] == "FLASH_ATTENTION"
    assert attn["speedup_vs_baseline"] == pytest.approx(1.0)
    assert attn["baseline_impl"] == "sdpa-flash"
    # power: measured where this machine allows it, else null with the reason
    assert gemm["telemetry_backend"] in ("rapl", "none")
    if gemm["telemetry_backend"] == "none":
        assert gemm["energy_j"] is None or gemm["energy_j"] != gemm["energy_j"]
        assert gemm["power_missing_reason"]


def test_each_case_prints_one_line_of_its_own(bench_run):
    """One progress line per case, each a whole line (not glued to pytest's dots or percent,
    which the run does not print), with its figures and times in their units."""
    _, proc = bench_run
    lines = proc.stdout.splitlines()
    assert "flopcast: benchmarking on cpu" in proc.stdout
    progress = [line for line in lines if re.match(r"\[\d+/4\] \S+: ", line)]
    assert len(progress) == proc.stdout.count("/4] ") == 4
    gemm = next(line for line in progress if ONE_CASE in line)
    figures = r": [\d.]+ TFLOP/s, [\d.]+ (ns|us|ms|s)  \(\d:\d\d elapsed, ~\d:\d\d left\)$"
    assert re.search(figures, gemm), gemm
    assert "[100%]" not in proc.stdout and "PASSED" not in proc.stdout
    assert not any(re.fullmatch(r"\S+\.py [.sF]*", line.strip()) for line in lines)


def test_the_run_ends_with_its_summary_then_the_results_file(bench_run):
    tmp, proc = bench_run
    lines = proc.stdout.splitlines()
    said = "flopcast: 4 records written to "
    written = [i for i, line in enumerate(lines) if line.startswith(said)]
    assert len(written) == 1
    path = Path(lines[written[0]].removeprefix(said))
    assert path.parent == tmp / "results" and path.is_file()
    # after it only the upload's line and pytest's own last line
    assert lines[written[0] + 1].startswith("flopcast: upload: ")
    assert lines[written[0] + 2].startswith("=") and len(lines) == written[0] + 3
    summary = lines.index(next(line for line in lines if "flopcast summary" in line))
    assert summary < written[0]
    tables = "\n".join(lines[summary + 1:written[0]])
    assert "gemm: median time per call" in tables and "attention: median time per call" in tables
    assert re.search(r"1024x1024x1024\s+torch\s+[\d.]+ (ns|us|ms|s)\s+[\d.]+", tables), tables


def test_pytest_benchmark_s_table_is_narrow_and_grouped(bench_run):
    _, proc = bench_run
    headers = [line.split() for line in proc.stdout.splitlines() if line.startswith("Name (time")]
    assert len(headers) == 2  # one table per family, pass, dtype: gemm fwd bf16, attention fwd bf16
    for header in headers:
        assert header[4:] == ["Median", "IQR", "Rounds"], header
    assert "benchmark 'gemm fwd bf16': 3 tests" in proc.stdout
    assert "(inf)" not in proc.stdout


def test_the_user_s_choice_of_columns_wins_and_quiet_keeps_progress(tmp_path):
    proc = run_pytest("bench/bench_kernels.py", "-q", "--benchmark", "-k", ONE_CASE,
                      "--benchmark-columns", "min,max", "--power-window", "0",
                      "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [header] = [line.split() for line in proc.stdout.splitlines() if line.startswith("Name (time")]
    assert header[4:] == ["Min", "Max"]
    assert re.search(rf"^\[1/1\] {ONE_CASE}: .* TFLOP/s", proc.stdout, re.M)
    assert re.search(r"^flopcast: 1 records written to \S+\.json$", proc.stdout, re.M)


# The command a user types, with the results folder as a separate argument (which pytest reads
# as a test path before the plugin is loaded), from the repository's root and from tests/, into
# folders inside and outside the repository that already exist.
WHERE = {"root, outside": (".", False), "tests, outside": ("tests", False),
         "root, inside": (".", True), "tests, inside": ("tests", True)}


@pytest.mark.parametrize("where", WHERE)
def test_benchmark_cases_are_found_wherever_pytest_starts(where, tmp_path):
    cwd, inside = WHERE[where]
    results = Path(tempfile.mkdtemp(dir=REPO / "results")) if inside else tmp_path / "results"
    results.mkdir(exist_ok=True)
    try:
        proc = run_pytest("--benchmark", "--results-dir", str(results), "-k", ONE_CASE,
                          "--power-window", "0", cwd=REPO / cwd)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "1 passed" in proc.stdout
        [written] = results.glob("flopcast-*.json")
        assert list(load_results(written)["name"]) == [ONE_CASE]
    finally:
        if inside:
            shutil.rmtree(results)


def test_tests_import_their_helpers_wherever_the_rootdir_is(tmp_path):
    """With the rootdir (and so pyproject.toml's settings) elsewhere, the tests still import
    their shared helpers: tests/ is a package, imported from the repository's root."""
    proc = run_pytest("--rootdir", str(tmp_path), str(REPO / "tests" / "test_scaling" / "cli" / "test_cli_results.py"),
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"rootdir: {tmp_path}" in proc.stdout and " passed" in proc.stdout


def test_pytest_benchmark_json_carries_the_same_run(bench_run):
    tmp, proc = bench_run
    doc = json.loads((tmp / "pb.json").read_text())
    section = doc["flopcast"]
    by_test = {r["test"]: r for r in section["records"]}
    assert len(doc["benchmarks"]) == len(by_test) == 4
    for bench in doc["benchmarks"]:
        # pytest-benchmark's own median is the device-correct time flopcast records
        assert bench["stats"]["median"] == pytest.approx(by_test[bench["fullname"]]["time_s"])
        assert bench["extra_info"]["tflops"] > 0
    saved = next((tmp / "storage").rglob("0001_base.json"))
    assert json.loads(saved.read_text())["flopcast"]["run_id"] == section["run_id"]
    # loading all three copies of the run counts it once
    with pytest.warns(UserWarning, match="counted once"):
        df = load_results([tmp / "results", tmp / "pb.json", saved])
    assert df["run_id"].nunique() == 1 and len(df) == 4


def test_benchmark_compare_against_the_saved_run(bench_run):
    tmp, _ = bench_run
    proc = run_pytest("bench/bench_kernels.py", "--benchmark", "-k", ONE_CASE,
                      "--power-window", "0", "--results-dir", str(tmp / "results2"),
                      "--benchmark-storage", str(tmp / "storage"), "--benchmark-compare", "0001")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0001_base" in proc.stdout


def test_without_the_flag_cases_are_skipped():
    proc = run_pytest("bench/bench_kernels.py", "-k", ONE_CASE, "-rs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run with `python -m pytest --benchmark`" in proc.stdout


def test_upload_lands_the_same_records_in_the_database(bench_run):
    from scaling.records.store import read_records

    tmp, proc = bench_run
    assert "upload: 1 uploaded" in proc.stdout
    stored = read_records(f"sqlite:///{tmp / 'shared.db'}")
    local = load_results(tmp / "results")
    assert sorted(stored["name"]) == sorted(local["name"])
    assert stored["time_s"].sum() == pytest.approx(local["time_s"].sum())


def test_failed_upload_warns_and_keeps_the_file(tmp_path):
    proc = run_pytest("bench/bench_kernels.py", "--benchmark", "-k", ONE_CASE,
                      "--power-window", "0", "--results-dir", str(tmp_path / "results"),
                      "--upload", "postgresql://flopcast:s3cret@127.0.0.1:1/flopcast")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "upload to the results database failed" in proc.stdout
    assert "s3cret" not in proc.stdout + proc.stderr
    assert len(load_results(tmp_path / "results")) == 1


def test_a_profile_from_this_machine_s_records(bench_run):
    """bench -> results -> scaling, for real: the CPU records make a measured profile whose
    GEMM curve passes through the measured points."""
    from scaling.hardware.load import load_profile

    tmp, _ = bench_run
    df = load_results(tmp / "results")
    profile = load_profile(results=df)
    assert profile.label == "measured"
    gemms = df[df["kernel"] == "gemm"].sort_values("flops")
    rising = bool((gemms["tflops"].diff().dropna() >= 0).all())
    for _, row in gemms.iterrows():
        n = int(row["shape_m"])
        estimate = profile.matmul_tflops(n, n, n, "bf16")
        assert estimate.label == "measured"
        assert estimate.lo <= estimate.value <= estimate.hi
        # The interval is the fit's measured / fitted spread: every measured point lies in it,
        # however poorly a saturating curve describes this machine (a CPU's rate can fall with
        # size once the operands leave its caches).
        assert estimate.lo * (1 - 1e-9) <= row["tflops"] <= estimate.hi * (1 + 1e-9)
        if rising:  # the shape the curve describes: within a factor 2 of each noisy point
            assert 0.5 < estimate.value / row["tflops"] < 2.0


def test_a_case_without_power_says_so_in_its_record():
    """A case that measures no power (the fit benchmark, say) gets null power fields and the
    reason, never missing keys."""
    from types import SimpleNamespace

    from bench.plugin import records_from_benchmarks
    from bench.power import POWER_FIELDS

    stats = SimpleNamespace(median=0.5, min=0.4, mean=0.5, stddev=0.01, iqr=0.02, rounds=5)
    meta = SimpleNamespace(
        name="test_fit", fullname="bench/bench_fit.py::test_fit", iterations=1, stats=stats,
        fixture=SimpleNamespace(has_error=False),
        extra_info={"flopcast": {"kernel": "fit", "impl": "flopcast", "dtype": "fp64",
                                 "shape": {"points": 240}, "flops": 0, "bytes": 0}})
    [record] = records_from_benchmarks([meta], "cpu")
    assert record["time_s"] == 0.5 and record["tflops"] is None and record["device"] == "cpu"
    assert all(key in record for key in POWER_FIELDS)
    assert record["energy_j"] is None
    assert record["power_missing_reason"] == "power not measured for this case"
    # pytest-benchmark's own clock (perf_counter) timed it: the record says so.
    assert (record["timing_method"], record["l2_flush"]) == ("cpu-perf-counter", False)
    from bench import plugin, timing

    assert plugin.CPU_PERF_COUNTER == timing.CPU_PERF_COUNTER
    assert record["sustained_tflops"] is None
