"""``--power-window`` and ``--device`` refused in one line when they cannot work: before a
case runs, never an endless window or an INTERNALERROR traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.device import DeviceError, available_devices, resolve_device
from bench.plugin import window_seconds

REPO = Path(__file__).resolve().parents[2]


def run_pytest(*args, cwd=REPO, timeout=120):
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "-1", "-0.5", "abc", ""])
def test_power_window_refuses_what_is_not_a_finite_non_negative_time(text):
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        window_seconds(text)


@pytest.mark.parametrize("text, seconds", [("0", 0.0), ("5", 5.0), ("0.05", 0.05), ("1e1", 10.0)])
def test_power_window_accepts_seconds(text, seconds):
    assert window_seconds(text) == seconds


def test_power_window_nan_is_one_line_at_option_parsing(tmp_path):
    proc = run_pytest("bench/bench_kernels.py", "--benchmark", "--power-window", "nan",
                      "--results-dir", str(tmp_path / "results"), timeout=60)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert "argument --power-window: 'nan' is not a finite, non-negative number" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()  # stopped before anything ran


@pytest.mark.parametrize("device", ["nosuch", "meta"] + ([] if torch.cuda.is_available()
                                                         else ["cuda", "cuda:0"]))
def test_a_device_not_here_is_one_line_naming_those_that_are(tmp_path, device):
    proc = run_pytest("bench/bench_kernels.py", "--benchmark", "--device", device,
                      "--results-dir", str(tmp_path / "results"), timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out
    assert "INTERNALERROR" not in out and "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("ERROR: flopcast:")]
    assert len(errors) == 1, out
    assert f"--device {device}" in errors[0] or f"--device {device!r}" in errors[0]
    assert "devices here: " + ", ".join(available_devices()) in errors[0]
    assert not (tmp_path / "results").exists()


def test_resolve_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is visible.*devices here: cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="is not a device"):
        resolve_device("nosuch")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_resolve_device_with_two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match="has 2 CUDA GPU.*devices here: cpu, cuda:0, cuda:1"):
        resolve_device("cuda:2")
