"""The power fields of a benchmark record.

Latency is timed elsewhere (`bench.timing`); power needs its own window, because energy
counters update about every 100 ms and a kernel of a few microseconds is over long before.
So each case, once warmed up, runs back to back for a steady window of ``window_s`` seconds
(``--power-window``), and the window's energy is shared out over the calls made in it::

    telemetry = open_telemetry(device)
    fields = power_fields(telemetry, run, lambda: synchronize(device), flops, window_s=5.0)
    record.update(fields)

The result has exactly the power keys of a record (`scaling.schema.POWER_FIELDS`);
every value is None when not measured, and ``power_missing_reason`` says why.
``sustained_tflops`` is the throughput of the window's own calls (FLOPs of all its calls over
its length), so it and the watts come from the same clock state; the record's ``tflops`` is
from the short timing window after warm-up, usually at boost clocks.
"""

from __future__ import annotations

import time
from typing import Callable

from bench.telemetry.base import Telemetry, Window
from scaling.schema import POWER_FIELDS, null_power, rate  # noqa: F401 - POWER_FIELDS re-exported

# Back-to-back calls are issued in batches that end in a synchronize, so the host never
# queues more than about this much work ahead of the device and the window ends on time.
BATCH_S = 0.1


def null_power_fields(backend: str, reason: str) -> dict:
    """A record's power fields when power was not measured, and why."""
    return null_power(backend, reason)


def run_back_to_back(run: Callable[[], None], synchronize: Callable[[], None],
                     window_s: float, *, batch_s: float = BATCH_S) -> int:
    """Call ``run()`` back to back until ``window_s`` seconds have passed; returns the calls.

    Batch sizes come from the time per call so far: the first batch is one call, later ones
    last about ``batch_s`` (or what is left of the window).
    """
    start = time.perf_counter()
    calls, batch = 0, 1
    while True:
        for _ in range(batch):
            run()
        synchronize()
        calls += batch
        elapsed_s = time.perf_counter() - start
        if elapsed_s >= window_s:
            return calls
        per_call_s = elapsed_s / calls
        batch = max(1, int(min(batch_s, window_s - elapsed_s) / per_call_s))


def fields_from_window(window: Window, calls: int, flops: int) -> dict:
    """A record's power fields from a measured window of ``calls`` calls of ``flops`` each."""
    reasons = None if window.throttle_reasons is None else list(window.throttle_reasons)
    fields = dict(
        telemetry_backend=window.backend, power_window_s=window.time_s,
        energy_j=None, avg_power_w=window.avg_power_w, max_power_w=window.max_power_w,
        tflops_per_w=None, sustained_tflops=None, sm_clock_mhz=window.sm_clock_mhz,
        mem_clock_mhz=window.mem_clock_mhz, temp_c=window.temp_c,
        power_limit_w=window.power_limit_w, throttled=window.throttled,
        throttle_reasons=reasons, power_missing_reason=window.missing_reason,
    )
    if window.energy_j is not None and calls > 0:
        fields["energy_j"] = window.energy_j / calls
        if flops > 0:
            # FLOP per joule / 1e12 = TFLOP/J = (TFLOP/s) / W.
            fields["tflops_per_w"] = flops * calls / window.energy_j / 1e12
    if flops > 0 and calls > 0 and window.time_s and window.time_s > 0:
        # Throughput at the clocks the watts were read at (the power cap, not a short boost):
        # the window's FLOPs over its length, set beside its watts.
        fields["sustained_tflops"] = rate(flops * calls, window.time_s, 1e12)
    return fields


def power_fields(telemetry: Telemetry, run: Callable[[], None],
                 synchronize: Callable[[], None], flops: int, window_s: float) -> dict:
    """Measure one case's power: ``run()`` back to back for ``window_s`` seconds.

    The caller has already warmed the case up. Telemetry faults end up in
    ``power_missing_reason``; an exception from ``run()`` itself propagates.
    """
    if window_s <= 0:
        return null_power_fields(telemetry.backend, "power window disabled (--power-window 0)")
    if telemetry.backend == "none":
        return null_power_fields("none", telemetry.reason or "no telemetry")
    synchronize()
    with telemetry.window() as measured:
        calls = run_back_to_back(run, synchronize, window_s)
    return fields_from_window(measured.window, calls, flops)
