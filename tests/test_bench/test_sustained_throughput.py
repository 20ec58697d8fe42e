"""The planner's throughput is the power window's sustained TFLOP/s where a record has one
(the clocks its watts were read at), else the short window's TFLOP/s; and bench writes both."""

import math

import pandas as pd
import pytest

from bench.power import fields_from_window
from bench.records import write_results
from bench.telemetry import Window
from scaling.hardware.calibration import throughput_tflops
from scaling.hardware.calibration import build_profile
from scaling.hardware.load import load_profile
from scaling.records.load import load_results
from tests.support.records_factory import MACHINE, gemm_record

PLATEAU, HALF = 2.0, 4e7  # TFLOP/s and FLOPs of a saturating curve (scaling/hardware/curves.py)
SUSTAINED = 0.8  # the power window's clocks give 80% of the short window's rate


def rate(flops):
    return PLATEAU * flops / (flops + HALF)


def test_sustained_is_preferred_and_tflops_is_the_fallback():
    rows = pd.DataFrame([gemm_record(256, sustained_tflops=1.5),
                         gemm_record(512, sustained_tflops=None),
                         gemm_record(1024, sustained_tflops=float("nan"))])
    got = throughput_tflops(rows)
    assert got[0] == 1.5
    assert got[1] == pytest.approx(2 * 512 ** 3 / 1e-3 / 1e12)
    assert got[2] == pytest.approx(2 * 1024 ** 3 / 1e-3 / 1e12)


def test_kernel_curves_fit_the_sustained_rate(tmp_path):
    rows = []
    for i, n in enumerate((64, 128, 256, 512, 1024)):
        flops = 2 * n ** 3
        # Two records have no power window: their short-window rate is the sustained curve's
        # (as if measured at the same clocks), so the fit is exact only if each source is used.
        # (The loader recomputes TFLOP/s from FLOPs and time, so the time carries the rate.)
        sustained = SUSTAINED * rate(flops) if i % 2 == 0 else None
        time_s = flops / ((rate(flops) if sustained else SUSTAINED * rate(flops)) * 1e12)
        tflops = flops / time_s / 1e12
        rows.append(gemm_record(n, time_s=time_s, tflops=tflops, sustained_tflops=sustained))
    write_results(rows, MACHINE, tmp_path, source="pytest --benchmark", sweep="quick")
    profile = build_profile(load_results([tmp_path]))
    est = profile.matmul_tflops(300, 300, 300, "bf16")
    assert est.value == pytest.approx(SUSTAINED * rate(2 * 300 ** 3), rel=1e-6)


def test_power_curve_pairs_watts_with_the_sustained_rate(tmp_path):
    machine = dict(MACHINE, device="cuda", device_name="NVIDIA H100 80GB HBM3",
                   telemetry_backend="nvml")
    rows = []
    for n, util in zip((2048, 4096, 8192, 16384), (0.2, 0.4, 0.6, 0.8)):
        flops = 2 * n ** 3
        boost_time_s = flops / (util * 1.25 * 989e12)  # the short window ran 25% faster
        rows.append(gemm_record(n, time_s=boost_time_s, device="cuda",
                                device_name=machine["device_name"],
                                avg_power_w=100.0 + 500.0 * util, telemetry_backend="nvml",
                                sustained_tflops=util * 989.0, power_missing_reason=None))
    write_results(rows, machine, tmp_path, source="pytest --benchmark", sweep="quick")
    profile = load_profile(tmp_path)
    assert profile.power_w(0.5).value == pytest.approx(350.0)  # 100 + 500 * 0.5


def test_the_power_window_records_its_own_throughput():
    window = Window(backend="nvml", time_s=5.0, energy_j=2500.0, avg_power_w=500.0,
                    max_power_w=520.0, sm_clock_mhz=1755.0, mem_clock_mhz=2619.0, temp_c=70.0,
                    power_limit_w=700.0, throttle_reasons=())
    fields = fields_from_window(window, calls=1000, flops=2 * 8192 ** 3)
    # 1000 calls of 2*8192^3 FLOPs in 5 s: 219.9 TFLOP/s, by hand.
    assert fields["sustained_tflops"] == pytest.approx(2 * 8192 ** 3 * 1000 / 5.0 / 1e12)
    assert math.isclose(fields["sustained_tflops"], 219.902325555, rel_tol=1e-9)
    assert fields_from_window(window, calls=1000, flops=0)["sustained_tflops"] is None
