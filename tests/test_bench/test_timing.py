"""Device-correct timing, with a fake device whose work runs asynchronously."""

import threading
import time

import pytest

from bench.timing import SyncTimer, Timing, plan_rounds, time_call


class AsyncDevice:
    """Like a GPU: a launch returns at once; the work finishes later, on another thread."""

    def __init__(self, work_s: float):
        self.work_s = work_s
        self.pending: list[threading.Thread] = []
        self.lock = threading.Lock()  # one stream: work items run one after another

    def _work(self):
        with self.lock:
            time.sleep(self.work_s)

    def launch(self):
        t = threading.Thread(target=self._work)
        t.start()
        self.pending.append(t)

    def synchronize(self):
        while self.pending:
            self.pending.pop().join()


def test_launch_alone_looks_free_without_synchronisation():
    dev = AsyncDevice(0.02)
    start = time.perf_counter()
    dev.launch()
    launch_s = time.perf_counter() - start
    dev.synchronize()
    assert launch_s < 0.01  # the trap the synchronising timer avoids


def test_time_call_measures_the_work_not_the_launch():
    dev = AsyncDevice(0.004)
    timing = time_call(dev.launch, "cpu", rounds=5, min_round_s=0.05, warmup_s=0.0,
                       sync=dev.synchronize)
    assert timing.rounds == 5
    assert timing.iterations >= 2  # launches amortised within a round
    # each call's work is serialised on the fake device: at least 4 ms per call
    assert timing.time_s >= 0.004 * 0.95
    assert timing.time_s < 0.004 * 10
    assert not dev.pending


def test_sync_timer_synchronises_before_reading_the_clock():
    events = []
    timer = SyncTimer(lambda: events.append("sync"), clock=lambda: events.append("clock") or 1.0)
    assert timer() == 1.0
    assert events == ["sync", "clock"]


def test_pytest_benchmark_stats_are_device_correct(benchmark):
    """The benchmark fixture's own statistics (what --benchmark-compare uses) include the
    asynchronous work."""
    from bench.timing import benchmark_call

    dev = AsyncDevice(0.003)
    timing = benchmark_call(benchmark, dev.launch, "cpu", rounds=3, min_round_s=0.006,
                            warmup_s=0.0, sync=dev.synchronize)
    assert benchmark.stats.stats.median == timing.time_s
    assert benchmark.stats.stats.median >= 0.003 * 0.95
    assert benchmark.stats.stats.rounds == 3


def test_plan_rounds_amortises_short_calls():
    rounds, iterations = plan_rounds(1e-5, "cuda")
    assert iterations == 1000  # 10 ms rounds of 10 us calls
    assert 5 <= rounds <= 200
    rounds, iterations = plan_rounds(2.0, "cuda")
    assert (rounds, iterations) == (5, 1)


def test_timing_statistics():
    t = Timing.from_samples([3.0, 1.0, 2.0, 4.0, 100.0], iterations=2)
    assert t.time_s == 3.0 and t.time_s_min == 1.0 and t.rounds == 5 and t.iterations == 2
    assert t.time_s_mean == pytest.approx(22.0)
