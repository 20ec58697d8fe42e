"""Device-correct timing, and which method produced each number.

A GPU runs work asynchronously: a Python timer around a kernel launch measures the launch, not
the kernel, and a Python loop of launches between two synchronisations measures the host's
launch rate whenever a launch (~25 us of CPU for an autotuned Triton kernel) costs more than the
kernel (~4 us for a 1024^3 BF16 GEMM on an H100). So on CUDA the time is read on the device:

* ``cuda-events`` (the default for calls of at least `GRAPH_BELOW_S`): as
  ``triton.testing.do_bench`` does, each call is bracketed by its own pair of CUDA events, and
  L2 is flushed before each call by zeroing a buffer larger than any L2 (`L2_FLUSH_BYTES`). The
  flush runs on the device between the end event of one call and the start event of the next,
  so it is not timed, and it keeps the device busy while the host enqueues the next call, so
  the host's launch cost is not timed either. The figure is the median over calls.
* ``cuda-graph`` (calls shorter than `GRAPH_BELOW_S`): after warm-up (so autotuning and
  compilation happen outside the capture) ``iterations`` calls are captured into one CUDA graph;
  each round replays it between one pair of events, and the round's time over ``iterations`` is
  one sample; the median over rounds is the figure. Replays run back to back with a warm L2
  (``l2_flush`` False). When capture fails, the case falls back to ``cuda-events`` and the
  record says why (``timing_fallback_reason``).
* ``cpu-perf-counter`` (CPU and other devices): ``time.perf_counter`` around rounds of
  back-to-back calls bracketed by device synchronisations (`SyncTimer`), median over rounds.

Every record carries ``timing_method``, ``l2_flush`` and ``timing_fallback_reason``
(`TIMING_FIELDS`; results/README.md). `benchmark_call` hands the device-measured rounds to
pytest-benchmark, so its own statistics and ``--benchmark-compare`` agree with the record;
`time_call` does the same without pytest. The CUDA calls sit behind `CudaTiming`, which tests
replace with a simulated device.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

# How long one timed round should last, so the synchronisation and launch costs (~10 us) are a
# small fraction of it, and how long all rounds together should take.
MIN_ROUND_S = {"cuda": 0.01, "cpu": 0.002}
TARGET_TOTAL_S = {"cuda": 1.0, "cpu": 0.25}
MIN_ROUNDS = 5
MAX_ROUNDS = 200
MAX_ITERATIONS = 10_000

# Method labels, as written into records' ``timing_method``.
CPU_PERF_COUNTER, CUDA_EVENTS, CUDA_GRAPH = "cpu-perf-counter", "cuda-events", "cuda-graph"
TIMING_FIELDS = ("timing_method", "l2_flush", "timing_fallback_reason")
# The L2 flush: zero 256 MiB between calls, the size triton.testing.do_bench uses
# (triton/testing.py, ``cache_size = 256 * 1024 * 1024``); larger than the L2 of an H100/H200
# (50 MB, NVIDIA H100 whitepaper) or a B200.
L2_FLUSH_BYTES = 256 * 1024 * 1024
# Calls estimated shorter than this are timed by CUDA-graph replay. Stated assumption: 4x the
# ~25 us of CPU an autotuned Triton launch costs (DESIGN.md), so below it the launch could
# rival the kernel; above it, the L2 flush (~80 us for 256 MiB at 3.35 TB/s) already keeps the
# device ahead of the host and per-call events are exact.
GRAPH_BELOW_S = 100e-6
# Per-call events: how many timed calls at most (do_bench's default budget is 100 ms of calls).
MAX_EVENT_CALLS = 1000
# Calls captured in one graph at most (graph nodes cost device memory).
MAX_GRAPH_ITERATIONS = 1000


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
    method: str = CPU_PERF_COUNTER
    l2_flush: bool = False
    fallback_reason: str | None = None  # why the method is not the one planned
    samples: tuple[float, ...] = field(default=(), repr=False)  # per-call seconds, in order

    def record_fields(self) -> dict:
        """The record's timing-method fields (`TIMING_FIELDS`)."""
        return {"timing_method": self.method, "l2_flush": self.l2_flush,
                "timing_fallback_reason": self.fallback_reason}

    @classmethod
    def from_samples(cls, per_call_s: list[float], iterations: int, *,
                     method: str = CPU_PERF_COUNTER, l2_flush: bool = False,
                     fallback_reason: str | None = None) -> "Timing":
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
            method=method,
            l2_flush=l2_flush,
            fallback_reason=fallback_reason,
            samples=tuple(per_call_s),
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


class CudaTiming:
    """The CUDA calls device timing makes, in one place that tests replace: events, device
    synchronisation, the L2 flush, and graph capture."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self._flush_buffer = None

    def event(self):
        return torch.cuda.Event(enable_timing=True)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def flush_l2(self) -> None:
        """Evict the case's data from L2 by zeroing a buffer larger than it."""
        if self._flush_buffer is None:
            self._flush_buffer = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32,
                                             device=self.device)
        self._flush_buffer.zero_()

    def capture(self, fn: Callable[[], object], calls: int) -> Callable[[], None]:
        """Capture ``calls`` calls of ``fn`` into one CUDA graph; returns its replay. Raises
        what capture raises (e.g. a call that synchronises or allocates on the host)."""
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):  # a warm-up on the capture stream, as torch asks
            fn()
        current.wait_stream(side)
        self.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        return graph.replay


def estimate_device_call_s(fn: Callable[[], object], cuda, warmup_s: float,
                           calls: int = 5) -> float:
    """Device seconds of one call: one call first (it may compile or autotune), then ``calls``
    back-to-back calls between two events, then warm-up calls for about ``warmup_s`` (as
    do_bench estimates, then warms up). An upper bound: launch gaps may be inside it."""
    fn()
    cuda.synchronize()
    start, end = cuda.event(), cuda.event()
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    cuda.synchronize()
    one = max(start.elapsed_time(end) / 1e3 / calls, 1e-9)
    for _ in range(int(min(MAX_EVENT_CALLS, warmup_s / one))):
        fn()
    cuda.synchronize()
    return one


def event_samples(fn: Callable[[], object], cuda, calls: int, *, l2_flush: bool) -> list[float]:
    """Device seconds of each of ``calls`` calls, each between its own pair of events, with L2
    flushed before each call's start event when ``l2_flush``. One synchronisation at the end."""
    starts = [cuda.event() for _ in range(calls)]
    ends = [cuda.event() for _ in range(calls)]
    for start, end in zip(starts, ends):
        if l2_flush:
            cuda.flush_l2()
        start.record()
        fn()
        end.record()
    cuda.synchronize()
    return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]


def graph_samples(replay: Callable[[], None], cuda, rounds: int, iterations: int) -> list[float]:
    """Device seconds per call of each of ``rounds`` replays of a graph of ``iterations`` calls,
    each replay between one pair of events."""
    starts = [cuda.event() for _ in range(rounds)]
    ends = [cuda.event() for _ in range(rounds)]
    replay()  # the first replay uploads the graph
    for start, end in zip(starts, ends):
        start.record()
        replay()
        end.record()
    cuda.synchronize()
    return [s.elapsed_time(e) / 1e3 / iterations for s, e in zip(starts, ends)]


def plan_event_calls(one_call_s: float, device_type: str = "cuda", calls: int | None = None) -> int:
    """Per-call event timing: enough calls to fill the target time, within
    [MIN_ROUNDS, MAX_EVENT_CALLS]."""
    if calls is not None:
        return calls
    total = TARGET_TOTAL_S.get(device_type, 0.25)
    return int(min(MAX_EVENT_CALLS, max(MIN_ROUNDS, total // max(one_call_s, 1e-9))))


def time_cuda(fn: Callable[[], object], cuda, *, rounds: int | None = None,
              min_round_s: float | None = None, warmup_s: float = 0.1,
              method: str | None = None, l2_flush: bool | None = None) -> Timing:
    """Time ``fn()`` on the device behind ``cuda`` (a `CudaTiming`, or a fake): per-call events
    with an L2 flush for calls of at least `GRAPH_BELOW_S`, graph replay below it (``method``
    and ``l2_flush`` override the choice). A failed capture falls back to per-call events,
    with the reason in the result."""
    one = estimate_device_call_s(fn, cuda, warmup_s)
    if method is None:
        method = CUDA_GRAPH if one < GRAPH_BELOW_S else CUDA_EVENTS
    reason = None
    if method == CUDA_GRAPH:
        graph_rounds, iterations = plan_rounds(one, "cuda", rounds=rounds, min_round_s=min_round_s)
        iterations = min(iterations, MAX_GRAPH_ITERATIONS)
        try:
            replay = cuda.capture(fn, iterations)
            samples = graph_samples(replay, cuda, graph_rounds, iterations)
            return Timing.from_samples(samples, iterations, method=CUDA_GRAPH, l2_flush=False)
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back, with its reason
            text = str(exc).splitlines()[0] if str(exc) else ""
            reason = (f"CUDA graph capture failed ({type(exc).__name__}: {text}); "
                      f"timed with per-call events")
            cuda.synchronize()
    flush = True if l2_flush is None else l2_flush
    samples = event_samples(fn, cuda, plan_event_calls(one, calls=rounds), l2_flush=flush)
    return Timing.from_samples(samples, 1, method=CUDA_EVENTS, l2_flush=flush,
                               fallback_reason=reason)


def time_host(fn: Callable[[], object], timer: Callable[[], float], device_type: str, *,
              rounds: int | None = None, min_round_s: float | None = None,
              warmup_s: float = 0.1) -> Timing:
    """Time ``fn()`` with a synchronising host clock: warm-up, then ``rounds`` rounds, each of
    ``iterations`` back-to-back calls bracketed by synchronisations."""
    one = estimate_call_s(fn, timer, warmup_s)
    rounds, iterations = plan_rounds(one, device_type, rounds=rounds, min_round_s=min_round_s)
    samples = []
    for _ in range(rounds):
        start = timer()
        for _ in range(iterations):
            fn()
        samples.append((timer() - start) / iterations)
    return Timing.from_samples(samples, iterations, method=CPU_PERF_COUNTER)


def time_call(fn: Callable[[], object], device: torch.device | str, *, rounds: int | None = None,
              min_round_s: float | None = None, warmup_s: float = 0.1,
              sync: Callable[[], None] | None = None, cuda=None, method: str | None = None,
              l2_flush: bool | None = None) -> Timing:
    """Time ``fn()`` on ``device``; seconds per call, and the method that measured them. On
    CUDA the device's own clock (`time_cuda`; ``cuda`` replaces `CudaTiming`), elsewhere the
    synchronised host clock (`time_host`)."""
    device = torch.device(device)
    if device.type == "cuda":
        return time_cuda(fn, cuda or CudaTiming(device), rounds=rounds, min_round_s=min_round_s,
                         warmup_s=warmup_s, method=method, l2_flush=l2_flush)
    timer = SyncTimer(sync or (lambda: synchronize(device)))
    return time_host(fn, timer, device.type, rounds=rounds, min_round_s=min_round_s,
                     warmup_s=warmup_s)


class ReplayClock:
    """A clock for pytest-benchmark that advances by already measured device times: each call
    of `advance` (the benchmarked function) adds the per-call time of the round it belongs to,
    so each round pytest-benchmark times lasts ``iterations`` times that round's sample."""

    def __init__(self, per_call_s: list[float], iterations: int):
        self.samples, self.iterations = list(per_call_s), iterations
        self.now, self.calls = 0.0, 0
        self.__name__ = "flopcast.ReplayClock"

    def advance(self) -> None:
        self.now += self.samples[self.calls // self.iterations]
        self.calls += 1

    def __call__(self) -> float:
        return self.now


def benchmark_call(benchmark, fn: Callable[[], object], device: torch.device | str, *,
                   rounds: int | None = None, min_round_s: float | None = None,
                   warmup_s: float = 0.1, sync: Callable[[], None] | None = None,
                   cuda=None) -> Timing:
    """Time ``fn()`` and hand the figures to pytest-benchmark's ``benchmark`` fixture, so its
    statistics are device-correct; returns them as a `Timing`. On the CPU pytest-benchmark runs
    the calls with a synchronising timer; on CUDA the device measures (`time_cuda`) and
    pytest-benchmark is given the measured rounds (`ReplayClock`)."""
    device = torch.device(device)
    if device.type == "cuda":
        timing = time_cuda(fn, cuda or CudaTiming(device), rounds=rounds,
                           min_round_s=min_round_s, warmup_s=warmup_s)
        clock = ReplayClock(timing.samples, timing.iterations)
        benchmark._timer = clock
        benchmark.pedantic(clock.advance, rounds=timing.rounds, iterations=timing.iterations,
                           warmup_rounds=0)
        return timing
    timer = SyncTimer(sync or (lambda: synchronize(device)))
    one = estimate_call_s(fn, timer, warmup_s)
    rounds, iterations = plan_rounds(one, device.type, rounds=rounds, min_round_s=min_round_s)
    benchmark._timer = timer  # pytest-benchmark reads the clock through this attribute
    benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=1)
    stats = benchmark.stats.stats
    return Timing(time_s=stats.median, time_s_min=stats.min, time_s_mean=stats.mean,
                  time_s_stddev=stats.stddev, time_s_iqr=stats.iqr, rounds=stats.rounds,
                  iterations=iterations, method=CPU_PERF_COUNTER)
