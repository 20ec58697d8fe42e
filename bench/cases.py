"""Running one kernel spec as a benchmark case: check, time, measure power, describe.

The order matters. A case is checked against its float64 reference on fresh random data
first; a wrong result fails the case and is never recorded. Timing then runs on other fresh
random data (never zeros, which some hardware multiplies faster), and power is measured over a
separate steady window of back-to-back calls, because energy counters update only every
~100 ms and a latency measurement is far too short for them.
"""

from __future__ import annotations

import time
import zlib

import pytest
import torch

from bench.power import power_fields
from bench.timing import TIMING_FIELDS, benchmark_call, synchronize
from kernels.spec import KernelSpec
from scaling.schema import make_record


def case_seed(name: str) -> int:
    """A stable per-case seed, so reruns check and time the same data."""
    return zlib.crc32(name.encode())


def case_group(fields: dict) -> str:
    """The pytest-benchmark table a case goes in: its family, pass, dtype and variant
    (``gemm fwd bf16``), so that each table compares like with like."""
    return " ".join(str(fields[key]) for key in ("kernel", "direction", "dtype", "variant")
                    if fields.get(key))


def run_case(benchmark, spec: KernelSpec, session, label: str = "") -> dict:
    """Check, time and power-measure ``spec`` on ``session.device``; returns the record's
    fields (also attached to ``benchmark.extra_info``)."""
    device = session.device
    reason = spec.unavailable(device)
    if reason:
        pytest.skip(reason)
    seed = case_seed(spec.name)
    with spec.context():  # e.g. SDPA's backend pin, held over every call below
        try:
            rel_error = spec.check(device, seed=seed)
            inputs = spec.make_inputs(device, seed + 1)
        except torch.cuda.OutOfMemoryError:
            pytest.skip(f"{spec.name} does not fit in the memory of {session.device_name}")

        def call():
            spec.run(*inputs)

        def sync():
            synchronize(device)

        benchmark.group = case_group(spec.identity())  # read when the timing is recorded
        timing = benchmark_call(benchmark, call, device, sync=sync)
        power = power_fields(session.telemetry, call, sync, spec.flops, session.power_window_s)
    fields = make_record(
        "kernel", **spec.identity(), name=spec.name, device=device.type,
        device_name=session.device_name, time_s=timing.time_s, rel_error=rel_error,
        tolerance=spec.tolerance, label=label, power=power,
        **timing.record_fields())  # which method measured time_s (bench/timing.py)
    # pytest-benchmark users see the headline figures in extra_info; flopcast's record keeps all.
    benchmark.extra_info.update({k: fields[k] for k in (
        "kernel", "impl", "baseline", "backend", "dtype", "direction", "variant", "layout",
        "shape", "flops", "bytes", "tflops", "gbps", "device", "device_name", "rel_error",
        "avg_power_w", "energy_j", "sustained_tflops", *TIMING_FIELDS)})
    benchmark.extra_info["flopcast"] = fields
    del inputs
    if session.cooldown_s > 0:
        time.sleep(session.cooldown_s)
    return fields
