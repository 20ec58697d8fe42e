"""Triton GEMM: C = A @ B in BF16/FP16, and FP8 with float32 scales applied in the epilogue.

One kernel body serves both: each program computes a BLOCK_M x BLOCK_N tile of C by walking K
in BLOCK_K steps and accumulating in float32, then scales (FP8) and casts on the way out.
What makes it fast on a GPU, after Triton's matrix-multiplication tutorial
(``python/tutorials/03-matrix-multiplication.py``):

* **Grouped program order.** Programs are numbered so that GROUP_M consecutive ones share
  the same columns of B and sweep GROUP_M rows of A: the tiles of A and B they read stay in
  L2 instead of being fetched once per tile of C.
* **Autotuned tiles, keyed on the shape.** Each distinct (M, N, K) is timed once over a few
  Hopper-sized configurations (128-256 wide tiles, 3-4 pipeline stages, 8 warps); the best is
  cached. FP8 takes BLOCK_K twice as deep as BF16 for the same shared-memory bytes.
* **Any layout, any size.** Operands are addressed through their strides, so row- and
  column-major inputs need no copy (Triton specialises unit strides for contiguous loads).
  Rows and columns past M and N wrap around (their results are never stored); the K tail is
  masked to zero, and only when K is not a multiple of BLOCK_K.

FP8 follows ``torch._scaled_mm``: ``C = (A * scale_a) @ (B * scale_b)`` with a tensor-wise
scale (one float32) or row-wise scales (``scale_a`` (M, 1), ``scale_b`` (1, N)). Because the
scales are constant along K, they multiply the float32 accumulator once per output element.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.fp8 import FP8_DTYPES
from kernels.triton_support import interpreting

# Scaling modes of the epilogue (a constexpr, so each mode compiles to its own kernel).
NO_SCALE, TENSORWISE, ROWWISE = 0, 1, 2


def _config(bm, bn, bk, group, stages, warps):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group},
                         num_stages=stages, num_warps=warps)


def _configs(fp8: bool) -> list:
    """Tile configurations to autotune over.

    Under ``TRITON_INTERPRET=1`` (CPU) there is one small tile: autotuning there would time
    the NumPy emulation, which says nothing about a GPU. On a GPU the candidates are the ones
    that suit Hopper's 228 KB of shared memory and wgmma's 64-row warpgroup tiles; FP8 doubles
    BLOCK_K so each stage moves the same bytes.
    """
    if interpreting():
        return [_config(32, 32, 32, 4, 1, 4)]
    k = 128 if fp8 else 64
    return [
        _config(128, 256, k, 8, 3, 8),
        _config(256, 128, k, 8, 3, 8),
        _config(128, 128, k, 8, 4, 8),
        _config(128, 128, k, 8, 4, 4),
        _config(64, 256, k, 8, 4, 4),
        _config(128, 64, k, 8, 4, 4),
        _config(64, 128, k, 8, 4, 4),
        _config(64, 64, k, 8, 4, 4),
    ]


def _prune(configs, named_args, **kwargs):
    """Drop tiles much larger than the problem (they would compute mostly padding)."""
    m, n = named_args["M"], named_args["N"]
    fitting = [c for c in configs
               if c.kwargs["BLOCK_M"] <= max(64, triton.next_power_of_2(m))
               and c.kwargs["BLOCK_N"] <= max(64, triton.next_power_of_2(n))]
    return fitting or configs[-1:]


@triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})
@triton.jit
def _gemm_kernel(a_ptr, b_ptr, c_ptr, scale_a_ptr, scale_b_ptr, M, N, K,
                 stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                 SCALING: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, EVEN_K: tl.constexpr):
    # Grouped ordering: program `pid` -> tile (pid_m, pid_n), GROUP_M rows of tiles at a time.
    pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    # Rows/columns past the edge wrap around; they are computed but never stored.
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_left = K - k * BLOCK_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    # Epilogue: dequantisation scales (FP8), then the cast to the output dtype.
    if SCALING == 1:
        acc = acc * (tl.load(scale_a_ptr) * tl.load(scale_b_ptr))
    elif SCALING == 2:
        acc = acc * tl.load(scale_a_ptr + offs_m)[:, None]
        acc = acc * tl.load(scale_b_ptr + offs_n)[None, :]

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))


# Two autotuners over the same kernel body, each with the tiles that suit its input width.
_gemm_16bit = triton.autotune(configs=_configs(fp8=False), key=["M", "N", "K"],
                              prune_configs_by={"early_config_prune": _prune})(_gemm_kernel)
_gemm_fp8 = triton.autotune(configs=_configs(fp8=True), key=["M", "N", "K"],
                            prune_configs_by={"early_config_prune": _prune})(_gemm_kernel)


def _check_operands(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int, int]:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"GEMM operands must be 2-D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimensions differ: A is {tuple(a.shape)}, B is {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"operands on different devices: {a.device} and {b.device}")
    m, k = a.shape
    n = b.shape[1]
    if min(m, n, k) == 0:
        raise ValueError(f"empty GEMM: A is {tuple(a.shape)}, B is {tuple(b.shape)}")
    return m, n, k


def _launch(kernel, a, b, c, scale_a, scale_b, scaling):
    m, k = a.shape
    n = b.shape[1]

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)

    kernel[grid](a, b, c, scale_a, scale_b, m, n, k,
                 a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
                 SCALING=scaling)
    return c


def triton_matmul(a: torch.Tensor, b: torch.Tensor, *, out_dtype: torch.dtype | None = None):
    """A @ B for BF16 or FP16 operands of any shape and majorness, float32 accumulation.

    ``out_dtype`` defaults to the input dtype (float32 is also accepted).
    """
    m, n, _ = _check_operands(a, b)
    if a.dtype not in (torch.bfloat16, torch.float16) or b.dtype != a.dtype:
        raise ValueError(f"triton_matmul takes two bfloat16 or two float16 operands, got "
                         f"{a.dtype} and {b.dtype}; use triton_fp8_matmul for FP8")
    c = torch.empty(m, n, device=a.device, dtype=out_dtype or a.dtype)
    # No scales: the pointers are never read, any tensor will do.
    return _launch(_gemm_16bit, a, b, c, c, c, NO_SCALE)


def _scaling_mode(scale_a: torch.Tensor, scale_b: torch.Tensor, m: int, n: int) -> int:
    for name, s in (("scale_a", scale_a), ("scale_b", scale_b)):
        if not isinstance(s, torch.Tensor) or s.dtype != torch.float32:
            raise ValueError(f"{name} must be a float32 tensor, got {getattr(s, 'dtype', type(s))}")
    if scale_a.numel() == 1 and scale_b.numel() == 1:
        return TENSORWISE
    if tuple(scale_a.shape) == (m, 1) and tuple(scale_b.shape) == (1, n):
        return ROWWISE
    raise ValueError(
        f"scales must be both tensor-wise (one element each) or row-wise (scale_a ({m}, 1), "
        f"scale_b (1, {n})), got {tuple(scale_a.shape)} and {tuple(scale_b.shape)}")


def triton_fp8_matmul(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor,
                      scale_b: torch.Tensor, *, out_dtype: torch.dtype = torch.bfloat16):
    """(A * scale_a) @ (B * scale_b) for FP8 (e4m3 or e5m2) operands, as ``torch._scaled_mm``.

    Scales are float32 dequantisation factors: tensor-wise (one element each) or row-wise
    (``scale_a`` (M, 1), ``scale_b`` (1, N)). Any majorness; column-major B ("rc", what
    ``_scaled_mm`` requires) is the fast one on Hopper.
    """
    m, n, _ = _check_operands(a, b)
    if a.dtype not in FP8_DTYPES.values() or b.dtype not in FP8_DTYPES.values():
        raise ValueError(f"triton_fp8_matmul takes float8_e4m3fn or float8_e5m2 operands, got "
                         f"{a.dtype} and {b.dtype}")
    scaling = _scaling_mode(scale_a, scale_b, m, n)
    # Row-wise scales are read as flat vectors; make them contiguous once.
    scale_a, scale_b = scale_a.reshape(-1).contiguous(), scale_b.reshape(-1).contiguous()
    c = torch.empty(m, n, device=a.device, dtype=out_dtype)
    return _launch(_gemm_fp8, a, b, c, scale_a, scale_b, scaling)
