"""Attention: softmax(Q K^T / sqrt(D)) V, forward and backward, with grouped-query heads.

Baseline: ``torch.nn.functional.scaled_dot_product_attention`` (FlashAttention or
memory-efficient kernels on GPU), BF16, causal or not, (batch, heads, seq, head_dim) inputs.
Grouped-query attention (fewer kv heads than q heads, as in Llama 3: 128 q heads, 8 kv heads)
uses SDPA's ``enable_gqa``.

Large problems are checked on a sample of q heads against the float64 reference (the
reference is computed head by head; checking every head of a 16k-token problem in float64
would take minutes and tens of GB).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kernels import flops
from kernels.reference import attention_reference, rel_fro_error
from kernels.registry import register
from kernels.spec import KernelError, KernelSpec, torch_dtype

DIRECTIONS = ("fwd", "bwd")
# At most this many q heads (of batch 0) are compared against float64 in a check.
CHECK_HEADS = 4


def _generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def validate_shape(batch, heads_q, heads_kv, seq, head_dim, causal):
    for name, value in (("batch", batch), ("heads_q", heads_q), ("heads_kv", heads_kv),
                        ("seq", seq), ("head_dim", head_dim)):
        if not isinstance(value, int) or value < 1:
            raise KernelError(f"attention {name} must be a positive integer, got {value!r}")
    if heads_q % heads_kv:
        raise KernelError(f"heads_q ({heads_q}) must be a multiple of heads_kv ({heads_kv})")


def attention_shape(batch, heads_q, heads_kv, seq, head_dim, causal) -> dict:
    return {"batch": batch, "heads_q": heads_q, "heads_kv": heads_kv, "seq": seq,
            "head_dim": head_dim, "causal": bool(causal)}


def make_qkv(batch, heads_q, heads_kv, seq, head_dim, dtype: str, direction: str):
    """Fresh q, k, v (and, for the backward, the upstream gradient dO)."""

    def make(device, seed):
        gen = _generator(device, seed)
        dt = torch_dtype(dtype)
        q = torch.randn(batch, heads_q, seq, head_dim, generator=gen, device=device).to(dt)
        k = torch.randn(batch, heads_kv, seq, head_dim, generator=gen, device=device).to(dt)
        v = torch.randn(batch, heads_kv, seq, head_dim, generator=gen, device=device).to(dt)
        if direction == "fwd":
            return q, k, v
        do = torch.randn(batch, heads_q, seq, head_dim, generator=gen, device=device).to(dt)
        return q, k, v, do

    return make


def _check_heads(heads_q: int) -> list[int]:
    if heads_q <= CHECK_HEADS:
        return list(range(heads_q))
    return sorted({round(i * (heads_q - 1) / (CHECK_HEADS - 1)) for i in range(CHECK_HEADS)})


def forward_error(causal: bool, sm_scale: float):
    def error(inputs, output) -> float:
        q, k, v = inputs[:3]
        heads = _check_heads(q.shape[1])
        ref = attention_reference(q[:1], k[:1], v[:1], causal, sm_scale, heads=heads)
        return rel_fro_error(output[:1, heads], ref)

    return error


def backward_error(causal: bool, sm_scale: float):
    """dQ, dK, dV against float64 autograd through the reference, on batch 0.

    Every q head of batch 0 takes part, because dK and dV of a kv head sum over its q-head
    group.
    """

    def error(inputs, output) -> float:
        q, k, v, do = inputs
        q64, k64, v64 = (t[:1].detach().double().requires_grad_(True) for t in (q, k, v))
        out = attention_reference(q64, k64, v64, causal, sm_scale)
        refs = torch.autograd.grad(out, (q64, k64, v64), do[:1].double())
        return rel_fro_error(tuple(g[:1] for g in output), refs)

    return error


def attention_spec(*, impl, batch, heads_q, heads_kv, seq, head_dim, causal, dtype, direction,
                   forward, variant="", unavailable=None) -> KernelSpec:
    """A spec for any attention implementation given its forward function
    ``forward(q, k, v, causal, sm_scale) -> out``; the backward is timed through autograd."""
    validate_shape(batch, heads_q, heads_kv, seq, head_dim, causal)
    if direction not in DIRECTIONS:
        raise KernelError(f"unknown attention direction '{direction}'; known: fwd, bwd")
    sm_scale = 1.0 / math.sqrt(head_dim)
    count = flops.attention_fwd_flops if direction == "fwd" else flops.attention_bwd_flops
    if direction == "fwd":
        nbytes = flops.attention_fwd_bytes(batch, heads_q, heads_kv, seq, seq, head_dim, dtype)
        make = make_qkv(batch, heads_q, heads_kv, seq, head_dim, dtype, "fwd")

        def run(q, k, v):
            return forward(q, k, v, causal, sm_scale)

        error = forward_error(causal, sm_scale)
    else:
        nbytes = flops.attention_bwd_bytes(batch, heads_q, heads_kv, seq, seq, head_dim, dtype)
        make_fwd = make_qkv(batch, heads_q, heads_kv, seq, head_dim, dtype, "bwd")

        def make(device, seed):
            q, k, v, do = make_fwd(device, seed)
            q, k, v = (t.requires_grad_(True) for t in (q, k, v))
            out = forward(q, k, v, causal, sm_scale)
            return q, k, v, do, out

        def run(q, k, v, do, out):
            # Only the backward is timed: the forward's graph is kept between calls.
            return torch.autograd.grad(out, (q, k, v), do, retain_graph=True)

        check = backward_error(causal, sm_scale)

        def error(inputs, output):
            return check(inputs[:4], output)

    return KernelSpec(
        kernel="attention", impl=impl, dtype=dtype, direction=direction, variant=variant,
        shape=attention_shape(batch, heads_q, heads_kv, seq, head_dim, causal),
        flops=count(batch, heads_q, seq, seq, head_dim, causal),
        bytes=nbytes,
        make_inputs=make,
        run=run,
        error=error,
        **({"unavailable": unavailable} if unavailable else {}),
    )


def sdpa(q, k, v, causal: bool, sm_scale: float):
    return F.scaled_dot_product_attention(
        q, k, v, is_causal=causal, scale=sm_scale, enable_gqa=q.shape[1] != k.shape[1]
    )


@register("attention", "torch", baseline=True)
def torch_attention(batch: int, heads_q: int, heads_kv: int, seq: int, head_dim: int,
                    causal: bool = True, dtype: str = "bf16", *, direction: str = "fwd",
                    variant: str = "") -> KernelSpec:
    """SDPA forward or backward."""
    if dtype.startswith("fp8"):
        raise KernelError("SDPA has no FP8 path; FP8 attention is a Triton implementation")
    return attention_spec(impl="torch", batch=batch, heads_q=heads_q, heads_kv=heads_kv, seq=seq,
                          head_dim=head_dim, causal=causal, dtype=dtype, direction=direction,
                          forward=sdpa)
