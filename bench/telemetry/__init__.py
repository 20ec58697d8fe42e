"""Telemetry: how much energy a device used over a window of time, and in what state.

`open_telemetry(device)` chooses the backend: NVML for CUDA devices (`bench.telemetry.nvml`),
RAPL for the CPU (`bench.telemetry.rapl`), else ``none``. The interface every backend
implements, the `Window` a measurement returns and the sampler thread are in
`bench.telemetry.base` (re-exported here), which the backends import; nothing imports this
package module back, so there is no cycle::

    telemetry = open_telemetry("cuda:0")
    with telemetry.window() as measured:
        run_the_kernel_back_to_back()
    print(measured.window.energy_j, measured.window.avg_power_w)
    telemetry.close()
"""

from __future__ import annotations

from pathlib import Path

from bench.telemetry import nvml, rapl
from bench.telemetry.base import (CLOCK_EVENT_REASONS, DEFAULT_INTERVAL_S, DEFAULT_RAPL_ROOT,
                                  POWER_OR_HEAT_REASONS, SAMPLER_JOIN_TIMEOUT_S, Measured,
                                  Sample, Sampler, Telemetry, Unavailable, Window,
                                  integrate_power, reason_names, summarise)

__all__ = [
    "CLOCK_EVENT_REASONS", "DEFAULT_INTERVAL_S", "DEFAULT_RAPL_ROOT", "POWER_OR_HEAT_REASONS",
    "SAMPLER_JOIN_TIMEOUT_S", "Measured", "Sample", "Sampler", "Telemetry", "Unavailable",
    "Window", "gpu_inventory", "integrate_power", "open_telemetry", "parse_device",
    "reason_names", "summarise",
]


def parse_device(device) -> tuple[str, int | None]:
    """``"cuda:1"`` or ``torch.device("cuda", 1)`` -> ``("cuda", 1)``; ``"cpu"`` ->
    ``("cpu", None)``."""
    kind, _, index = str(device).partition(":")
    return kind, int(index) if index else None


def open_telemetry(device, *, interval_s: float = DEFAULT_INTERVAL_S,
                   rapl_root: Path | str = DEFAULT_RAPL_ROOT) -> Telemetry:
    """The best telemetry for ``device``: NVML for CUDA devices, RAPL for the CPU, else none.

    Never raises for a missing or unreadable backend: it returns the ``none`` backend with
    the reason. ``rapl_root`` is the powercap folder (tests point it at a fake tree).
    """
    kind, index = parse_device(device)
    try:
        if kind == "cuda":
            return nvml.NvmlTelemetry.open(index, interval_s=interval_s)
        if kind == "cpu":
            return rapl.RaplTelemetry.open(Path(rapl_root), interval_s=interval_s)
    except Unavailable as exc:
        return Telemetry(str(exc))
    return Telemetry(f"no telemetry backend for device type '{kind}'")


def gpu_inventory(device, *, rapl_root: Path | str = DEFAULT_RAPL_ROOT) -> dict:
    """The results file's machine fields that need NVML.

    ``gpus``: one dict per visible CUDA device (index, name, uuid, pci_bus_id, memory_bytes,
    compute_capability, power_limit_w, max_sm_clock_mhz, max_mem_clock_mhz; None where
    unknown), empty for CPU runs; ``driver``: the NVIDIA driver version or None;
    ``telemetry_backend`` and ``telemetry_reason``: what `open_telemetry(device)` chooses.
    """
    telemetry = open_telemetry(device, rapl_root=rapl_root)
    telemetry.close()
    gpus, driver = nvml.inventory(with_gpus=parse_device(device)[0] == "cuda")
    return {"gpus": gpus, "driver": driver, "telemetry_backend": telemetry.backend,
            "telemetry_reason": telemetry.reason}
