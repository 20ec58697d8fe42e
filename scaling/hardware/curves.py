"""Fitted curves: throughput against problem size, and power against load.

**Throughput.** A kernel call of ``F`` FLOPs takes ``t(F) = t0 + F / P``: a fixed cost ``t0``
(launch, pipeline fill and drain, the partial last wave of tiles) plus the work at a plateau
rate ``P``. Achieved throughput is then

    T(F) = F / t(F) = P * F / (F + F_half),    F_half = P * t0,

which rises linearly for small calls (overhead-bound), reaches half the plateau at ``F_half``
and saturates at ``P`` for large ones: the shape of every GEMM and attention
throughput-versus-size plot (e.g. the MAMF finder sweeps, FlashAttention's sequence-length
sweeps). It is the latency-bandwidth (Hockney) model of communication applied to compute, so
the same form fits collective bus bandwidth against message size. It has two parameters with
physical meaning, never exceeds its plateau, and extrapolates to larger calls by saturating
rather than growing. Where a call is memory-bound the profile caps it separately by
``bytes / bandwidth`` (a roofline), see `scaling.hardware.profile`.

The fit is linear: ``t = t0 + u F`` with ``u = 1/P``, by least squares on *relative* time
residuals (weights ``1/t``, so a 1 ms and a 1 s call count alike) with ``t0, u >= 0``
(`scipy.optimize.nnls`). No starting point, no convergence failure. With fewer than three
distinct sizes the two parameters are not checked by anything, and that is an error.

**Power.** Board power against utilisation is linear, ``W(u) = W_idle + (W_busy - W_idle) u``,
the server power model of Fan, Weber and Barroso (ISCA 2007), fitted by ordinary least squares.

**Spread.** Each curve keeps the smallest and largest ratio of measured to fitted value over
its points (for power, the smallest and largest residual in watts): an envelope that the
profile reports as ``lo`` and ``hi`` around every prediction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from scaling.errors import DataError, FitError

MIN_DISTINCT_SIZES = 3


@dataclass(frozen=True)
class SaturatingCurve:
    """``rate(size) = plateau * size / (size + half_size)`` with its fit diagnostics."""

    plateau: float  # rate at infinite size (TFLOP/s, or GB/s for bandwidth)
    half_size: float  # size at half the plateau (FLOPs, or bytes)
    ratio_lo: float = 1.0  # smallest measured / fitted over the points
    ratio_hi: float = 1.0  # largest measured / fitted
    points: int = 0
    distinct_sizes: int = 0
    size_min: float = 0.0
    size_max: float = 0.0
    rms_rel: float = 0.0  # root-mean-square relative residual of the rates

    def rate(self, size: float) -> float:
        size = float(size)
        if not size > 0:
            raise DataError(f"problem size must be positive, got {size!r}")
        return self.plateau * size / (size + self.half_size)

    def in_range(self, size: float) -> bool:
        return self.size_min <= size <= self.size_max

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SaturatingCurve":
        known = {k: float(v) if k not in ("points", "distinct_sizes") else int(v)
                 for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def fit_saturating(sizes, rates, *, what: str = "curve",
                   min_sizes: int = MIN_DISTINCT_SIZES) -> SaturatingCurve:
    """Fit ``rate = plateau * size / (size + half_size)`` to measured (size, rate) points.

    ``what`` names the data in error messages (e.g. "gemm bf16 torch fwd on NVIDIA H100").
    Raises `DataError` for non-positive or non-finite input and `FitError` when fewer than
    ``min_sizes`` distinct sizes are given or the data show no throughput at all.
    """
    x = np.asarray(sizes, dtype=float).ravel()
    y = np.asarray(rates, dtype=float).ravel()
    if x.shape != y.shape:
        raise DataError(f"{what}: {x.size} sizes but {y.size} rates")
    bad = ~(np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{what}: point {i} has size {x[i]!r} and rate {y[i]!r}; both must be "
                        f"positive and finite")
    distinct = np.unique(x)
    if distinct.size < min_sizes:
        shown = ", ".join(f"{v:.4g}" for v in distinct) or "none"
        raise FitError(f"{what}: only {distinct.size} distinct problem size(s) ({shown}); a "
                       f"throughput curve needs at least {min_sizes}. Measure more sizes (the "
                       f"full sweep) instead of extrapolating from these")
    from scipy.optimize import nnls  # here, not at the top: `flopcast --help` stays fast

    t = x / y  # time per call in units of (size unit) / (rate unit)
    scale = x.max()
    design = np.column_stack([1.0 / t, (x / scale) / t])
    (t0, u_scaled), _ = nnls(design, np.ones_like(t))
    u = u_scaled / scale
    if not u * x.max() > 1e-9 * t.max():
        raise FitError(f"{what}: the data show time not growing with size; no throughput "
                       f"can be fitted (are the sizes or FLOP counts right?)")
    plateau = 1.0 / u
    half = plateau * t0
    fitted = plateau * x / (x + half)
    ratio = y / fitted
    return SaturatingCurve(
        plateau=float(plateau), half_size=float(half),
        ratio_lo=float(ratio.min()), ratio_hi=float(ratio.max()),
        points=int(x.size), distinct_sizes=int(distinct.size),
        size_min=float(x.min()), size_max=float(x.max()),
        rms_rel=float(math.sqrt(np.mean((ratio - 1.0) ** 2))),
    )


@dataclass(frozen=True)
class LinearPower:
    """``watts(u) = idle_w + (busy_w - idle_w) * u`` for utilisation ``u`` in [0, 1]."""

    idle_w: float  # intercept: watts at zero utilisation (extrapolated)
    busy_w: float  # watts at utilisation 1
    resid_lo_w: float = 0.0  # smallest measured - fitted
    resid_hi_w: float = 0.0  # largest measured - fitted
    points: int = 0
    util_min: float = 0.0
    util_max: float = 0.0

    def watts(self, utilisation: float) -> float:
        return self.idle_w + (self.busy_w - self.idle_w) * float(utilisation)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LinearPower":
        known = {k: (int(v) if k == "points" else float(v))
                 for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def fit_linear_power(utilisation, watts, *, what: str = "power",
                     min_sizes: int = MIN_DISTINCT_SIZES) -> LinearPower:
    """Least-squares line through (utilisation, watts) points."""
    u = np.asarray(utilisation, dtype=float).ravel()
    w = np.asarray(watts, dtype=float).ravel()
    if u.shape != w.shape:
        raise DataError(f"{what}: {u.size} utilisations but {w.size} power readings")
    bad = ~(np.isfinite(u) & np.isfinite(w) & (u >= 0) & (w > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{what}: point {i} has utilisation {u[i]!r} and power {w[i]!r} W")
    distinct = np.unique(np.round(u, 6))
    if distinct.size < min_sizes:
        raise FitError(f"{what}: only {distinct.size} distinct utilisation level(s); a power "
                       f"curve needs at least {min_sizes}")
    slope, intercept = np.polyfit(u, w, 1)
    resid = w - (intercept + slope * u)
    return LinearPower(idle_w=float(intercept), busy_w=float(intercept + slope),
                       resid_lo_w=float(resid.min()), resid_hi_w=float(resid.max()),
                       points=int(u.size), util_min=float(u.min()), util_max=float(u.max()))
