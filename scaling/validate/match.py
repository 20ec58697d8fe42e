"""The GEMM rate a published run implies: what every GEMM would have to run at for the step
model to reproduce the run's published throughput, everything else as modelled.

A validation row that misses says by how much; this says where the difference would have to
sit if it sat in the GEMMs alone, the largest term of every dense training step. The step
model's throughput rises with the GEMM rate (every GEMM, forward and backward, and the
batched GEMMs of materialised attention, at one rate: the ``gemm_tflops`` override of
`scaling.model.step`), so one root of ``throughput(rate) = published`` exists where the
published figure lies between what the model gives at a vanishing rate and at the device's
datasheet peak. A rate above the peak is no answer: the difference is then not in the GEMMs.

It is a diagnostic, never a prediction: no validation row is modelled with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from scaling.errors import DataError

#: The bracket's low end as a fraction of the peak: a GEMM rate below 1% of a device's
#: datasheet peak is no rate any training run ran its GEMMs at.
LOWEST_FRACTION_OF_PEAK = 0.01
#: The solver stops when the bracket is narrower than this (TFLOP/s), a thousandth of a
#: printed digit.
RATE_TOLERANCE_TFLOPS = 1e-3


@dataclass(frozen=True)
class GemmRateToMatch:
    """``tflops``: the uniform GEMM rate that reproduces ``target_tflops`` (None where no rate
    between 1% of ``peak_tflops`` and the peak does, ``reason`` saying which end fails)."""

    tflops: float | None
    target_tflops: float
    peak_tflops: float
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def gemm_rate_to_match(throughput_at: Callable[[float], float], target_tflops: float,
                       peak_tflops: float) -> GemmRateToMatch:
    """The GEMM rate ``r`` (TFLOP/s) with ``throughput_at(r) == target_tflops``.

    ``throughput_at`` is the step model's per-GPU throughput with every GEMM at ``r``, in the
    same FLOP convention as ``target_tflops``; it must not fall as ``r`` rises. Brent's method
    on ``[LOWEST_FRACTION_OF_PEAK * peak, peak]``.
    """
    if not target_tflops > 0:
        raise DataError(f"a published throughput must be positive, got {target_tflops!r}")
    if not peak_tflops > 0:
        raise DataError(f"a datasheet peak must be positive, got {peak_tflops!r}")
    lo, hi = LOWEST_FRACTION_OF_PEAK * peak_tflops, float(peak_tflops)
    at_lo, at_hi = throughput_at(lo), throughput_at(hi)
    if at_hi < target_tflops:
        return GemmRateToMatch(None, target_tflops, peak_tflops,
                               f"not reached with every GEMM at the {peak_tflops:.0f} TFLOP/s "
                               f"datasheet peak ({at_hi:.0f}): the rest of the step is "
                               f"modelled too slow for the published figure")
    if at_lo > target_tflops:
        return GemmRateToMatch(None, target_tflops, peak_tflops,
                               f"exceeded with every GEMM at {lo:.3g} TFLOP/s ({at_lo:.0f})")
    from scipy.optimize import brentq  # here: `flopcast --help` stays fast

    rate = brentq(lambda r: throughput_at(r) - target_tflops, lo, hi,
                  xtol=RATE_TOLERANCE_TFLOPS)
    return GemmRateToMatch(float(rate), target_tflops, peak_tflops)
