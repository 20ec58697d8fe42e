"""Where the benchmarks run, and what that machine is.

`best_device()` picks CUDA when present, else the CPU (a real device for the suite: its timings
are real CPU timings and are labelled so). `machine_info(device)` gives the `machine` section of
a results file (results/README.md).
"""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata

import torch

from bench import telemetry


def best_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo on Linux, else what the platform module says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(device: torch.device | str) -> dict:
    """The ``machine`` section of a results file for a run on ``device``."""
    device = torch.device(device)
    gpus = telemetry.gpu_inventory(device)
    return {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "flopcast": _version("flopcast"),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "cuda": torch.version.cuda,
        "driver": gpus.get("driver"),
        "device": device.type,
        "device_name": device_name(device),
        "device_count": torch.cuda.device_count() if device.type == "cuda" else 0,
        "gpus": gpus.get("gpus", []),
        "telemetry_backend": gpus.get("telemetry_backend", "none"),
        "telemetry_reason": gpus.get("telemetry_reason"),
    }
