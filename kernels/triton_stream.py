"""Triton streaming scale, y = c * x: the memory-bandwidth probe.

One read stream and one write stream, as most elementwise kernels of training have (norms,
activations, dropout, the optimizer's updates): what it reaches is the rate the step model
times memory-bound work at (`scaling.hardware.profile.HardwareProfile.streaming_gbps`). Each
program scales one contiguous block of a few thousand elements, so every warp's loads and
stores are contiguous; offsets are 64-bit, so arrays past 2^31 elements work. The multiply
is done in float32 and rounded once to the output dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_support import interpreting


def _configs() -> list:
    """Block sizes: one small block under the interpreter (a test of a few thousand elements
    crosses blocks and a ragged end), memory-bound GPU blocks otherwise."""
    if interpreting():
        return [triton.Config({"BLOCK": 256}, num_warps=4)]
    return [triton.Config({"BLOCK": b}, num_warps=w)
            for b, w in ((1024, 4), (2048, 8), (4096, 8), (8192, 16))]


@triton.autotune(configs=_configs(), key=["n"])
@triton.jit
def _scale_kernel(x_ptr, y_ptr, c, n, BLOCK: tl.constexpr):
    offs = tl.program_id(axis=0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    x = tl.load(x_ptr + offs, mask=valid)
    tl.store(y_ptr + offs, (x.to(tl.float32) * c).to(y_ptr.dtype.element_ty), mask=valid)


def triton_scale(x: torch.Tensor, c: float, out: torch.Tensor) -> torch.Tensor:
    """``out = c * x`` for contiguous 1-D tensors of the same size and dtype; returns ``out``."""
    if x.ndim != 1 or out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(f"scale takes 1-D x and out of one shape and dtype, got "
                         f"{tuple(x.shape)} {x.dtype} and {tuple(out.shape)} {out.dtype}")
    if not (x.is_contiguous() and out.is_contiguous()):
        raise ValueError("scale takes contiguous tensors")
    n = x.numel()
    _scale_kernel[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](x, out, float(c), n)
    return out
