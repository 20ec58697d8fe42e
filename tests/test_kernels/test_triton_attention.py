"""Triton flash attention against float64: forward (BF16/FP16/FP8), backward through autograd,
grouped-query heads, head_dim 64 and 128, causal or not, ragged sequence lengths.

Run in Triton's CPU interpreter when there is no GPU (see tests/support/triton_interpreter.py). The
interpreter's tiles are 32 query rows by 16 keys (forward), so 77 tokens exercise the unmasked
blocks, the causal diagonal and a ragged tail in one call.
"""

import math

import pytest
import torch
from tests.support.triton_interpreter import DEVICE, interpreter_fixes  # noqa: F401

from kernels import registry
from kernels.attention import triton_attention
from kernels.fp8 import quantize_tensorwise
from kernels.reference import attention_reference, rel_fro_error
from kernels.spec import TOLERANCE, KernelError

pytestmark = [pytest.mark.interpreter, pytest.mark.usefixtures("interpreter_fixes")]

TORCH = {"bf16": torch.bfloat16, "fp16": torch.float16}
# (batch, heads_q, heads_kv, seq, head_dim): grouped-query heads at both head dims.
SHAPES = [(1, 4, 2, 77, 64), (2, 2, 1, 50, 128)]


def _qkv(batch, heads_q, heads_kv, seq_q, head_dim, dtype, seed, seq_k=None):
    gen = torch.Generator().manual_seed(seed)
    seq_k = seq_k or seq_q
    q = torch.randn(batch, heads_q, seq_q, head_dim, generator=gen)
    k = torch.randn(batch, heads_kv, seq_k, head_dim, generator=gen)
    v = torch.randn(batch, heads_kv, seq_k, head_dim, generator=gen)
    return tuple(t.to(dtype).to(DEVICE) for t in (q, k, v))


@pytest.mark.parametrize("shape", SHAPES, ids=["gqa-d64", "gqa-d128"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_forward_against_float64(dtype, causal, shape):
    q, k, v = _qkv(*shape, TORCH[dtype], seed=0)
    out = triton_attention(q, k, v, causal=causal)
    assert out.shape == q.shape and out.dtype == q.dtype
    ref = attention_reference(q, k, v, causal, 1.0 / math.sqrt(shape[-1]))
    assert rel_fro_error(out, ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("seq_q,seq_k,causal", [(40, 90, False), (90, 40, False), (40, 90, True),
                                                 (90, 40, True)])
def test_different_query_and_key_lengths(seq_q, seq_k, causal):
    """Non-square problems; causal is aligned at the top left (query i sees keys 0..i), as in
    the reference and scaled_dot_product_attention."""
    q, k, v = _qkv(1, 2, 1, seq_q, 64, torch.float16, seed=1, seq_k=seq_k)
    out = triton_attention(q, k, v, causal=causal, sm_scale=0.3)
    ref = attention_reference(q, k, v, causal, 0.3)
    assert rel_fro_error(out, ref) < TOLERANCE["fp16"]


def test_strided_inputs_need_no_copy():
    """q, k, v as transposed views of (batch, seq, heads, head_dim) tensors, the layout a
    transformer produces, give the same result as contiguous ones."""
    q, k, v = _qkv(1, 4, 2, 33, 64, torch.float16, seed=2)
    views = tuple(t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    assert not views[0].is_contiguous()
    assert torch.equal(triton_attention(*views, causal=True), triton_attention(q, k, v, causal=True))


def _backward_error(q, k, v, causal, seed):
    q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
    out = triton_attention(q, k, v, causal=causal)
    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
    grads = torch.autograd.grad(out, (q, k, v), do)
    q64, k64, v64 = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    ref = attention_reference(q64, k64, v64, causal, 1.0 / math.sqrt(q.shape[-1]))
    refs = torch.autograd.grad(ref, (q64, k64, v64), do.double())
    return [rel_fro_error(g, r) for g, r in zip(grads, refs)]


@pytest.mark.parametrize("shape,causal", [(SHAPES[0], True), (SHAPES[1], False), (SHAPES[1], True)],
                         ids=["gqa-d64-causal", "gqa-d128", "gqa-d128-causal"])
def test_backward_bf16_against_float64_autograd(causal, shape):
    """dQ, dK and dV each within the bf16 tolerance; dK and dV of a kv head sum over the q
    heads of its group."""
    errors = _backward_error(*_qkv(*shape, torch.bfloat16, seed=3), causal, seed=4)
    assert max(errors) < TOLERANCE["bf16"], errors


def test_backward_fp16_ragged():
    errors = _backward_error(*_qkv(1, 3, 1, 45, 64, torch.float16, seed=5), True, seed=6)
    assert max(errors) < TOLERANCE["fp16"], errors


@pytest.mark.parametrize("heads_q,heads_kv,seq,causal", [
    (2, 2, 37, True), (4, 2, 29, False), (16, 1, 23, True), (16, 1, 41, False)],
    ids=["1:1", "2:1", "16:1-causal", "16:1"])
def test_backward_grouped_heads_against_float64_autograd(heads_q, heads_kv, seq, causal):
    """dK and dV of a kv head are the sum over its group of q heads: 1:1 writes them
    directly; 2:1 and 16:1 (Llama 3 405B under tensor parallelism 8) sum float32 shares of
    each q head. Odd lengths leave ragged key and query blocks."""
    q, k, v = _qkv(1, heads_q, heads_kv, seq, 32, torch.bfloat16, seed=12)
    errors = _backward_error(q, k, v, causal, seed=13)
    assert max(errors) < TOLERANCE["bf16"], errors


def test_dkdv_programs_split_over_q_heads():
    """The dK/dV grid is key blocks x batch x q heads, not x kv heads: 16:1 grouping gives
    16x the programs (2 x 16 x 1024 / BLOCK_N here), each writing one q head's float32 share."""
    from tests.support.sm90_compile import record_launches

    from kernels import flash_attention as fa

    q = torch.zeros(2, 16, 1024, 64, dtype=torch.bfloat16, device=DEVICE)
    k = torch.zeros(2, 1, 1024, 64, dtype=torch.bfloat16, device=DEVICE)
    lse = torch.zeros(2 * 16, 1024, device=DEVICE)
    launches = record_launches(fa, ["_bwd_preprocess", "_bwd_dkdv", "_bwd_dq"],
                               lambda: fa.attention_backward(q, k, k, q, lse, q, True, 0.125))
    dkdv = next(x for x in launches if x.name == "_bwd_dkdv")
    assert dkdv.grid({"BLOCK_N": 64}) == (1024 // 64, 2 * 16)
    dk = dkdv.args[list(fa._bwd_dkdv.arg_names).index("dk_ptr")]
    assert dk.shape == (2, 16, 1024, 64) and dk.dtype == torch.float32


def test_backward_with_more_keys_than_queries():
    """Causal with seq_k > seq_q: the last keys are seen by no query, so their dK and dV are
    exactly zero in the reference; the bounds of both backward kernels must agree."""
    q, k, v = _qkv(1, 2, 1, 40, 64, torch.float16, seed=10, seq_k=70)
    errors = _backward_error(q, k, v, True, seed=11)
    assert max(errors) < TOLERANCE["fp16"], errors


def _fp8_qkv(fmt, shapes, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(*s, generator=gen) * m for s, m in zip(shapes, (2.0, 1.0, 0.5)))
    return [tuple(t.to(DEVICE) for t in quantize_tensorwise(x, fmt)) for x in (q, k, v)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
def test_fp8_forward_against_float64_of_the_dequantised_inputs(fmt, causal):
    shapes = [(1, 4, 77, 64), (1, 2, 77, 64), (1, 2, 77, 64)]
    (q8, sq), (k8, sk), (v8, sv) = _fp8_qkv(fmt, shapes, seed=7)
    out = triton_attention(q8, k8, v8, causal=causal, q_scale=sq, k_scale=sk, v_scale=sv)
    assert out.dtype == torch.bfloat16
    deq = [t.double() * s.double() for t, s in ((q8, sq), (k8, sk), (v8, sv))]
    ref = attention_reference(*deq, causal, 1.0 / 8.0)
    # Probabilities rounded to e4m3 for P V, as FlashAttention-3 does: ~2% here.
    assert rel_fro_error(out, ref) < TOLERANCE[fmt]


def test_fp8_scales_reach_the_kernel():
    """Doubling v's scale doubles the output; doubling k's sharpens the softmax (not a no-op)."""
    (q8, sq), (k8, sk), (v8, sv) = _fp8_qkv("fp8_e4m3", [(1, 2, 40, 64)] * 3, seed=8)
    base = triton_attention(q8, k8, v8, q_scale=sq, k_scale=sk, v_scale=sv, out_dtype=torch.float32)
    doubled = triton_attention(q8, k8, v8, q_scale=sq, k_scale=sk, v_scale=sv * 2,
                               out_dtype=torch.float32)
    assert torch.allclose(doubled, 2 * base, rtol=1e-6, atol=1e-7)
    sharper = triton_attention(q8, k8, v8, q_scale=sq, k_scale=sk * 2, v_scale=sv,
                               out_dtype=torch.float32)
    assert rel_fro_error(sharper, base.double()) > 0.05


def test_refusals_say_why():
    q, k, v = _qkv(1, 4, 2, 16, 64, torch.bfloat16, seed=9)
    with pytest.raises(ValueError, match="multiple of kv heads"):
        triton_attention(q, k[:, :1].expand(1, 3, 16, 64), v[:, :1].expand(1, 3, 16, 64))
    with pytest.raises(ValueError, match="head_dim 96"):
        triton_attention(*(torch.zeros(1, 1, 8, 96, dtype=torch.bfloat16, device=DEVICE),) * 3)
    with pytest.raises(ValueError, match="FP8 inputs only"):
        triton_attention(q, k, v, q_scale=torch.ones(()))
    with pytest.raises(ValueError, match="sm_scale must be positive"):
        triton_attention(q, k, v, sm_scale=-0.1)
    q8 = q.to(torch.float8_e4m3fn).requires_grad_(False)
    with pytest.raises(ValueError, match="forward-only"):
        triton_attention(q8, k.to(q8.dtype), v.to(q8.dtype).requires_grad_(True))


@pytest.mark.parametrize("dtype,direction", [("bf16", "fwd"), ("bf16", "bwd"), ("fp16", "fwd"),
                                             ("fp8_e4m3", "fwd"), ("fp8_e5m2", "fwd")])
def test_registered_spec_checks_and_matches_its_baseline(dtype, direction):
    spec = registry.build("attention", "triton", 1, 2, 1, 40, 64, True, dtype, direction=direction)
    assert spec.check(DEVICE) <= spec.tolerance
    if not dtype.startswith("fp8"):  # SDPA has no FP8: no baseline to match
        base = registry.build("attention", "sdpa-flash", 1, 2, 1, 40, 64, True, dtype,
                              direction=direction)
        assert spec.problem() == base.problem()
    else:
        assert spec.identity()["out_dtype"] == "bf16" and spec.variant == "tensorwise"


def test_registered_beside_the_baseline_and_skipped_on_cpu():
    assert registry.impls("attention")[-1] == "triton"
    assert "triton" not in registry.baselines("attention")
    spec = registry.build("attention", "triton", 1, 8, 8, 256, 128, True, "bf16")
    assert "interpreter" in spec.unavailable(torch.device("cpu"))
    with pytest.raises(KernelError, match="forward-only"):
        registry.build("attention", "triton", 1, 8, 8, 256, 128, True, "fp8_e4m3", direction="bwd")
    with pytest.raises(KernelError, match="head_dim"):
        registry.build("attention", "triton", 1, 8, 8, 256, 96, True, "bf16")
