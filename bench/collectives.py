"""Collective communication: how fast do the ranks of a training job talk to each other?

At 16k-100k GPUs the network decides how much of the kernel throughput survives, so flopcast
measures the five collectives training uses, with the same distributed engine training uses
(``torch.distributed``: NCCL on GPUs, gloo on CPUs):

* all-reduce (data-parallel gradients), all-gather and reduce-scatter (sharded data
  parallelism, tensor parallelism), all-to-all (mixture-of-experts token routing) and
  broadcast.

This module measures them on a process group that is already joined (`run_sweep`); the
command that launches ranks, joins them and writes the results file is `bench.comm`.

Bandwidths are the ones nccl-tests defines (nccl-tests, doc/PERFORMANCE.md):

* ``message_bytes`` is the size of the whole buffer of the operation: the buffer reduced by
  all-reduce, the gathered output of all-gather, the input of reduce-scatter, what one rank
  sends in all-to-all, the broadcast buffer. Chunked collectives round it down to a multiple
  of the world size.
* ``time_s``: as nccl-tests times, N iterations run back to back between one start and one
  end event (the wall clock on a CPU, where gloo's collectives return when done), and the
  time over N is one sample; the median of a few such batches on each rank, then the maximum
  over ranks (a collective is done when its slowest rank is; nccl-tests reports the mean of
  one batch). Events around each operation would put the host's launch cost of every
  operation inside its time; back to back, launches overlap the operations before them.
  N is planned from a first, warm-up batch.
* algorithm bandwidth ``algbw = message_bytes / time_s``;
* bus bandwidth ``busbw = algbw * factor``, the factor that makes busbw comparable with the
  link speed whatever the world size ``n``: all-reduce ``2(n-1)/n``, all-gather,
  reduce-scatter and all-to-all ``(n-1)/n``, broadcast 1.

Every result is checked on the first iteration: each rank's input is built so that the exact
output is known (`_Case`), and any wrong, missing or unwritten element fails the run before
anything is timed. Every step kicks the `bench.ranks.Watchdog`, so a rank stuck in a
collective ends the run instead of hanging it.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bench.rank_power import combine, gather_windows, null_power, rank_window, window_calls
from bench.ranks import CommError, Watchdog, max_across_ranks
from bench.telemetry.base import Telemetry
from bench.timing import CPU_PERF_COUNTER, CUDA_EVENTS, CudaTiming, Timing, synchronize
from kernels.spec import TOLERANCE, torch_dtype
from scaling.schema import make_record

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast")

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
# Message sizes: the full sweep doubles from 1 KiB to 1 GiB (as nccl-tests `-b 1K -e 1G -f 2`);
# the quick sweep quadruples from 1 KiB to 64 MiB (9 sizes, seconds on a CPU).
SWEEP_SIZES = {
    "quick": tuple(KiB * 4**i for i in range(9)),
    "full": tuple(KiB * 2**i for i in range(21)),
}

# Iterations per message size. nccl-tests runs 5 warm-up and 20 timed iterations by default;
# flopcast runs as many as fit in a target time, within [min, max], split into TIMED_BATCHES
# back-to-back batches (each one sample, for the median).
ITERATIONS = {
    #         warm-up, min, max, target seconds of timed iterations
    "quick": (2, 5, 50, 0.1),
    "full": (5, 20, 200, 0.5),
}

DEFAULT_TIMEOUT_S = 300.0
TIMED_BATCHES = 5


# -- the figures ---------------------------------------------------------------------------


def bus_factor(collective: str, world_size: int) -> float:
    """nccl-tests' factor from algorithm to bus bandwidth for ``world_size`` ranks."""
    n = world_size
    if collective == "all_reduce":
        return 2 * (n - 1) / n
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    if collective == "broadcast":
        return 1.0
    raise CommError(f"unknown collective '{collective}'; known: {', '.join(COLLECTIVES)}")


def bandwidths_gbps(collective: str, message_bytes: int, world_size: int,
                    time_s: float) -> tuple[float, float]:
    """(algbw, busbw) in GB/s (1e9 bytes per second) for one operation of ``time_s``."""
    algbw = message_bytes / time_s / 1e9
    return algbw, algbw * bus_factor(collective, world_size)


def message_elements(collective: str, message_bytes: int, world_size: int,
                     element_size: int) -> int:
    """Elements of the operation's whole buffer: ``message_bytes`` rounded down to whole
    elements and, for collectives that split the buffer into one chunk per rank, to a multiple
    of the world size. 0 when the message is too small to give every rank an element."""
    count = message_bytes // element_size
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        count -= count % world_size
    return count


# -- one collective at one size -------------------------------------------------------------


def _gather_single(out, inp):
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    fn(out, inp)


def _reduce_scatter_single(out, inp):
    fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    fn(out, inp)


class _Case:
    """Buffers for one collective on ``count`` elements, built so the exact result is known.

    Every rank draws the same random payload ``w`` (same seed). Then:

    * all-reduce / reduce-scatter: rank r holds ``w`` at the elements it owns (index i with
      i mod n == r) and zeros elsewhere, so the sum over ranks is exactly ``w`` in any dtype
      and any reduction order; a dropped, doubled or misplaced contribution changes it.
    * all-gather: rank r contributes chunk r of ``w``; the result is ``w``.
    * all-to-all: rank s sends ``w`` rotated by s elements, so chunk s of rank r's output must
      be chunk r of that rotation: every chunk names its sender.
    * broadcast: rank 0 holds ``w``; every rank must end with it.

    Outputs start as NaN, so an element nobody wrote fails the check.
    """

    def __init__(self, collective: str, count: int, rank: int, world_size: int,
                 dtype: torch.dtype, device: torch.device, seed: int):
        self.collective, self.count, self.rank, self.n = collective, count, rank, world_size
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        w = torch.randn(count, generator=gen, device=device).to(dtype)
        chunk = count // world_size
        self.w, self.chunk = w, chunk
        nan = float("nan")
        if collective in ("all_reduce", "reduce_scatter"):
            owned = torch.zeros_like(w)
            owned[rank::world_size] = w[rank::world_size]
            self.inp = owned
            self.out = owned.clone() if collective == "all_reduce" else \
                torch.full((chunk,), nan, dtype=dtype, device=device)
        elif collective == "all_gather":
            self.inp = w[rank * chunk:(rank + 1) * chunk].clone()
            self.out = torch.full_like(w, nan)
        elif collective == "all_to_all":
            self.inp = torch.roll(w, -rank)
            self.out = torch.full_like(w, nan)
        elif collective == "broadcast":
            self.inp = w
            self.out = w.clone() if rank == 0 else torch.full_like(w, nan)
        else:
            raise CommError(f"unknown collective '{collective}'; known: {', '.join(COLLECTIVES)}")

    def reset(self) -> None:
        """Refill an in-place buffer between iterations (all-reduce would otherwise grow it
        n-fold per iteration). Not part of the timed operation."""
        if self.collective == "all_reduce":
            self.out.copy_(self.inp)

    def run(self) -> None:
        c = self.collective
        if c == "all_reduce":
            dist.all_reduce(self.out)
        elif c == "all_gather":
            _gather_single(self.out, self.inp)
        elif c == "reduce_scatter":
            _reduce_scatter_single(self.out, self.inp)
        elif c == "all_to_all":
            dist.all_to_all_single(self.out, self.inp)
        else:
            dist.broadcast(self.out, src=0)

    def expected(self) -> torch.Tensor:
        c, w, r, k = self.collective, self.w, self.rank, self.chunk
        if c == "reduce_scatter":
            return w[r * k:(r + 1) * k]
        if c == "all_to_all":
            # chunk s came from rank s: elements r*k .. r*k+k-1 of w rotated by s.
            return torch.cat([_rotated_slice(w, s, r * k, k) for s in range(self.n)])
        return w

    def error(self) -> float:
        """Relative Frobenius error of this rank's output against the exact result (0 when
        every element matches; inf for an unwritten (NaN) element)."""
        expected = self.expected()
        if torch.equal(self.out, expected):
            return 0.0
        diff = (self.out.double() - expected.double()).norm().item()
        ref = expected.double().norm().item()
        if not math.isfinite(diff):
            return math.inf
        return diff / ref if ref > 0 else math.inf


def _rotated_slice(w: torch.Tensor, shift: int, start: int, length: int) -> torch.Tensor:
    """``torch.roll(w, -shift)[start:start + length]`` without rolling all of ``w``."""
    first = (start + shift) % w.numel()
    if first + length <= w.numel():
        return w[first:first + length]
    return torch.cat([w[first:], w[:first + length - w.numel()]])


def case_seed(collective: str, count: int) -> int:
    return zlib.crc32(f"comm-{collective}-{count}".encode())


# -- timing ----------------------------------------------------------------------------------


def time_iterations(case: _Case, iterations: int, device: torch.device,
                    watchdog: Watchdog, cuda=None) -> float:
    """Seconds per operation of ``iterations`` back-to-back operations on this rank: one pair
    of CUDA events around them all on a GPU (``cuda``: a `bench.timing.CudaTiming` or a
    fake), the wall clock around them on a CPU (gloo's collectives return when done). The
    all-reduce buffer is refilled once before the batch, not between operations (neither
    NCCL's nor gloo's reduction cost depends on the values)."""
    watchdog.kick()
    case.reset()
    if device.type == "cuda":
        cuda = cuda or CudaTiming(device)
        start, end = cuda.event(), cuda.event()
        start.record()
        for _ in range(iterations):
            case.run()
        end.record()
        cuda.synchronize()
        watchdog.kick()
        return start.elapsed_time(end) / 1e3 / iterations
    t0 = time.perf_counter()
    for _ in range(iterations):
        case.run()
    elapsed_s = time.perf_counter() - t0
    watchdog.kick()
    return elapsed_s / iterations


def plan_batches(one_op_s: float, settings: Settings) -> tuple[int, int]:
    """(batches, iterations per batch): `plan_iterations`' total, split into at most
    `TIMED_BATCHES` back-to-back batches."""
    total = plan_iterations(one_op_s, settings)
    batches = min(TIMED_BATCHES, total)
    return batches, math.ceil(total / batches)


def timing_method(device: torch.device) -> dict:
    """The record's timing-method fields (bench/timing.py, results/README.md)."""
    return {"timing_method": CUDA_EVENTS if device.type == "cuda" else CPU_PERF_COUNTER,
            "l2_flush": False, "timing_fallback_reason": None}


# -- the sweep -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What to measure and how long to try."""

    ops: tuple[str, ...] = COLLECTIVES
    sizes: tuple[int, ...] = SWEEP_SIZES["quick"]
    dtype: str = "fp32"
    sweep: str = "quick"
    warmup: int = ITERATIONS["quick"][0]
    min_iterations: int = ITERATIONS["quick"][1]
    max_iterations: int = ITERATIONS["quick"][2]
    target_s: float = ITERATIONS["quick"][3]
    timeout_s: float = DEFAULT_TIMEOUT_S
    power_window_s: float = 0.0  # 0: power not measured
    power_reason: str = "power window disabled (--power-window 0)"  # why, when 0


@dataclass(frozen=True)
class Group:
    """The process group the sweep runs on, as this rank sees it."""

    rank: int
    world_size: int
    nodes: int
    backend: str
    device: torch.device
    device_name: str
    telemetry: Telemetry


def plan_iterations(one_op_s: float, settings: Settings) -> int:
    """Timed iterations: enough to fill ``target_s``, within [min, max]. Every rank must call
    this with the same ``one_op_s`` (the maximum over ranks), or the ranks would disagree on how
    many collectives to run."""
    wanted = math.ceil(settings.target_s / max(one_op_s, 1e-9))
    return int(min(settings.max_iterations, max(settings.min_iterations, wanted)))


def measure(collective: str, message_bytes: int, group: Group, settings: Settings,
            watchdog: Watchdog) -> dict | None:
    """Check, time, then power-measure one collective at one message size on every rank.
    Returns the record's fields (the power fields complete on rank 0 only), or None when the
    message is smaller than one element per rank."""
    n, dtype = group.world_size, torch_dtype(settings.dtype)
    count = message_elements(collective, message_bytes, n, dtype.itemsize)
    if count == 0:
        return None
    nbytes = count * dtype.itemsize
    step = f"{collective} of {nbytes} bytes"
    watchdog.kick(f"preparing {step}")
    case = _Case(collective, count, group.rank, n, dtype, group.device,
                 case_seed(collective, count))

    # Correct first: the first iteration is checked on every rank before anything is timed.
    watchdog.kick(f"checking {step}")
    case.run()
    synchronize(group.device)
    local_error = case.error()
    tolerance = TOLERANCE[settings.dtype]
    worst = max_across_ranks([local_error if math.isfinite(local_error) else 1e300,
                              float(group.rank if local_error > tolerance else -1)], group.device)
    if not worst[0] <= tolerance:
        raise CommError(f"{step} over {n} ranks gave a wrong result on rank {int(worst[1])} "
                        f"(relative error {worst[0]:.3g} against the exact result, limit "
                        f"{tolerance:g}): the {group.backend} installation or the network is "
                        f"faulty; rerun with a single node to locate it")

    watchdog.kick(f"warming up {step}")
    warm = (time_iterations(case, settings.warmup, group.device, watchdog)
            if settings.warmup else 0.0)
    one_op_s = max_across_ranks([warm], group.device)[0]
    batches, iterations = plan_batches(one_op_s, settings)

    watchdog.kick(f"timing {step}")
    dist.barrier()
    mine = Timing.from_samples([time_iterations(case, iterations, group.device, watchdog)
                                for _ in range(batches)], iterations)
    median, low, mean, stddev, iqr = max_across_ranks(
        [mine.time_s, mine.time_s_min, mine.time_s_mean, mine.time_s_stddev, mine.time_s_iqr],
        group.device)
    algbw, busbw = bandwidths_gbps(collective, nbytes, n, median)
    power = measure_power(case, median, group, settings, watchdog, step)
    del case
    # Each statistic is the largest over ranks of that rank's statistic over batches of
    # back-to-back iterations; the record's GB/s (bytes / time) is the algorithm bandwidth.
    return make_record(
        "comm", name=f"comm-{settings.dtype}-{collective}-torch-{nbytes}x{n}", kernel="comm",
        impl="torch", dtype=settings.dtype, out_dtype=settings.dtype, direction="fwd",
        variant=collective, layout="", shape={"message_bytes": nbytes, "world_size": n},
        flops=0, bytes=nbytes, device=group.device.type, device_name=group.device_name,
        baseline=False, time_s=median, time_s_min=low, time_s_mean=mean,
        time_s_stddev=stddev, time_s_iqr=iqr, rounds=batches, iterations=iterations,
        **timing_method(group.device),
        rel_error=worst[0], tolerance=tolerance, backend=group.backend, power=power or None,
        world_size=n, nodes=group.nodes, message_bytes=nbytes, algbw_gbps=algbw,
        busbw_gbps=busbw)


def measure_power(case: _Case, time_s: float, group: Group, settings: Settings,
                  watchdog: Watchdog, step: str) -> dict:
    """Every rank runs the same number of operations in one steady telemetry window; rank 0
    combines the windows (`bench.rank_power`). All-reduce runs without refilling its buffer
    here (values grow, but neither NCCL's nor gloo's reduction cost depends on them)."""
    if settings.power_window_s <= 0:
        return null_power(group.telemetry.backend, settings.power_reason)
    calls = window_calls(settings.power_window_s, time_s)
    watchdog.kick(f"measuring the power of {step}")
    dist.barrier()

    def run():
        watchdog.kick()
        case.run()

    mine = rank_window(group.telemetry, run, lambda: synchronize(group.device), calls,
                       group.rank, time_s)
    watchdog.kick(f"gathering the power of {step}")
    windows = gather_windows(mine)
    return combine(windows) if windows is not None else {}


def format_row(record: dict) -> str:
    """One line of the progress table, nccl-tests style."""
    return (f"{record['variant']:>15} {record['message_bytes']:>12} "
            f"{record['time_s'] * 1e6:>12.1f} {record['algbw_gbps']:>10.3f} "
            f"{record['busbw_gbps']:>10.3f}")


HEADER = f"{'collective':>15} {'bytes':>12} {'time (us)':>12} {'algbw GB/s':>10} {'busbw GB/s':>10}"


def run_sweep(group: Group, settings: Settings, watchdog: Watchdog, out=sys.stdout) -> list[dict]:
    """Every collective of ``settings.ops`` at every size; rank 0 prints a line per case."""
    records = []
    if group.rank == 0:
        print(f"flopcast comm: {group.world_size} ranks on {group.nodes} node(s), "
              f"{group.backend} on {group.device.type} ({group.device_name}), "
              f"{settings.dtype}, sweep {settings.sweep}", file=out, flush=True)
        print(HEADER, file=out, flush=True)
    for collective in settings.ops:
        for size in settings.sizes:
            record = measure(collective, size, group, settings, watchdog)
            if record is None:
                continue
            records.append(record)
            if group.rank == 0:
                print(format_row(record), file=out, flush=True)
    return records
