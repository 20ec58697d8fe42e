"""Reliability and energy arithmetic against hand computation and published figures."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.plan import energy

from scaling.plan import reliability
from scaling.errors import DataError


def test_llama3_failure_rate_is_419_in_54_days_on_16384_gpus():
    rate = reliability.LLAMA3_FAILURES_PER_GPU_HOUR
    assert rate == pytest.approx(419 / (54 * 24 * 16384))
    # the cluster it came from fails every 54 * 24 / 419 = 3.093 hours
    assert reliability.mtbf_s(16384) / 3600 == pytest.approx(54 * 24 / 419)
    # and has 419 failures in 54 days
    rel = reliability.reliability(16384, 405e9)
    assert rel.interruptions(54 * 86400) == pytest.approx(419)


def test_young_daly_interval_by_hand():
    # 405B params x 14 bytes = 5.67 TB at 2 TB/s = 2.835 s per checkpoint
    assert reliability.checkpoint_seconds(405e9) == pytest.approx(2.835)
    m = 54 * 24 * 3600 / 419
    assert reliability.young_daly_interval_s(2.835, m) == pytest.approx(math.sqrt(2 * 2.835 * m))
    assert reliability.young_daly_interval_s(2.835, math.inf) == math.inf


def test_goodput_by_hand_and_llama3_effective_training_time():
    rel = reliability.reliability(16384, 405e9)
    m = 54 * 24 * 3600 / 419
    c = 405e9 * 14 / 2e12
    tau = math.sqrt(2 * c * m)
    r = 600 + c
    expected = (tau / (tau + c)) * (1 - (r + (tau + c) / 2) / m)
    assert rel.goodput == pytest.approx(expected, rel=1e-12)
    # Llama 3 reports more than 90% effective training time at this scale
    assert 0.90 < rel.goodput < 0.95


def test_goodput_falls_with_cluster_size_and_is_one_without_failures():
    small = reliability.reliability(16384, 2e12).goodput
    large = reliability.reliability(100_000, 2e12).goodput
    assert large < small - 0.2  # at 100k GPUs failures every half hour cost a third of the time
    assert reliability.reliability(100_000, 2e12, failures_per_gpu_hour=0).goodput == 1.0


def test_run_that_cannot_progress_is_an_error():
    with pytest.raises(DataError, match="no progress"):
        reliability.reliability(10_000_000, 2e12)
    with pytest.raises(DataError, match="positive"):
        reliability.reliability(0, 1e9)


@settings(max_examples=50, deadline=None)
@given(gpus=st.integers(1, 200_000), params=st.floats(1e8, 1e13))
def test_goodput_is_a_fraction_and_monotone_in_gpus(gpus, params):
    try:
        a = reliability.reliability(gpus, params).goodput
        b = reliability.reliability(gpus * 2, params).goodput
    except DataError:
        return
    assert 0 < b <= a <= 1


def test_dgx_h100_host_overhead_and_150_mw_for_100k_h100():
    assert energy.HOST_W_PER_GPU + energy.H100_TDP_W == pytest.approx(10_200 / 8)
    mw = energy.cluster_mw(100_000, 700)  # defaults: 575 W host, PUE 1.1
    assert mw == pytest.approx(100_000 * 1275 * 1.1 / 1e6)
    assert abs(mw - 150) / 150 < 0.20  # the press estimate (SemiAnalysis 2024)


def test_power_energy_and_cost_by_hand():
    out = energy.power_and_cost(gpus=1000, wall_s=10 * 3600, gpu_w=500, tdp_w=700, host_w=300,
                                pue=1.2, usd_per_gpu_hour=2.5, usd_per_kwh=0.1)
    assert out.facility_mw == pytest.approx(1000 * 1000 * 1.2 / 1e6)   # 1.2 MW
    assert out.avg_power_mw == pytest.approx(1000 * 800 * 1.2 / 1e6)   # 0.96 MW
    assert out.energy_mwh == pytest.approx(9.6)                        # 0.96 MW x 10 h
    assert out.gpu_cost_usd == pytest.approx(10_000 * 2.5)             # 10,000 GPU-hours
    assert out.energy_cost_usd == pytest.approx(9600 * 0.1)            # 9,600 kWh
    assert out.cost_usd == pytest.approx(25_960)


def test_bad_power_inputs_are_clear_errors():
    with pytest.raises(DataError, match="PUE must be at least 1"):
        energy.cluster_mw(8, 700, pue=0.9)
    with pytest.raises(DataError, match="GPU count must be positive"):
        energy.cluster_mw(-8, 700)
    with pytest.raises(DataError, match="per kWh"):
        energy.power_and_cost(gpus=8, wall_s=1, gpu_w=1, tdp_w=1, usd_per_kwh=-1)
