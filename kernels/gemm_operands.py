"""How the Triton GEMM launchers hand their operands to the kernels: checks, and storage the
kernels read fast.

Both Triton GEMMs (`kernels.triton_matmul`, `kernels.triton_tma_matmul`) stream tiles of A
and B through shared memory with vectorised, software-pipelined copies. Triton emits those
only where it can prove alignment: its JIT marks an integer argument (a size, a stride) that
is a multiple of 16 (`ALIGN`), and where a leading dimension or K is not, loads become scalar,
the pipeline collapses to one stage and most tiles spill registers (compiled for sm_90 at
1000 x 1000 x 1000: every FP8 tile, up to 11 KB per thread; tests/test_kernels/test_triton_compile.py).
FP8 operands must also be K-major (wgmma reads FP8 tiles from shared memory only so: PTX
ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate", matrix descriptors), and the
TMA GEMM needs a row-major A.

So `kernel_operands` copies an operand into such storage when, and only when, it is not stored
so already: the majorness asked for, leading dimension a multiple of 16 elements, and the
sizes the kernel's loads run along (K, and M or N where A or B is contiguous along it) rounded
up to multiples of 16 with zeros. The zeros add nothing to the product; the extra rows and
columns of C they make are computed and dropped (the launchers return the (M, N) corner, a
view, of an output allocated by `aligned_output`). Every benchmark shape (multiples of 16,
layout "rc" for FP8) needs no copy; otherwise the copy happens inside the call and is timed
with it: it is part of multiplying data stored that way.
"""

from __future__ import annotations

import torch

from kernels.fp8 import FP8_DTYPES

ALIGN = 16  # elements: the divisibility Triton's JIT specialises integer arguments on
# Scaling modes of the FP8 epilogue (a constexpr of the kernels: each compiles on its own).
NO_SCALE, TENSORWISE, ROWWISE = 0, 1, 2


def check_operands(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int, int]:
    """(M, N, K) of A (M, K) @ B (K, N); ValueError, with the shapes, for anything else."""
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


def check_16bit(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int, int]:
    shape = check_operands(a, b)
    if a.dtype not in (torch.bfloat16, torch.float16) or b.dtype != a.dtype:
        raise ValueError(f"the 16-bit Triton GEMM takes two bfloat16 or two float16 operands, "
                         f"got {a.dtype} and {b.dtype}; use the FP8 one for FP8")
    return shape


def check_fp8(a, b, scale_a, scale_b) -> tuple[int, int, int]:
    """(M, N, the epilogue's scaling mode: TENSORWISE or ROWWISE) of FP8 operands and their
    scales; ValueError, saying what is wrong, for anything else."""
    m, n, _ = check_operands(a, b)
    if a.dtype not in FP8_DTYPES.values() or b.dtype not in FP8_DTYPES.values():
        raise ValueError(f"the FP8 Triton GEMM takes float8_e4m3fn or float8_e5m2 operands, "
                         f"got {a.dtype} and {b.dtype}")
    for name, s in (("scale_a", scale_a), ("scale_b", scale_b)):
        if not isinstance(s, torch.Tensor) or s.dtype != torch.float32:
            raise ValueError(f"{name} must be a float32 tensor, got {getattr(s, 'dtype', type(s))}")
    if scale_a.numel() == 1 and scale_b.numel() == 1:
        return m, n, TENSORWISE
    if tuple(scale_a.shape) == (m, 1) and tuple(scale_b.shape) == (1, n):
        return m, n, ROWWISE
    raise ValueError(
        f"scales must be both tensor-wise (one element each) or row-wise (scale_a ({m}, 1), "
        f"scale_b (1, {n})), got {tuple(scale_a.shape)} and {tuple(scale_b.shape)}")


def round_up(x: int, multiple: int = ALIGN) -> int:
    return -(-x // multiple) * multiple


def major(t: torch.Tensor) -> str:
    """"r" if ``t`` is stored row-major (unit stride along its columns), else "c"."""
    return "r" if t.stride(1) == 1 or t.shape[1] == 1 else "c"


def _stored_well(t: torch.Tensor, want: str) -> bool:
    """Stored with majorness ``want`` ("r"/"c") and a leading dimension of ALIGN multiples."""
    rows, cols = t.shape
    if want == "r":
        return (t.stride(1) == 1 or cols == 1) and (t.stride(0) % ALIGN == 0 or rows == 1)
    return (t.stride(0) == 1 or rows == 1) and (t.stride(1) % ALIGN == 0 or cols == 1)


def _copy(t: torch.Tensor, want: str, rows: int, cols: int) -> torch.Tensor:
    """``t`` as the top-left corner of a zero (rows, cols) matrix stored with majorness
    ``want``, its leading dimension rounded up to ALIGN."""
    if want == "r":
        out = t.new_zeros(rows, round_up(cols))[:, :cols]
    else:
        out = t.new_zeros(cols, round_up(rows))[:, :rows].t()
    out[:t.shape[0], :t.shape[1]] = t
    return out


def kernel_operands(a: torch.Tensor, b: torch.Tensor, *, a_major: str | None = None,
                    b_major: str | None = None):
    """(A, B, M', N', K') as the kernels read them fast (module docstring): ``a_major`` /
    ``b_major`` ("r" or "c") the majorness each must have, None to keep its own. M', N', K'
    are the sizes the kernel is launched with: K rounded up to a multiple of ALIGN, and M (N)
    too where A (B) is contiguous along it. Copies only an operand not already stored so."""
    m, k = a.shape
    n = b.shape[1]
    a_major, b_major = a_major or major(a), b_major or major(b)
    k2 = round_up(k)
    m2 = round_up(m) if a_major == "c" else m
    n2 = round_up(n) if b_major == "r" else n
    if (m2, k2) != (m, k) or not _stored_well(a, a_major):
        a = _copy(a, a_major, m2, k2)
    if (k2, n2) != (k, n) or not _stored_well(b, b_major):
        b = _copy(b, b_major, k2, n2)
    return a, b, m2, n2, k2


def aligned_output(m: int, n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """An uninitialised (m, n) row-major matrix whose rows start at multiples of ALIGN
    elements (a view of a wider buffer when n is not a multiple of ALIGN)."""
    return torch.empty(m, round_up(n), device=device, dtype=dtype)[:, :n]
