"""Which torch releases flopcast runs on: the torch APIs it calls, the first release of each,
and the feature checks that keep it working on the releases without the newer ones.

pyproject.toml admits ``torch>=FLOOR,<3`` and the set-up keeps a GPU node's own torch, so
the code runs on every release in that range. ``TORCH_APIS`` lists every torch API flopcast's
kernels and benchmarks call that torch 2.0.0 (the first 2.x release) did not have. An API
without a ``gate`` is called unconditionally: the newest of those sets the floor
(``TORCH_FLOOR``; a test holds pyproject.toml to it). An API with a gate is used only where
its feature check finds it, and the code does without it elsewhere, as the row says.

The first releases were read from the releases themselves (their Python sources and type
stubs) and from the pull requests that added the features. Attributes read through
``getattr`` with a default (CUDA device properties' ``uuid`` and PCI ids in `bench.telemetry.nvml`,
``dist.all_gather_single`` in `bench.collectives`) work on any release and are not listed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from kernels.fp8 import quantize_rowwise, quantize_tensorwise


@dataclass(frozen=True)
class TorchAPI:
    api: str  # what is called
    first: str  # the first torch release that has it
    needle: str  # text found in flopcast's source where it is called
    source: str  # where the first release is shown
    gate: str = ""  # the feature check that guards the call ("" when called unconditionally)
    without: str = ""  # what flopcast does on a torch that lacks it


TORCH_APIS: tuple[TorchAPI, ...] = (
    TorchAPI("F.scaled_dot_product_attention(scale=...)", "2.1",
             "is_causal=causal, scale=sm_scale",
             "torch 2.1.0 torch/nn/functional.py: the scale keyword is documented; 2.0.0's "
             "signature ends at is_causal"),
    TorchAPI("torch.float8_e4m3fn, torch.float8_e5m2", "2.1", "torch.float8_e4m3fn",
             "torch 2.1.0 is the first wheel whose libtorch has Float8_e4m3fn (2.0.0's has "
             "none)"),
    TorchAPI("torch._scaled_mm with tensor-wise float32 scales", "2.1", "torch._scaled_mm(",
             "pytorch/pytorch#106844 (introduces the CUDA op, August 2023); torch 2.1.0 "
             "torch/_C/_VariableFunctions.pyi has it, 2.0.0's not"),
    TorchAPI("torch.xpu.synchronize", "2.3", "torch.xpu.synchronize",
             "torch 2.3.0 is the first wheel with torch/xpu/__init__.py"),
    TorchAPI("torch.nn.attention.sdpa_kernel, SDPBackend", "2.3", "sdpa_kernel(",
             "torch 2.3.0 is the first wheel with torch/nn/attention/__init__.py"),
    TorchAPI("torch.distributed.init_process_group(device_id=...)", "2.3",
             "device_id=device",
             "torch 2.3.0 torch/distributed/distributed_c10d.py: the device_id parameter "
             "appears; 2.2.0's init_process_group has none"),
    TorchAPI("sdpa_kernel pinning exactly one backend, CUDNN_ATTENTION included", "2.4",
             "CUDNN_ATTENTION",
             "torch 2.4.0 torch/nn/attention/__init__.py: sdpa_kernel sets all four backend "
             "flags (enable_cudnn_sdp too); 2.3.0's leaves cuDNN's flag as it was, so a "
             "flash or math pin would not exclude cuDNN"),
    TorchAPI("F.scaled_dot_product_attention(enable_gqa=...)", "2.5", "enable_gqa=True",
             "pytorch/pytorch#132689 (merged August 2024); documented in torch 2.5.0 "
             "torch/nn/functional.py, absent from 2.4.0's",
             gate="sdpa_takes_enable_gqa", without="K and V heads are expanded with "
             "repeat_interleave inside the timed call, and the record's gqa_method says "
             "repeat_interleave"),
    TorchAPI("torch._scaled_mm returning one tensor (scale_a, scale_b required)", "2.5",
             "scaled_mm_output(",
             "pytorch/pytorch#128683 (removes the amax output, June 2024); torch 2.5.0 "
             "torch/_meta_registrations.py meta_scaled_mm returns one tensor, 2.4.0's a "
             "(out, amax) pair",
             gate="scaled_mm_output", without="the output is taken from the (out, amax) pair"),
    TorchAPI("torch._scaled_mm with row-wise scales (M, 1) and (1, N)", "2.5",
             "quantize_rowwise(",
             "pytorch/pytorch#125204 (row-wise kernel, 1-D scales) and #130059 (2-D scales, "
             "July 2024); torch 2.5.0 meta_scaled_mm accepts (M, 1) x (1, N) scales, 2.4.0's "
             "has no row-wise case",
             gate="scaled_mm_unavailable", without="the row-wise torch._scaled_mm case is "
             "skipped with the reason (the Triton kernel's row-wise case still runs)"),
    TorchAPI("torch._scaled_grouped_mm", "2.7", "_scaled_grouped_mm",
             "torch 2.7.0 is the first release whose torch/_C/_VariableFunctions.pyi has "
             "_scaled_grouped_mm (2.6.0's has none)",
             gate="private_op", without="the FP8 grouped GEMM's torch case is skipped with the "
             "reason; the per-expert torch-loop baseline and the Triton kernel still run"),
    TorchAPI("torch._grouped_mm", "2.8", "_grouped_mm",
             "torch 2.8.0 is the first release whose torch/_C/_VariableFunctions.pyi has "
             "_grouped_mm (2.7.0 has only _scaled_grouped_mm)",
             gate="private_op", without="the BF16 grouped GEMM's torch case is skipped with "
             "the reason; the per-expert torch-loop baseline and the Triton kernel still run"),
)


def _release(version: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``."""
    return tuple(int(part) for part in version.split("+")[0].split(".")[:3] if part.isdigit())


TORCH_FLOOR = max((api.first for api in TORCH_APIS if not api.gate), key=_release)


# -- feature checks -----------------------------------------------------------------------


def private_op(name: str):
    """``torch.<name>`` (a private operator such as ``_grouped_mm``) where this torch has it,
    else None; whether it runs a given dtype on a given device is probed by the caller."""
    return getattr(torch, name, None)


@functools.cache
def sdpa_takes_enable_gqa() -> bool:
    """Whether this torch's SDPA has the ``enable_gqa`` keyword (grouped-query heads without
    expanding K and V), found by calling it once on a tiny problem."""
    q = torch.zeros(1, 2, 1, 8)
    kv = torch.zeros(1, 1, 1, 8)
    try:
        torch.nn.functional.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
    except TypeError:  # unexpected keyword argument 'enable_gqa'
        return False
    return True


def scaled_mm_output(result) -> torch.Tensor:
    """``torch._scaled_mm``'s product: the tensor itself, or the first of torch 2.4's
    ``(out, amax)`` pair."""
    return result[0] if isinstance(result, tuple) else result


_SCALED_MM_PROBED: dict[tuple[str, str, str], str | None] = {}


def scaled_mm_unavailable(device: torch.device, fmt: str, scaling: str) -> str | None:
    """Why this torch cannot run ``torch._scaled_mm`` on ``fmt`` operands with ``scaling``
    ("tensorwise" or "rowwise") scales on ``device``, or None; found once per device by a
    16x16x16 product (a torch without row-wise scales, or without a CPU ``_scaled_mm``,
    raises)."""
    device = torch.device(device)
    key = (str(device), fmt, scaling)
    if key not in _SCALED_MM_PROBED:
        x = torch.ones(16, 16, device=device)
        try:
            if scaling == "tensorwise":
                (a, sa), (b, sb) = quantize_tensorwise(x, fmt), quantize_tensorwise(x, fmt)
            else:  # scales (16, 1) for A and (1, 16) for B
                (a, sa), (b, sb) = quantize_rowwise(x, fmt, dim=1), quantize_rowwise(x, fmt, dim=0)
            b = b.t().contiguous().t()  # column-major, as _scaled_mm wants its second operand
            scaled_mm_output(torch._scaled_mm(a, b, scale_a=sa, scale_b=sb,
                                              out_dtype=torch.bfloat16))
        except (RuntimeError, NotImplementedError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _SCALED_MM_PROBED[key] = (f"torch {torch.__version__} has no {scaling} "
                                      f"torch._scaled_mm on {device.type}: {first}")
        else:
            _SCALED_MM_PROBED[key] = None
    return _SCALED_MM_PROBED[key]
