"""Timing on the device, against a simulated CUDA device (tests/support/fake_cuda.py): per-call events
exclude the host's launch cost, the L2 flush runs between calls and outside the timed interval,
the figure is do_bench's (median over calls of per-call device time), small kernels replay a
CUDA graph, and a failed capture falls back with its reason."""

import statistics

import pytest

from bench import timing
from bench.timing import CUDA_EVENTS, CUDA_GRAPH, ReplayClock, time_call
from tests.support.fake_cuda import FakeGPU, Kernel


def do_bench_restated(fn, gpu, calls):
    """triton.testing.do_bench's measurement, restated: for each call, zero the flush buffer,
    record a start event, call, record an end event; one synchronisation; the median of the
    per-call elapsed times (return_mode="median")."""
    pairs = []
    for _ in range(calls):
        gpu.flush_l2()
        start, end = gpu.event(), gpu.event()
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    gpu.synchronize()
    return statistics.median(s.elapsed_time(e) / 1e3 for s, e in pairs)


def test_per_call_events_exclude_host_launch_cost_and_python_between_calls():
    # A 200 us kernel whose launch costs 25 us and which 40 us of Python precedes: a host
    # clock around the calls would see the Python and the launches; the events must not.
    gpu = FakeGPU(launch_s=25e-6, flush_s=300e-6)
    kernel = Kernel(gpu, [200e-6], host_s=40e-6)
    t = time_call(kernel, "cuda", cuda=gpu, rounds=20, warmup_s=0.0)
    assert t.method == CUDA_EVENTS and t.l2_flush is True and t.fallback_reason is None
    assert t.time_s == pytest.approx(200e-6, rel=1e-9)
    assert t.time_s_min == pytest.approx(200e-6, rel=1e-9) and t.rounds == 20


def test_the_simulator_shows_host_time_when_nothing_keeps_the_device_busy():
    """The same events without the flush, on a kernel shorter than its launch: the device
    idles between calls and the start event fires before the launch arrives, so host time
    leaks in. This is why short kernels replay a graph (and why the test above can fail)."""
    gpu = FakeGPU(launch_s=25e-6)
    kernel = Kernel(gpu, [4e-6])
    t = time_call(kernel, "cuda", cuda=gpu, rounds=20, warmup_s=0.0, method=CUDA_EVENTS,
                  l2_flush=False)
    # The device waits on the host: each interval is the host's period per call (a 25 us
    # launch and two 1 us event records), not the 4 us kernel.
    assert t.time_s == pytest.approx(25e-6 + 2 * 1e-6, rel=1e-9)


def test_the_flush_runs_before_each_call_and_outside_its_events():
    gpu = FakeGPU(flush_s=1e-3)
    kernel = Kernel(gpu, [150e-6])
    t = time_call(kernel, "cuda", cuda=gpu, rounds=10, warmup_s=0.0)
    assert t.time_s == pytest.approx(150e-6, rel=1e-9)  # 1 ms flushes not counted
    timed = gpu.log[-40:]  # the timed part: flush, start event, kernel, end event, x10
    assert [what for what, _, _ in timed] == ["flush", "event", "kernel", "event"] * 10
    for i in range(0, 40, 4):
        (_, _, flush_end), (_, start, _), (_, k0, k1), (_, end, _) = timed[i:i + 4]
        assert flush_end <= start <= k0 and k1 <= end


def test_the_figure_is_do_bench_s_median_of_per_call_device_times():
    durations = [210e-6, 190e-6, 400e-6, 205e-6, 195e-6]  # an outlier the median ignores
    gpu_a, gpu_b = FakeGPU(), FakeGPU()
    # Both measure 25 calls of the same cycling kernel, starting at the same call.
    a, b = Kernel(gpu_a, durations), Kernel(gpu_b, durations)
    ours = time_call(a, "cuda", cuda=gpu_a, rounds=25, warmup_s=0.0)
    for _ in range(a.calls - 25):  # bring b to where a's timed calls began
        b()
    gpu_b.synchronize()
    assert ours.time_s == pytest.approx(do_bench_restated(b, gpu_b, 25), rel=1e-12)
    assert ours.time_s == pytest.approx(205e-6, rel=1e-9)  # and the hand-computed median
    assert ours.time_s_mean > ours.time_s  # the outlier moves the mean, not the median


def test_short_kernels_replay_a_graph_and_exclude_every_launch():
    gpu = FakeGPU(launch_s=25e-6)
    kernel = Kernel(gpu, [4e-6])
    t = time_call(kernel, "cuda", cuda=gpu, warmup_s=0.0)
    assert t.method == CUDA_GRAPH and t.l2_flush is False and t.fallback_reason is None
    assert t.iterations > 1
    # One 25 us launch per replay of `iterations` calls, none inside the events.
    assert t.time_s == pytest.approx(4e-6, rel=1e-9)


def test_a_failed_capture_falls_back_to_events_and_says_why():
    gpu = FakeGPU(launch_s=25e-6, capture_error=RuntimeError(
        "operation not permitted when stream is capturing\nmore detail"))
    kernel = Kernel(gpu, [4e-6])
    t = time_call(kernel, "cuda", cuda=gpu, rounds=10, warmup_s=0.0)
    assert t.method == CUDA_EVENTS and t.l2_flush is True
    assert t.fallback_reason.startswith("CUDA graph capture failed (RuntimeError: operation "
                                        "not permitted when stream is capturing)")
    assert t.time_s == pytest.approx(4e-6, rel=1e-9)  # the flush keeps the device ahead
    assert t.record_fields() == {"timing_method": "cuda-events", "l2_flush": True,
                                 "timing_fallback_reason": t.fallback_reason}


def test_cpu_timing_is_labelled_as_such():
    t = time_call(lambda: None, "cpu", rounds=3, min_round_s=1e-4, warmup_s=0.0)
    assert t.record_fields() == {"timing_method": "cpu-perf-counter", "l2_flush": False,
                                 "timing_fallback_reason": None}


def test_replay_clock_gives_each_round_its_sample():
    clock = ReplayClock([1.0, 3.0], iterations=2)
    t0 = clock()
    clock.advance(), clock.advance()
    t1 = clock()
    clock.advance(), clock.advance()
    assert (t1 - t0, clock() - t1) == (2.0, 6.0)


def test_pytest_benchmark_gets_the_device_figures(benchmark):
    gpu = FakeGPU()
    t = timing.benchmark_call(benchmark, Kernel(gpu, [300e-6, 100e-6, 200e-6]), "cuda",
                              cuda=gpu, rounds=9, warmup_s=0.0)
    stats = benchmark.stats.stats
    assert t.method == CUDA_EVENTS and stats.rounds == 9
    assert stats.median == pytest.approx(t.time_s, rel=1e-9)
    assert stats.median == pytest.approx(200e-6, rel=1e-9)
    assert stats.min == pytest.approx(100e-6, rel=1e-9)
