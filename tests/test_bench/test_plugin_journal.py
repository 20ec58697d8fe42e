"""Nothing measured is lost: the results folder is checked before the first case, every
finished case is journalled, and an interrupted or failed run keeps what finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.records import append_journal, read_journal, start_journal
from scaling.records.load import load_results

REPO = Path(__file__).resolve().parents[2]
ONE_CASE = "gemm-bf16-rr-torch-256x256x256"

# Two benchmark cases outside bench/ (so the marker makes them benchmark cases): the first
# finishes, the second is interrupted (Ctrl-C) in its first round.
INTERRUPTED_RUN = '''
import pytest

from scaling.schema import make_record

pytestmark = pytest.mark.flopcast_benchmark


def test_a_finishes(benchmark, flopcast_session):
    benchmark.pedantic(lambda: sum(range(100)), rounds=3, iterations=1)
    benchmark.extra_info["flopcast"] = make_record(
        "fit", name="finished", kernel="fit", impl="flopcast", dtype="fp64", shape={"points": 1},
        flops=0, bytes=0, device="cpu", time_s=1.0)


def test_b_is_interrupted(benchmark, flopcast_session):
    def stop():
        raise KeyboardInterrupt
    benchmark.pedantic(stop, rounds=3, iterations=1)
'''

# A plugin that makes the final results file fail to write, as a full disk would.
DISK_FULL = '''
import errno

import bench.plugin


def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


bench.plugin.write_section = full
'''


def run_pytest(*args, cwd=REPO, env=None, timeout=300):
    env = dict(os.environ, PYTHONHASHSEED="0", **(env or {}))
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_an_unwritable_results_folder_stops_the_run_before_the_first_case(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_pytest("bench/bench_kernels.py", "--benchmark", "-k", ONE_CASE,
                      "--power-window", "0", "--results-dir", str(blocker / "results"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"cannot write into the results folder {blocker / 'results'}" in out
    assert "Traceback" not in out and "[1/1]" not in out  # no case ran


def test_a_failed_final_write_leaves_the_finished_records_in_the_journal(tmp_path):
    (tmp_path / "flopcast_disk_full.py").write_text(DISK_FULL)
    results = tmp_path / "results"
    proc = run_pytest("bench/bench_kernels.py", "--benchmark", "-k", ONE_CASE,
                      "--power-window", "0", "--results-dir", str(results),
                      "-p", "flopcast_disk_full", env={"PYTHONPATH": str(tmp_path)})
    out = proc.stdout + proc.stderr
    assert "No space left on device" in out and "Traceback" not in out
    [journal] = results.glob("flopcast-*.journal.jsonl")
    assert f"the 1 finished records are safe in {journal}" in out
    assert not list(results.glob("*.json"))
    [record] = read_journal(journal)
    assert record["name"] == ONE_CASE and record["time_s"] > 0
    assert record["tflops"] == record["flops"] / record["time_s"] / 1e12


def test_ctrl_c_in_a_case_s_first_round_keeps_the_finished_cases(tmp_path):
    cases = tmp_path / "test_interrupted_run.py"
    cases.write_text(INTERRUPTED_RUN)
    results = tmp_path / "results"
    proc = run_pytest(str(cases), "--benchmark", "--power-window", "0",
                      "--results-dir", str(results), "--benchmark-json", str(tmp_path / "pb.json"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out  # pytest's "interrupted"
    assert "min() arg" not in out and "INTERNALERROR" not in out
    [path] = results.glob("flopcast-*.json")
    assert "1 records written to" in out and "interrupted" in out
    df = load_results(path)
    assert list(df["name"]) == ["finished"]
    assert not list(results.glob("*.journal.jsonl"))  # the file is whole: no journal left
    pb = json.loads((tmp_path / "pb.json").read_text())
    assert [b["name"] for b in pb["benchmarks"]] == ["test_a_finishes"]
    assert pb["flopcast"]["run_id"] == json.loads(path.read_text())["flopcast"]["run_id"]


def test_the_journal_keeps_whole_lines_only(tmp_path):
    journal = start_journal(tmp_path / "results", "0123456789abcdef" * 2)
    assert journal.exists() and journal.read_text() == ""
    append_journal(journal, [{"name": "a", "time_s": 1.0}, {"name": "b", "x": float("nan")}])
    with open(journal, "a") as f:
        f.write('{"name": "c", "ti')  # the process died mid-line
    assert read_journal(journal) == [{"name": "a", "time_s": 1.0}, {"name": "b", "x": None}]
    assert read_journal(tmp_path / "missing.jsonl") == []
