"""Power, energy and money: from per-GPU watts to megawatts, megawatt-hours and dollars.

Two power figures answer two different questions:

* **facility capacity** (``facility_mw``): what a datacenter must be built to deliver, every
  GPU at its TDP plus its share of the host (CPUs, memory, NICs, fans, switches), times the
  PUE for cooling and power conversion. This is what the "~150 MW for 100,000 H100" press
  figure (SemiAnalysis 2024) means: 100,000 x (700 W + 575 W) x 1.1 = 140 MW.
* **average draw** (``avg_power_mw``): what training actually pulls, from the GPU's watts at
  its sustained load (measured by NVML or taken from the hardware profile) plus the same host
  share, times the PUE. Energy is the average draw times the wall-clock time.

The host share comes from NVIDIA's DGX H100 datasheet: ~10.2 kW maximum for a system of
8 H100 SXM GPUs, i.e. ~1.275 kW per GPU all-in, of which 700 W is the GPU's own TDP. The host
share is held at that maximum during training too (an upper estimate; it is labelled).

Cost is GPU-hours times a price per GPU-hour (the price of the hardware, excluding power)
plus energy times a price per kWh; both prices are flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from scaling import references
from scaling.errors import DataError

# NVIDIA DGX H100 datasheet: system power ~10.2 kW max with 8 H100 SXM GPUs at 700 W TDP each.
DGX_H100_SYSTEM_W = 10_200.0
DGX_H100_GPUS = 8
H100_TDP_W = references.H100_TDP_W.value
HOST_W_PER_GPU = DGX_H100_SYSTEM_W / DGX_H100_GPUS - H100_TDP_W  # 575 W
HOST_SOURCE = ("published: NVIDIA DGX H100 datasheet, ~10.2 kW max for 8 GPUs = 1,275 W per "
               "GPU all-in, less the 700 W GPU TDP")

# Meta reports a PUE of about 1.08-1.10 for its datacenters (Meta sustainability reports).
PUE = 1.1
PUE_SOURCE = "published: Meta datacenters report PUE ~1.08-1.10 (Meta sustainability reports)"

# DeepSeek-V3 technical report (arXiv 2412.19437), Sec. 1: costs "assuming the rental price of
# the H800 GPU is $2 per GPU hour".
USD_PER_GPU_HOUR = 2.0
GPU_PRICE_SOURCE = ("assumed: $2 per GPU-hour, the rental price DeepSeek-V3 assumed "
                    "(arXiv 2412.19437)")

# Order of the US average retail electricity price for industrial users (EIA, Electric Power
# Monthly, Table 5.6.A, 2024: ~8 cents/kWh).
USD_PER_KWH = 0.08
ENERGY_PRICE_SOURCE = ("assumed: $0.08/kWh, about the US industrial average (EIA Electric "
                       "Power Monthly, 2024)")


def check_pue(pue: float) -> float:
    """A PUE is total facility power over IT power: at least 1 by definition."""
    if not pue >= 1.0:
        raise DataError(f"PUE must be at least 1.0 (facility power / IT power), got {pue}")
    return float(pue)


def _non_negative(name: str, value: float) -> float:
    if not value >= 0:
        raise DataError(f"{name} must be >= 0, got {value}")
    return float(value)


def cluster_mw(gpus: float, gpu_w: float, host_w: float = HOST_W_PER_GPU,
               pue: float = PUE) -> float:
    """Facility power in MW of ``gpus`` GPUs drawing ``gpu_w`` each, plus ``host_w`` of host
    per GPU, times the PUE. With ``gpu_w`` = TDP this is the capacity to provision; with the
    GPU's sustained watts it is the average draw."""
    if gpus <= 0:
        raise DataError(f"GPU count must be positive, got {gpus}")
    _non_negative("GPU power (W)", gpu_w)
    _non_negative("host power per GPU (W)", host_w)
    return gpus * (gpu_w + host_w) * check_pue(pue) / 1e6


@dataclass(frozen=True)
class PowerAndCost:
    """The power, energy and cost of one run (MW, MWh, US dollars)."""

    facility_mw: float       # capacity: (TDP + host) x PUE
    avg_power_mw: float      # average draw while training: (GPU watts + host) x PUE
    energy_mwh: float        # average draw x wall-clock hours
    gpu_cost_usd: float      # GPU-hours x $ per GPU-hour
    energy_cost_usd: float   # energy x $ per kWh
    cost_usd: float          # the sum

    def to_dict(self) -> dict:
        return asdict(self)


def power_and_cost(*, gpus: float, wall_s: float, gpu_w: float, tdp_w: float,
                   host_w: float = HOST_W_PER_GPU, pue: float = PUE,
                   usd_per_gpu_hour: float = USD_PER_GPU_HOUR,
                   usd_per_kwh: float = USD_PER_KWH) -> PowerAndCost:
    """Power, energy and cost of ``gpus`` GPUs running for ``wall_s`` seconds."""
    _non_negative("wall-clock time (s)", wall_s)
    _non_negative("$ per GPU-hour", usd_per_gpu_hour)
    _non_negative("$ per kWh", usd_per_kwh)
    facility = cluster_mw(gpus, tdp_w, host_w, pue)
    average = cluster_mw(gpus, gpu_w, host_w, pue)
    energy_mwh = average * wall_s / 3600.0
    gpu_cost = gpus * wall_s / 3600.0 * usd_per_gpu_hour
    energy_cost = energy_mwh * 1000.0 * usd_per_kwh
    return PowerAndCost(facility_mw=facility, avg_power_mw=average, energy_mwh=energy_mwh,
                        gpu_cost_usd=gpu_cost, energy_cost_usd=energy_cost,
                        cost_usd=gpu_cost + energy_cost)
