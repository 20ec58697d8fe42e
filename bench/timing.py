"""Device-correct timing.

A GPU runs work asynchronously: a Python timer around a kernel launch measures the launch, not
the kernel. Every timed region here is therefore bracketed by a device synchronisation, and the
clock is read only after the device is idle. Launch overhead is amortised by running several
calls per timed round (iterations), warm-up rounds come first, and the median over rounds is
the figure reported.

`SyncTimer` is a clock that synchronises the device before it is read. Handed to
pytest-benchmark as its timer, it makes pytest-benchmark's own statistics (min, median, ...)
device-correct, so `--benchmark-compare`, `--benchmark-json` and `--benchmark-save` keep working.
`time_call` does the same without pytest.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

# How long one timed round should last, so the synchronisation and launch costs (~10 us) are a
# small fraction of it, and how long all rounds together should take.
MIN_ROUND_S = {"cuda": 0.01, "cpu": 0.002}
TARGET_TOTAL_S = {"cuda": 1.0, "cpu": 0.25}
MIN_ROUNDS = 5
MAX_ROUNDS = 200
MAX_ITERATIONS = 10_000


def synchronize(device: torch.device | str) -> None:
    """Wait until all work queued on ``device`` is done (a no-op for the CPU, which is
    synchronous)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xpu":
        torch.xpu.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class SyncTimer:
    """A clock, like ``time.perf_counter``, that first waits for the device to be idle."""

    def __init__(self, sync: Callable[[], None], clock: Callable[[], float] = time.perf_counter):
        self.sync = sync
        self.clock = clock
        self.__name__ = "flopcast.SyncTimer"  # pytest-benchmark prints its timer's name

    def __call__(self) -> float:
        self.sync()
        return self.clock()

    def __repr__(self) -> str:
        return "SyncTimer(device-synchronised perf_counter)"


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``rounds`` rounds of ``iterations`` calls each."""

    time_s: float  # median
    time_s_min: float
    time_s_mean: float
    time_s_stddev: float
    time_s_iqr: float
    rounds: int
    iterations: int

    @classmethod
    def from_samples(cls, per_call_s: list[float], iterations: int) -> "Timing":
        xs = sorted(per_call_s)
        q1, _, q3 = statistics.quantiles(xs, n=4) if len(xs) > 1 else (xs[0], xs[0], xs[0])
        return cls(
            time_s=statistics.median(xs),
            time_s_min=xs[0],
            time_s_mean=statistics.fmean(xs),
            time_s_stddev=statistics.stdev(xs) if len(xs) > 1 else 0.0,
            time_s_iqr=q3 - q1,
            rounds=len(xs),
            iterations=iterations,
        )


def plan_rounds(one_call_s: float, device_type: str, *, rounds: int | None = None,
                min_round_s: float | None = None) -> tuple[int, int]:
    """(rounds, iterations): enough calls per round that a round lasts ``min_round_s``, and
    enough rounds to fill the target total time, within [MIN_ROUNDS, MAX_ROUNDS]."""
    min_round_s = MIN_ROUND_S.get(device_type, 0.002) if min_round_s is None else min_round_s
    one_call_s = max(one_call_s, 1e-7)
    iterations = int(min(MAX_ITERATIONS, max(1, round(min_round_s / one_call_s))))
    if rounds is None:
        total = TARGET_TOTAL_S.get(device_type, 0.25)
        rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, total // (one_call_s * iterations))))
    return rounds, iterations


def estimate_call_s(fn: Callable[[], object], timer: Callable[[], float], warmup_s: float) -> float:
    """Warm up for about ``warmup_s`` (at least two calls: the first may compile or autotune)
    and return the seconds of one call, as seen by a synchronising ``timer``."""
    fn()
    start = timer()
    fn()
    one = timer() - start
    deadline = start + warmup_s
    calls = 1
    while timer() < deadline and calls < 1000:
        t0 = timer()
        fn()
        one = min(one, timer() - t0)
        calls += 1
    return one


def time_call(fn: Callable[[], object], device: torch.device | str, *, rounds: int | None = None,
              min_round_s: float | None = None, warmup_s: float = 0.1,
              sync: Callable[[], None] | None = None) -> Timing:
    """Time ``fn()`` on ``device``: warm-up, then ``rounds`` rounds, each of ``iterations``
    back-to-back calls bracketed by synchronisations. Returns seconds per call."""
    device = torch.device(device)
    timer = SyncTimer(sync or (lambda: synchronize(device)))
    one = estimate_call_s(fn, timer, warmup_s)
    rounds, iterations = plan_rounds(one, device.type, rounds=rounds, min_round_s=min_round_s)
    samples = []
    for _ in range(rounds):
        start = timer()
        for _ in range(iterations):
            fn()
        samples.append((timer() - start) / iterations)
    return Timing.from_samples(samples, iterations)


def benchmark_call(benchmark, fn: Callable[[], object], device: torch.device | str, *,
                   rounds: int | None = None, min_round_s: float | None = None,
                   warmup_s: float = 0.1, sync: Callable[[], None] | None = None) -> Timing:
    """Time ``fn()`` through pytest-benchmark's ``benchmark`` fixture with a synchronising
    timer, so its statistics are device-correct; returns the same figures as a `Timing`."""
    device = torch.device(device)
    timer = SyncTimer(sync or (lambda: synchronize(device)))
    one = estimate_call_s(fn, timer, warmup_s)
    rounds, iterations = plan_rounds(one, device.type, rounds=rounds, min_round_s=min_round_s)
    benchmark._timer = timer  # pytest-benchmark reads the clock through this attribute
    benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=1)
    stats = benchmark.stats.stats
    return Timing(time_s=stats.median, time_s_min=stats.min, time_s_mean=stats.mean,
                  time_s_stddev=stats.stddev, time_s_iqr=stats.iqr, rounds=stats.rounds,
                  iterations=iterations)
