"""Telemetry that hangs or lies: NVML calls that block (the fake's ``hang_s``) must not stall a
window nor give it a wrong power, and readings physics rules out must never pass, in the
telemetry nor in the results loader."""

from __future__ import annotations

import json
import math
import time

import pytest

from bench.telemetry import base as telemetry
from bench.telemetry import gpu_inventory, open_telemetry
from bench.telemetry import nvml as bench_nvml
from scaling.errors import ResultsFileError
from scaling.records.load import load_results
from scaling.schema import SchemaError, impossible_reading, validate_record
from tests.support.fake_pynvml import FakeGpu
from tests.support.records_factory import gemm_record, write_run
from tests.test_bench.test_telemetry import install  # noqa: F401 - the fixture

INTERVAL_S = 0.002
DEADLINE_S = 0.05  # deadlines in these tests; a hanging call sleeps HANG_S
HANG_S = 0.6
ENERGY = "nvmlDeviceGetTotalEnergyConsumption"


@pytest.fixture
def short_deadlines(monkeypatch):
    monkeypatch.setattr(bench_nvml, "NVML_CALL_DEADLINE_S", DEADLINE_S)
    monkeypatch.setattr(bench_nvml, "NVML_INIT_DEADLINE_S", DEADLINE_S)


def assert_null_power(window, *words):
    assert (window.energy_j, window.avg_power_w, window.max_power_w) == (None, None, None)
    assert window.missing_reason is not None
    for word in words:
        assert word in window.missing_reason, window.missing_reason


def timed_window(tel, during=lambda: None):
    start = time.perf_counter()
    with tel.window() as measured:
        during()
        time.sleep(0.01)
    return measured.window, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Item 4: calls that hang
# ---------------------------------------------------------------------------------------------

def test_energy_read_hanging_at_window_start(install, short_deadlines):
    gpu = FakeGpu()
    module = install([gpu])
    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        module.hang_s[ENERGY] = HANG_S
        window, elapsed_s = timed_window(tel, lambda: module.hang_s.clear())
    assert elapsed_s < HANG_S / 2
    assert_null_power(window, "window start",
                      f"energy counter read did not answer within {DEADLINE_S:g} s")


def test_energy_read_hanging_at_window_end(install, short_deadlines):
    gpu = FakeGpu()
    module = install([gpu])

    def during():
        gpu.energy_mj += 2_000
        module.hang_s[ENERGY] = HANG_S

    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        window, elapsed_s = timed_window(tel, during)
    assert elapsed_s < HANG_S / 2
    assert_null_power(window, "window end", "did not answer")


def test_last_sample_hanging(install, short_deadlines, monkeypatch):
    gpu = FakeGpu()
    module = install([gpu])
    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        tel.begin()
        gpu.energy_mj += 2_000
        time.sleep(0.01)
        sampler_stop = tel._sampler.stop

        def stop_then_hang():  # the sampler has stopped: only the window's last sample hangs
            fault = sampler_stop()
            module.hang_s["nvmlDeviceGetTemperature"] = HANG_S
            return fault

        monkeypatch.setattr(tel._sampler, "stop", stop_then_hang)
        start = time.perf_counter()
        window = tel.end()
        assert time.perf_counter() - start < HANG_S / 2
    assert_null_power(window, "last sample", "did not answer")


def test_nvml_init_hanging(install, short_deadlines):
    install([FakeGpu()], hang_s={"nvmlInit": HANG_S})
    start = time.perf_counter()
    tel = open_telemetry("cuda:0", interval_s=INTERVAL_S)
    inventory = gpu_inventory("cuda:0")
    assert time.perf_counter() - start < HANG_S  # two opens, neither waits for the hang
    assert tel.backend == "none"
    assert "NVML initialisation hangs" in tel.reason and "nvmlInit" in tel.reason
    assert inventory["telemetry_backend"] == "none" and inventory["driver"] is None


def test_a_device_query_hanging_while_opening(install, short_deadlines):
    module = install([FakeGpu()], hang_s={"nvmlDeviceGetHandleByPciBusId": HANG_S})
    start = time.perf_counter()
    tel = open_telemetry("cuda:0", interval_s=INTERVAL_S)
    assert time.perf_counter() - start < HANG_S / 2
    assert tel.backend == "none" and "NVML hangs" in tel.reason
    assert module.nvmlShutdown.call_count == 1


def test_late_sampler_samples_are_dropped_with_a_reason(install, monkeypatch):
    monkeypatch.setattr(telemetry, "SAMPLE_DEADLINE_S", 0.01)
    gpu = FakeGpu()
    module = install([gpu])
    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        module.hang_s["nvmlDeviceGetTemperature"] = 0.03  # every sample takes 30 ms
        with tel.window() as measured:
            gpu.energy_mj += 20_000  # 20 J in >= 0.1 s: at most 200 W
            time.sleep(0.1)
    window = measured.window
    assert window.missing_reason is None and window.energy_j == 20.0  # the counter is kept
    assert len(window.notes) == 1 and "late sample(s) dropped" in window.notes[0]
    late = int(window.notes[0].split()[0])
    assert late >= 1
    assert len(window.samples) == 1  # only the last one, read on time under its deadline


# ---------------------------------------------------------------------------------------------
# Item 5: readings physics rules out
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("power_w, words", [
    (-5.0, "-5.0 W is negative"),
    (1e9, "above 2 x the board's 700 W power limit"),
    (1401.0, "1401.0 W is above 2 x"),
])
def test_impossible_power_samples_null_the_power(install, power_w, words):
    gpu = FakeGpu(power_w=power_w)
    install([gpu])
    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        window, _ = timed_window(tel, lambda: setattr(gpu, "energy_mj", gpu.energy_mj + 2_000))
    assert_null_power(window, "impossible power reading", words)
    assert all(s.power_w is None for s in window.samples)


def test_power_at_the_limit_factor_passes(install):
    gpu = FakeGpu(power_w=1400.0)  # exactly 2 x the 700 W limit: not ruled out
    install([gpu])
    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        window, _ = timed_window(tel, lambda: setattr(gpu, "energy_mj", gpu.energy_mj + 2_000))
    assert window.missing_reason is None and window.max_power_w == 1400.0


def test_energy_counter_jump_is_refused(install):
    gpu = FakeGpu()
    install([gpu])
    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        # 1e15 W for 10 ms: 1e13 J = 1e16 mJ.
        window, _ = timed_window(tel, lambda: setattr(gpu, "energy_mj", gpu.energy_mj + 10**16))
    assert_null_power(window, "impossible energy", "above 2 x the board's 700 W power limit")


def test_counter_energy_is_judged_with_one_update_of_slack(install):
    # 100 J in a ~10 ms window is 10 kW over the window, but an energy counter that updates
    # every 100 ms may show one update's worth more: 100 J in 0.11 s is 909 W < 1400 W.
    gpu = FakeGpu()
    install([gpu])
    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        window, _ = timed_window(tel, lambda: setattr(gpu, "energy_mj", gpu.energy_mj + 100_000))
    assert window.missing_reason is None and window.energy_j == 100.0


@pytest.mark.parametrize("field, value, kept", [
    ("sm_clock_mhz", -1980, "mem_clock_mhz"),
    ("mem_clock_mhz", 0, "sm_clock_mhz"),
    ("temp_c", 1_000_000, "sm_clock_mhz"),
    ("temp_c", -273, "sm_clock_mhz"),
])
def test_impossible_clocks_and_temperatures_are_dropped(install, field, value, kept):
    gpu = FakeGpu(**{field: value})
    install([gpu])
    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        window, _ = timed_window(tel, lambda: setattr(gpu, "energy_mj", gpu.energy_mj + 2_000))
    assert getattr(window, field) is None
    assert all(getattr(s, field) is None for s in window.samples)
    assert window.notes and all(f"{field} at t=" in note for note in window.notes)
    assert getattr(window, kept) is not None  # the good readings stay
    assert window.missing_reason is None and window.energy_j == 2.0  # power is unaffected


def test_an_impossible_power_limit_is_dropped(install):
    gpu = FakeGpu(power_limit_mw=-1)
    install([gpu])
    with open_telemetry("cuda:0", interval_s=INTERVAL_S) as tel:
        window, _ = timed_window(tel, lambda: setattr(gpu, "energy_mj", gpu.energy_mj + 2_000))
    assert window.power_limit_w is None
    assert any("power limit dropped" in note for note in window.notes)


def test_rapl_power_is_bounded_without_a_limit():
    samples = [telemetry.Sample(0.0, power_w=50.0), telemetry.Sample(0.1, power_w=2e4)]
    window = telemetry.summarise("rapl", 0.1, samples, energy_j=1.0,
                                 energy_source="energy counter")
    assert window.avg_power_w is None and "above 10000 W" in window.missing_reason


@pytest.mark.parametrize("field, value, limit, words", [
    ("avg_power_w", -1.0, None, "negative"),
    ("avg_power_w", 1e9, 700.0, "above 2 x"),
    ("max_power_w", 1500.0, 700.0, "above 2 x"),
    ("avg_power_w", 20_000.0, None, "above 10000 W"),
    ("energy_j", -0.5, None, "negative"),
    ("sm_clock_mhz", -1980.0, None, "not a clock"),
    ("mem_clock_mhz", 1e6, None, "not a clock"),
    ("temp_c", 1e6, None, "outside"),
    ("power_limit_w", -700.0, None, "negative"),
    ("avg_power_w", math.inf, None, "not a finite"),
])
def test_the_schema_refuses_impossible_readings(field, value, limit, words):
    record = gemm_record(**{"power_limit_w": limit, field: value})
    with pytest.raises(SchemaError) as caught:
        validate_record(record)
    assert caught.value.field == f"record.{field}"
    assert words in str(caught.value)


def test_a_window_mean_gets_one_counter_update_of_slack():
    # 100 ms windows at a 700 W limit: up to 2 x 700 x (0.1 + 0.1) / 0.1 = 2800 W.
    ok = gemm_record(avg_power_w=2800.0, power_limit_w=700.0, power_window_s=0.1)
    validate_record(ok)
    with pytest.raises(SchemaError, match="avg_power_w"):
        validate_record(dict(ok, avg_power_w=2801.0))
    with pytest.raises(SchemaError, match="max_power_w"):  # samples get no slack
        validate_record(dict(ok, max_power_w=1401.0))


def test_the_schema_accepts_real_readings():
    record = gemm_record(avg_power_w=650.0, max_power_w=700.0, power_limit_w=700.0,
                         energy_j=0.2, sm_clock_mhz=1980.0, mem_clock_mhz=2619.0, temp_c=71.0)
    validate_record(record)
    assert impossible_reading("temp_c", -40.0) is None
    assert impossible_reading("avg_power_w", 1400.0, 700.0) is None


def test_the_loader_refuses_a_file_with_impossible_power(tmp_path):
    path = write_run(tmp_path)
    data = json.loads(path.read_text())
    records = data["flopcast"]["records"] if "flopcast" in data else data["records"]
    records[0].update(avg_power_w=1e15, power_limit_w=700.0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ResultsFileError, match="avg_power_w.*impossible reading"):
        load_results(bad)
    with pytest.warns(UserWarning, match="skipped .*bad.json.*impossible reading"):
        kept = load_results([path, bad], skip_invalid=True)
    assert len(kept) == 2  # the good file's two records, the bad file skipped
