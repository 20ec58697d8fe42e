"""The telemetry interface: `Telemetry`, the `Window` it returns, the sampler thread.

flopcast measures watts next to FLOP/s, with the hardware's own counters. Three backends,
chosen by `bench.telemetry.open_telemetry(device)` and named in every record:

``nvml``
    NVIDIA GPUs, through NVML (``nvidia-ml-py``, imported as ``pynvml``). Energy is the
    difference of the board's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``,
    millijoules, Volta and newer) across the window. A background thread polls power
    (the instantaneous-power field, else ``nvmlDeviceGetPowerUsage``), SM and memory clocks,
    temperature, utilisation and the clock-event (throttle) reasons; on GPUs without the
    energy counter the polled power, integrated over time, gives the energy instead.
``rapl``
    CPU runs: package energy from Linux powercap (``/sys/class/powercap/intel-rapl:N``),
    summed over packages, with the counter's wrap-around undone (``max_energy_range_uj``).
``none``
    Nothing readable. Every power field is null and the window says why.

This module holds the interface (`Telemetry`, `Window`, the sampler thread); the backends that
measure, `bench.telemetry.nvml` and `bench.telemetry.rapl`, build on it, and the package
(`bench.telemetry`) chooses between them.

Use it as a window around the work::

    telemetry = open_telemetry("cuda:0")
    with telemetry.window() as measured:
        run_the_kernel_back_to_back()
    print(measured.window.energy_j, measured.window.avg_power_w)
    telemetry.close()

Known limits. NVML's energy counter and power readings update about every 100 ms, so a
window shorter than ~2 s carries an error of several percent: flopcast measures power over
its own steady window of several seconds. NVML reports board (module) power, GPU and its
memory, not wall power: host CPUs, network, switches, power supply losses and cooling are
outside it. RAPL is CPU package energy (cores, caches, uncore), not DRAM or the machine.

Faults never raise out of a window: an NVML call failing mid-window, the sampler thread
dying, or a counter going backwards give a `Window` whose power fields are null and whose
``missing_reason`` says what happened, so the timing measured around it is kept. A read that
hangs is a fault too: reads on the caller's thread run under a deadline (`call_with_deadline`),
and a sample that took longer than `SAMPLE_DEADLINE_S` is dropped (it belongs to no known
time). A reading that physics rules out (negative or impossibly high power, a clock at or
below zero, a temperature no running device has; `scaling.schema.impossible_reading`) is
never passed on: power becomes null with the reason, a clock or temperature sample is
dropped and ``Window.notes`` says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from scaling.schema import impossible_reading

# Polling period of the sampler thread. NVML's power and energy readings update about every
# 100 ms (Yang, Adamek and Armour 2023, "Part-time Power Measurements: nvidia-smi's Lack of
# Attention"); polling twice as often sees every update.
DEFAULT_INTERVAL_S = 0.05

# How long `end()` waits for the sampler thread before declaring it hung.
SAMPLER_JOIN_TIMEOUT_S = 2.0

# A sample (one read of each field) that takes longer than this is dropped: its readings
# belong to no known time. Stated assumption: NVML and powercap reads answer in well under a
# millisecond each, so half a second means a read hung.
SAMPLE_DEADLINE_S = 0.5

# Clock-event (throttle) reason bits, nvml.h ``nvmlClocksEventReason*`` (same values as the
# deprecated ``nvmlClocksThrottleReason*``), named in snake case.
CLOCK_EVENT_REASONS = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

# The reasons that mean clocks were held back for power or heat: a record is "throttled"
# when any of these was seen. (Idle, sync boost and clock settings are not throttling.)
POWER_OR_HEAT_REASONS = frozenset({
    "sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
})

DEFAULT_RAPL_ROOT = Path("/sys/class/powercap")


def reason_names(bits: int) -> tuple[str, ...]:
    """Names of the clock-event reason bits set in ``bits``; unknown bits by their value."""
    names = []
    bit = 1
    while bit <= bits:
        if bits & bit:
            names.append(CLOCK_EVENT_REASONS.get(bit, f"unknown_0x{bit:x}"))
        bit <<= 1
    return tuple(names)


# ---------------------------------------------------------------------------------------------
# What a window returns
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One reading of the sampler thread; ``None`` where the device does not report it."""

    t_s: float  # seconds since the window began
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    temp_c: float | None = None
    gpu_util_pct: float | None = None
    clock_events: int | None = None  # NVML clock-event reason bits


@dataclass(frozen=True)
class Window:
    """What one measurement window saw. Immutable; ``None`` means not measured."""

    backend: str
    time_s: float
    energy_j: float | None = None
    avg_power_w: float | None = None
    max_power_w: float | None = None
    sm_clock_mhz: float | None = None  # mean
    mem_clock_mhz: float | None = None  # mean
    temp_c: float | None = None  # max
    gpu_util_pct: float | None = None  # mean
    power_limit_w: float | None = None  # enforced limit
    throttle_reasons: tuple[str, ...] | None = None  # every reason seen; None if not readable
    samples: tuple[Sample, ...] = ()
    energy_source: str | None = None  # "energy counter" or "power polling"
    missing_reason: str | None = None  # why the power fields are None
    notes: tuple[str, ...] = ()  # readings dropped (late samples, impossible values) and why

    @property
    def throttled(self) -> bool | None:
        """Whether clocks were held back for power or heat during the window."""
        if self.throttle_reasons is None:
            return None
        return any(name in POWER_OR_HEAT_REASONS for name in self.throttle_reasons)


def integrate_power(samples) -> float | None:
    """Mean power (W) of a polled trace by the trapezoid rule over its time span."""
    points = [(s.t_s, s.power_w) for s in samples if s.power_w is not None]
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    energy_j = sum((t1 - t0) * (p0 + p1) / 2
                   for (t0, p0), (t1, p1) in zip(points, points[1:]))
    return energy_j / (points[-1][0] - points[0][0])


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _max(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None


SAMPLE_FIELDS = ("power_w", "sm_clock_mhz", "mem_clock_mhz", "temp_c")  # bounded by physics


def drop_impossible(samples, power_limit_w: float | None) -> tuple[list, list[str], str | None]:
    """(samples with impossible clocks and temperatures set to None, notes saying which,
    a fault naming the first impossible power reading or None)."""
    kept, notes, fault = [], [], None
    for sample in samples:
        changes = {}
        for name in SAMPLE_FIELDS:
            problem = impossible_reading(name, getattr(sample, name), power_limit_w)
            if problem is None:
                continue
            changes[name] = None
            if name == "power_w":
                fault = fault or f"impossible power reading at t={sample.t_s:.3f} s: {problem}"
            else:
                notes.append(f"{name} at t={sample.t_s:.3f} s dropped: {problem}")
        kept.append(dataclasses.replace(sample, **changes) if changes else sample)
    return kept, notes, fault


def summarise(backend: str, time_s: float, samples, *, energy_j: float | None = None,
              energy_source: str | None = None, power_limit_w: float | None = None,
              fault: str | None = None, notes=()) -> Window:
    """Turn a window's readings into a `Window`.

    ``energy_j`` comes from a counter when there is one; without it the polled power trace
    is integrated. A ``fault`` blanks the power fields and becomes the missing reason; the
    clocks and temperatures that were read stay (they are real observations). Readings that
    physics rules out never pass: an impossible power limit is dropped, an impossible power
    sample or window mean is a fault, an impossible clock or temperature sample is dropped;
    ``notes`` (and the window's own) say what was dropped.
    """
    notes = list(notes)
    problem = impossible_reading("power_limit_w", power_limit_w)
    if problem is not None:
        notes.append(f"power limit dropped: {problem}")
        power_limit_w = None
    samples, dropped, power_fault = drop_impossible(samples, power_limit_w)
    notes += dropped
    fault = fault or power_fault
    samples = tuple(samples)
    events = [s.clock_events for s in samples if s.clock_events is not None]
    reasons = None
    if events:
        bits = 0
        for value in events:
            bits |= value
        reasons = reason_names(bits)
    window = dict(
        backend=backend, time_s=time_s, samples=samples, power_limit_w=power_limit_w,
        sm_clock_mhz=_mean(s.sm_clock_mhz for s in samples),
        mem_clock_mhz=_mean(s.mem_clock_mhz for s in samples),
        temp_c=_max(s.temp_c for s in samples),
        gpu_util_pct=_mean(s.gpu_util_pct for s in samples),
        throttle_reasons=reasons, notes=tuple(notes),
    )
    if fault is None and time_s <= 0:
        fault = f"window of {time_s} s is too short to measure"
    if fault is None and energy_j == 0:
        fault = (f"energy counter did not advance in {time_s:.3f} s (the window is shorter "
                 "than the counter's update period)")
    if fault is None and energy_j is None:
        avg_power_w = integrate_power(samples)
        if avg_power_w is None:
            n = sum(s.power_w is not None for s in samples)
            fault = f"too few power samples ({n}) in a {time_s:.3f} s window"
        else:
            energy_j, energy_source = avg_power_w * time_s, "power polling"
    if fault is None and energy_j is not None:
        # Held to the bound a record's is (`validate_record`, with the window's length), so
        # a window that passes makes a record the writer and the loader accept.
        problem = (impossible_reading("energy_j", energy_j)
                   or impossible_reading("avg_power_w", energy_j / time_s, power_limit_w,
                                         time_s))
        if problem is not None:
            fault = (f"impossible energy: {energy_j!r} J in {time_s:.3f} s "
                     f"({energy_source or 'energy'}): {problem}")
    if fault is not None:
        return Window(**window, missing_reason=fault)
    return Window(**window, energy_j=energy_j, avg_power_w=energy_j / time_s,
                  max_power_w=_max(s.power_w for s in samples), energy_source=energy_source)


# ---------------------------------------------------------------------------------------------
# The sampler thread
# ---------------------------------------------------------------------------------------------

class Sampler:
    """Calls ``read(t_s) -> Sample`` every ``interval_s`` on a daemon thread until `stop`.

    Whatever ``read`` raises ends the thread and is kept as ``error``: a dying sampler is a
    fault of the window, never an exception in the caller. A sample that took longer than
    `SAMPLE_DEADLINE_S` is dropped and counted in ``late``.
    """

    def __init__(self, read: Callable[[float], Sample], interval_s: float, t0: float):
        self._read, self._interval_s, self._t0 = read, interval_s, t0
        self._deadline_s = SAMPLE_DEADLINE_S
        self._stopping = threading.Event()
        self.samples: list[Sample] = []
        self.late = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="flopcast-telemetry",
                                        daemon=True)
        self._thread.start()

    def _loop(self):
        try:
            while True:
                start = time.perf_counter()
                sample = self._read(start - self._t0)
                if time.perf_counter() - start > self._deadline_s:
                    self.late += 1
                else:
                    self.samples.append(sample)
                if self._stopping.wait(self._interval_s):
                    return
        except BaseException as exc:  # noqa: BLE001 - a dying sampler is reported, not raised
            self.error = f"power sampler thread died: {type(exc).__name__}: {exc}"

    def stop(self) -> str | None:
        """Stop the thread; returns a fault description, or None if it ran to the end."""
        died_early = not self._thread.is_alive()
        self._stopping.set()
        self._thread.join(SAMPLER_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            return f"power sampler did not stop within {SAMPLER_JOIN_TIMEOUT_S} s (a read hangs)"
        if self.error is not None:
            return self.error
        if died_early:
            return "power sampler thread stopped before the window ended"
        return None

    def within(self, time_s: float) -> list[Sample]:
        """The samples taken inside a window of ``time_s`` seconds: the thread may take one
        between the window's end time being read and `stop`, and that one belongs to no
        window."""
        return [s for s in self.samples if s.t_s <= time_s]

    def notes(self) -> tuple[str, ...]:
        """What the window should say about dropped samples."""
        if not self.late:
            return ()
        return (f"{self.late} late sample(s) dropped (a read took over {self._deadline_s:g} s)",)


# ---------------------------------------------------------------------------------------------
# The interface (and the ``none`` backend)
# ---------------------------------------------------------------------------------------------

class Measured:
    """What ``with telemetry.window() as measured`` gives: ``measured.window`` after the block."""

    window: Window | None = None


class Telemetry:
    """A device's telemetry. ``backend`` is ``nvml``, ``rapl`` or ``none``; ``reason`` says why
    it is ``none`` or degraded (else None). One window at a time."""

    backend = "none"

    def __init__(self, reason: str | None = None):
        self.reason = reason
        self._t0: float | None = None

    def begin(self) -> None:
        if self._t0 is not None:
            raise RuntimeError("a telemetry window is already open; end() it first")
        self._t0 = time.perf_counter()
        self._start()

    def end(self) -> Window:
        if self._t0 is None:
            raise RuntimeError("no telemetry window is open; call begin() first")
        time_s = time.perf_counter() - self._t0
        self._t0 = None
        return self._stop(time_s)

    @contextlib.contextmanager
    def window(self) -> Iterator[Measured]:
        measured = Measured()
        self.begin()
        try:
            yield measured
        finally:
            measured.window = self.end()

    def close(self) -> None:
        """Release the backend. Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _start(self) -> None:
        pass

    def _stop(self, time_s: float) -> Window:
        return Window(backend=self.backend, time_s=time_s, missing_reason=self.reason)



class Unavailable(Exception):
    """A backend cannot measure this device; the message is the reason records carry."""


class Late(Exception):
    """A call did not answer within its deadline (it may still be running on its thread)."""


def call_with_deadline(fn: Callable[[], Any], deadline_s: float, what: str) -> Any:
    """``fn()``, run on a daemon thread so that a call that hangs cannot hang the caller:
    its value, or what it raised; `Late` if it has not answered within ``deadline_s``.

    A late call is left running (a thread cannot be stopped); being a daemon it never keeps
    the interpreter from exiting. (A ``concurrent.futures`` pool would: it joins its workers
    at exit.)
    """
    done, box = threading.Event(), {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="flopcast-telemetry-call", daemon=True).start()
    if not done.wait(deadline_s):
        raise Late(f"{what} did not answer within {deadline_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]
