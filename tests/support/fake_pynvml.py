"""A fake ``pynvml`` for testing the NVML backend without a GPU.

`fake_module(gpus)` returns a module object with the real module's constants and error
classes, whose functions are autospecs of the real ones (so a call with the wrong arguments
fails as it would against NVML) backed by `FakeGpu` state that tests change between calls.
Handles are the `FakeGpu` objects themselves. ``module.hang_s`` (function name -> seconds,
empty at first, changeable between calls) makes a call sleep that long before it answers: an
NVML call that hangs, for module-level functions (``nvmlInit``) as for device queries.
"""

from __future__ import annotations

import time
import types
from dataclasses import dataclass, field
from unittest import mock

import pynvml as real

FUNCTIONS = (
    "nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetHandleByUUID", "nvmlDeviceGetHandleByPciBusId",
    "nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlDeviceGetPciInfo", "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetCudaComputeCapability", "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetClockInfo", "nvmlDeviceGetTemperature",
    "nvmlDeviceGetTemperatureV", "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetPowerUsage", "nvmlDeviceGetFieldValues", "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetMigMode", "nvmlDeviceIsMigDeviceHandle",
)


def nvml_error(code: int) -> real.NVMLError:
    """The real pynvml exception for an NVML return code (e.g. NVMLError_NotSupported)."""
    return real.NVMLError(code)


@dataclass(eq=False)
class FakeGpu:
    """One GPU as NVML would report it. Change the fields between calls to script a run."""

    uuid: str = "GPU-11111111-2222-3333-4444-555555555555"
    pci_bus_id: str = "00000000:3B:00.0"
    name: str = "NVIDIA H100 80GB HBM3"
    memory_bytes: int = 85_520_809_984
    compute_capability: tuple = (9, 0)
    energy_mj: int = 1_000_000  # total-energy counter
    power_w: float = 350.0  # instantaneous power; `power_trace` overrides it while it lasts
    power_trace: list = field(default_factory=list)
    power_limit_mw: int = 700_000
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    max_sm_clock_mhz: int = 1980
    max_mem_clock_mhz: int = 2619
    temp_c: int = 45
    util_pct: int = 100
    clock_events: int = 0
    mig_enabled: bool = False  # MIG mode of a whole GPU
    mig_handle: bool = False  # the handle is itself a MIG slice
    # Function name -> exception raised on every call (NotSupported for missing features, a
    # fault injected mid-window), or a threading.Event the call waits on (a hanging call).
    unsupported: set = field(default_factory=set)
    fail: dict = field(default_factory=dict)
    block: dict = field(default_factory=dict)


def fake_module(gpus: list[FakeGpu], *, init_error: Exception | None = None,
                driver: str = "550.54.15", hang_s: dict | None = None):
    """A stand-in for the ``pynvml`` module over ``gpus`` (NVML enumeration order);
    ``hang_s`` starts ``module.hang_s``."""
    module = types.ModuleType("pynvml")
    module.hang_s = dict(hang_s or {})
    for name in dir(real):
        if name.startswith(("NVML_", "NVMLError", "nvmlClocks")):
            setattr(module, name, getattr(real, name))

    def check(handle, fn):
        if fn in handle.unsupported:
            raise nvml_error(real.NVML_ERROR_NOT_SUPPORTED)
        if fn in handle.block:
            handle.block[fn].wait()
        if fn in handle.fail:
            raise handle.fail[fn]

    def find(pred):
        for gpu in gpus:
            if pred(gpu):
                return gpu
        raise nvml_error(real.NVML_ERROR_NOT_FOUND)

    def power_mw(gpu):
        return int(round((gpu.power_trace.pop(0) if gpu.power_trace else gpu.power_w) * 1000))

    def field_values(gpu, ids):
        check(gpu, "nvmlDeviceGetFieldValues")
        out = []
        for fid in ids:
            ok = fid == real.NVML_FI_DEV_POWER_INSTANT and "power_field" not in gpu.unsupported
            out.append(types.SimpleNamespace(
                fieldId=fid, valueType=real.NVML_VALUE_TYPE_UNSIGNED_INT,
                nvmlReturn=real.NVML_SUCCESS if ok else real.NVML_ERROR_NOT_SUPPORTED,
                value=types.SimpleNamespace(uiVal=power_mw(gpu) if ok else 0)))
        return out

    def device(fn, read):
        def impl(handle, *args):
            check(handle, fn)
            return read(handle, *args)
        return impl

    clock = {real.NVML_CLOCK_SM: "sm_clock_mhz", real.NVML_CLOCK_MEM: "mem_clock_mhz"}
    max_clock = {real.NVML_CLOCK_SM: "max_sm_clock_mhz", real.NVML_CLOCK_MEM: "max_mem_clock_mhz"}

    def init():
        if init_error is not None:
            raise init_error

    impls = {
        "nvmlInit": init,
        "nvmlShutdown": lambda: None,
        "nvmlSystemGetDriverVersion": lambda: driver,
        "nvmlDeviceGetCount": lambda: len(gpus),
        "nvmlDeviceGetHandleByIndex": lambda i: gpus[i],
        "nvmlDeviceGetHandleByUUID": lambda u: find(lambda g: g.uuid == u),
        "nvmlDeviceGetHandleByPciBusId":
            lambda b: find(lambda g: g.pci_bus_id.lower() == b.lower()),
        "nvmlDeviceGetUUID": device("nvmlDeviceGetUUID", lambda g: g.uuid),
        "nvmlDeviceGetName": device("nvmlDeviceGetName", lambda g: g.name),
        "nvmlDeviceGetPciInfo": device("nvmlDeviceGetPciInfo", lambda g: types.SimpleNamespace(
            busId=g.pci_bus_id.encode())),
        "nvmlDeviceGetMemoryInfo": device("nvmlDeviceGetMemoryInfo", lambda g, version=None:
                                          types.SimpleNamespace(total=g.memory_bytes)),
        "nvmlDeviceGetCudaComputeCapability":
            device("nvmlDeviceGetCudaComputeCapability", lambda g: g.compute_capability),
        "nvmlDeviceGetEnforcedPowerLimit":
            device("nvmlDeviceGetEnforcedPowerLimit", lambda g: g.power_limit_mw),
        "nvmlDeviceGetMaxClockInfo":
            device("nvmlDeviceGetMaxClockInfo", lambda g, t: getattr(g, max_clock[t])),
        "nvmlDeviceGetClockInfo":
            device("nvmlDeviceGetClockInfo", lambda g, t: getattr(g, clock[t])),
        "nvmlDeviceGetTemperature": device("nvmlDeviceGetTemperature", lambda g, s: g.temp_c),
        "nvmlDeviceGetTemperatureV":
            device("nvmlDeviceGetTemperatureV", lambda g, s, version=None: g.temp_c),
        "nvmlDeviceGetUtilizationRates": device("nvmlDeviceGetUtilizationRates", lambda g:
                                                types.SimpleNamespace(gpu=g.util_pct,
                                                                      memory=0)),
        "nvmlDeviceGetCurrentClocksEventReasons":
            device("nvmlDeviceGetCurrentClocksEventReasons", lambda g: g.clock_events),
        "nvmlDeviceGetCurrentClocksThrottleReasons":
            device("nvmlDeviceGetCurrentClocksThrottleReasons", lambda g: g.clock_events),
        "nvmlDeviceGetPowerUsage": device("nvmlDeviceGetPowerUsage", power_mw),
        "nvmlDeviceGetFieldValues": field_values,
        "nvmlDeviceGetTotalEnergyConsumption":
            device("nvmlDeviceGetTotalEnergyConsumption", lambda g: g.energy_mj),
        "nvmlDeviceGetMigMode": device("nvmlDeviceGetMigMode",
                                       lambda g: [int(g.mig_enabled), int(g.mig_enabled)]),
        "nvmlDeviceIsMigDeviceHandle":
            device("nvmlDeviceIsMigDeviceHandle", lambda g: int(g.mig_handle)),
    }
    def hanging(name, impl):
        def call(*args, **kwargs):
            if name in module.hang_s:
                time.sleep(module.hang_s[name])
            return impl(*args, **kwargs)
        return call

    for name in FUNCTIONS:
        setattr(module, name, mock.create_autospec(getattr(real, name),
                                                   side_effect=hanging(name, impls[name])))
    return module
