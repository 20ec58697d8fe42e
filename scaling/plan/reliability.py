"""Reliability: how much of a cluster's wall-clock time trains the model.

Large clusters fail often. Llama 3 405B saw 419 unexpected interruptions in a 54-day snapshot
on 16,384 H100 GPUs (Llama 3 paper, arXiv 2407.21783, Sec. 3.3.4): one every ~3.1 hours.
Failures scale with the number of GPUs, so the same hardware at 100,000 GPUs fails about every
half hour. Each failure costs the work since the last checkpoint plus the time to restart,
and every checkpoint costs the time to write it. This module turns those three figures into
*goodput*, the fraction of wall-clock time spent on useful training, which the plan divides
the ideal run time by.

The model, first order in the failure rate (Young 1974; Daly 2006):

* failures arrive as a Poisson process at ``gpus * failures_per_gpu_hour``; the cluster's mean
  time between failures is ``mtbf_s = 3600 / (gpus * failures_per_gpu_hour)``;
* a checkpoint of ``params * checkpoint_bytes_per_param`` bytes written at the storage
  bandwidth takes ``checkpoint_s``;
* the Young-Daly interval between checkpoints is ``tau = sqrt(2 * checkpoint_s * mtbf_s)``;
* a segment of ``tau`` useful seconds costs ``tau + checkpoint_s``, so without failures the
  useful fraction is ``tau / (tau + checkpoint_s)``;
* each failure loses the restart (``restart_s``: detect, reschedule, reload the checkpoint)
  plus on average half a segment of work, so failures take ``(restart_s + (tau +
  checkpoint_s) / 2) / mtbf_s`` of the time;
* goodput is the product of the two fractions.

With the defaults, 16,384 GPUs and a 405B model give a goodput of about 0.92, in line with the
paper's ">90% effective training time".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scaling import references
from scaling.errors import DataError

# Llama 3 paper (arXiv 2407.21783), Sec. 3.3.4 and Table 5: 419 unexpected interruptions in a
# 54-day snapshot of pre-training on up to 16,384 H100 GPUs (`scaling.references`).
LLAMA3_UNEXPECTED_INTERRUPTIONS = int(references.LLAMA3_UNEXPECTED_INTERRUPTIONS.value)
LLAMA3_SNAPSHOT_DAYS = int(references.LLAMA3_SNAPSHOT_DAYS.value)
LLAMA3_GPUS = int(references.LLAMA3_GPUS.value)
LLAMA3_FAILURES_PER_GPU_HOUR = LLAMA3_UNEXPECTED_INTERRUPTIONS / (
    LLAMA3_SNAPSHOT_DAYS * 24 * LLAMA3_GPUS)  # ~1.97e-5 per GPU-hour
FAILURE_RATE_SOURCE = ("derived from Llama 3 (arXiv 2407.21783, Sec. 3.3.4): 419 unexpected "
                       "interruptions in 54 days on 16,384 H100 GPUs")

# Checkpointed state per parameter with mixed-precision Adam: 16 bytes per parameter in total
# (2 bf16 weights + 2 bf16 gradients + 4 fp32 master weights + 4 + 4 Adam moments; ZeRO,
# Rajbhandari et al. 2020, Sec. 3.1), less the gradients, which are not saved.
CHECKPOINT_BYTES_PER_PARAM = 14
CHECKPOINT_SOURCE = ("assumed: 14 bytes per parameter, mixed-precision Adam state without "
                     "gradients (ZeRO, Rajbhandari et al. 2020)")

# Llama 3 paper, Sec. 3.3.1: Meta's Tectonic storage fabric for Llama 3 sustains 2 TB/s
# (7 TB/s peak).
STORAGE_GBPS = 2000.0
STORAGE_SOURCE = "published: Llama 3 storage fabric sustains 2 TB/s (arXiv 2407.21783, Sec. 3.3.1)"

# Time from a failure to training again, besides reading the checkpoint back: detecting the
# fault, draining and rescheduling the job, initialising the collectives, warming up. Not
# published for Llama 3; ten minutes keeps 16,384 GPUs at the paper's >90% effective time.
RESTART_S = 600.0
RESTART_SOURCE = ("assumed: 10 minutes to detect, reschedule and warm up, plus reading the "
                  "checkpoint back; consistent with Llama 3's >90% effective training time")


@dataclass(frozen=True)
class Reliability:
    """What failures and checkpoints cost a run on ``gpus`` GPUs (all times in seconds)."""

    gpus: float
    failures_per_gpu_hour: float
    mtbf_s: float                  # cluster mean time between failures (inf: never fails)
    checkpoint_bytes: float
    checkpoint_s: float            # time to write one checkpoint
    checkpoint_interval_s: float   # Young-Daly interval between checkpoints (inf: none needed)
    restart_s: float               # fixed restart plus reading the checkpoint back
    checkpoint_fraction: float     # share of failure-free time spent writing checkpoints
    failure_fraction: float        # share of time lost to restarts and redone work
    goodput: float                 # fraction of wall-clock time doing useful training

    def interruptions(self, wall_s: float) -> float:
        """Expected number of failures during ``wall_s`` seconds of wall-clock time."""
        return wall_s / self.mtbf_s if math.isfinite(self.mtbf_s) else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def mtbf_s(gpus: float, failures_per_gpu_hour: float = LLAMA3_FAILURES_PER_GPU_HOUR) -> float:
    """Cluster mean time between failures: failures are independent per GPU."""
    if gpus <= 0:
        raise DataError(f"GPU count must be positive, got {gpus}")
    if failures_per_gpu_hour < 0:
        raise DataError(f"failure rate must be >= 0 per GPU-hour, got {failures_per_gpu_hour}")
    if failures_per_gpu_hour == 0:
        return math.inf
    return 3600.0 / (gpus * failures_per_gpu_hour)


def checkpoint_seconds(params: float, storage_gbps: float = STORAGE_GBPS,
                       bytes_per_param: float = CHECKPOINT_BYTES_PER_PARAM) -> float:
    """Time to write one checkpoint of a ``params``-parameter model at ``storage_gbps``."""
    if params <= 0:
        raise DataError(f"parameter count must be positive, got {params}")
    if storage_gbps <= 0:
        raise DataError(f"storage bandwidth must be positive, got {storage_gbps} GB/s")
    return params * bytes_per_param / (storage_gbps * 1e9)


def young_daly_interval_s(checkpoint_s: float, mtbf: float) -> float:
    """Young's optimal compute time between checkpoints, ``sqrt(2 * C * M)`` (Young 1974;
    Daly 2006 shows it is the first-order optimum)."""
    if not math.isfinite(mtbf):
        return math.inf
    return math.sqrt(2.0 * checkpoint_s * mtbf)


def reliability(gpus: float, params: float, *,
                failures_per_gpu_hour: float = LLAMA3_FAILURES_PER_GPU_HOUR,
                storage_gbps: float = STORAGE_GBPS,
                restart_s: float = RESTART_S,
                bytes_per_param: float = CHECKPOINT_BYTES_PER_PARAM) -> Reliability:
    """Goodput of a ``params``-parameter model trained on ``gpus`` GPUs (see module doc).

    Raises `DataError` when failures come so often that the run makes no progress.
    """
    if restart_s < 0:
        raise DataError(f"restart time must be >= 0 s, got {restart_s}")
    mtbf = mtbf_s(gpus, failures_per_gpu_hour)
    ckpt_bytes = params * bytes_per_param
    ckpt_s = checkpoint_seconds(params, storage_gbps, bytes_per_param)
    tau = young_daly_interval_s(ckpt_s, mtbf)
    restart = restart_s + ckpt_s  # reading the checkpoint back costs what writing it did
    if math.isfinite(mtbf):
        checkpoint_fraction = ckpt_s / (tau + ckpt_s) if tau + ckpt_s > 0 else 0.0
        failure_fraction = (restart + (tau + ckpt_s) / 2.0) / mtbf
    else:
        checkpoint_fraction = failure_fraction = 0.0
    goodput = (1.0 - checkpoint_fraction) * (1.0 - failure_fraction)
    if goodput <= 0:
        raise DataError(
            f"{gpus:,.0f} GPUs fail every {mtbf / 60:.1f} minutes on average, faster than a "
            f"restart ({restart / 60:.1f} minutes) plus half a checkpoint interval: the run "
            "makes no progress; use fewer GPUs, a lower failure rate or a faster restart")
    return Reliability(
        gpus=gpus, failures_per_gpu_hour=failures_per_gpu_hour, mtbf_s=mtbf,
        checkpoint_bytes=ckpt_bytes, checkpoint_s=ckpt_s, checkpoint_interval_s=tau,
        restart_s=restart, checkpoint_fraction=checkpoint_fraction,
        failure_fraction=failure_fraction, goodput=goodput)
