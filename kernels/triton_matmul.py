"""Triton GEMM: C = A @ B in BF16/FP16, and FP8 with float32 scales applied in the epilogue.

One kernel body serves both: each program computes a BLOCK_M x BLOCK_N tile of C by walking K
in BLOCK_K steps and accumulating in float32, then scales (FP8) and casts on the way out.
What makes it fast on a GPU, after Triton's matrix-multiplication tutorial
(``python/tutorials/03-matrix-multiplication.py``):

* **Grouped program order.** Programs are numbered so that GROUP_M consecutive ones share
  the same columns of B and sweep GROUP_M rows of A: the tiles of A and B they read stay in
  L2 instead of being fetched once per tile of C (`grouped_tile`, shared with the persistent
  TMA GEMM of `kernels.triton_tma_matmul`).
* **Autotuned tiles, keyed on the problem.** Each distinct shape, operand layout (the strides),
  FP8 scaling and accumulation mode is timed once over a few Hopper-sized configurations
  (128-256 wide tiles, 3-4 pipeline stages, 4-8 warps, none spilling registers on sm_90:
  tests/test_kernels/test_triton_compile.py); the best is cached. FP8 takes BLOCK_K twice as deep as BF16
  for the same shared-memory bytes.
* **Any layout, any size.** Operands are addressed through their strides: row- and
  column-major 16-bit inputs need no copy (Hopper's wgmma reads 16-bit tiles of either
  majorness from shared memory) when their leading dimension, K and the dimension they are
  contiguous along are multiples of 16 (every benchmark shape). Otherwise the launcher first
  copies them into storage that is, zero-padded, inside the call, and returns the (M, N)
  corner (a view) of the padded product (`kernels.gemm_operands`: without the copy, loads are
  scalar, the pipeline shrinks to one stage and most tiles spill registers). Rows and columns
  past the launch's M and N wrap around (their results are never stored); the K tail is
  masked to zero, and only when K is not a multiple of BLOCK_K.

FP8 follows ``torch._scaled_mm``: ``C = (A * scale_a) @ (B * scale_b)`` with a tensor-wise
scale (one float32) or row-wise scales (``scale_a`` (M, 1), ``scale_b`` (1, N)). Because the
scales are constant along K, they multiply the float32 accumulator once per output element.
Two more things are FP8-specific:

* **K-major operands.** wgmma takes FP8 tiles from shared memory only K-major (A row-major,
  B column-major). Any other layout would be transposed in registers on every tile, which
  costs the software pipeline (compiled for sm_90, the 128 x 256 tile keeps 48-112 KB of
  shared memory instead of three 48 KB stages). So `triton_fp8_matmul` copies an operand that
  is not K-major into K-major order first, inside the call (`kernels.gemm_operands`): a
  benchmark of such a layout times that copy (it is part of multiplying data stored that
  way); layout "rc", what ``_scaled_mm`` takes, copies nothing.
* **Accumulation.** Hopper's FP8 tensor cores accumulate with fewer than float32's bits
  (about 14, DeepSeek-V3 technical report, arXiv 2412.19437, Sec. 3.3.2); precise kernels
  add the tensor-core partial sums into a float32 accumulator at intervals along K.
  ``fast_accum=False`` (the default, like ``_scaled_mm``'s ``use_fast_accum=False``) does that
  after every BLOCK_K-deep step (``tl.dot``'s ``max_num_imprecise_acc = BLOCK_K``, 128 in
  every GPU configuration, the interval of the DeepSeek-V3 report);
  ``fast_accum=True`` never does (Triton's own sm_90 default, ``2**30``), like
  ``use_fast_accum=True``. Benchmarks name the mode, so precise is compared with precise and
  fast with fast.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.fp8 import FP8_DTYPES
from kernels.gemm_operands import (NO_SCALE, aligned_output, check_16bit, check_fp8,
                                   kernel_operands)
from kernels.triton_support import interpreting

# The autotuners' cache key: one tuning per shape, operand layout (strides), FP8 scaling and
# accumulation mode.
TUNING_KEY = ["M", "N", "K", "stride_am", "stride_ak", "stride_bk", "stride_bn", "SCALING",
              "FAST_ACCUM"]


def _config(bm, bn, bk, group, stages, warps):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group},
                         num_stages=stages, num_warps=warps)


def _configs(fp8: bool, fast_accum: bool = True) -> list:
    """Tile configurations to autotune over.

    Under ``TRITON_INTERPRET=1`` (CPU) there is one small tile: autotuning there would time
    the NumPy emulation, which says nothing about a GPU. On a GPU the candidates are the ones
    that suit Hopper's 228 KB of shared memory and wgmma's 64-row warpgroup tiles; FP8 doubles
    BLOCK_K so each stage moves the same bytes. None spills registers on sm_90
    (tests/test_kernels/test_triton_compile.py compiles every candidate and refuses any that does): a
    64 x 256 tile on 4 warps (128 float32 accumulators per thread) is left out, and so, for
    precise FP8 accumulation, is 128 x 256 on 8 warps, whose second accumulator (the tensor
    cores' partial sums beside the float32 totals) takes 256 registers per thread.
    """
    if interpreting():
        return [_config(32, 32, 32, 4, 1, 4)]
    k = 128 if fp8 else 64
    wide = [_config(128, 256, k, 8, 3, 8)] if fast_accum or not fp8 else []
    return wide + [
        _config(256, 128, k, 8, 3, 8),
        _config(128, 128, k, 8, 4, 8),
        _config(128, 128, k, 8, 4, 4),
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


def max_imprecise_acc(dtype: torch.dtype, fast_accum: bool, block_k: int) -> int | None:
    """``tl.dot``'s ``max_num_imprecise_acc`` for a launch: how many products along K the
    tensor cores may sum before the partial sum is added into the float32 accumulator.

    FP8 precise (``fast_accum`` false): one BLOCK_K-deep step. FP8 fast: None, Triton's
    default for FP8 on sm_90 (``2**30``: never). 16-bit operands: 0, what Triton uses for them
    (their tensor-core accumulation is float32 already).
    """
    if dtype not in FP8_DTYPES.values():
        return 0
    return None if fast_accum else block_k


@triton.jit
def grouped_tile(tile_id, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Tile ``tile_id`` of C -> its (row, column) of tiles, GROUP_M rows of tiles at a time:
    consecutive tiles share columns of B and sweep GROUP_M rows of A."""
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = tile_id // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((tile_id % num_pid_in_group) % group_size_m)
    pid_n = (tile_id % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def scale_tile(acc, scale_a_ptr, scale_b_ptr, offs_m, offs_n, SCALING: tl.constexpr):
    """FP8 dequantisation of a float32 tile: tensor-wise (SCALING 1, one scale each) or
    row-wise (2: a scale per row of A, ``offs_m``, and per column of B, ``offs_n``, both
    already in range); `kernels.gemm_operands` names the modes."""
    if SCALING == 1:
        acc = acc * (tl.load(scale_a_ptr) * tl.load(scale_b_ptr))
    elif SCALING == 2:
        acc = acc * tl.load(scale_a_ptr + offs_m)[:, None]
        acc = acc * tl.load(scale_b_ptr + offs_n)[None, :]
    return acc


@triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0,
                    "MAX_IMPRECISE_ACC": lambda args: max_imprecise_acc(
                        args["a_ptr"].dtype, args["FAST_ACCUM"], args["BLOCK_K"])})
@triton.jit
def _gemm_kernel(a_ptr, b_ptr, c_ptr, scale_a_ptr, scale_b_ptr, M, N, K,
                 stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                 SCALING: tl.constexpr, FAST_ACCUM: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                 EVEN_K: tl.constexpr, MAX_IMPRECISE_ACC: tl.constexpr):
    # FAST_ACCUM reaches the dot as MAX_IMPRECISE_ACC (max_imprecise_acc); it is a parameter
    # so that it keys the autotuner's cache and the compiled kernel.
    pid_m, pid_n = grouped_tile(tl.program_id(axis=0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N),
                                GROUP_M)

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
        acc = tl.dot(a, b, acc, max_num_imprecise_acc=MAX_IMPRECISE_ACC)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    # Epilogue: dequantisation scales (FP8), then the cast to the output dtype.
    acc = scale_tile(acc, scale_a_ptr, scale_b_ptr, offs_m, offs_n, SCALING)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))



def _autotuned(configs):
    return triton.autotune(configs=configs, key=TUNING_KEY,
                           prune_configs_by={"early_config_prune": _prune})(_gemm_kernel)


# Autotuners over the same kernel body, each with the tiles that suit its operands.
_gemm_16bit = _autotuned(_configs(fp8=False))
_gemm_fp8_precise = _autotuned(_configs(fp8=True, fast_accum=False))
_gemm_fp8_fast = _autotuned(_configs(fp8=True, fast_accum=True))


def _launch(kernel, a, b, k, c, scale_a, scale_b, scaling, fast_accum):
    m, n = c.shape

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)

    kernel[grid](a, b, c, scale_a, scale_b, m, n, k,
                 a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
                 SCALING=scaling, FAST_ACCUM=fast_accum)
    return c


def triton_matmul(a: torch.Tensor, b: torch.Tensor, *, out_dtype: torch.dtype | None = None):
    """A @ B for BF16 or FP16 operands of any shape and majorness, float32 accumulation.

    ``out_dtype`` defaults to the input dtype (float32 is also accepted). The result is
    row-major, possibly a view of a wider buffer (`kernels.gemm_operands.aligned_output`).
    """
    m, n, _ = check_16bit(a, b)
    a, b, m2, n2, k2 = kernel_operands(a, b)
    c = aligned_output(m2, n2, out_dtype or a.dtype, a.device)
    # No scales: the pointers are never read, any tensor will do.
    return _launch(_gemm_16bit, a, b, k2, c, c, c, NO_SCALE, False)[:m, :n]


def triton_fp8_matmul(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor,
                      scale_b: torch.Tensor, *, out_dtype: torch.dtype = torch.bfloat16,
                      fast_accum: bool = False):
    """(A * scale_a) @ (B * scale_b) for FP8 (e4m3 or e5m2) operands, as ``torch._scaled_mm``.

    Scales are float32 dequantisation factors: tensor-wise (one element each) or row-wise
    (``scale_a`` (M, 1), ``scale_b`` (1, N)). Any majorness: an operand that is not K-major
    (A row-major, B column-major: "rc", what ``_scaled_mm`` requires) is first copied into that
    order (and K zero-padded to a multiple of 16), in this call. ``fast_accum`` as
    ``_scaled_mm``'s ``use_fast_accum`` (module docstring): False promotes the tensor cores'
    partial sums to float32 every BLOCK_K. The result is row-major, possibly a view of a wider
    buffer (`kernels.gemm_operands.aligned_output`).
    """
    m, n, scaling = check_fp8(a, b, scale_a, scale_b)
    a, b, _, _, k2 = kernel_operands(a, b, a_major="r", b_major="c")  # M, N kept: K-major
    # Row-wise scales are read as flat vectors; make them contiguous once.
    scale_a, scale_b = scale_a.reshape(-1).contiguous(), scale_b.reshape(-1).contiguous()
    c = aligned_output(m, n, out_dtype, a.device)
    kernel = _gemm_fp8_fast if fast_accum else _gemm_fp8_precise
    return _launch(kernel, a, b, k2, c, scale_a, scale_b, scaling, bool(fast_accum))
