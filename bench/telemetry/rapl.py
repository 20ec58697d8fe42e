"""The ``rapl`` telemetry backend: CPU package energy from Linux powercap.

Each CPU package is a zone ``<root>/intel-rapl:N`` (AMD Zen CPUs use the same names) whose
``energy_uj`` counts microjoules and wraps to zero after ``max_energy_range_uj`` (Linux
Documentation/power/powercap/powercap.rst). Energy over a window is the sum over packages of
each counter's increase, with wrap-around undone; a sampler thread reads the counters every
``interval_s`` so that power between readings gives the maximum, and so that a long window
still sees every wrap. Sub-zones (``intel-rapl:N:M``: cores, uncore, DRAM) are parts of or
beside their package and are not added; ``psys`` (whole platform) zones overlap the packages
and are skipped.

On most kernels ``energy_uj`` is readable by root only (the fix for CVE-2020-8694, Platypus);
then the backend is ``none`` and says so. A counter that goes backwards cannot be told from a
wrap, so it is read as one.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from bench.telemetry.base import (DEFAULT_INTERVAL_S, Sample, Sampler, Telemetry, Unavailable,
                                  Window, summarise)

PERMISSION_HINT = "energy_uj is root-only on kernels patched for CVE-2020-8694"


def read_int(path: Path) -> int:
    return int(path.read_text().strip())


def package_zones(root: Path) -> list[Path]:
    """The top-level package zones under a powercap root, in order."""
    zones = []
    for zone in sorted(root.glob("intel-rapl:*")):
        if not re.fullmatch(r"intel-rapl:\d+", zone.name):
            continue
        name_file = zone / "name"
        name = name_file.read_text().strip() if name_file.is_file() else "package"
        if name.startswith("package"):
            zones.append(zone)
    return zones


class RaplCounter:
    """Joules used since creation, summed over zones, with each zone's wrap-around undone.

    Thread-safe: the sampler thread and the window's end both read it.
    """

    def __init__(self, zones: list[Path]):
        self._files = [zone / "energy_uj" for zone in zones]
        self._ranges_uj = [read_int(zone / "max_energy_range_uj") for zone in zones]
        self._last_uj = [read_int(f) for f in self._files]
        self._total_uj = 0
        self._lock = threading.Lock()

    def read_j(self) -> float:
        with self._lock:
            for i, path in enumerate(self._files):
                now_uj = read_int(path)
                delta_uj = now_uj - self._last_uj[i]
                if delta_uj < 0:  # wrapped past max_energy_range_uj back to zero
                    delta_uj += self._ranges_uj[i]
                self._total_uj += delta_uj
                self._last_uj[i] = now_uj
            return self._total_uj / 1e6


class RaplTelemetry(Telemetry):
    """CPU package energy over a window, from powercap's RAPL counters."""

    backend = "rapl"

    @classmethod
    def open(cls, root: Path, *, interval_s: float = DEFAULT_INTERVAL_S):
        try:
            zones = package_zones(root)
        except OSError as exc:
            raise Unavailable(f"RAPL not readable: {exc}") from None
        if not zones:
            raise Unavailable(f"RAPL not available: no intel-rapl package zones in {root}")
        try:
            RaplCounter(zones).read_j()
        except PermissionError as exc:
            raise Unavailable(f"RAPL not readable: permission denied on {exc.filename} "
                              f"({PERMISSION_HINT})") from None
        except (OSError, ValueError) as exc:
            raise Unavailable(f"RAPL not readable: {exc}") from None
        return cls(zones, interval_s=interval_s)

    def __init__(self, zones: list[Path], *, interval_s: float = DEFAULT_INTERVAL_S):
        super().__init__()
        self.zones, self._interval_s = zones, interval_s

    def _start(self) -> None:
        self._fault, self._counter, last = None, None, [None]
        try:
            self._counter = counter = RaplCounter(self.zones)
        except (OSError, ValueError) as exc:
            self._fault = f"RAPL read failed at window start: {exc}"

            def sample(t_s):
                return Sample(t_s)
        else:
            def sample(t_s):
                """Power is the mean since the previous reading; the first has none."""
                energy_j = counter.read_j()
                power_w = None
                if last[0] is not None and t_s > last[0][0]:
                    power_w = (energy_j - last[0][1]) / (t_s - last[0][0])
                last[0] = (t_s, energy_j)
                return Sample(t_s, power_w=power_w)
        self._sampler = Sampler(sample, self._interval_s, self._t0)

    def _stop(self, time_s: float) -> Window:
        fault, energy_j = self._fault, None
        if fault is None:
            try:
                energy_j = self._counter.read_j()
            except (OSError, ValueError) as exc:
                fault = f"RAPL read failed at window end: {exc}"
        sampler_fault = self._sampler.stop()
        fault = fault or sampler_fault
        return summarise(self.backend, time_s, self._sampler.within(time_s), energy_j=energy_j,
                         energy_source="energy counter", fault=fault)
