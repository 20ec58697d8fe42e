"""The power of a collective, measured on every rank and summed up on rank 0.

A collective keeps every GPU of the job busy, so its energy is measured where each rank runs:
each rank opens the telemetry of its own device (`bench.telemetry.open_telemetry`: NVML on a
GPU), and all ranks run the same number of back-to-back operations inside one steady window
(energy counters update only every ~100 ms, so the window lasts seconds, not one operation).
Rank 0 gathers the windows and combines them into the record's power fields:

* ``avg_power_w``, ``sm_clock_mhz``, ``mem_clock_mhz``: mean over ranks (watts per device,
  as for every other record); ``max_power_w``, ``temp_c``: highest over ranks;
  ``power_limit_w``: lowest enforced limit over ranks;
* ``energy_j``: energy of one operation on one rank, mean over ranks (the whole collective
  used ``world_size`` times that);
* ``throttled``: any rank throttled; ``throttle_reasons``: every reason seen on any rank;
* ``rank_power``: the per-rank figures (rank, host, avg_power_w, energy_j, temp_c, throttled).

If any rank could not measure, the combined fields are null and ``power_missing_reason`` says
which rank and why. On CPUs, ranks that share a package each see the whole package's energy
(RAPL has no per-process counter), so CPU runs do not measure power unless asked to.
"""

from __future__ import annotations

import math
import socket
from typing import Callable

import torch.distributed as dist

from bench.power import BATCH_S, null_power_fields
from bench.telemetry.base import Telemetry, Window, _max, _mean


def null_power(backend: str, reason: str) -> dict:
    """The power fields of a record whose power was not measured, and why."""
    return {**null_power_fields(backend, reason), "rank_power": None}


def window_calls(window_s: float, time_s: float) -> int:
    """Operations in a steady window of ``window_s`` seconds at ``time_s`` each (at least one).
    Every rank must pass the same ``time_s`` so all run the same number of collectives."""
    return max(1, math.ceil(window_s / time_s))


def rank_window(telemetry: Telemetry, run: Callable[[], None], sync: Callable[[], None],
                calls: int, rank: int, time_s: float) -> dict:
    """Run ``calls`` operations of about ``time_s`` each back to back inside one telemetry
    window on this rank, synchronising every ~0.1 s so the host never queues far ahead of the
    device; returns the window's figures as a plain dict (to gather across ranks)."""
    batch = max(1, math.ceil(BATCH_S / time_s))
    with telemetry.window() as measured:
        for i in range(1, calls + 1):
            run()
            if i % batch == 0:
                sync()
        sync()
    w: Window = measured.window
    return {
        "rank": rank, "host": socket.gethostname(), "backend": w.backend, "time_s": w.time_s,
        "calls": calls, "energy_j": w.energy_j, "avg_power_w": w.avg_power_w,
        "max_power_w": w.max_power_w, "sm_clock_mhz": w.sm_clock_mhz,
        "mem_clock_mhz": w.mem_clock_mhz, "temp_c": w.temp_c, "power_limit_w": w.power_limit_w,
        "throttled": w.throttled,
        "throttle_reasons": list(w.throttle_reasons) if w.throttle_reasons is not None else None,
        "missing_reason": w.missing_reason,
    }


def gather_windows(mine: dict) -> list[dict] | None:
    """Every rank's window on rank 0 (None on the other ranks)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    everyone = [None] * world if rank == 0 else None
    dist.gather_object(mine, everyone, dst=0)
    return everyone


def combine(windows: list[dict]) -> dict:
    """The record's power fields from every rank's window (see the module docstring)."""
    backend = windows[0]["backend"]
    missing = [w for w in windows if w["avg_power_w"] is None or w["energy_j"] is None]
    if missing:
        shown = "; ".join(f"rank {w['rank']}: {w['missing_reason'] or 'no power reading'}"
                          for w in missing[:3])
        more = f" (and {len(missing) - 3} more ranks)" if len(missing) > 3 else ""
        return null_power(backend, shown + more)
    per_rank = [{"rank": w["rank"], "host": w["host"], "avg_power_w": w["avg_power_w"],
                 "energy_j": w["energy_j"] / w["calls"], "temp_c": w["temp_c"],
                 "throttled": w["throttled"]} for w in windows]
    limits = [w["power_limit_w"] for w in windows if w["power_limit_w"] is not None]
    flags = [w["throttled"] for w in windows if w["throttled"] is not None]
    reasons = [w["throttle_reasons"] for w in windows if w["throttle_reasons"] is not None]
    return {
        "telemetry_backend": backend,
        "power_window_s": max(w["time_s"] for w in windows),
        "energy_j": _mean(r["energy_j"] for r in per_rank),
        "avg_power_w": _mean(w["avg_power_w"] for w in windows),
        "max_power_w": _max(w["max_power_w"] for w in windows),
        "tflops_per_w": None,  # a collective does no floating-point work worth counting
        "sustained_tflops": None,
        "sm_clock_mhz": _mean(w["sm_clock_mhz"] for w in windows),
        "mem_clock_mhz": _mean(w["mem_clock_mhz"] for w in windows),
        "temp_c": _max(w["temp_c"] for w in windows),
        "power_limit_w": min(limits) if limits else None,
        "throttled": any(flags) if flags else None,
        "throttle_reasons": sorted({r for rs in reasons for r in rs}) if reasons else None,
        "power_missing_reason": None,
        "rank_power": per_rank,
    }
