"""Streaming scale, y = c * x: how fast the device moves bytes through memory.

Family ``"stream"``, reported in GB/s (`kernels.flops.stream_bytes`: x read once, y written
once). It is STREAM's "scale" kernel (McCalpin, "STREAM: Sustainable Memory Bandwidth in High
Performance Computers"): one read and one write stream, the pattern of most elementwise
kernels in training. At sizes far past the last-level cache its rate is the device's
streaming bandwidth, which `scaling.hardware.calibration` keeps as the profile's
``stream_gbps`` and the step model times elementwise, optimizer and other memory-bound
traffic at; the datasheet figure is a ceiling no kernel reaches.

Implementations:

* ``"torch"`` (baseline): ``torch.mul(x, c, out=y)`` into a preallocated output.
* ``"triton"``: `kernels.triton_stream`.

Shape: ``n`` elements. The output is preallocated by ``make_inputs``, so a timed call moves
exactly the counted bytes and allocates nothing. Check: against ``c * x`` in float64; the
output is one rounding of the exact product, so the error is at most half an ulp per element.
"""

from __future__ import annotations

import torch

from kernels import flops
from kernels.reference import rel_fro_error
from kernels.registry import register
from kernels.spec import KernelError, KernelSpec, torch_dtype
from kernels.triton_support import TRITON_MISSING, triton_unavailable

if TRITON_MISSING is None:
    from kernels.triton_stream import triton_scale

__all__ = ["torch_scale", "stream_spec"] + (["triton_scale"] if TRITON_MISSING is None else [])

DTYPES = ("fp32", "bf16", "fp16")
# The scale factor: not a power of two, so the product is rounded and the check can see it.
SCALE = 1.25


def torch_scale(x: torch.Tensor, c: float, out: torch.Tensor) -> torch.Tensor:
    """The torch scale: ``out = c * x`` in place of ``out``."""
    return torch.mul(x, c, out=out)


def stream_error(inputs, output) -> float:
    x, _ = inputs
    return rel_fro_error(output, x.double() * SCALE)


def stream_spec(impl: str, n: int, dtype: str, *, scale, unavailable=None) -> KernelSpec:
    """A spec for ``scale(x, c, out) -> out`` on ``n`` elements of ``dtype``."""
    if dtype not in DTYPES:
        raise KernelError(f"stream takes {', '.join(DTYPES)}, not '{dtype}'")
    try:
        moved = flops.stream_bytes(n, dtype)
    except ValueError as exc:
        raise KernelError(f"stream: {exc}") from None

    def make(device, seed):
        gen = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(n, generator=gen, device=device).to(torch_dtype(dtype))
        return x, torch.empty_like(x)

    def run(x, out):
        return scale(x, SCALE, out)

    return KernelSpec(
        kernel="stream", impl=impl, dtype=dtype, shape={"n": n},
        flops=flops.stream_flops(n), bytes=moved, make_inputs=make, run=run,
        error=stream_error, **({"unavailable": unavailable} if unavailable else {}),
    )


@register("stream", "torch", baseline=True)
def torch_stream_spec(n: int, dtype: str = "bf16") -> KernelSpec:
    return stream_spec("torch", n, dtype, scale=torch_scale)


@register("stream", "triton")
def triton_stream_spec(n: int, dtype: str = "bf16") -> KernelSpec:
    if TRITON_MISSING:
        raise KernelError(TRITON_MISSING)
    return stream_spec("triton", n, dtype, scale=triton_scale,
                       unavailable=lambda device: triton_unavailable(device, dtype))
