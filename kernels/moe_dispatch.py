"""Token dispatch and combine: moving tokens to their experts and back.

Two families, memory-bound kernels reported in GB/s:

* ``"moe_dispatch"``: x (T, D) and the router's choices topk_ids (T, top_k) int32 ->
  ``(permuted, rows, offs)``: the T * top_k rows in expert order (experts one after another,
  within an expert in token order), where each assignment (t, j) went (``rows`` (T, top_k)
  int32), and the cumulative group ends (``offs`` (E,) int32) the grouped GEMM takes. No FLOPs.
* ``"moe_combine"``: the inverse with the routing weights: expert outputs y (T * top_k, D),
  ``rows`` and weights (T, top_k) float32 -> out[t] = sum_j w[t, j] * y[rows[t, j]] (T, D),
  summed in float32. FLOPs: 2 * T * top_k * D, the weighting multiply-adds.

Under expert parallelism the dispatch is the permutation on the sending GPU over all E experts
(a rank's experts are contiguous, so it also orders rows by destination rank) before the
all-to-all, which `bench.collectives` measures; the combine follows the all-to-all back.

Implementations:

* ``"torch"`` (baseline), in the manner of Megatron-Core's ``moe_utils.permute`` and
  ``unpermute``: a stable ``argsort`` of the expert ids, ``index_select`` of the rows and
  ``bincount`` for the offsets; the combine weights each expert-output row in float32 and
  scatter-adds it onto its token (``index_add_``).
* ``"triton"``: `kernels.triton_moe_dispatch` (four launches, no atomics; a combine that
  gathers each token's rows).

Routing (``variant``): the expert ids are sampled from a named distribution
(`kernels.moe_routing`) with a fixed seed; the shape carries the tokens per expert (mean, max)
of that sample. Checks: the dispatch is exact or wrong (error 0 or infinity: offsets, a
one-to-one ``rows`` inside each expert's range, every row a bit-exact copy of its token); the
combine is compared with float64 on a sample of tokens.
"""

from __future__ import annotations

import torch

from kernels import flops
from kernels.matmul import _check_rows as check_rows
from kernels.moe_routing import BALANCED, load_stats, sample_topk
from kernels.reference import rel_fro_error
from kernels.registry import register
from kernels.spec import KernelError, KernelSpec, torch_dtype
from kernels.triton_support import TRITON_MISSING, triton_unavailable

if TRITON_MISSING is None:
    from kernels.triton_moe_dispatch import MAX_EXPERTS, triton_combine, triton_dispatch

__all__ = ["torch_dispatch", "torch_combine", "dispatch_spec", "combine_spec"] + (
    ["triton_dispatch", "triton_combine"] if TRITON_MISSING is None else [])

DTYPES = ("fp32", "bf16", "fp16")
# The exact check of a dispatch compares this many tokens' rows at a time.
EXACT_CHECK_TOKENS = 4096


def expert_order(topk_ids: torch.Tensor, experts: int):
    """(order, rows, offs): the assignments in expert order (a stable sort by expert id), where
    each assignment goes (int32, shaped like ``topk_ids``) and the int32 cumulative group
    ends."""
    flat = topk_ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    rows = torch.empty_like(order)
    rows[order] = torch.arange(order.numel(), device=order.device)
    offs = torch.bincount(flat.long(), minlength=experts).cumsum(0).to(torch.int32)
    return order, rows.view(topk_ids.shape).to(torch.int32), offs


def torch_dispatch(x: torch.Tensor, topk_ids: torch.Tensor, experts: int):
    """The torch dispatch: ``(permuted, rows, offs)`` as `kernels.triton_moe_dispatch`."""
    order, rows, offs = expert_order(topk_ids, experts)
    return x.index_select(0, order // topk_ids.shape[1]), rows, offs


def torch_combine(y: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The torch combine: each expert-output row times its routing weight, in float32,
    scatter-added onto its token."""
    tokens, top_k = rows.shape
    flat = rows.reshape(-1).long()
    token_of_row = torch.empty_like(flat)
    token_of_row[flat] = torch.arange(tokens, device=y.device).repeat_interleave(top_k)
    weight_of_row = torch.empty(flat.numel(), device=y.device, dtype=torch.float32)
    weight_of_row[flat] = weights.reshape(-1)
    out = torch.zeros(tokens, y.shape[1], device=y.device, dtype=torch.float32)
    out.index_add_(0, token_of_row, y * weight_of_row[:, None])
    return out.to(y.dtype)


def _validate(tokens, d_model, experts, top_k, dtype):
    try:
        flops.moe_dispatch_bytes(tokens, d_model, top_k, experts, dtype)
    except ValueError as exc:
        raise KernelError(f"MoE routing: {exc}") from None
    if dtype not in DTYPES:
        raise KernelError(f"dispatch and combine take {', '.join(DTYPES)}, not '{dtype}'")


def _shape(tokens, d_model, experts, top_k, ids) -> dict:
    counts = torch.bincount(ids.reshape(-1).long(), minlength=experts).tolist()
    return {"tokens": tokens, "d_model": d_model, "experts": experts, "top_k": top_k,
            **load_stats(counts)}


def dispatch_error(experts: int):
    """0 when the dispatch is exactly right, infinity otherwise."""

    def error(inputs, output) -> float:
        x, ids = inputs
        permuted, rows, offs = output
        tokens, top_k = ids.shape
        flat = ids.reshape(-1).long()
        counts = torch.bincount(flat, minlength=experts)
        ends = counts.cumsum(0)
        if offs.dtype != torch.int32 or not torch.equal(offs.long(), ends):
            return float("inf")
        if rows.dtype != torch.int32 or rows.shape != ids.shape:
            return float("inf")
        r = rows.reshape(-1).long()
        one_to_one = torch.equal(torch.sort(r).values, torch.arange(r.numel(), device=r.device))
        if not one_to_one or not bool(((r >= (ends - counts)[flat]) & (r < ends[flat])).all()):
            return float("inf")
        for t0 in range(0, tokens, EXACT_CHECK_TOKENS):
            t1 = min(tokens, t0 + EXACT_CHECK_TOKENS)
            got = permuted.index_select(0, r[t0 * top_k:t1 * top_k]).view(t1 - t0, top_k, -1)
            if not torch.equal(got, x[t0:t1].unsqueeze(1).expand_as(got)):
                return float("inf")
        return 0.0

    return error


def combine_error(inputs, output) -> float:
    """Against float64 on a sample of tokens (all of them for small problems)."""
    y, rows, weights = inputs
    sample = check_rows(rows.shape[0], y.device)
    picked = slice(None) if sample is None else sample
    ref = (y[rows[picked].long()].double() * weights[picked].double()[..., None]).sum(1)
    return rel_fro_error(output[picked], ref)


def dispatch_spec(impl, tokens, d_model, experts, top_k, dtype, *, variant, dispatch,
                  unavailable=None) -> KernelSpec:
    """A dispatch spec for ``dispatch(x, topk_ids, experts) -> (permuted, rows, offs)``."""
    _validate(tokens, d_model, experts, top_k, dtype)
    ids = sample_topk(tokens, experts, top_k, variant)

    def make(device, seed):
        gen = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(tokens, d_model, generator=gen, device=device).to(torch_dtype(dtype))
        return x, ids.to(device)

    def run(x, topk_ids):
        return dispatch(x, topk_ids, experts)

    return KernelSpec(
        kernel="moe_dispatch", impl=impl, dtype=dtype, variant=variant,
        shape=_shape(tokens, d_model, experts, top_k, ids), flops=0,
        bytes=flops.moe_dispatch_bytes(tokens, d_model, top_k, experts, dtype),
        make_inputs=make, run=run, error=dispatch_error(experts),
        **({"unavailable": unavailable} if unavailable else {}),
    )


def combine_spec(impl, tokens, d_model, experts, top_k, dtype, *, variant, combine,
                 unavailable=None) -> KernelSpec:
    """A combine spec for ``combine(y, rows, weights) -> out``; ``rows`` come from a real
    dispatch of the sampled routing, the weights are uniform in (0, 1)."""
    _validate(tokens, d_model, experts, top_k, dtype)
    ids = sample_topk(tokens, experts, top_k, variant)

    def make(device, seed):
        gen = torch.Generator(device=device).manual_seed(seed)
        y = torch.randn(tokens * top_k, d_model, generator=gen, device=device)
        weights = torch.rand(tokens, top_k, generator=gen, device=device)
        return y.to(torch_dtype(dtype)), expert_order(ids.to(device), experts)[1], weights

    return KernelSpec(
        kernel="moe_combine", impl=impl, dtype=dtype, variant=variant,
        shape=_shape(tokens, d_model, experts, top_k, ids),
        flops=flops.moe_combine_flops(tokens, d_model, top_k),
        bytes=flops.moe_combine_bytes(tokens, d_model, top_k, dtype),
        make_inputs=make, run=combine, error=combine_error,
        **({"unavailable": unavailable} if unavailable else {}),
    )


def _triton_checks(experts: int, dtype: str):
    if TRITON_MISSING:
        raise KernelError(TRITON_MISSING)
    if experts > MAX_EXPERTS:
        raise KernelError(f"the Triton dispatch takes at most {MAX_EXPERTS} experts, not {experts}")
    return lambda device: triton_unavailable(device, dtype)


@register("moe_dispatch", "torch", baseline=True)
def torch_dispatch_spec(tokens: int, d_model: int, experts: int, top_k: int, dtype: str = "bf16",
                        *, variant: str = BALANCED) -> KernelSpec:
    return dispatch_spec("torch", tokens, d_model, experts, top_k, dtype, variant=variant,
                         dispatch=torch_dispatch)


@register("moe_dispatch", "triton")
def triton_dispatch_spec(tokens: int, d_model: int, experts: int, top_k: int,
                         dtype: str = "bf16", *, variant: str = BALANCED) -> KernelSpec:
    unavailable = _triton_checks(experts, dtype)
    return dispatch_spec("triton", tokens, d_model, experts, top_k, dtype, variant=variant,
                         dispatch=triton_dispatch, unavailable=unavailable)


@register("moe_combine", "torch", baseline=True)
def torch_combine_spec(tokens: int, d_model: int, experts: int, top_k: int, dtype: str = "bf16",
                       *, variant: str = BALANCED) -> KernelSpec:
    return combine_spec("torch", tokens, d_model, experts, top_k, dtype, variant=variant,
                        combine=torch_combine)


@register("moe_combine", "triton")
def triton_combine_spec(tokens: int, d_model: int, experts: int, top_k: int, dtype: str = "bf16",
                        *, variant: str = BALANCED) -> KernelSpec:
    unavailable = _triton_checks(experts, dtype)
    return combine_spec("triton", tokens, d_model, experts, top_k, dtype, variant=variant,
                        combine=triton_combine, unavailable=unavailable)
