"""Matrix multiplication: BF16 GEMM and FP8 GEMM.

Baselines: ``torch.matmul`` (cuBLAS on GPU) for BF16/FP16/FP32, and ``torch._scaled_mm`` for
FP8 with tensor-wise or row-wise float32 scales (row-wise where the torch has them:
`kernels.torch_versions`) and BF16 output. ``_scaled_mm`` wants its second operand
column-major, so FP8 specs use layout "rc" (A row-major, B column-major).
Beside them, the Triton kernels of `kernels.triton_matmul` (``triton_matmul`` and
``triton_fp8_matmul``, re-exported here), registered as implementation "triton" of the same
family with the same builder signature, and the persistent TMA kernels of
`kernels.triton_tma_matmul`, implementation "triton-tma" (where the installed Triton has
tensor descriptors).

An FP8 GEMM's variant names its scaling and its accumulation: ``tensorwise-precise-accum``,
``rowwise-fast-accum``, ... (`fp8_variant`; the scaling alone means precise, as
``_scaled_mm``'s default ``use_fast_accum=False``). Precise promotes the tensor cores'
partial sums to float32 along K, fast does not (`kernels.triton_matmul`); the variant is part
of every record, so a speedup compares precise with precise and fast with fast.

Each builder returns a `KernelSpec`: fresh random inputs, the run, the float64 check and the
FLOP/byte counts.
"""

from __future__ import annotations

import torch

from kernels import flops
from kernels.fp8 import quantize_rowwise, quantize_tensorwise
from kernels.reference import gemm_reference, rel_fro_error
from kernels.registry import register
from kernels.spec import KernelError, KernelSpec, torch_dtype
from kernels.torch_versions import scaled_mm_output, scaled_mm_unavailable
from kernels.triton_support import TMA_MISSING, TRITON_MISSING, triton_unavailable

if TRITON_MISSING is None:
    from kernels.triton_matmul import triton_fp8_matmul, triton_matmul
if TMA_MISSING is None:
    from kernels.triton_tma_matmul import tma_fp8_matmul, tma_matmul

__all__ = ["torch_gemm", "torch_scaled_mm", "triton_gemm", "triton_tma_gemm", "fp8_variant"] + (
    ["triton_matmul", "triton_fp8_matmul"] if TRITON_MISSING is None else [])

# Above this many output elements the check compares a sample of rows, not the whole output.
CHECK_ROWS = 256
LAYOUTS = ("rr", "rc", "cr", "cc")


def _operand(rows: int, cols: int, major: str, dtype, device, gen) -> torch.Tensor:
    """A (rows, cols) tensor stored row-major ("r") or column-major ("c")."""
    if major == "r":
        return torch.randn(rows, cols, generator=gen, device=device).to(dtype)
    return torch.randn(cols, rows, generator=gen, device=device).to(dtype).t()


def _check_rows(m: int, device) -> torch.Tensor | None:
    """Rows of the output to compare: all for small problems, an even sample for large ones."""
    if m <= CHECK_ROWS:
        return None
    return torch.linspace(0, m - 1, CHECK_ROWS, device=device).round().long()


def gemm_error(inputs, output) -> float:
    a, b = inputs[0], inputs[1]
    scales = inputs[2:4] if len(inputs) >= 4 else (None, None)
    rows = _check_rows(a.shape[0], a.device)
    ref = gemm_reference(a, b, *scales, rows=rows)
    out = output if rows is None else output[rows]
    return rel_fro_error(out, ref)


def _validate(m, n, k, layout):
    for name, value in (("m", m), ("n", n), ("k", k)):
        if not isinstance(value, int) or value < 1:
            raise KernelError(f"GEMM dimension {name} must be a positive integer, got {value!r}")
    if layout not in LAYOUTS:
        raise KernelError(f"unknown GEMM layout '{layout}'; known: {', '.join(LAYOUTS)}")


def make_gemm_inputs(m, n, k, dtype: str, layout: str):
    def make(device, seed):
        gen = torch.Generator(device=device).manual_seed(seed)
        a = _operand(m, k, layout[0], torch_dtype(dtype), device, gen)
        b = _operand(k, n, layout[1], torch_dtype(dtype), device, gen)
        return a, b

    return make


def _with_major(t: torch.Tensor, major: str) -> torch.Tensor:
    """The same matrix stored row-major ("r") or column-major ("c")."""
    if major == "r":
        return t.contiguous()
    return t.t().contiguous().t()


def make_fp8_inputs(m, n, k, fmt: str, scaling: str, layout: str = "rc"):
    """Random data quantised to FP8 with real amax scales (not ones), so the scales matter."""

    def make(device, seed):
        gen = torch.Generator(device=device).manual_seed(seed)
        a = _operand(m, k, layout[0], torch.float32, device, gen) * 3.0
        b = _operand(k, n, layout[1], torch.float32, device, gen) * 0.5
        if scaling == "tensorwise":
            qa, sa = quantize_tensorwise(a, fmt)
            qb, sb = quantize_tensorwise(b, fmt)
        else:
            qa, sa = quantize_rowwise(a, fmt, dim=1)
            qb, sb = quantize_rowwise(b, fmt, dim=0)
        # Each operand in the requested majorness (torch does not promise that scaling keeps
        # strides).
        return _with_major(qa, layout[0]), _with_major(qb, layout[1]), sa, sb

    return make


@register("gemm", "torch", baseline=True)
def torch_gemm(m: int, n: int, k: int, dtype: str = "bf16", *, layout: str = "",
               variant: str = "") -> KernelSpec:
    """``torch.matmul`` for bf16/fp16/fp32, ``torch._scaled_mm`` for FP8 (variant: scaling)."""
    if dtype.startswith("fp8"):
        return torch_scaled_mm(m, n, k, dtype, variant=variant or "tensorwise", layout=layout or "rc")
    layout = layout or "rr"
    _validate(m, n, k, layout)
    torch_dtype(dtype)
    return KernelSpec(
        kernel="gemm", impl="torch", dtype=dtype, shape={"m": m, "n": n, "k": k}, layout=layout,
        flops=flops.gemm_flops(m, n, k),
        bytes=flops.gemm_bytes(m, n, k, dtype, dtype),
        make_inputs=make_gemm_inputs(m, n, k, dtype, layout),
        run=torch.matmul,
        error=gemm_error,
    )


FP8_SCALINGS = ("tensorwise", "rowwise")
# Accumulation modes, spelled as in a variant, and torch._scaled_mm's use_fast_accum for each.
FP8_ACCUMULATIONS = {"precise-accum": False, "fast-accum": True}


def fp8_variant(variant: str) -> tuple[str, bool, str]:
    """(scaling, fast_accum, variant spelled out) of an FP8 GEMM variant: a scaling
    (``tensorwise`` or ``rowwise``), optionally followed by ``-precise-accum`` (the default,
    ``_scaled_mm``'s ``use_fast_accum=False``) or ``-fast-accum``."""
    scaling, _, accum = variant.partition("-")
    accum = accum or "precise-accum"
    if scaling not in FP8_SCALINGS or accum not in FP8_ACCUMULATIONS:
        raise KernelError(f"unknown FP8 GEMM variant '{variant}'; known: tensorwise or rowwise, "
                          f"optionally followed by -precise-accum (the default) or -fast-accum")
    return scaling, FP8_ACCUMULATIONS[accum], f"{scaling}-{accum}"


def _fp8_scale_elems(scaling: str, m: int, n: int) -> int:
    """How many float32 scales an FP8 GEMM reads: one per operand (tensor-wise), or one per
    row of A and column of B (row-wise)."""
    return 2 if scaling == "tensorwise" else m + n


def torch_scaled_mm(m: int, n: int, k: int, dtype: str = "fp8_e4m3", *, variant: str = "tensorwise",
                    layout: str = "rc") -> KernelSpec:
    if layout != "rc":
        raise KernelError("torch._scaled_mm needs A row-major and B column-major (layout 'rc')")
    _validate(m, n, k, layout)
    if dtype == "fp8_e5m2":
        # _scaled_mm rejects e5m2 x e5m2; e4m3 is the format training uses for both operands.
        raise KernelError("torch._scaled_mm does not multiply two e5m2 operands; use fp8_e4m3")
    scaling, fast_accum, variant = fp8_variant(variant)

    def run(a, b, scale_a, scale_b):
        return scaled_mm_output(
            torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16,
                             use_fast_accum=fast_accum))

    return KernelSpec(
        kernel="gemm", impl="torch", dtype=dtype, shape={"m": m, "n": n, "k": k},
        variant=variant, layout=layout, out_dtype="bf16",
        flops=flops.gemm_flops(m, n, k),
        bytes=flops.gemm_bytes(m, n, k, dtype, "bf16", scale_elems=_fp8_scale_elems(scaling, m, n)),
        make_inputs=make_fp8_inputs(m, n, k, dtype, scaling, layout),
        run=run,
        error=gemm_error,
        unavailable=lambda device: _scaled_mm_unavailable(device, dtype, scaling),
    )


def _scaled_mm_unavailable(device: torch.device, dtype: str, scaling: str) -> str | None:
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        name = torch.cuda.get_device_name(device)
        return f"torch._scaled_mm needs FP8 tensor cores (compute capability 8.9+); {name} has none"
    return scaled_mm_unavailable(device, dtype, scaling)


def _triton_spec(impl, m, n, k, dtype, layout, variant, matmul, fp8_matmul, unavailable):
    """A spec for a Triton GEMM given its 16-bit and FP8 functions (``fp8_matmul`` takes
    ``fast_accum``); layout defaults to "rr" (16-bit) or "rc" (FP8, the layout ``_scaled_mm``
    takes, so the two are compared on the same data layout)."""
    fp8 = dtype.startswith("fp8")
    layout = layout or ("rc" if fp8 else "rr")
    _validate(m, n, k, layout)
    if dtype not in ("bf16", "fp16", "fp8_e4m3", "fp8_e5m2"):
        raise KernelError(f"the Triton GEMM takes bf16, fp16, fp8_e4m3 or fp8_e5m2, not '{dtype}'")
    common = dict(kernel="gemm", impl=impl, dtype=dtype, shape={"m": m, "n": n, "k": k},
                  layout=layout, flops=flops.gemm_flops(m, n, k), error=gemm_error,
                  unavailable=lambda device: unavailable(device, dtype))
    if not fp8:
        return KernelSpec(
            **common, bytes=flops.gemm_bytes(m, n, k, dtype, dtype),
            make_inputs=make_gemm_inputs(m, n, k, dtype, layout), run=matmul,
        )
    scaling, fast_accum, variant = fp8_variant(variant or "tensorwise")

    def run(a, b, scale_a, scale_b):
        return fp8_matmul(a, b, scale_a, scale_b, fast_accum=fast_accum)

    return KernelSpec(
        **common, variant=variant, out_dtype="bf16",
        bytes=flops.gemm_bytes(m, n, k, dtype, "bf16", scale_elems=_fp8_scale_elems(scaling, m, n)),
        make_inputs=make_fp8_inputs(m, n, k, dtype, scaling, layout), run=run,
    )


@register("gemm", "triton")
def triton_gemm(m: int, n: int, k: int, dtype: str = "bf16", *, layout: str = "",
                variant: str = "") -> KernelSpec:
    """The Triton GEMM at the same shapes and dtypes as `torch_gemm`: BF16/FP16 in any layout
    (default "rr"), FP8 e4m3 or e5m2 with tensor-wise or row-wise scales, precise or fast
    accumulation (default "rc"; another layout is timed with its copy to K-major order)."""
    if TRITON_MISSING:
        raise KernelError(TRITON_MISSING)
    return _triton_spec("triton", m, n, k, dtype, layout, variant, triton_matmul,
                        triton_fp8_matmul, triton_unavailable)


def _tma_unavailable(device: torch.device, dtype: str) -> str | None:
    reason = triton_unavailable(device, dtype)
    if reason is None and torch.cuda.get_device_capability(device) < (9, 0):
        name = torch.cuda.get_device_name(device)
        return (f"the TMA GEMM needs a Tensor Memory Accelerator (compute capability 9.0+); "
                f"{name} has none")
    return reason


@register("gemm", "triton-tma")
def triton_tma_gemm(m: int, n: int, k: int, dtype: str = "bf16", *, layout: str = "",
                    variant: str = "") -> KernelSpec:
    """The persistent TMA GEMM (`kernels.triton_tma_matmul`) at the same problems as
    `triton_gemm`."""
    if TMA_MISSING:
        raise KernelError(TMA_MISSING)
    return _triton_spec("triton-tma", m, n, k, dtype, layout, variant, tma_matmul,
                        tma_fp8_matmul, _tma_unavailable)
