"""Telemetry backends: NVML through a fake ``pynvml`` at the import boundary, RAPL through a
fake powercap tree, and the ``none`` backend on this machine for real."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
import time

import pynvml
import pytest

from bench.telemetry import nvml as bench_nvml
from bench.telemetry import rapl as bench_rapl
from bench.telemetry import base as telemetry
from bench.telemetry.nvml import CudaIdentity
from bench.telemetry import (CLOCK_EVENT_REASONS, Sample, gpu_inventory, integrate_power,
                             open_telemetry, reason_names)
from tests.support.fake_pynvml import FakeGpu, fake_module, nvml_error

INTERVAL_S = 0.002  # sampler period in tests: windows last milliseconds

GPU_A = dict(uuid="GPU-aaaaaaaa-0000-0000-0000-000000000001", pci_bus_id="00000000:18:00.0")
GPU_B = dict(uuid="GPU-bbbbbbbb-0000-0000-0000-000000000002", pci_bus_id="00000000:3B:00.0")


def identity_of(index, gpu, **override):
    fields = dict(uuid=gpu.uuid, pci_bus_id=gpu.pci_bus_id, name=gpu.name,
                  memory_bytes=gpu.memory_bytes, compute_capability="9.0")
    fields.update(override)
    return CudaIdentity(index, **fields)


@pytest.fixture
def install(monkeypatch):
    """install(gpus, cuda=[CudaIdentity...], visible="...") puts a fake pynvml in
    sys.modules and makes the listed identities what CUDA reports for cuda:0, cuda:1, ..."""

    def install(gpus, cuda=None, visible=None, **kwargs):
        module = fake_module(gpus, **kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", module)
        cuda = [identity_of(i, g) for i, g in enumerate(gpus)] if cuda is None else cuda
        monkeypatch.setattr(bench_nvml, "cuda_identity", lambda i: cuda[i])
        monkeypatch.setattr(bench_nvml, "visible_cuda_count", lambda: len(cuda))
        monkeypatch.setattr(bench_nvml, "current_cuda_index", lambda: 0)
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        return module

    return install


def open_gpu(device="cuda:0"):
    return open_telemetry(device, interval_s=INTERVAL_S)


def wait_for(predicate, timeout_s=2.0):
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        assert time.perf_counter() < deadline, "condition not reached"
        time.sleep(INTERVAL_S)


# ---------------------------------------------------------------------------------------------
# NVML: energy, power, clocks
# ---------------------------------------------------------------------------------------------

def test_energy_is_the_counter_difference_over_the_window(install):
    gpu = FakeGpu(energy_mj=1_000_000)
    install([gpu])
    tel = open_gpu()
    assert (tel.backend, tel.reason) == ("nvml", None)
    tel.begin()
    gpu.energy_mj += 2_500  # 2.5 J during the window (250 W for 10 ms)
    time.sleep(0.01)
    window = tel.end()
    tel.close()
    assert window.missing_reason is None
    assert window.energy_source == "energy counter"
    assert window.energy_j == 2.5
    assert window.avg_power_w == pytest.approx(2.5 / window.time_s, rel=1e-12)
    assert window.max_power_w == 350.0  # from the polled trace
    assert window.power_limit_w == 700.0  # 700,000 mW enforced limit
    assert (window.sm_clock_mhz, window.mem_clock_mhz, window.temp_c) == (1980, 2619, 45)
    assert window.gpu_util_pct == 100
    assert window.throttle_reasons == () and window.throttled is False
    assert len(window.samples) >= 2 and all(s.power_w == 350.0 for s in window.samples)
    assert all(0 <= s.t_s <= window.time_s for s in window.samples)


def test_window_context_manager_returns_an_immutable_window(install):
    gpu = FakeGpu()
    install([gpu])
    with open_gpu() as tel:
        with tel.window() as measured:
            gpu.energy_mj += 1_500
        assert measured.window.energy_j == 1.5
        with pytest.raises(dataclasses.FrozenInstanceError):
            measured.window.energy_j = 0.0
        # a second window on the same telemetry measures afresh
        with tel.window() as again:
            gpu.energy_mj += 500
        assert again.window.energy_j == 0.5


def test_means_and_maxima_over_the_samples(install):
    gpu = FakeGpu()
    install([gpu])
    with open_gpu() as tel:
        tel.begin()
        gpu.energy_mj += 10
        time.sleep(0.005)
        gpu.sm_clock_mhz, gpu.temp_c = 1500, 80
        time.sleep(0.01)
        window = tel.end()
    clocks = [s.sm_clock_mhz for s in window.samples]
    assert window.sm_clock_mhz == pytest.approx(sum(clocks) / len(clocks))
    assert window.temp_c == max(s.temp_c for s in window.samples) == 80


def test_polling_fallback_without_the_energy_counter(install):
    """Before Volta the energy call raises NVMLError_NotSupported: integrate polled power."""
    gpu = FakeGpu(power_w=200.0, unsupported={"nvmlDeviceGetTotalEnergyConsumption"})
    install([gpu])
    with open_gpu() as tel:
        assert tel.backend == "nvml" and "Volta" in tel.reason
        with tel.window() as measured:
            time.sleep(0.02)
    window = measured.window
    assert window.missing_reason is None
    assert window.energy_source == "power polling"
    assert window.avg_power_w == pytest.approx(200.0)
    assert window.energy_j == pytest.approx(200.0 * window.time_s)
    assert window.max_power_w == 200.0


def test_polling_uses_power_usage_when_the_instant_field_is_missing(install):
    gpu = FakeGpu(power_w=123.0, unsupported={"nvmlDeviceGetTotalEnergyConsumption",
                                              "power_field"})
    module = install([gpu])
    with open_gpu() as tel:
        with tel.window() as measured:
            time.sleep(0.01)
    assert measured.window.avg_power_w == pytest.approx(123.0)
    assert module.nvmlDeviceGetPowerUsage.call_count >= 2


def test_polled_trace_gives_the_maximum(install):
    gpu = FakeGpu(power_w=100.0, unsupported={"nvmlDeviceGetTotalEnergyConsumption"})
    install([gpu])
    with open_gpu() as tel:
        gpu.power_trace = [100.0, 450.0, 100.0]
        with tel.window() as measured:
            wait_for(lambda: not gpu.power_trace)
    window = measured.window
    assert window.max_power_w == 450.0
    assert 100.0 < window.avg_power_w < 450.0


def test_trapezoid_integration_by_hand():
    samples = [Sample(0.0, power_w=100.0), Sample(1.0, power_w=200.0),
               Sample(2.0, power_w=100.0), Sample(2.5, power_w=None)]
    # (100+200)/2 * 1 + (200+100)/2 * 1 = 300 J over 2 s
    assert integrate_power(samples) == 150.0
    assert integrate_power(samples[:1]) is None
    assert integrate_power([Sample(1.0, power_w=5.0), Sample(1.0, power_w=6.0)]) is None


def test_neither_energy_nor_power_means_none(install):
    install([FakeGpu(unsupported={"nvmlDeviceGetTotalEnergyConsumption", "power_field",
                                  "nvmlDeviceGetPowerUsage"})])
    tel = open_gpu()
    assert tel.backend == "none" and "neither energy nor power" in tel.reason


def test_throttle_reasons_by_name(install):
    gpu = FakeGpu(clock_events=pynvml.nvmlClocksEventReasonSwPowerCap
                  | pynvml.nvmlClocksEventReasonGpuIdle)
    install([gpu])
    with open_gpu() as tel:
        with tel.window() as measured:
            gpu.energy_mj += 1
        assert measured.window.throttle_reasons == ("gpu_idle", "sw_power_cap")
        assert measured.window.throttled is True
        gpu.clock_events = pynvml.nvmlClocksEventReasonGpuIdle
        with tel.window() as measured:
            gpu.energy_mj += 1
        assert measured.window.throttle_reasons == ("gpu_idle",)
        assert measured.window.throttled is False  # idle is not power or heat


def test_temperature_from_the_versioned_call_when_the_old_one_is_gone(install):
    gpu = FakeGpu(temp_c=61, unsupported={"nvmlDeviceGetTemperature"})
    module = install([gpu])
    with open_gpu() as tel:
        with tel.window() as measured:
            gpu.energy_mj += 1
    assert measured.window.temp_c == 61
    assert module.nvmlDeviceGetTemperatureV.call_count >= 2


def test_older_drivers_read_throttle_reasons(install):
    gpu = FakeGpu(clock_events=pynvml.nvmlClocksEventReasonHwThermalSlowdown,
                  unsupported={"nvmlDeviceGetCurrentClocksEventReasons"})
    install([gpu])
    with open_gpu() as tel:
        with tel.window() as measured:
            gpu.energy_mj += 1
    assert measured.window.throttle_reasons == ("hw_thermal_slowdown",)


def test_reason_names_match_the_nvml_constants():
    """Every named bit in pynvml (nvml.h) has our snake-case name; unknown bits stay visible."""
    constants = {name[len("nvmlClocksEventReason"):]: getattr(pynvml, name)
                 for name in dir(pynvml) if name.startswith("nvmlClocksEventReason")}
    for suffix in ("None", "All", "UserDefinedClocks"):
        constants.pop(suffix)
    assert len(constants) == len(CLOCK_EVENT_REASONS) == 9
    for suffix, bit in constants.items():
        assert CLOCK_EVENT_REASONS[bit] == re.sub(r"(?<!^)(?=[A-Z])", "_", suffix).lower()
    assert reason_names(0) == ()
    assert reason_names(0x4 | 0x200) == ("sw_power_cap", "unknown_0x200")


def test_unsupported_readings_are_left_out_not_faults(install):
    gpu = FakeGpu(unsupported={"nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureV",
                               "nvmlDeviceGetUtilizationRates"})
    install([gpu])
    with open_gpu() as tel:
        assert tel.unsupported == ("gpu_util_pct", "temp_c")
        with tel.window() as measured:
            gpu.energy_mj += 2_000
    assert measured.window.missing_reason is None and measured.window.energy_j == 2.0
    assert measured.window.temp_c is None and measured.window.gpu_util_pct is None


# ---------------------------------------------------------------------------------------------
# NVML: which GPU is cuda:N
# ---------------------------------------------------------------------------------------------

def measures(tel, gpu) -> bool:
    """Whether `tel` reads `gpu`: only that GPU's counter moves during a window."""
    with tel.window() as measured:
        gpu.energy_mj += 7_000
    return measured.window.energy_j == 7.0


def test_mapping_by_pci_bus_id_not_index(install):
    a, b = FakeGpu(**GPU_A), FakeGpu(**GPU_B)
    module = install([a, b], cuda=[identity_of(0, b), identity_of(1, a)])  # CUDA order differs
    with open_gpu("cuda:0") as tel:
        assert measures(tel, b)
    module.nvmlDeviceGetHandleByPciBusId.assert_called_with(GPU_B["pci_bus_id"])
    module.nvmlDeviceGetHandleByIndex.assert_not_called()
    with open_gpu("cuda:1") as tel:
        assert measures(tel, a)
    with open_gpu("cuda") as tel:  # the current device, cuda:0 here
        assert measures(tel, b)


def test_mapping_by_uuid_when_cuda_gives_no_bus_id(install):
    a, b = FakeGpu(**GPU_A), FakeGpu(**GPU_B)
    install([a, b], cuda=[identity_of(0, b, pci_bus_id=None)])
    with open_gpu("cuda:0") as tel:
        assert measures(tel, b)


def test_mapping_through_cuda_visible_devices_uuids(install):
    a, b = FakeGpu(**GPU_A), FakeGpu(**GPU_B)
    nobody = [CudaIdentity(0), CudaIdentity(1)]  # CUDA tells nothing: the variable decides
    install([a, b], cuda=nobody, visible=f"{GPU_B['uuid']},{GPU_A['uuid']}")
    with open_gpu("cuda:0") as tel:
        assert measures(tel, b)
    with open_gpu("cuda:1") as tel:
        assert measures(tel, a)


def test_cuda_visible_devices_accepts_uuid_prefixes(install):
    a, b = FakeGpu(**GPU_A), FakeGpu(**GPU_B)
    install([a, b], cuda=[CudaIdentity(0)], visible="GPU-bbbb")
    with open_gpu("cuda:0") as tel:
        assert measures(tel, b)


def test_ambiguous_uuid_prefix_is_refused(install):
    install([FakeGpu(**GPU_A), FakeGpu(**GPU_B)], cuda=[CudaIdentity(0)], visible="GPU-")
    tel = open_gpu()
    assert tel.backend == "none" and "matches 2 NVML devices" in tel.reason


def test_uuid_mismatch_is_refused(install):
    a = FakeGpu(**GPU_A)
    install([a], cuda=[identity_of(0, a, uuid=GPU_B["uuid"])])
    tel = open_gpu()
    assert tel.backend == "none" and GPU_B["uuid"] in tel.reason


def test_unidentifiable_device_is_none(install):
    install([FakeGpu()], cuda=[CudaIdentity(0)])
    tel = open_gpu()
    assert tel.backend == "none" and "neither its PCI bus id nor its UUID" in tel.reason


def test_unknown_bus_id_is_none(install):
    install([FakeGpu(**GPU_A)], cuda=[CudaIdentity(0, pci_bus_id="00000000:99:00.0")])
    tel = open_gpu()
    assert tel.backend == "none" and "no NVML device for cuda:0" in tel.reason


def test_mig_slice_in_cuda_visible_devices_is_refused(install):
    install([FakeGpu()], visible="MIG-12345678-aaaa-bbbb-cccc-1234567890ab")
    tel = open_gpu()
    assert tel.backend == "none"
    assert "MIG slice" in tel.reason and "MIG disabled" in tel.reason


@pytest.mark.parametrize("mig", [dict(mig_enabled=True), dict(mig_handle=True)])
def test_mig_is_refused(install, mig):
    install([FakeGpu(**mig)])
    tel = open_gpu()
    assert tel.backend == "none" and "MIG slice" in tel.reason


def test_cuda_uuid_spelled_as_nvml_spells_it():
    assert bench_nvml._nvml_uuid("58e4e8f4-0000-1111-2222-333344445555") == \
        "GPU-58e4e8f4-0000-1111-2222-333344445555"
    assert bench_nvml._nvml_uuid("GPU-58e4") == "GPU-58e4"
    assert bench_nvml._nvml_uuid("") is None and bench_nvml._nvml_uuid(None) is None


# ---------------------------------------------------------------------------------------------
# NVML: faults never raise out of a window
# ---------------------------------------------------------------------------------------------

def lost():
    return nvml_error(pynvml.NVML_ERROR_GPU_IS_LOST)


def assert_power_missing(window, *words):
    assert window.energy_j is None and window.avg_power_w is None
    assert window.max_power_w is None and window.energy_source is None
    assert window.time_s > 0
    for word in words:
        assert word in window.missing_reason


def test_energy_read_failing_at_window_end(install):
    gpu = FakeGpu()
    install([gpu])
    with open_gpu() as tel:
        with tel.window() as measured:
            gpu.fail["nvmlDeviceGetTotalEnergyConsumption"] = lost()
        assert_power_missing(measured.window, "window end", "GPU is lost")
        assert measured.window.sm_clock_mhz == 1980  # what was read before stays
        del gpu.fail["nvmlDeviceGetTotalEnergyConsumption"]
        assert measures(tel, gpu)  # the next window works again


def test_any_exception_from_a_read_is_a_fault_of_the_window(install):
    gpu = FakeGpu()
    install([gpu])
    with open_gpu() as tel:
        with tel.window() as measured:
            gpu.fail["nvmlDeviceGetTotalEnergyConsumption"] = OSError("ioctl failed")
        assert_power_missing(measured.window, "window end", "OSError: ioctl failed")


def test_energy_read_failing_at_window_start(install):
    gpu = FakeGpu()
    install([gpu])
    with open_gpu() as tel:
        gpu.fail["nvmlDeviceGetTotalEnergyConsumption"] = lost()
        with tel.window() as measured:
            del gpu.fail["nvmlDeviceGetTotalEnergyConsumption"]
            gpu.energy_mj += 1000
        assert_power_missing(measured.window, "window start", "GPU is lost")


@pytest.mark.parametrize("function, error, words", [
    ("nvmlDeviceGetClockInfo", lost(), ("sampler", "NVMLError_GpuIsLost")),
    ("nvmlDeviceGetTemperature", RuntimeError("driver hiccup"),
     ("sampler thread died", "driver hiccup")),
], ids=["nvml-call-failing-mid-window", "thread-dying"])
def test_sampler_read_failing_mid_window(install, function, error, words):
    gpu = FakeGpu()
    module = install([gpu])
    with open_gpu() as tel:
        with tel.window() as measured:
            gpu.energy_mj += 1000
            gpu.fail[function] = error
            calls = getattr(module, function).call_count
            wait_for(lambda: getattr(module, function).call_count > calls)
        assert_power_missing(measured.window, *words)


def test_sampler_hanging(install, monkeypatch):
    monkeypatch.setattr(telemetry, "SAMPLER_JOIN_TIMEOUT_S", 0.05)
    gpu = FakeGpu()
    module = install([gpu])
    release = threading.Event()
    try:
        with open_gpu() as tel:
            with tel.window() as measured:
                gpu.energy_mj += 1000
                gpu.block["nvmlDeviceGetTemperature"] = release
                calls = module.nvmlDeviceGetTemperature.call_count
                wait_for(lambda: module.nvmlDeviceGetTemperature.call_count > calls)
            assert_power_missing(measured.window, "did not stop")
    finally:
        release.set()


def test_counter_going_backwards(install):
    gpu = FakeGpu(energy_mj=5_000_000)
    install([gpu])
    with open_gpu() as tel:
        with tel.window() as measured:
            gpu.energy_mj = 4_000_000
    assert_power_missing(measured.window, "went backwards", "5000000 -> 4000000")


def test_counter_not_advancing(install):
    install([FakeGpu()])
    with open_gpu() as tel:
        with tel.window() as measured:
            pass
    assert_power_missing(measured.window, "did not advance")


def test_window_misuse_is_a_programming_error(install):
    install([FakeGpu()])
    with open_gpu() as tel:
        with pytest.raises(RuntimeError, match="begin"):
            tel.end()
        tel.begin()
        with pytest.raises(RuntimeError, match="already open"):
            tel.begin()
        tel.end()


def test_close_shuts_nvml_down_once_per_init(install):
    module = install([FakeGpu()])
    tel = open_gpu()
    tel.close()
    tel.close()
    assert module.nvmlInit.call_count == module.nvmlShutdown.call_count == 1
    module = install([FakeGpu(mig_enabled=True)])
    assert open_gpu().backend == "none"  # refused after init: NVML must still be shut down
    assert module.nvmlInit.call_count == module.nvmlShutdown.call_count == 1


# ---------------------------------------------------------------------------------------------
# No NVML, and the none backend for real
# ---------------------------------------------------------------------------------------------

def test_nvml_library_missing(install):
    install([], init_error=nvml_error(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    tel = open_gpu()
    assert tel.backend == "none" and tel.reason.startswith("NVML library not found")
    with tel.window() as measured:
        pass
    assert measured.window.backend == "none"
    assert measured.window.missing_reason == tel.reason
    assert measured.window.energy_j is None and measured.window.time_s >= 0


def test_nvml_driver_not_loaded(install):
    install([], init_error=nvml_error(pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    assert open_gpu().reason == "NVML initialisation failed: Driver Not Loaded"


def test_pynvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    tel = open_gpu()
    assert tel.backend == "none" and "pynvml" in tel.reason and "not installed" in tel.reason


def _nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def _rapl_readable() -> bool:
    try:
        return any(os.access(z / "energy_uj", os.R_OK) and (z / "energy_uj").read_text()
                   for z in bench_rapl.package_zones(telemetry.DEFAULT_RAPL_ROOT))
    except OSError:
        return False


@pytest.mark.skipif(_nvml_works(), reason="this machine has NVML")
def test_none_backend_for_cuda_on_this_machine():
    tel = open_telemetry("cuda:0")
    assert tel.backend == "none"
    assert tel.reason.startswith(("NVML library not found", "NVML initialisation failed"))
    with tel.window() as measured:
        time.sleep(0.001)
    assert measured.window.missing_reason == tel.reason
    assert measured.window.time_s >= 0.001


@pytest.mark.skipif(_rapl_readable(), reason="this machine has readable RAPL")
def test_none_backend_for_cpu_on_this_machine():
    tel = open_telemetry("cpu")
    assert tel.backend == "none" and tel.reason.startswith("RAPL not")
    info = gpu_inventory("cpu")
    assert info["gpus"] == []
    assert (info["telemetry_backend"], info["telemetry_reason"]) == ("none", tel.reason)


def test_other_device_types_have_no_backend():
    tel = open_telemetry("mps")
    assert tel.backend == "none" and "mps" in tel.reason


# ---------------------------------------------------------------------------------------------
# gpu_inventory
# ---------------------------------------------------------------------------------------------

def test_gpu_inventory_from_nvml(install):
    a = FakeGpu(**GPU_A, name="NVIDIA H200", memory_bytes=150_754_820_096, power_limit_mw=700_000)
    b = FakeGpu(**GPU_B, max_sm_clock_mhz=1755, power_limit_mw=500_000)
    install([a, b], cuda=[identity_of(0, b), identity_of(1, a)], driver="560.35.03")
    info = gpu_inventory("cuda:0")
    assert info["driver"] == "560.35.03"
    assert (info["telemetry_backend"], info["telemetry_reason"]) == ("nvml", None)
    assert [g["uuid"] for g in info["gpus"]] == [GPU_B["uuid"], GPU_A["uuid"]]
    assert info["gpus"][1] == {
        "index": 1, "name": "NVIDIA H200", "uuid": GPU_A["uuid"],
        "pci_bus_id": GPU_A["pci_bus_id"], "memory_bytes": 150_754_820_096,
        "compute_capability": "9.0", "power_limit_w": 700.0, "max_sm_clock_mhz": 1980,
        "max_mem_clock_mhz": 2619}
    assert info["gpus"][0]["power_limit_w"] == 500.0
    assert info["gpus"][0]["max_sm_clock_mhz"] == 1755


def test_gpu_inventory_keeps_cuda_facts_when_nvml_cannot_help(install):
    gpu = FakeGpu(mig_enabled=True)
    install([gpu])
    info = gpu_inventory("cuda:0")
    assert info["telemetry_backend"] == "none" and "MIG" in info["telemetry_reason"]
    (entry,) = info["gpus"]
    assert entry["uuid"] == gpu.uuid and entry["name"] == gpu.name
    assert entry["power_limit_w"] is None and entry["max_sm_clock_mhz"] is None


def test_gpu_inventory_on_cpu_lists_no_gpus(install, tmp_path):
    install([FakeGpu()])
    info = gpu_inventory("cpu", rapl_root=tmp_path)
    assert info["gpus"] == [] and info["driver"] == "550.54.15"
    assert info["telemetry_backend"] == "none" and "RAPL not available" in info["telemetry_reason"]


# ---------------------------------------------------------------------------------------------
# RAPL, on a fake powercap tree
# ---------------------------------------------------------------------------------------------

MAX_UJ = 262_143_328_850  # a typical max_energy_range_uj


def write(path, value):
    """Replace a sysfs-like file atomically, so the sampler never reads it half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


def zone(root, name, label, energy_uj, max_uj=MAX_UJ):
    path = root / name
    path.mkdir()
    (path / "name").write_text(label + "\n")
    write(path / "energy_uj", energy_uj)
    write(path / "max_energy_range_uj", max_uj)
    return path


@pytest.fixture
def powercap(tmp_path):
    """Two packages, a core sub-zone and a psys zone (which must not be counted)."""
    zones = {
        "pkg0": zone(tmp_path, "intel-rapl:0", "package-0", 10_000_000),
        "core0": zone(tmp_path, "intel-rapl:0:0", "core", 5_000_000),
        "psys": zone(tmp_path, "intel-rapl:1", "psys", 50_000_000),
        "pkg1": zone(tmp_path, "intel-rapl:2", "package-1", 20_000_000),
    }
    return tmp_path, zones


def add(zone_path, delta_uj, max_uj=MAX_UJ):
    path = zone_path / "energy_uj"
    write(path, (int(path.read_text()) + delta_uj) % max_uj)


def test_rapl_sums_package_energy(powercap):
    root, zones = powercap
    tel = open_telemetry("cpu", rapl_root=root, interval_s=INTERVAL_S)
    assert (tel.backend, tel.reason) == ("rapl", None)
    assert [z.name for z in tel.zones] == ["intel-rapl:0", "intel-rapl:2"]
    with tel.window() as measured:
        time.sleep(0.01)
        add(zones["pkg0"], 5_000_000)
        add(zones["pkg1"], 3_000_000)
        add(zones["core0"], 4_000_000)  # part of package 0: not added again
        add(zones["psys"], 9_000_000)  # the whole platform: overlaps the packages
        seen = len(tel._sampler.samples)
        wait_for(lambda: len(tel._sampler.samples) > seen + 1)  # a reading after the jump
    window = measured.window
    assert window.missing_reason is None
    assert window.energy_j == pytest.approx(8.0, abs=1e-12)
    assert window.avg_power_w == pytest.approx(8.0 / window.time_s)
    assert window.max_power_w > 0  # the interval holding the jump
    assert window.sm_clock_mhz is None and window.throttle_reasons is None


def test_rapl_wrap_around(powercap):
    root, zones = powercap
    write(zones["pkg0"] / "energy_uj", MAX_UJ - 1_000)
    tel = open_telemetry("cpu", rapl_root=root, interval_s=INTERVAL_S)
    with tel.window() as measured:
        write(zones["pkg0"] / "energy_uj", 500)  # wrapped: 1,000 to the top, then 500
    assert measured.window.energy_j == pytest.approx(1_500e-6, abs=1e-12)


def test_rapl_several_wraps_in_a_long_window(powercap):
    """The sampler sees each wrap, so a window may be longer than one counter period."""
    root, zones = powercap
    max_uj = 1_000_000
    write(zones["pkg0"] / "max_energy_range_uj", max_uj)
    write(zones["pkg0"] / "energy_uj", 0)
    tel = open_telemetry("cpu", rapl_root=root, interval_s=INTERVAL_S)
    with tel.window() as measured:
        for _ in range(3):
            add(zones["pkg0"], 600_000, max_uj)
            seen = len(tel._sampler.samples)
            wait_for(lambda: len(tel._sampler.samples) > seen + 1)
    assert measured.window.energy_j == pytest.approx(1.8, abs=1e-12)


def test_rapl_permission_denied(powercap, monkeypatch):
    root, _ = powercap
    real_read = bench_rapl.read_int

    def root_only(path):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(bench_rapl, "read_int", root_only)
    tel = open_telemetry("cpu", rapl_root=root)
    assert tel.backend == "none"
    assert tel.reason.startswith("RAPL not readable: permission denied on ")
    assert "CVE-2020-8694" in tel.reason


def test_rapl_absent(tmp_path):
    tel = open_telemetry("cpu", rapl_root=tmp_path)
    assert tel.backend == "none" and tel.reason.startswith("RAPL not available")


def test_rapl_counter_vanishing_mid_window(powercap):
    root, zones = powercap
    tel = open_telemetry("cpu", rapl_root=root, interval_s=INTERVAL_S)
    with tel.window() as measured:
        (zones["pkg1"] / "energy_uj").unlink()
    assert measured.window.energy_j is None
    assert "RAPL read failed at window end" in measured.window.missing_reason


def test_a_sample_taken_after_the_window_ended_is_not_part_of_it():
    """The sampler thread can read once between `end` reading the clock and the thread
    stopping; that sample is after the window and is left out."""
    from bench.telemetry.base import Sample, Sampler
    sampler = Sampler(lambda t: Sample(t, power_w=300.0), interval_s=60.0, t0=0.0)
    sampler.stop()
    sampler.samples[:] = [Sample(0.1, power_w=300.0), Sample(0.5, power_w=300.0),
                          Sample(0.50001, power_w=310.0)]
    assert [s.t_s for s in sampler.within(0.5)] == [0.1, 0.5]
