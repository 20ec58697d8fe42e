"""A simulated CUDA device for timing tests: one stream, a host clock and a device clock.

Every launch costs the host ``launch_s`` of its own time; the device starts the work when the
launch has arrived and the work before it is done, and runs it for its duration. An event is
stamped when the device reaches it; ``synchronize`` makes the host wait for the device. Graph
capture records launches instead of running them; a replay is one launch that runs them all.
This is how the real device orders work (CUDA C++ Programming Guide, "Asynchronous Concurrent
Execution" and "Events"), so a timing method that leaks host time into its figure shows it here.
"""

from __future__ import annotations


class FakeEvent:
    def __init__(self, gpu: "FakeGPU"):
        self.gpu, self.t = gpu, None

    def record(self) -> None:
        self.gpu.host_s += self.gpu.event_host_s
        self.t = self.gpu._run(0.0, "event")

    def elapsed_time(self, end: "FakeEvent") -> float:
        """Milliseconds, as torch.cuda.Event.elapsed_time."""
        assert self.t is not None and end.t is not None, "event not recorded"
        assert self.gpu.synchronized_after(end.t), "elapsed_time before the device finished"
        return (end.t - self.t) * 1e3


class FakeGPU:
    """The `bench.timing.CudaTiming` interface over a simulated device."""

    def __init__(self, launch_s=25e-6, event_host_s=1e-6, flush_s=80e-6, capture_error=None):
        self.host_s = 0.0        # the host's clock
        self.device_free_s = 0.0  # when the device finishes what is queued
        self.synced_s = 0.0
        self.launch_s, self.event_host_s, self.flush_s = launch_s, event_host_s, flush_s
        self.capture_error = capture_error
        self.capturing: list[float] | None = None
        self.log: list[tuple[str, float, float]] = []  # (what, device start, device end)

    # the device
    def _run(self, duration_s: float, what: str) -> float:
        start = max(self.host_s, self.device_free_s)
        self.device_free_s = start + duration_s
        self.log.append((what, start, self.device_free_s))
        return self.device_free_s

    def launch(self, duration_s: float, what: str = "kernel") -> None:
        if self.capturing is not None:
            self.capturing.append(duration_s)
            return
        self.host_s += self.launch_s
        self._run(duration_s, what)

    def host_work(self, seconds: float) -> None:
        """Python between launches: only the host's clock moves."""
        self.host_s += seconds

    def synchronized_after(self, t: float) -> bool:
        return self.synced_s >= t

    # the CudaTiming interface
    def event(self) -> FakeEvent:
        return FakeEvent(self)

    def synchronize(self) -> None:
        self.host_s = max(self.host_s, self.device_free_s)
        self.synced_s = self.host_s

    def flush_l2(self) -> None:
        self.launch(self.flush_s, "flush")

    def capture(self, fn, calls):
        fn()  # warm-up on the capture stream
        if self.capture_error is not None:
            raise self.capture_error
        self.capturing = []
        try:
            for _ in range(calls):
                fn()
        finally:
            captured, self.capturing = self.capturing, None
        total = sum(captured)
        return lambda: self.launch(total, "graph")


class Kernel:
    """A kernel on a `FakeGPU` whose device time follows ``durations_s`` in turn (cycling), with
    ``host_s`` of Python before each launch."""

    def __init__(self, gpu: FakeGPU, durations_s, host_s=0.0):
        self.gpu, self.durations_s, self.host_s = gpu, list(durations_s), host_s
        self.calls = 0

    def __call__(self) -> None:
        self.gpu.host_work(self.host_s)
        self.gpu.launch(self.durations_s[self.calls % len(self.durations_s)])
        self.calls += 1
