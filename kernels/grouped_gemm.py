"""Grouped GEMM: the expert matrix products of a mixture-of-experts layer, forward and backward.

After the dispatch (`kernels.moe_dispatch`) the rows routed to each expert lie one group after
another; expert g multiplies its rows_g rows by its own matrix W_g (K, N). Three GEMMs per
expert matrix in training, the ``direction`` of a spec:

* ``"fwd"``:    Y_g = X_g W_g,        X (M, K) rows grouped, W (G, K, N)      -> Y (M, N)
* ``"bwd_dx"``: dX_g = dY_g W_g^T,    dY (M, N) rows grouped, W read transposed -> dX (M, K)
* ``"bwd_dw"``: dW_g = X_g^T dY_g,    reduced over each group's rows          -> dW (G, K, N)

A spec's (n, k) are the forward's: the same shape names all three. Each does
2 * M * N * K FLOPs (M = sum of rows_g; `kernels.flops`).

Implementations, all taking the same operands (``a``, ``b``, ``offs``[, ``scale_a``,
``scale_b``]) as ``torch._grouped_mm``:

* ``"torch"`` (baseline): ``torch._grouped_mm`` for BF16 and ``torch._scaled_grouped_mm`` for
  FP8. Both are private and recent, and run only for some devices and dtypes (torch 2.13 has
  ``_grouped_mm`` on the CPU but no CPU ``_scaled_grouped_mm``, which takes e4m3 only), so a
  spec probes the operator on a miniature of its own problem (the same groups, N = K = 16) on
  the device and is skipped with the operator's own error where it does not run.
* ``"torch-loop"``: one ``torch.matmul`` (FP8: ``torch._scaled_mm``) per non-empty expert,
  group bounds taken on the host: what a model without a grouped GEMM does.
* ``"triton"``: `kernels.triton_grouped_gemm`, one launch for all experts.

FP8 is e4m3 (or e5m2 for Triton) with row-wise float32 scales, as ``_scaled_grouped_mm`` takes
them, and BF16 output: for rows-grouped GEMMs one scale per row of ``a`` and per column of each
B[g]; for dW one per row of X_g^T and per column of dY_g, within each group. The operands are in
the layout FP8 tensor cores and ``_scaled_grouped_mm`` want, the reduction dimension contiguous
in both (``a`` row-major, each B[g] column-major), so dX reads W stored (G, K, N) and dW reads
X^T and dY^T stored contiguous, the copies an FP8 training step quantises into.

Routing (``variant``): the rows per expert are the expected load under a named distribution
(`kernels.moe_routing`), and the record's shape carries the tokens per expert (mean and max)
beside the total, so throughput can be read against tokens per expert.
"""

from __future__ import annotations

import itertools

import torch

from kernels import flops
from kernels.fp8 import fp8_dtype, quantize_rowwise
from kernels.matmul import _check_rows as check_rows
from kernels.moe_routing import BALANCED, expert_rows, load_stats
from kernels.reference import grouped_reduce_reference, grouped_rows_reference, rel_fro_error
from kernels.registry import register
from kernels.spec import KernelError, KernelSpec, torch_dtype
from kernels.triton_support import TRITON_MISSING, triton_unavailable
from kernels.torch_versions import private_op

if TRITON_MISSING is None:
    from kernels.triton_grouped_gemm import triton_grouped_mm

__all__ = ["grouped_gemm_spec", "torch_grouped_gemm", "torch_loop_grouped_gemm",
           "triton_grouped_gemm_spec"] + (["triton_grouped_mm"] if TRITON_MISSING is None else [])

DIRECTIONS = ("fwd", "bwd_dx", "bwd_dw")
# The probe of a torch operator runs the spec's groups with N = K = 16, the smallest size FP8
# GEMMs accept on CUDA (cuBLASLt wants multiples of 16).
PROBE_DIM = 16


def _bounds(group_rows) -> list[tuple[int, int]]:
    ends = list(itertools.accumulate(group_rows))
    return list(zip([0] + ends[:-1], ends))


def _col_major(t: torch.Tensor) -> torch.Tensor:
    """The same tensor with its last two dimensions stored column-major."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


def _fp8_rows_grouped(a, b, fmt):
    """a (M, inner) quantised per row, each b[g] (inner, outer) per column, b column-major."""
    qa, sa = quantize_rowwise(a, fmt, dim=1)
    qb, sb = quantize_rowwise(b, fmt, dim=1)
    return qa, _col_major(qb), sa.reshape(-1), sb.reshape(b.shape[0], -1)


def _fp8_reduced(x, dy, group_rows, fmt):
    """X^T (K, M) row-major and dY (M, N) column-major, quantised per row of X_g^T and per
    column of dY_g in each group (scale 1 for an empty group, as `kernels.fp8` scales zeros)."""
    qx = torch.empty(x.shape, dtype=fp8_dtype(fmt), device=x.device)
    qdy = torch.empty(dy.shape, dtype=fp8_dtype(fmt), device=x.device)
    sx = torch.ones(len(group_rows), x.shape[1], device=x.device)
    sdy = torch.ones(len(group_rows), dy.shape[1], device=x.device)
    for g, (s, e) in enumerate(_bounds(group_rows)):
        if e > s:
            qx[s:e], scale_x = quantize_rowwise(x[s:e], fmt, dim=0)
            qdy[s:e], scale_dy = quantize_rowwise(dy[s:e], fmt, dim=0)
            sx[g], sdy[g] = scale_x.reshape(-1), scale_dy.reshape(-1)
    return qx.t().contiguous(), _col_major(qdy), sx.reshape(-1), sdy.reshape(-1)


def make_grouped_inputs(group_rows, n: int, k: int, dtype: str, direction: str):
    """Fresh random operands ``(a, b, offs[, scale_a, scale_b])`` of one of the three GEMMs."""
    rows, groups = sum(group_rows), len(group_rows)
    fp8 = dtype.startswith("fp8")

    def make(device, seed):
        gen = torch.Generator(device=device).manual_seed(seed)
        offs = torch.tensor(list(itertools.accumulate(group_rows)), dtype=torch.int32,
                            device=device)
        dt = torch.float32 if fp8 else torch_dtype(dtype)

        def randn(*shape, scale=1.0):
            return (torch.randn(*shape, generator=gen, device=device) * scale).to(dt)

        if direction == "bwd_dw":
            x, dy = randn(rows, k, scale=3.0), randn(rows, n, scale=0.5)
            if fp8:
                qa, qb, sa, sb = _fp8_reduced(x, dy, group_rows, dtype)
                return qa, qb, offs, sa, sb
            return x.t(), dy, offs
        inner = k if direction == "fwd" else n
        a = randn(rows, inner, scale=3.0)
        w = randn(groups, k, n, scale=0.5)
        b = w if direction == "fwd" else w.transpose(1, 2)
        if fp8:
            qa, qb, sa, sb = _fp8_rows_grouped(a, b, dtype)
            return qa, qb, offs, sa, sb
        return a, b, offs

    return make


def grouped_error(group_rows):
    """Relative error against the float64 reference, on a sample of rows for large problems
    (every group's reference is still exact for the rows it covers)."""

    def error(inputs, output) -> float:
        a, b = inputs[0], inputs[1]
        scales = inputs[3:5] if len(inputs) == 5 else (None, None)
        rows = check_rows(a.shape[0], a.device)  # of the output, or of each group's dW
        if b.dim() == 3:
            ref = grouped_rows_reference(a, b, group_rows, *scales, rows=rows)
            return rel_fro_error(output if rows is None else output[rows], ref)
        ref = grouped_reduce_reference(a, b, group_rows, *scales, out_rows=rows)
        return rel_fro_error(output if rows is None else output[:, rows], ref)

    return error


def grouped_gemm_spec(impl: str, group_rows, n: int, k: int, dtype: str, *, direction: str,
                      variant: str, run, unavailable=None) -> KernelSpec:
    """The spec of one grouped GEMM with explicit rows per group (the registered builders
    derive them from a routing distribution)."""
    group_rows = tuple(group_rows)
    if direction not in DIRECTIONS:
        raise KernelError(f"unknown grouped GEMM direction '{direction}'; known: "
                          f"{', '.join(DIRECTIONS)}")
    torch_dtype(dtype)
    fp8 = dtype.startswith("fp8")
    out_dtype = "bf16" if fp8 else dtype
    try:
        count = flops.grouped_gemm_flops(group_rows, n, k)
        dw = direction == "bwd_dw"
        gemm_n, gemm_k = (k, n) if direction == "bwd_dx" else (n, k)
        nbytes = flops.grouped_gemm_bytes(group_rows, gemm_n, gemm_k, dtype, out_dtype,
                                          reduce_over_rows=dw, scaled=fp8)
    except ValueError as exc:
        raise KernelError(f"grouped GEMM: {exc}") from None
    return KernelSpec(
        kernel="grouped_gemm", impl=impl, dtype=dtype, direction=direction, variant=variant,
        out_dtype=out_dtype,
        shape={"tokens": sum(group_rows), "experts": len(group_rows), "n": n, "k": k,
               **load_stats(group_rows)},
        flops=count, bytes=nbytes,
        make_inputs=make_grouped_inputs(group_rows, n, k, dtype, direction),
        run=run, error=grouped_error(group_rows),
        **({"unavailable": unavailable} if unavailable else {}),
    )


def _probe(run, group_rows, dtype: str, direction: str, what: str):
    """``unavailable(device)`` that runs ``run`` on the spec's groups with N = K = 16."""
    make = make_grouped_inputs(group_rows, PROBE_DIM, PROBE_DIM, dtype, direction)

    def unavailable(device: torch.device) -> str | None:
        try:
            run(*make(device, 0))
        except Exception as exc:  # the operator's own refusal is the reason
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return f"{what} does not run {dtype} on {device.type}: {type(exc).__name__}: {message}"
        return None

    return unavailable


def _routed(tokens: int, experts: int, variant: str) -> tuple[int, ...]:
    return expert_rows(tokens, experts, variant or BALANCED)


@register("grouped_gemm", "torch", baseline=True)
def torch_grouped_gemm(tokens: int, experts: int, n: int, k: int, dtype: str = "bf16", *,
                       direction: str = "fwd", variant: str = BALANCED) -> KernelSpec:
    """``torch._grouped_mm`` (16-bit) or ``torch._scaled_grouped_mm`` (FP8), where the installed
    torch has it and runs it on the device."""
    group_rows = _routed(tokens, experts, variant)
    fp8 = dtype.startswith("fp8")
    what = "torch._scaled_grouped_mm" if fp8 else "torch._grouped_mm"
    op = private_op(what.split(".")[1])
    if op is None:
        def run(*inputs):
            raise KernelError(f"torch {torch.__version__} has no {what}")

        def unavailable(device):
            return f"torch {torch.__version__} has no {what}"
    else:
        if fp8:
            def run(a, b, offs, scale_a, scale_b):
                return op(a, b, scale_a, scale_b, offs=offs, out_dtype=torch.bfloat16)
        else:
            def run(a, b, offs):
                return op(a, b, offs=offs)
        unavailable = _probe(run, group_rows, dtype, direction, what)
    return grouped_gemm_spec("torch", group_rows, n, k, dtype, direction=direction,
                             variant=variant or BALANCED, run=run, unavailable=unavailable)


def _loop_rows(a, b, bounds, scales):
    fp8 = bool(scales)
    out = torch.empty(a.shape[0], b.shape[2], device=a.device,
                      dtype=torch.bfloat16 if fp8 else a.dtype)
    for g, (s, e) in enumerate(bounds):
        if e == s:
            continue
        if fp8:
            torch._scaled_mm(a[s:e], b[g], scale_a=scales[0][s:e, None],
                             scale_b=scales[1][g][None, :], out_dtype=torch.bfloat16,
                             out=out[s:e])
        else:
            torch.matmul(a[s:e], b[g], out=out[s:e])
    return out


def _loop_reduce(a, b, bounds, scales):
    fp8 = bool(scales)
    k, n = a.shape[0], b.shape[1]
    out = torch.empty(len(bounds), k, n, device=a.device,
                      dtype=torch.bfloat16 if fp8 else a.dtype)
    for g, (s, e) in enumerate(bounds):
        if e == s:
            out[g].zero_()
        elif fp8:
            torch._scaled_mm(a[:, s:e], b[s:e], scale_a=scales[0][g * k:(g + 1) * k, None],
                             scale_b=scales[1][g * n:(g + 1) * n][None, :],
                             out_dtype=torch.bfloat16, out=out[g])
        else:
            torch.matmul(a[:, s:e], b[s:e], out=out[g])
    return out


@register("grouped_gemm", "torch-loop")
def torch_loop_grouped_gemm(tokens: int, experts: int, n: int, k: int, dtype: str = "bf16", *,
                            direction: str = "fwd", variant: str = BALANCED) -> KernelSpec:
    """One ``torch.matmul`` (FP8: ``torch._scaled_mm``) per non-empty expert."""
    group_rows = _routed(tokens, experts, variant)
    bounds = _bounds(group_rows)

    def run(a, b, offs, *scales):
        return (_loop_rows if b.dim() == 3 else _loop_reduce)(a, b, bounds, scales)

    what = "torch._scaled_mm per expert" if dtype.startswith("fp8") else "torch.matmul per expert"
    return grouped_gemm_spec("torch-loop", group_rows, n, k, dtype, direction=direction,
                             variant=variant or BALANCED, run=run,
                             unavailable=_probe(run, group_rows, dtype, direction, what))


@register("grouped_gemm", "triton")
def triton_grouped_gemm_spec(tokens: int, experts: int, n: int, k: int, dtype: str = "bf16", *,
                             direction: str = "fwd", variant: str = BALANCED) -> KernelSpec:
    """The Triton grouped GEMM at the same problems as the torch baselines: BF16/FP16, and FP8
    (e4m3 or e5m2) with row-wise scales."""
    if TRITON_MISSING:
        raise KernelError(TRITON_MISSING)
    if dtype not in ("bf16", "fp16", "fp8_e4m3", "fp8_e5m2"):
        raise KernelError(f"the Triton grouped GEMM takes bf16, fp16, fp8_e4m3 or fp8_e5m2, "
                          f"not '{dtype}'")

    def run(a, b, offs, scale_a=None, scale_b=None):
        return triton_grouped_mm(a, b, offs, scale_a=scale_a, scale_b=scale_b)

    return grouped_gemm_spec("triton", _routed(tokens, experts, variant), n, k, dtype,
                             direction=direction, variant=variant or BALANCED, run=run,
                             unavailable=lambda device: triton_unavailable(device, dtype))
