"""Persistent Triton GEMM with TMA tensor descriptors (Hopper): the same products as
`kernels.triton_matmul` (BF16/FP16, and FP8 with float32 scales in the epilogue), fed by the
Tensor Memory Accelerator.

Two things differ from the first kernel:

* **Persistent programs.** The grid is one program per SM (or fewer, for small problems).
  Program ``p`` computes tiles ``p, p + NUM_SMS, p + 2 NUM_SMS, ...`` of C, numbered in the
  same grouped order (`kernels.triton_matmul.grouped_tile`): each SM's program stays
  resident instead of one program being scheduled per tile, and the loop over tiles is
  flattened with the loop over K (``tl.range(..., flatten=True)``) so that the compiler can
  pipeline the next tile's loads across the current tile's epilogue.
* **TMA.** Operand and output tiles move between global and shared memory by the TMA unit,
  one ``cp.async.bulk.tensor`` instruction per tile instead of per-thread loads, addressed
  through tensor descriptors (base, shape, strides, block shape) made on the host
  (``triton.tools.tensor_descriptor.TensorDescriptor``). The unit also handles the edges:
  reads past the shape are zero-filled and writes past it are dropped, so there are no masks
  and no wrapped rows.

TMA has layout rules (CUDA Driver API, ``cuTensorMapEncodeTiled``): the innermost dimension is
contiguous, the base address and every other stride are multiples of 16 bytes. The launchers
see to them with `kernels.gemm_operands` (copies only where needed, inside the call): A
row-major; B row-major (K, N) or column-major (read as its transpose, (N, K)), as wgmma reads
either from shared memory for 16-bit types, and column-major (K-major) for FP8; leading
dimensions multiples of 16 elements, K zero-padded to one; C written into rows that start at
16-element multiples (a view of a wider buffer when N is not a multiple of 16).

FP8 scaling and accumulation are those of `kernels.triton_matmul` (the same epilogue,
`scale_tile`, and the same ``fast_accum`` mapped to ``tl.dot``'s ``max_num_imprecise_acc``).
This module needs a Triton with tensor descriptors (`kernels.triton_support.TMA_MISSING`)
and, on a GPU, compute capability 9.0 (TMA is a Hopper unit).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from kernels.gemm_operands import (NO_SCALE, aligned_output, check_16bit, check_fp8,
                                   kernel_operands)
from kernels.triton_matmul import grouped_tile, max_imprecise_acc, scale_tile
from kernels.triton_support import interpreting

# Under the interpreter there are no SMs: 3 programs, fewer than the tiles of the test
# problems, so each program loops over several tiles and the tiles do not divide evenly.
INTERPRETER_PROGRAMS = 3


def _set_block_shapes(nargs):
    """Autotuner pre-hook: the descriptors' block shapes are the configuration's tiles."""
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["a_desc"].block_shape = [bm, bk]
    nargs["b_desc"].block_shape = [bn, bk] if nargs["B_KMAJOR"] else [bk, bn]
    nargs["c_desc"].block_shape = [bm, bn]


def _config(bm, bn, bk, stages, warps):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8},
                         num_stages=stages, num_warps=warps, pre_hook=_set_block_shapes)


def _configs(fp8: bool, fast_accum: bool = True) -> list:
    """Tiles to autotune over: one small tile under the interpreter; on a GPU, Hopper-sized
    tiles (the C tile of the TMA store takes shared memory beside the pipeline stages), none
    spilling registers on sm_90 (tests/test_kernels/test_triton_compile.py). Precise FP8 accumulation
    keeps a second accumulator, so its widest tile is 128 x 128."""
    if interpreting():
        return [_config(32, 32, 32, 1, 4)]
    k = 128 if fp8 else 64
    wide = [_config(128, 256, k, 3, 8)] if fast_accum or not fp8 else []
    return wide + [_config(128, 128, k, 4, 8), _config(128, 128, k, 4, 4),
                   _config(128, 64, k, 4, 4), _config(64, 128, k, 4, 4)]


@triton.heuristics({"MAX_IMPRECISE_ACC": lambda args: max_imprecise_acc(
    args["a_desc"].base.dtype, args["FAST_ACCUM"], args["BLOCK_K"])})
@triton.jit
def _persistent_gemm(a_desc, b_desc, c_desc, scale_a_ptr, scale_b_ptr, M, N, K,
                     SCALING: tl.constexpr, FAST_ACCUM: tl.constexpr, B_KMAJOR: tl.constexpr,
                     NUM_SMS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                     MAX_IMPRECISE_ACC: tl.constexpr):
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    for tile_id in tl.range(tl.program_id(0), num_pid_m * num_pid_n, NUM_SMS, flatten=True):
        pid_m, pid_n = grouped_tile(tile_id, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ki in range(k_tiles):
            off_k = ki * BLOCK_K
            a = a_desc.load([off_m, off_k])
            if B_KMAJOR:
                b = b_desc.load([off_n, off_k]).T  # B^T is stored: (N, K)
            else:
                b = b_desc.load([off_k, off_n])
            acc = tl.dot(a, b, acc, max_num_imprecise_acc=MAX_IMPRECISE_ACC)
        # Rows and columns past M and N are dropped by the TMA store; their scales are read
        # wrapped into range.
        rows = (off_m + tl.arange(0, BLOCK_M)) % M
        cols = (off_n + tl.arange(0, BLOCK_N)) % N
        acc = scale_tile(acc, scale_a_ptr, scale_b_ptr, rows, cols, SCALING)
        c_desc.store([off_m, off_n], acc.to(c_desc.dtype))


TUNING_KEY = ["M", "N", "K", "SCALING", "FAST_ACCUM", "B_KMAJOR"]


def _autotuned(configs):
    return triton.autotune(configs=configs, key=TUNING_KEY)(_persistent_gemm)


_tma_16bit = _autotuned(_configs(fp8=False))
_tma_fp8_precise = _autotuned(_configs(fp8=True, fast_accum=False))
_tma_fp8_fast = _autotuned(_configs(fp8=True, fast_accum=True))


def num_programs(device: torch.device) -> int:
    """The persistent grid's width: the GPU's SM count (INTERPRETER_PROGRAMS on a CPU)."""
    if interpreting():
        return INTERPRETER_PROGRAMS
    return torch.cuda.get_device_properties(device).multi_processor_count


def _descriptor(t: torch.Tensor) -> TensorDescriptor:
    # The block shape is a placeholder until the autotuner's pre-hook sets the tile's.
    return TensorDescriptor.from_tensor(t, [1, 1])


def _launch(kernel, a, b, k, c, scale_a, scale_b, scaling, fast_accum):
    """A row-major, B row-major or column-major, C row-major, as `kernel_operands` and
    `aligned_output` leave them."""
    m, n = c.shape
    b_kmajor = b.stride(0) == 1 and b.stride(1) != 1
    programs = num_programs(a.device)

    def grid(meta):
        # Fewer tiles than programs: one tile each (the tile loop's step is NUM_SMS).
        return (min(programs, triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])),)

    kernel[grid](_descriptor(a), _descriptor(b.t() if b_kmajor else b), _descriptor(c),
                 scale_a, scale_b, m, n, k, SCALING=scaling, FAST_ACCUM=fast_accum,
                 B_KMAJOR=b_kmajor, NUM_SMS=programs)
    return c


def tma_matmul(a: torch.Tensor, b: torch.Tensor, *, out_dtype: torch.dtype | None = None):
    """A @ B for BF16 or FP16 operands of any shape and majorness, float32 accumulation, by
    the persistent TMA kernel (a column-major A is first copied row-major, in the call)."""
    m, n, _ = check_16bit(a, b)
    a, b, m2, n2, k2 = kernel_operands(a, b, a_major="r")
    c = aligned_output(m2, n2, out_dtype or a.dtype, a.device)
    # No scales: the pointers are never read, any tensor will do.
    return _launch(_tma_16bit, a, b, k2, c, c, c, NO_SCALE, False)[:m, :n]


def tma_fp8_matmul(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor,
                   scale_b: torch.Tensor, *, out_dtype: torch.dtype = torch.bfloat16,
                   fast_accum: bool = False):
    """(A * scale_a) @ (B * scale_b) for FP8 operands by the persistent TMA kernel, with the
    contract of `kernels.triton_matmul.triton_fp8_matmul` (scales, K-major copies inside the
    call, ``fast_accum``)."""
    m, n, scaling = check_fp8(a, b, scale_a, scale_b)
    a, b, _, _, k2 = kernel_operands(a, b, a_major="r", b_major="c")  # M, N kept: K-major
    scale_a, scale_b = scale_a.reshape(-1).contiguous(), scale_b.reshape(-1).contiguous()
    c = aligned_output(m, n, out_dtype, a.device)
    kernel = _tma_fp8_fast if fast_accum else _tma_fp8_precise
    return _launch(kernel, a, b, k2, c, scale_a, scale_b, scaling, bool(fast_accum))
