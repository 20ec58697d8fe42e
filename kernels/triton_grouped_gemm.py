"""Triton grouped GEMM: one launch multiplies every expert's rows by that expert's matrix.

Two kernels, for the two shapes of GEMM a mixture-of-experts layer has (the two that
``torch._grouped_mm`` takes, with the same arguments):

* **Rows grouped**, A (M, K) @ B (G, K, N) -> C (M, N): the rows of A come group after group
  and ``C[rows of g] = A[rows of g] @ B[g]``. The forward (Y_g = X_g W_g) and dX
  (dX_g = dY_g W_g^T, B a transposed view of W) are this.
* **Reduced over rows**, A (K, M) @ B (M, N) -> C (G, K, N): ``C[g] = A[:, rows of g] @
  B[rows of g]``, the weight gradient dW_g = X_g^T dY_g, whose reduction runs over the group's
  rows.

Groups are given as ``torch._grouped_mm`` takes them: ``offs`` (G,) int32, the running row
count at the end of each group, so group g holds rows offs[g-1] .. offs[g] - 1.

**Tile scheduling over uneven groups** (rows grouped). How many row tiles there are depends on
the data: group g has cdiv(rows_g, BLOCK_M). The grid is an upper bound that needs no copy of
the offsets to the host (so a call can be captured in a CUDA graph): M // BLOCK_M + min(G, M)
row tiles, times the column tiles. Each program loads the G offsets, computes every group's
tile count and their running sum (``tl.cumsum``), and finds the group of its row tile by
counting the groups that end at or before it: the tile -> (group, row tile) map lives in
registers. Programs past the real number of tiles return at once, and an empty group has no
tiles, so it costs nothing. Row tiles are numbered group after group and programs go GROUP_M
row tiles at a time (Triton's matmul tutorial), so consecutive programs share columns of the
same B[g] in L2. Rows past the end of a group repeat its last row (computed, never stored),
so loads along M need no mask.

**Reduced over rows**: one program per (group, output tile). A group's rows start and end
anywhere; its whole blocks of BLOCK_K rows, aligned to BLOCK_K, run unmasked (what the software
pipeline needs), and the partial blocks at either end are masked. An empty group multiplies
nothing and writes its zeros (dW of an expert that received no token is zero).

**FP8** follows ``torch._scaled_grouped_mm``: e4m3 or e5m2 operands, float32 row-wise scales,
BF16 output. Rows grouped: ``scale_a`` (M,), one per row of A, and ``scale_b`` (G, N), one per
column of each B[g]. Reduced over rows: ``scale_a`` (G * K,), one per row of A within each
group, and ``scale_b`` (G * N,), one per column of B within each group. Scales are constant
along the reduction, so they multiply the float32 accumulator once, in the epilogue.

At DeepSeek-V3's scale an operand holds more than 2^31 elements (512k routed rows of 7168), so
the offset of a tile's first row is 64-bit; offsets inside a tile stay 32-bit (64-bit offsets
per element cost registers the accumulator needs: the tiles below spill without this).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.fp8 import FP8_DTYPES
from kernels.triton_support import interpreting

# Groups are handled as one vector per program; a program loads this many offsets at most.
MAX_GROUPS = 1024


def _config(bm, bn, bk, group, stages, warps):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group},
                         num_stages=stages, num_warps=warps)


def _configs(fp8: bool, reduce: bool = False) -> list:
    """Tiles to autotune over: one small tile in the interpreter (timing NumPy emulation says
    nothing about a GPU); on a GPU, Hopper-sized tiles (wgmma works on 64-row warpgroup tiles;
    228 KB of shared memory), FP8 with BLOCK_K twice as deep for the same bytes per stage.

    Every tile listed compiles for sm_90 without register spills (ptxas of Triton 3.9). A 16-bit
    dW reads both operands with the reduction strided (X^T and dY as they lie in memory), which
    Triton 3.9 does not software-pipeline on Hopper: its loads stay in registers, so it gets
    smaller tiles.
    """
    if interpreting():
        return [_config(16, 32, 32, 2, 1, 4)]
    k = 128 if fp8 else 64
    if reduce and not fp8:
        tiles = [(128, 128, 4, 8), (128, 64, 4, 8), (64, 128, 4, 8), (64, 64, 4, 4)]
    else:
        tiles = [(128, 256, 3, 8), (128, 128, 4, 8), (128, 128, 4, 4), (64, 256, 4, 8),
                 (128, 64, 4, 4), (64, 128, 4, 4), (64, 64, 4, 4)]
    return [_config(bm, bn, k, 8, stages, warps) for bm, bn, stages, warps in tiles]


def _prune_rows(configs, named_args, **kwargs):
    """Drop row tiles much taller than a group's mean rows (mostly padding) and column tiles
    much wider than N."""
    mean_rows = triton.cdiv(named_args["M"], named_args["G"])
    fitting = [c for c in configs
               if c.kwargs["BLOCK_M"] <= max(64, triton.next_power_of_2(mean_rows))
               and c.kwargs["BLOCK_N"] <= max(64, triton.next_power_of_2(named_args["N"]))]
    return fitting or configs[-1:]


def _prune_reduce(configs, named_args, **kwargs):
    """Drop output tiles much larger than the K x N output of a group."""
    fitting = [c for c in configs
               if c.kwargs["BLOCK_M"] <= max(64, triton.next_power_of_2(named_args["K"]))
               and c.kwargs["BLOCK_N"] <= max(64, triton.next_power_of_2(named_args["N"]))]
    return fitting or configs[-1:]


@triton.jit
def _swizzle(tile, num_m, num_n, GROUP_M: tl.constexpr):
    """Tile number -> (row tile, column tile), GROUP_M row tiles at a time."""
    width = GROUP_M * num_n
    first_m = (tile // width) * GROUP_M
    size_m = min(num_m - first_m, GROUP_M)
    return first_m + (tile % width) % size_m, (tile % width) // size_m


@triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})
@triton.jit
def _grouped_rows_kernel(a_ptr, b_ptr, c_ptr, offs_ptr, scale_a_ptr, scale_b_ptr, M, N, K, G,
                         stride_am, stride_ak, stride_bg, stride_bk, stride_bn,
                         stride_cm, stride_cn,
                         SCALED: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_M: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                         EVEN_K: tl.constexpr):
    # The tile map: group g's row tiles are numbered tile_ends[g] - tiles[g] .. tile_ends[g] - 1.
    g = tl.arange(0, BLOCK_G)
    ends = tl.load(offs_ptr + g, mask=g < G, other=0)
    starts = tl.load(offs_ptr + g - 1, mask=(g > 0) & (g < G), other=0)
    tiles = (ends - starts + BLOCK_M - 1) // BLOCK_M
    tile_ends = tl.cumsum(tiles, axis=0)
    num_m = tl.sum(tiles, axis=0)
    num_n = tl.cdiv(N, BLOCK_N)
    pid = tl.program_id(axis=0)
    if pid >= num_m * num_n:
        return  # the grid is an upper bound on the tiles
    tile_m, tile_n = _swizzle(pid, num_m, num_n, GROUP_M)
    group = tl.sum((tile_ends <= tile_m).to(tl.int32), axis=0)
    here = g == group
    first_row = (tl.sum(tl.where(here, starts, 0), axis=0)
                 + (tile_m - tl.sum(tl.where(here, tile_ends - tiles, 0), axis=0)) * BLOCK_M)
    rows_left = tl.sum(tl.where(here, ends, 0), axis=0) - first_row

    # 64-bit offsets only in the tile's base pointers; inside the tile, rows past the group's
    # end repeat its last row and columns past N wrap around (computed, never stored).
    local = tl.arange(0, BLOCK_M)
    offs_m = tl.minimum(local, rows_left - 1)
    cols = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_n = cols % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = (a_ptr + first_row.to(tl.int64) * stride_am + offs_m[:, None] * stride_am
              + offs_k[None, :] * stride_ak)
    b_ptrs = (b_ptr + group.to(tl.int64) * stride_bg + offs_k[:, None] * stride_bk
              + offs_n[None, :] * stride_bn)

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

    if SCALED:
        acc = acc * tl.load(scale_a_ptr + first_row + offs_m)[:, None]
        acc = acc * tl.load(scale_b_ptr + group * N + offs_n)[None, :]
    c_ptrs = (c_ptr + first_row.to(tl.int64) * stride_cm + local[:, None] * stride_cm
              + cols[None, :] * stride_cn)
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty),
             mask=(local[:, None] < rows_left) & (cols[None, :] < N))


@triton.jit
def _edge_block(acc, a_ptr, b_ptr, row0, lo, hi, offs_m, offs_n, stride_ak, stride_am,
                stride_bm, stride_bn, BLOCK_K: tl.constexpr):
    """acc + A[:, r] @ B[r, :] over the rows r of row0 .. row0 + BLOCK_K - 1 inside [lo, hi).

    Masked loads of arbitrary rows cannot be vectorised, so the block goes EDGE_K rows at a
    time: fewer loads in flight, registers for the accumulator."""
    EDGE_K: tl.constexpr = 32  # the smallest reduction step of an FP8 wgmma
    steps = tl.arange(0, EDGE_K)
    for s in tl.static_range(0, BLOCK_K, EDGE_K):
        rows = row0 + s + steps
        inside = (rows >= lo) & (rows < hi)
        base = (row0 + s).to(tl.int64)
        a = tl.load(a_ptr + base * stride_am + offs_m[:, None] * stride_ak
                    + steps[None, :] * stride_am, mask=inside[None, :], other=0.0)
        b = tl.load(b_ptr + base * stride_bm + steps[:, None] * stride_bm
                    + offs_n[None, :] * stride_bn, mask=inside[:, None], other=0.0)
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def _grouped_reduce_kernel(a_ptr, b_ptr, c_ptr, offs_ptr, scale_a_ptr, scale_b_ptr, K, N, G,
                           stride_ak, stride_am, stride_bm, stride_bn,
                           stride_cg, stride_ck, stride_cn,
                           SCALED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    # Here the output tile is BLOCK_M rows of K by BLOCK_N columns of N, and BLOCK_K is the step
    # of the reduction over the group's rows.
    num_m = tl.cdiv(K, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    pid = tl.program_id(axis=0)
    group = pid // (num_m * num_n)
    tile_m, tile_n = _swizzle(pid % (num_m * num_n), num_m, num_n, GROUP_M)
    lo = tl.load(offs_ptr + group - 1, mask=group > 0, other=0)
    hi = tl.load(offs_ptr + group)

    out_rows = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = (out_rows % K).to(tl.int64)  # rows of A can be 2^31 elements apart
    offs_n = cols % N
    # A group starts and ends anywhere. Its whole blocks of BLOCK_K rows, aligned to BLOCK_K,
    # run unmasked (aligned, unmasked loads are what the software pipeline and vectorised
    # copies need); the partial blocks at either end are masked (`_edge_block`).
    first_full = tl.multiple_of(tl.cdiv(lo, BLOCK_K) * BLOCK_K, BLOCK_K)
    last_full = tl.multiple_of((hi // BLOCK_K) * BLOCK_K, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if (lo < first_full) & (lo < hi):
        acc = _edge_block(acc, a_ptr, b_ptr, first_full - BLOCK_K, lo, hi, offs_m, offs_n,
                          stride_ak, stride_am, stride_bm, stride_bn, BLOCK_K)
    steps = tl.arange(0, BLOCK_K)
    a_ptrs = (a_ptr + first_full.to(tl.int64) * stride_am + offs_m[:, None] * stride_ak
              + steps[None, :] * stride_am)
    b_ptrs = (b_ptr + first_full.to(tl.int64) * stride_bm + steps[:, None] * stride_bm
              + offs_n[None, :] * stride_bn)
    for _ in range(0, (last_full - first_full) // BLOCK_K):
        acc = tl.dot(tl.load(a_ptrs), tl.load(b_ptrs), acc)
        a_ptrs += BLOCK_K * stride_am
        b_ptrs += BLOCK_K * stride_bm
    if (last_full < hi) & (last_full >= first_full):  # else the head block held the tail
        acc = _edge_block(acc, a_ptr, b_ptr, last_full, lo, hi, offs_m, offs_n,
                          stride_ak, stride_am, stride_bm, stride_bn, BLOCK_K)

    if SCALED:
        acc = acc * tl.load(scale_a_ptr + group * K + offs_m)[:, None]
        acc = acc * tl.load(scale_b_ptr + group * N + offs_n)[None, :]
    c_ptrs = (c_ptr + group.to(tl.int64) * stride_cg + out_rows[:, None] * stride_ck
              + cols[None, :] * stride_cn)
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty),
             mask=(out_rows[:, None] < K) & (cols[None, :] < N))


def _autotuned(kernel, keys, prune, fp8):
    reduce = kernel is _grouped_reduce_kernel
    return triton.autotune(configs=_configs(fp8, reduce), key=keys,
                           prune_configs_by={"early_config_prune": prune})(kernel)


# One autotuner per kernel and input width, each with the tiles that suit it.
_rows_16bit = _autotuned(_grouped_rows_kernel, ["M", "N", "K", "G"], _prune_rows, fp8=False)
_rows_fp8 = _autotuned(_grouped_rows_kernel, ["M", "N", "K", "G"], _prune_rows, fp8=True)
_reduce_16bit = _autotuned(_grouped_reduce_kernel, ["K", "N", "G"], _prune_reduce, fp8=False)
_reduce_fp8 = _autotuned(_grouped_reduce_kernel, ["K", "N", "G"], _prune_reduce, fp8=True)


def _check_inputs(a, b, offs, scale_a, scale_b):
    """The dtypes, shapes and devices of a grouped GEMM; returns whether it is FP8."""
    if a.dim() != 2 or b.dim() not in (2, 3):
        raise ValueError(f"grouped GEMM takes A 2-D and B 2-D or 3-D, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if not isinstance(offs, torch.Tensor) or offs.dim() != 1 or offs.dtype != torch.int32:
        raise ValueError("offs must be a 1-D int32 tensor of cumulative group ends")
    if len({a.device, b.device, offs.device}) != 1:
        raise ValueError(f"operands on different devices: {a.device}, {b.device}, {offs.device}")
    groups = offs.numel()
    if not 1 <= groups <= MAX_GROUPS:
        raise ValueError(f"a grouped GEMM takes 1 to {MAX_GROUPS} groups, got {groups}")
    if b.dim() == 3 and b.shape[0] != groups:
        raise ValueError(f"B has {b.shape[0]} groups but offs has {groups}")
    if a.shape[1] != b.shape[-2]:
        raise ValueError(f"inner dimensions differ: A is {tuple(a.shape)}, B is {tuple(b.shape)}")
    fp8 = a.dtype in FP8_DTYPES.values()
    if fp8:
        if b.dtype not in FP8_DTYPES.values():
            raise ValueError(f"an FP8 A needs an FP8 B, got {b.dtype}")
        rows = a.shape[0] if b.dim() == 3 else groups * a.shape[0]
        cols = groups * b.shape[-1]
        for name, s, want in (("scale_a", scale_a, rows), ("scale_b", scale_b, cols)):
            if not isinstance(s, torch.Tensor) or s.dtype != torch.float32 or s.numel() != want:
                raise ValueError(f"{name} must be a float32 tensor of {want} row-wise scales")
    else:
        if a.dtype not in (torch.bfloat16, torch.float16) or b.dtype != a.dtype:
            raise ValueError(f"grouped GEMM takes two bfloat16, two float16 or two FP8 operands, "
                             f"got {a.dtype} and {b.dtype}")
        if scale_a is not None or scale_b is not None:
            raise ValueError("scales are for FP8 operands only")
    return fp8


def triton_grouped_mm(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor, *,
                      scale_a: torch.Tensor | None = None, scale_b: torch.Tensor | None = None,
                      out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch._grouped_mm(a, b, offs=offs)`` (and, with scales, ``torch._scaled_grouped_mm``)
    in one Triton launch.

    ``b`` 3-D (G, K, N): rows grouped, returns (M, N). ``b`` 2-D (M, N) with ``a`` (K, M):
    reduced over each group's rows, returns (G, K, N). Operands may have any strides. The output
    is ``a``'s dtype for 16-bit inputs, BF16 for FP8 (``out_dtype`` overrides; float32 is
    accepted too). Rows past ``offs[-1]`` belong to no group and are left unwritten.
    """
    fp8 = _check_inputs(a, b, offs, scale_a, scale_b)
    out_dtype = out_dtype or (torch.bfloat16 if fp8 else a.dtype)
    groups = offs.numel()
    no_scale = offs  # never read without SCALED; any tensor will do for the pointer
    scale_a = scale_a.reshape(-1).contiguous() if fp8 else no_scale
    scale_b = scale_b.reshape(-1).contiguous() if fp8 else no_scale
    if b.dim() == 3:
        m, k = a.shape
        n = b.shape[2]
        c = torch.empty(m, n, device=a.device, dtype=out_dtype)
        if m == 0 or n == 0:
            return c

        def grid(meta):
            return ((m // meta["BLOCK_M"] + min(groups, m)) * triton.cdiv(n, meta["BLOCK_N"]),)

        (_rows_fp8 if fp8 else _rows_16bit)[grid](
            a, b, c, offs, scale_a, scale_b, m, n, k, groups,
            a.stride(0), a.stride(1), b.stride(0), b.stride(1), b.stride(2),
            c.stride(0), c.stride(1),
            SCALED=fp8, BLOCK_G=triton.next_power_of_2(groups))
        return c
    k, m = a.shape
    n = b.shape[1]
    c = torch.empty(groups, k, n, device=a.device, dtype=out_dtype)
    if k == 0 or n == 0:
        return c

    def grid(meta):
        return (groups * triton.cdiv(k, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)

    (_reduce_fp8 if fp8 else _reduce_16bit)[grid](
        a, b, c, offs, scale_a, scale_b, k, n, groups,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1),
        c.stride(0), c.stride(1), c.stride(2), SCALED=fp8)
    return c
