"""Attention: softmax(Q K^T / sqrt(D)) V, forward and backward, with grouped-query heads.

`attention_spec` makes the spec of any attention implementation from its forward function
(the backward is timed through autograd): (batch, heads, seq, head_dim) inputs, causal or
not, grouped-query heads (fewer kv heads than q heads, as in Llama 3: 128 q heads, 8 kv
heads). The baselines are ``torch.nn.functional.scaled_dot_product_attention`` with one
backend pinned per implementation (`kernels.sdpa`: ``sdpa-flash``, ``sdpa-cudnn``...).
Beside them, the Triton flash attention of `kernels.flash_attention` (``triton_attention``,
re-exported here), registered as implementation "triton": BF16/FP16 forward and backward,
and FP8 forward (which SDPA does not have).

Large problems are checked on a sample of q heads against the float64 reference (the
reference is computed head by head; checking every head of a 16k-token problem in float64
would take minutes and tens of GB).
"""

from __future__ import annotations

import math

import torch

from kernels import flops
from kernels.reference import attention_reference, rel_fro_error
from kernels.registry import register
from kernels.spec import KernelError, KernelSpec, torch_dtype
from kernels.fp8 import quantize_tensorwise
from kernels.triton_support import TRITON_MISSING, triton_unavailable

if TRITON_MISSING is None:
    from kernels.flash_attention import HEAD_DIMS, attention_forward, triton_attention

__all__ = ["triton_attention_spec", "attention_spec"] + (
    ["triton_attention"] if TRITON_MISSING is None else [])

DIRECTIONS = ("fwd", "bwd")
# At most this many q heads (of batch 0) are compared against float64 in a check.
CHECK_HEADS = 4


def validate_shape(batch, heads_q, heads_kv, seq, head_dim):
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
        gen = torch.Generator(device=device).manual_seed(seed)
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
        q, k, v, do = inputs[:4]  # the timed spec also carries the forward's output
        q64, k64, v64 = (t[:1].detach().double().requires_grad_(True) for t in (q, k, v))
        out = attention_reference(q64, k64, v64, causal, sm_scale)
        refs = torch.autograd.grad(out, (q64, k64, v64), do[:1].double())
        return rel_fro_error(tuple(g[:1] for g in output), refs)

    return error


def attention_spec(*, impl, batch, heads_q, heads_kv, seq, head_dim, causal, dtype, direction,
                   forward, variant="", unavailable=None) -> KernelSpec:
    """A spec for any attention implementation given its forward function
    ``forward(q, k, v, causal, sm_scale) -> out``; the backward is timed through autograd."""
    validate_shape(batch, heads_q, heads_kv, seq, head_dim)
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

        error = backward_error(causal, sm_scale)

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


def _triton_forward(q, k, v, causal: bool, sm_scale: float):
    return triton_attention(q, k, v, causal=causal, sm_scale=sm_scale)


def make_fp8_qkv(batch, heads_q, heads_kv, seq, head_dim, fmt: str):
    """q, k, v drawn as for BF16, quantised tensor-wise (amax) to FP8, with their float32
    dequantisation scales as one (3,) tensor. V is stored sequence-contiguous (transposed),
    the operand layout FP8 tensor cores want for the P V product (as in Triton's fused
    attention tutorial); the kernel reads any strides."""
    make = make_qkv(batch, heads_q, heads_kv, seq, head_dim, "fp32", "fwd")

    def make8(device, seed):
        (q8, sq), (k8, sk), (v8, sv) = (quantize_tensorwise(t, fmt) for t in make(device, seed))
        v8 = v8.transpose(-1, -2).contiguous().transpose(-1, -2)
        return q8, k8, v8, torch.stack([sq, sk, sv])

    return make8


def fp8_forward_error(causal: bool, sm_scale: float):
    """Against the float64 reference of the dequantised inputs: the kernel is judged on what it
    computes from the FP8 data it was given, not on the quantisation itself."""
    check = forward_error(causal, sm_scale)

    def error(inputs, output) -> float:
        q8, k8, v8, scales = inputs
        deq = tuple(t[:1].double() * s.double() for t, s in zip((q8, k8, v8), scales))
        return check(deq, output[:1])

    return error


@register("attention", "triton")
def triton_attention_spec(batch: int, heads_q: int, heads_kv: int, seq: int, head_dim: int,
                          causal: bool = True, dtype: str = "bf16", *, direction: str = "fwd",
                          variant: str = "") -> KernelSpec:
    """Triton flash attention at the same shapes as the SDPA baselines: BF16/FP16 forward or
    backward, and FP8 (e4m3/e5m2, tensor-wise scales, BF16 output) forward."""
    if TRITON_MISSING:
        raise KernelError(TRITON_MISSING)
    if head_dim not in HEAD_DIMS:
        raise KernelError(f"the Triton attention takes head_dim {HEAD_DIMS}, not {head_dim}")
    if not dtype.startswith("fp8"):
        if dtype not in ("bf16", "fp16"):
            raise KernelError(f"the Triton attention takes bf16, fp16 or fp8, not '{dtype}'")
        return attention_spec(impl="triton", batch=batch, heads_q=heads_q, heads_kv=heads_kv,
                              seq=seq, head_dim=head_dim, causal=causal, dtype=dtype,
                              direction=direction, forward=_triton_forward,
                              unavailable=lambda device: triton_unavailable(device, dtype))
    if dtype not in ("fp8_e4m3", "fp8_e5m2"):
        raise KernelError(f"unknown FP8 format '{dtype}'; known: fp8_e4m3, fp8_e5m2")
    if direction != "fwd":
        raise KernelError("FP8 attention is forward-only; the backward runs in bf16")
    if variant not in ("", "tensorwise"):
        raise KernelError(f"FP8 attention scales tensor-wise only, not '{variant}'")
    validate_shape(batch, heads_q, heads_kv, seq, head_dim)
    sm_scale = 1.0 / math.sqrt(head_dim)

    def run(q8, k8, v8, scales):
        return attention_forward(q8, k8, v8, causal, sm_scale, scales, torch.bfloat16)[0]

    return KernelSpec(
        kernel="attention", impl="triton", dtype=dtype, direction="fwd", variant="tensorwise",
        out_dtype="bf16", shape=attention_shape(batch, heads_q, heads_kv, seq, head_dim, causal),
        flops=flops.attention_fwd_flops(batch, heads_q, seq, seq, head_dim, causal),
        bytes=flops.attention_fwd_bytes(batch, heads_q, heads_kv, seq, seq, head_dim, dtype,
                                        out_dtype="bf16"),
        make_inputs=make_fp8_qkv(batch, heads_q, heads_kv, seq, head_dim, dtype),
        run=run,
        error=fp8_forward_error(causal, sm_scale),
        unavailable=lambda device: triton_unavailable(device, dtype),
    )
