"""A record's power fields: the steady back-to-back window and what it turns into."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pynvml
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.telemetry import nvml as bench_nvml
from bench.telemetry.nvml import CudaIdentity
from bench.power import (POWER_FIELDS, fields_from_window, null_power_fields, power_fields,
                         run_back_to_back)
from bench.telemetry import Telemetry, Window, open_telemetry
from tests.support.fake_pynvml import FakeGpu, fake_module, nvml_error

README = Path(__file__).resolve().parents[2] / "results" / "README.md"


def readme_power_fields() -> list[str]:
    """The field names of the "Power and energy" table of the results schema."""
    text = README.read_text()
    table = text.split("Power and energy", 1)[1].split("\n\n", 2)[1]
    names = []
    for row in table.splitlines()[2:]:
        names += re.findall(r"`([a-z_]+)`", row.split("|")[1])
    return names


@pytest.fixture
def gpu(monkeypatch):
    """A fake GPU behind a fake pynvml, as cuda:0."""
    gpu = FakeGpu()
    monkeypatch.setitem(sys.modules, "pynvml", fake_module([gpu]))
    identity = CudaIdentity(0, uuid=gpu.uuid, pci_bus_id=gpu.pci_bus_id)
    monkeypatch.setattr(bench_nvml, "cuda_identity", lambda i: identity)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return gpu


def test_power_fields_are_the_schema_fields():
    assert list(POWER_FIELDS) == readme_power_fields()


def test_null_power_fields():
    fields = null_power_fields("none", "NVML library not found")
    assert list(fields) == list(POWER_FIELDS)
    assert fields["telemetry_backend"] == "none"
    assert fields["power_missing_reason"] == "NVML library not found"
    assert all(v is None for k, v in fields.items()
               if k not in ("telemetry_backend", "power_missing_reason"))


def test_back_to_back_fills_the_window_in_synchronised_batches():
    events = []
    calls = run_back_to_back(lambda: (events.append("run"), time.sleep(0.001)),
                             lambda: events.append("sync"), 0.05, batch_s=0.01)
    assert calls == events.count("run")
    assert events[:2] == ["run", "sync"]  # a first batch of one call
    assert events[-1] == "sync"  # the window ends on a synchronised device
    batches = "".join("r" if e == "run" else "s" for e in events).split("s")[:-1]
    assert max(len(b) for b in batches) > 1  # later batches grow to ~batch_s
    assert all(len(b) <= 10 for b in batches)  # and no longer: 10 ms / >= 1 ms per call


def test_back_to_back_stops_soon_after_the_window():
    start = time.perf_counter()
    run_back_to_back(lambda: time.sleep(0.002), lambda: None, 0.03, batch_s=0.01)
    elapsed_s = time.perf_counter() - start
    assert 0.03 <= elapsed_s < 0.03 + 0.2  # at most about one batch past the window


def test_power_fields_share_the_window_energy_over_the_calls(gpu):
    def run():  # each call costs exactly 1 J on the fake counter and takes 2 ms (500 W)
        gpu.energy_mj += 1000
        time.sleep(0.002)

    syncs = []
    flops = 2 * 4096**3
    with open_telemetry("cuda:0", interval_s=0.002) as tel:
        fields = power_fields(tel, run, lambda: syncs.append(1), flops, window_s=0.02)
    assert list(fields) == list(POWER_FIELDS)
    assert fields["telemetry_backend"] == "nvml"
    assert fields["power_missing_reason"] is None
    assert fields["energy_j"] == pytest.approx(1.0, rel=1e-12)
    assert fields["tflops_per_w"] == pytest.approx(flops / 1.0 / 1e12, rel=1e-12)
    assert fields["power_window_s"] >= 0.02
    calls = (gpu.energy_mj - 1_000_000) // 1000
    assert fields["avg_power_w"] == pytest.approx(calls * 1.0 / fields["power_window_s"])
    assert (fields["max_power_w"], fields["power_limit_w"]) == (350.0, 700.0)
    assert (fields["sm_clock_mhz"], fields["mem_clock_mhz"], fields["temp_c"]) == (1980, 2619, 45)
    assert fields["throttled"] is False and fields["throttle_reasons"] == []
    assert len(syncs) >= 2  # once before the window, then after every batch


def test_power_fields_flag_throttling(gpu):
    gpu.clock_events = pynvml.nvmlClocksEventReasonSwThermalSlowdown

    def run():
        gpu.energy_mj += 10

    with open_telemetry("cuda:0", interval_s=0.002) as tel:
        fields = power_fields(tel, run, lambda: None, 1, window_s=0.01)
    assert fields["throttled"] is True
    assert fields["throttle_reasons"] == ["sw_thermal_slowdown"]


def test_fault_in_the_window_gives_missing_power_not_a_crash(gpu):
    def run():
        gpu.energy_mj += 1000
        gpu.fail["nvmlDeviceGetTotalEnergyConsumption"] = nvml_error(
            pynvml.NVML_ERROR_GPU_IS_LOST)

    with open_telemetry("cuda:0", interval_s=0.002) as tel:
        fields = power_fields(tel, run, lambda: None, 10**12, window_s=0.01)
    assert fields["energy_j"] is None and fields["avg_power_w"] is None
    assert fields["tflops_per_w"] is None
    assert "GPU is lost" in fields["power_missing_reason"]
    assert fields["power_window_s"] >= 0.01


def test_no_telemetry_runs_nothing():
    ran = []
    fields = power_fields(Telemetry("RAPL not readable: permission denied"),
                          lambda: ran.append(1), lambda: ran.append(2), 10, window_s=5.0)
    assert ran == []
    assert fields == null_power_fields("none", "RAPL not readable: permission denied")


def test_zero_window_disables_power(gpu):
    ran = []
    with open_telemetry("cuda:0") as tel:
        fields = power_fields(tel, lambda: ran.append(1), lambda: None, 10, window_s=0)
    assert ran == [] and fields["telemetry_backend"] == "nvml"
    assert fields["energy_j"] is None and "disabled" in fields["power_missing_reason"]


def test_a_failing_kernel_propagates_and_closes_the_window(gpu):
    def run():
        raise ValueError("kernel failed")

    with open_telemetry("cuda:0", interval_s=0.002) as tel:
        with pytest.raises(ValueError, match="kernel failed"):
            power_fields(tel, run, lambda: None, 10, window_s=0.01)
        with tel.window() as measured:  # the window was ended: a new one opens
            gpu.energy_mj += 1000
    assert measured.window.energy_j == 1.0


@given(energy_j=st.floats(1e-6, 1e6), calls=st.integers(1, 10**6),
       flops=st.integers(0, 10**16), time_s=st.floats(1e-3, 1e3))
def test_per_call_energy_and_efficiency(energy_j, calls, flops, time_s):
    window = Window(backend="nvml", time_s=time_s, energy_j=energy_j,
                    avg_power_w=energy_j / time_s)
    fields = fields_from_window(window, calls, flops)
    assert fields["energy_j"] * calls == pytest.approx(energy_j, rel=1e-12)
    if flops == 0:
        assert fields["tflops_per_w"] is None
    else:
        # TFLOP/s per W computed the long way: throughput over power.
        tflops = flops * calls / time_s / 1e12
        assert fields["tflops_per_w"] == pytest.approx(tflops / (energy_j / time_s), rel=1e-9)
