"""The ``nvml`` telemetry backend: NVIDIA GPU energy, power, clocks and throttling via NVML.

Energy over a window is the difference of the board's total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver loaded; Volta and newer). A
sampler thread polls instantaneous power (``NVML_FI_DEV_POWER_INSTANT``, else
``nvmlDeviceGetPowerUsage``, which on Ampere and newer is a 1 s average), SM and memory clocks,
GPU temperature, utilisation and the clock-event reasons. Without the energy counter (before
Volta) the polled power trace, integrated over time, gives the energy.

A CUDA device is found in NVML by identity, never by index (CUDA and NVML may number GPUs
differently): first the UUID that ``CUDA_VISIBLE_DEVICES`` names for it, then its PCI bus id,
then its UUID as CUDA reports it. MIG slices are refused: NVML's power and energy belong to
the whole GPU, not the slice.

Every NVML call made on the caller's thread (initialisation, finding the device, the energy
counter at the window's ends, the window's last sample, the machine inventory) runs under a
deadline (`NVML_CALL_DEADLINE_S`, `NVML_INIT_DEADLINE_S`): a call that hangs makes the
backend ``none`` or the window's power null, with the reason, and never stalls the run. The
sampler thread's own reads are timed instead (`bench.telemetry.base.SAMPLE_DEADLINE_S`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.telemetry.base import (DEFAULT_INTERVAL_S, Late, Sample, Sampler, Telemetry,
                                  Unavailable, Window, call_with_deadline, summarise)

# Deadlines of NVML calls made on the caller's thread. Stated assumptions: an NVML query
# answers in well under a millisecond, so 2 s means it hangs; nvmlInit loads the driver's
# state for every GPU, which without persistence mode takes seconds on a machine of eight.
NVML_CALL_DEADLINE_S = 2.0
NVML_INIT_DEADLINE_S = 20.0


class DeadlineNvml:
    """The ``pynvml`` module with a deadline on every ``nvml*`` function: a call that has not
    answered in time raises `Late`. Constants and error classes pass through; ``raw`` is the
    module itself, for the sampler thread (whose reads are timed, not given threads)."""

    def __init__(self, module):
        self.raw = module

    def __getattr__(self, name):
        value = getattr(self.raw, name)
        if not (name.startswith("nvml") and callable(value)):
            return value
        deadline_s = NVML_INIT_DEADLINE_S if name == "nvmlInit" else NVML_CALL_DEADLINE_S

        def call(*args, **kwargs):
            return call_with_deadline(lambda: value(*args, **kwargs), deadline_s,
                                      f"NVML call {name}")
        return call


def shutdown(nvml) -> None:
    """nvmlShutdown, whatever it raises or however long it hangs."""
    try:
        nvml.nvmlShutdown()
    except (nvml.NVMLError, Late):
        pass


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _why(nvml, exc: Exception) -> str:
    """NVML errors by their message ("GPU is lost"); anything else with its type too."""
    return str(exc) if isinstance(exc, nvml.NVMLError) else f"{type(exc).__name__}: {exc}"


def load_nvml():
    """Import and initialise ``pynvml``. Returns the module; raises `Unavailable` with why not."""
    try:
        import pynvml
    except ImportError:
        raise Unavailable("nvidia-ml-py (pynvml) is not installed") from None
    nvml = DeadlineNvml(pynvml)
    try:
        nvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        raise Unavailable("NVML library not found (no NVIDIA driver on this machine)") from None
    except pynvml.NVMLError as exc:
        raise Unavailable(f"NVML initialisation failed: {exc}") from None
    except Late as exc:
        raise Unavailable(f"NVML initialisation hangs: {exc}") from None
    return nvml


# ---------------------------------------------------------------------------------------------
# Which NVML device is cuda:N
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CudaIdentity:
    """What CUDA (through torch) says about ``cuda:index``; None where it does not say."""

    index: int
    uuid: str | None = None  # as NVML spells it: "GPU-xxxxxxxx-..."
    pci_bus_id: str | None = None  # "00000000:3B:00.0"
    name: str | None = None
    memory_bytes: int | None = None
    compute_capability: str | None = None  # "9.0"


def visible_cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def current_cuda_index() -> int:
    import torch

    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def _nvml_uuid(uuid) -> str | None:
    """CUDA's UUID (``str(props.uuid)``: bare hex) as NVML spells a GPU's: ``GPU-<hex>``."""
    text = str(uuid).strip() if uuid is not None else ""
    if not text:
        return None
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def cuda_identity(index: int) -> CudaIdentity:
    """The identity of ``cuda:index`` from ``torch.cuda.get_device_properties``."""
    import torch

    try:
        props = torch.cuda.get_device_properties(index)
    except (AssertionError, RuntimeError):  # no CUDA build, no driver, no such device
        return CudaIdentity(index)
    uuid = getattr(props, "uuid", None)
    pci = [getattr(props, f"pci_{part}_id", None) for part in ("domain", "bus", "device")]
    return CudaIdentity(
        index=index,
        uuid=_nvml_uuid(uuid),
        pci_bus_id=f"{pci[0]:08X}:{pci[1]:02X}:{pci[2]:02X}.0" if None not in pci else None,
        name=props.name,
        memory_bytes=int(props.total_memory),
        compute_capability=f"{props.major}.{props.minor}",
    )


def visible_entry(index: int) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` entry that became ``cuda:index``, if it names one."""
    entries = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    entries = [e for e in entries if e]
    return entries[index] if index < len(entries) else None


def _by_uuid(nvml, uuid: str):
    """The handle whose UUID is ``uuid`` or starts with it (CUDA accepts unique prefixes)."""
    try:
        return nvml.nvmlDeviceGetHandleByUUID(uuid)
    except nvml.NVMLError:
        pass
    matches = []
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        if _text(nvml.nvmlDeviceGetUUID(handle)).startswith(uuid):
            matches.append(handle)
    if len(matches) != 1:
        raise Unavailable(f"CUDA_VISIBLE_DEVICES entry {uuid} matches {len(matches)} NVML "
                          "devices; give the full GPU UUID (nvidia-smi -L)")
    return matches[0]


def _refuse_mig(nvml, handle, label: str) -> None:
    try:
        answer = nvml.nvmlDeviceIsMigDeviceHandle(handle)  # a ctypes c_uint in pynvml
        is_slice = bool(getattr(answer, "value", answer))
    except (nvml.NVMLError, AttributeError):
        is_slice = False
    try:
        mig_on = nvml.nvmlDeviceGetMigMode(handle)[0] == nvml.NVML_DEVICE_MIG_ENABLE
    except (nvml.NVMLError, AttributeError):  # not supported before Ampere: no MIG
        mig_on = False
    if is_slice or mig_on:
        raise Unavailable(f"{label} is a MIG slice: NVML reports power and energy for the "
                          "whole GPU, not a slice; measure power on a GPU with MIG disabled")


def find_handle(nvml, identity: CudaIdentity):
    """The NVML handle of the CUDA device ``identity``; raises `Unavailable` with why not."""
    label = f"cuda:{identity.index}"
    entry = visible_entry(identity.index)
    if entry is not None and entry.startswith("MIG-"):
        raise Unavailable(f"{label} is the MIG slice {entry}: NVML reports power and energy "
                          "for the whole GPU, not a slice; measure power on a GPU with MIG "
                          "disabled")
    try:
        if entry is not None and entry.startswith("GPU-"):
            handle = _by_uuid(nvml, entry)
        elif identity.pci_bus_id is not None:
            handle = nvml.nvmlDeviceGetHandleByPciBusId(identity.pci_bus_id)
        elif identity.uuid is not None:
            handle = nvml.nvmlDeviceGetHandleByUUID(identity.uuid)
        else:
            raise Unavailable(f"cannot identify {label} in NVML: CUDA gives neither its PCI "
                              "bus id nor its UUID")
    except nvml.NVMLError as exc:
        raise Unavailable(f"no NVML device for {label}: {exc}") from None
    _refuse_mig(nvml, handle, label)
    if identity.uuid is not None:
        try:
            nvml_uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        except nvml.NVMLError:
            nvml_uuid = identity.uuid
        if nvml_uuid != identity.uuid:
            raise Unavailable(f"NVML device {nvml_uuid} found for {label} is not the CUDA "
                              f"device {identity.uuid}")
    return handle


# ---------------------------------------------------------------------------------------------
# Readings
# ---------------------------------------------------------------------------------------------

def _power_instant_w(nvml, handle) -> float:
    """Instantaneous board power from the field-value API (nvml.h: milliwatts)."""
    (value,) = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])
    if value.nvmlReturn != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(value.nvmlReturn)
    return value.value.uiVal / 1000.0


def _readers(nvml, handle) -> dict:
    """Candidate readers per sample field, best first. Each returns the value in the
    field's unit (W, MHz, degrees C, percent, reason bits)."""
    return {
        "power_w": [lambda: _power_instant_w(nvml, handle),
                    lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0],  # mW
        "sm_clock_mhz": [lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)],
        "mem_clock_mhz": [lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)],
        "temp_c": [lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
                   lambda: nvml.nvmlDeviceGetTemperatureV(handle, nvml.NVML_TEMPERATURE_GPU)],
        "gpu_util_pct": [lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu],
        "clock_events": [lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(handle),
                         lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)],
        "power_limit_w": [lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0],
        "energy_mj": [lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle)],
    }


def _probe(nvml, candidates, name):
    """The first candidate that answers, or None if the device supports none of them; raises
    `Unavailable` when one hangs."""
    for read in candidates:
        try:
            call_with_deadline(read, NVML_CALL_DEADLINE_S, f"NVML read of {name}")
        except (nvml.NVMLError, AttributeError):  # unsupported, or absent from this pynvml
            continue
        except Late as exc:
            raise Unavailable(f"NVML hangs: {exc}") from None
        return read
    return None


class NvmlTelemetry(Telemetry):
    """NVML telemetry of one GPU. See the module docstring for what is read and how."""

    backend = "nvml"

    @classmethod
    def open(cls, index: int | None = None, *, interval_s: float = DEFAULT_INTERVAL_S):
        nvml = load_nvml()
        try:
            identity = cuda_identity(current_cuda_index() if index is None else index)
            return cls(nvml, find_handle(nvml, identity), interval_s=interval_s)
        except Late as exc:
            shutdown(nvml)
            raise Unavailable(f"NVML hangs: {exc}") from None
        except BaseException:
            shutdown(nvml)
            raise

    def __init__(self, nvml, handle, *, interval_s: float = DEFAULT_INTERVAL_S):
        self._nvml, self._interval_s = nvml, interval_s
        # The readers call the module itself: the sampler thread times its own reads, and the
        # caller's thread runs them under `_deadline`.
        raw = getattr(nvml, "raw", nvml)
        found = {name: _probe(nvml, c, name) for name, c in _readers(raw, handle).items()}
        self._energy_mj = found.pop("energy_mj")
        self._power_limit_w = found.pop("power_limit_w")
        self._fields = {name: read for name, read in found.items() if read is not None}
        self.unsupported = tuple(sorted(name for name, read in found.items() if read is None))
        reason = None
        if self._energy_mj is None:
            if "power_w" not in self._fields:
                raise Unavailable("NVML reports neither energy nor power for this GPU")
            reason = ("NVML energy counter not supported (needs Volta or newer): energy "
                      "integrated from polled power")
        super().__init__(reason)
        self._open = True

    def _sample(self, t_s: float) -> Sample:
        return Sample(t_s, **{name: read() for name, read in self._fields.items()})

    @staticmethod
    def _deadline(read, what: str):
        """``read()`` on the caller's thread's behalf, under `NVML_CALL_DEADLINE_S`."""
        return call_with_deadline(read, NVML_CALL_DEADLINE_S, what)

    def _start(self) -> None:
        self._fault, self._e0_mj, self._limit_w = None, None, None
        nvml = self._nvml
        try:
            if self._energy_mj is not None:
                self._e0_mj = self._deadline(self._energy_mj, "NVML energy counter read")
            if self._power_limit_w is not None:
                self._limit_w = self._deadline(self._power_limit_w, "NVML power limit read")
        except Exception as exc:  # noqa: BLE001 - a fault of the window, never of the run
            self._fault = f"NVML read failed at window start: {_why(nvml, exc)}"
        self._sampler = Sampler(self._sample, self._interval_s, self._t0)

    def _stop(self, time_s: float) -> Window:
        nvml, fault, energy_j = self._nvml, self._fault, None
        if fault is None and self._energy_mj is not None:
            try:
                e1_mj = self._deadline(self._energy_mj, "NVML energy counter read")
            except Exception as exc:  # noqa: BLE001
                fault = f"NVML energy counter read failed at window end: {_why(nvml, exc)}"
            else:
                if e1_mj < self._e0_mj:
                    fault = (f"NVML energy counter went backwards ({self._e0_mj} -> {e1_mj} "
                             "mJ)")
                else:
                    energy_j = (e1_mj - self._e0_mj) / 1000.0
        sampler_fault = self._sampler.stop()
        samples = self._sampler.within(time_s)
        if sampler_fault is None:
            try:
                samples.append(self._deadline(lambda: self._sample(time_s),
                                              "NVML last sample of the window"))
            except Exception as exc:  # noqa: BLE001
                sampler_fault = f"NVML read failed at window end: {_why(nvml, exc)}"
        return summarise(self.backend, time_s, samples, energy_j=energy_j,
                         energy_source="energy counter" if energy_j is not None else None,
                         power_limit_w=self._limit_w, fault=fault or sampler_fault,
                         notes=self._sampler.notes())

    def close(self) -> None:
        if self._open:
            self._open = False
            shutdown(self._nvml)


# ---------------------------------------------------------------------------------------------
# The machine section
# ---------------------------------------------------------------------------------------------

def _gpu_entry(nvml, identity: CudaIdentity) -> dict:
    entry = {"index": identity.index, "name": identity.name, "uuid": identity.uuid,
             "pci_bus_id": identity.pci_bus_id, "memory_bytes": identity.memory_bytes,
             "compute_capability": identity.compute_capability, "power_limit_w": None,
             "max_sm_clock_mhz": None, "max_mem_clock_mhz": None}
    if nvml is None:
        return entry
    try:
        handle = find_handle(nvml, identity)
    except (Unavailable, Late):
        return entry
    reads = {
        "name": lambda: _text(nvml.nvmlDeviceGetName(handle)),
        "uuid": lambda: _text(nvml.nvmlDeviceGetUUID(handle)),
        "pci_bus_id": lambda: _text(nvml.nvmlDeviceGetPciInfo(handle).busId),
        "memory_bytes": lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
        "compute_capability":
            lambda: "{}.{}".format(*nvml.nvmlDeviceGetCudaComputeCapability(handle)),
        "power_limit_w": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
        "max_sm_clock_mhz": lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM),
        "max_mem_clock_mhz":
            lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM),
    }
    for key, read in reads.items():
        try:
            entry[key] = read()
        except (nvml.NVMLError, AttributeError, Late):
            pass  # keep what CUDA said, or None
    return entry


def inventory(*, with_gpus: bool) -> tuple[list[dict], str | None]:
    """(one dict per visible CUDA device, driver version); Nones where NVML cannot tell."""
    try:
        nvml = load_nvml()
    except Unavailable:
        nvml = None
    try:
        count = visible_cuda_count() if with_gpus else 0
        gpus = [_gpu_entry(nvml, cuda_identity(i)) for i in range(count)]
        driver = None
        if nvml is not None:
            try:
                driver = _text(nvml.nvmlSystemGetDriverVersion())
            except (nvml.NVMLError, Late):
                pass
        return gpus, driver
    finally:
        if nvml is not None:
            shutdown(nvml)
