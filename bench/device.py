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


class DeviceError(ValueError):
    """The device asked for is not one this machine has; the message names those it has."""


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def available_devices() -> list[str]:
    """The devices the benchmarks can run on here: ``cpu``, then ``cuda:0`` ... (and ``xpu``,
    ``mps`` where torch has them)."""
    devices = ["cpu"] + [f"cuda:{i}" for i in range(cuda_count())]
    for kind in ("xpu", "mps"):
        backend = getattr(torch, kind, None) or getattr(torch.backends, kind, None)
        try:
            if backend is not None and backend.is_available():
                devices.append(kind)
        except (AttributeError, RuntimeError):
            pass
    return devices


def resolve_device(requested: str | None) -> torch.device:
    """The torch device ``--device requested`` names (the best present when None or empty),
    with a CUDA index filled in; `DeviceError` when it is not a device, or not one here."""
    if not requested:
        device = best_device()
    else:
        try:
            device = torch.device(requested)
        except (RuntimeError, ValueError):
            raise DeviceError(f"--device {requested!r} is not a device; devices here: "
                              f"{', '.join(available_devices())}") from None
    if device.type == "cuda":
        count = cuda_count()
        if count == 0:
            raise DeviceError(f"--device {requested}: no CUDA GPU is visible on this machine; "
                              f"devices here: {', '.join(available_devices())}")
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= count:
            raise DeviceError(f"--device {requested}: this machine has {count} CUDA GPU(s); "
                              f"devices here: {', '.join(available_devices())}")
        return torch.device("cuda", index)
    if device.type != "cpu" and device.type not in available_devices():
        raise DeviceError(f"--device {requested}: no {device.type} device here; devices here: "
                          f"{', '.join(available_devices())}")
    return device


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
