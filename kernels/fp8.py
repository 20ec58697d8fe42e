"""FP8 quantisation: amax scaling of a tensor to e4m3 or e5m2, tensor-wise or row-wise.

The convention matches `torch._scaled_mm`: a quantised tensor ``q`` and its float32
dequantisation scale ``s`` satisfy ``x ~= q.float() * s``. The scale maps the largest
magnitude (amax) onto the format's largest finite value, so nothing overflows; values are
saturated to that range before the cast (e4m3fn has no infinity, so an overflowing cast would
give NaN). An all-zero tensor or row gets scale 1, never 0/0; a scale never underflows to 0
(it is at least float32's smallest normal number), and a tensor holding inf or NaN is refused
rather than silently quantised to garbage.

Formats (Micikevicius et al. 2022, "FP8 Formats for Deep Learning"): e4m3 (torch's
``float8_e4m3fn``: 3 mantissa bits, largest finite 448, no infinities) for weights and
activations, e5m2 (2 mantissa bits, largest finite 57344) for gradients.
"""

from __future__ import annotations

import torch

FP8_DTYPES = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def fp8_dtype(name: str) -> torch.dtype:
    try:
        return FP8_DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown FP8 format '{name}'; known: {', '.join(FP8_DTYPES)}") from None


def fp8_max(dtype: torch.dtype) -> float:
    """Largest finite value: 448 for e4m3fn, 57344 for e5m2."""
    return float(torch.finfo(dtype).max)


def _quantize(x: torch.Tensor, amax: torch.Tensor, dtype: torch.dtype):
    top = fp8_max(dtype)
    amax = amax.float()
    if not bool(torch.isfinite(amax).all()):
        raise ValueError("cannot quantise to FP8: the tensor holds inf or NaN")
    tiny = torch.finfo(torch.float32).tiny
    scale = torch.where(amax > 0, (amax / top).clamp_min(tiny), torch.ones_like(amax))
    q = (x.float() / scale).clamp(-top, top).to(dtype)
    return q, scale


def quantize_tensorwise(x: torch.Tensor, fmt: str = "fp8_e4m3"):
    """One scale for the whole tensor: returns (q, scale) with scale a float32 scalar tensor."""
    return _quantize(x, x.detach().abs().amax(), fp8_dtype(fmt))


def quantize_rowwise(x: torch.Tensor, fmt: str = "fp8_e4m3", dim: int = -1):
    """One scale per row (reducing over ``dim``): for A (M, K) use dim=-1, giving scales of
    shape (M, 1); for B (K, N) use dim=0, giving (1, N), as `torch._scaled_mm` wants."""
    return _quantize(x, x.detach().abs().amax(dim=dim, keepdim=True), fp8_dtype(fmt))


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale
