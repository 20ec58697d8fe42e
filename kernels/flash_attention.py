"""Triton flash attention: softmax(Q K^T * scale) V without ever holding the S x S scores.

Forward (after Dao et al. 2022/2023 and Triton's ``python/tutorials/06-fused-attention.py``):
each program owns BLOCK_M query rows of one head and streams the keys and values past them
in BLOCK_N blocks, keeping a running row maximum ``m``, a running row sum ``l`` and an
unnormalised float32 output (the *online softmax*): when a new block raises the maximum, what
was accumulated so far is rescaled by ``exp(m_old - m_new)``. Exponentials are base 2 with
``log2(e)`` folded into the score scale, and the scale is applied once, in the exponent: the
running maximum is kept in scaled units (the block's raw maximum times the scale, one multiply
per row), so each score costs one fused multiply-add, ``exp2(s * scale - m)`` (this needs a
positive scale, which softmax scales are). Causal programs visit only the blocks at or left of
their diagonal; blocks wholly below it run without masks, and only the diagonal block and the
ragged end of the sequence (lengths that are not a multiple of the block) are masked.

Offsets that grow with the problem (batch, head and sequence position times a stride) are
computed in 64 bits: B x H x S x D passes 2^31 elements at, e.g., 8 x 128 x 16k x 128.
Offsets within a tile (an index below BLOCK_M or BLOCK_N times a stride) stay 32-bit.

Grouped-query attention (Llama 3: 128 q heads share 8 kv heads) costs nothing extra: q head
``h`` simply reads kv head ``h // (Hq // Hkv)``.

FP8 (e4m3 or e5m2 q, k, v, each with a float32 tensor-wise dequantisation scale): Q K^T runs
on FP8 tensor cores with the q and k scales folded into the softmax scale; the probabilities
are cast to e4m3 for P V (as FlashAttention-3 does) after a 2^8 shift that keeps them in
e4m3's normal range (the shift cancels in ``acc / l``); the v scale multiplies the result.

Backward (BF16/FP16): the forward saves the base-2 log-sum-exp of every row, so the backward
recomputes P block by block. One kernel owns a block of keys of one q head and accumulates
that head's share of dK and dV over its query blocks; a second owns a block of queries and
accumulates dQ; a small first pass computes ``delta = rowsum(O * dO)``. With grouped-query
heads, the Hq / Hkv q heads of a group each write their share of their kv head's dK and dV in
float32, and one sum over the group gives dK and dV, as FlashAttention-2 does: a grid of
cdiv(S, BLOCK_N) x B x Hq programs rather than x B x Hkv (Llama 3 405B under TP 8 has 16 q
heads on 1 kv head: 16x the programs), deterministic (no atomics), for
2 x B x Hq x S x D x 4 bytes of float32 shares (268 MB at 16 heads, 16k tokens, d 128).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.fp8 import FP8_DTYPES
from kernels.triton_support import interpreting

HEAD_DIMS = (16, 32, 64, 128)
LOG2E = tl.constexpr(1.4426950408889634)  # log2(e): exp(x) = exp2(x * log2(e))
# Probabilities are multiplied by 2^P_SHIFT before the e4m3 cast (FP8 only): P <= 1 would
# otherwise put every probability under 2^-6 into e4m3's subnormals.
P_SHIFT = 8.0


def _fwd_configs() -> list:
    """Forward tiles. One under the interpreter (timing NumPy would be meaningless); on a GPU,
    Hopper-sized candidates (BLOCK_M of 128 fills two warpgroups of wgmma with 8 warps). None
    spills registers on sm_90 (tests/test_kernels/test_triton_compile.py): 128 x 64 on 4 warps, which holds
    a 128 x 128 float32 output per warpgroup, is not among them."""
    if interpreting():
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 16}, num_stages=1, num_warps=4)]
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_stages=s, num_warps=w)
        for bm, bn, s, w in [(128, 128, 3, 8), (128, 64, 3, 8), (128, 128, 2, 8),
                             (64, 64, 4, 4), (64, 32, 4, 4)]
    ]


def _fwd_prune(configs, named_args, **kwargs):
    """Drop tiles much taller than the query sequence (they would compute mostly padding),
    and, for key lengths that are not a multiple of 16, the three-stage 128 x 128 tile: with
    the masks of such a ragged end it needs more than 255 registers at head_dim 128 and
    spills (sm_90, tests/test_kernels/test_triton_compile.py); its two-stage twin stays."""
    seq_q, ragged = named_args["SEQ_Q"], named_args["SEQ_K"] % 16
    fitting = [c for c in configs if c.kwargs["BLOCK_M"] <= max(64, triton.next_power_of_2(seq_q))
               and not (ragged and (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_stages)
                        == (128, 128, 3))]
    return fitting or configs[-1:]


@triton.jit
def _fwd_block(acc, l_i, m_i, q, k_ptrs, v_ptrs, offs_m, offs_n, start_n, seq_k, qk_scale,
               stride_kn, stride_vn, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
               FP8: tl.constexpr, P_SHIFT: tl.constexpr):
    """One step of the online softmax: scores of this key block, rescale, accumulate P V.
    ``m_i`` is the running maximum of the scaled scores (``qk_scale`` > 0)."""
    cols = start_n + offs_n
    k_ptrs += tl.cast(start_n, tl.int64) * stride_kn
    v_ptrs += tl.cast(start_n, tl.int64) * stride_vn
    if MASKED:
        k = tl.load(k_ptrs, mask=cols[None, :] < seq_k, other=0.0)
        v = tl.load(v_ptrs, mask=cols[:, None] < seq_k, other=0.0)
    else:
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)
    qk = tl.dot(q, k)  # raw scores; the scale is applied in the exponent below
    if MASKED:
        keep = cols[None, :] < seq_k
        if CAUSAL:
            keep = keep & (offs_m[:, None] >= cols[None, :])
        qk = tl.where(keep, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    # FP8: probabilities are 2^P_SHIFT too large (module docstring); the shift is taken off
    # the row maximum, so it costs nothing per score.
    m_exp = m_new - P_SHIFT if FP8 else m_new
    p = tl.math.exp2(tl.fma(qk, qk_scale, -m_exp[:, None]))  # one FMA per score
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    if FP8:
        acc = tl.dot(p.to(tl.float8e4nv), v, acc)
    else:
        acc = tl.dot(p.to(v.dtype), v, acc)
    return acc, l_i, m_new


@triton.autotune(configs=_fwd_configs(), key=["SEQ_Q", "SEQ_K", "HEAD_DIM", "CAUSAL", "FP8"],
                 prune_configs_by={"early_config_prune": _fwd_prune})
@triton.jit
def _attn_fwd(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, scales_ptr, sm_scale,
              stride_qb, stride_qh, stride_qm, stride_qd,
              stride_kb, stride_kh, stride_kn, stride_kd,
              stride_vb, stride_vh, stride_vn, stride_vd,
              stride_ob, stride_oh, stride_om, stride_od,
              HEADS_Q, GROUP, SEQ_Q, SEQ_K,
              HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, FP8: tl.constexpr,
              P_SHIFT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1)
    # 64-bit: these times a stride can pass 2^31 (module docstring).
    off_b = (off_bh // HEADS_Q).to(tl.int64)
    off_h = (off_bh % HEADS_Q).to(tl.int64)
    off_kv = off_h // GROUP  # grouped-query attention: this q head's kv head
    row0 = start_m.to(tl.int64)

    offs_m = start_m + tl.arange(0, BLOCK_M)
    rows = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = (q_ptr + off_b * stride_qb + off_h * stride_qh + row0 * stride_qm
              + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd)
    # K is read transposed, (HEAD_DIM, BLOCK_N), so Q K^T is a plain dot.
    k_ptrs = (k_ptr + off_b * stride_kb + off_kv * stride_kh
              + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd)
    v_ptrs = (v_ptr + off_b * stride_vb + off_kv * stride_vh
              + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd)

    qk_scale = sm_scale * LOG2E
    if FP8:
        # Dequantisation scales of q and k multiply every score; v's multiplies the output.
        qk_scale = qk_scale * tl.load(scales_ptr) * tl.load(scales_ptr + 1)
    q = tl.load(q_ptrs, mask=offs_m[:, None] < SEQ_Q, other=0.0)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)

    # Key blocks [0, full) need no mask: inside the sequence and, if causal, wholly at or
    # below the diagonal of every row of this block. [full, end) is masked.
    if CAUSAL:
        end = tl.minimum(start_m + BLOCK_M, SEQ_K)
        full = tl.minimum(start_m, SEQ_K) // BLOCK_N * BLOCK_N
    else:
        end = SEQ_K
        full = SEQ_K // BLOCK_N * BLOCK_N
    for start_n in range(0, full, BLOCK_N):
        acc, l_i, m_i = _fwd_block(acc, l_i, m_i, q, k_ptrs, v_ptrs, offs_m, offs_n, start_n,
                                   SEQ_K, qk_scale, stride_kn, stride_vn, False, CAUSAL, FP8,
                                   P_SHIFT)
    for start_n in range(full, end, BLOCK_N):
        acc, l_i, m_i = _fwd_block(acc, l_i, m_i, q, k_ptrs, v_ptrs, offs_m, offs_n, start_n,
                                   SEQ_K, qk_scale, stride_kn, stride_vn, True, CAUSAL, FP8,
                                   P_SHIFT)

    # Rows past SEQ_Q (and, causal with SEQ_Q > SEQ_K, rows that see no key) have l = 0;
    # they are never stored, the guard only avoids 0/0.
    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    if FP8:
        out = out * tl.load(scales_ptr + 2)
    o_ptrs = (o_ptr + off_b * stride_ob + off_h * stride_oh + row0 * stride_om
              + rows[:, None] * stride_om + offs_d[None, :] * stride_od)
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=offs_m[:, None] < SEQ_Q)
    # Base-2 log-sum-exp of each row of scaled scores, for the backward.
    lse = m_i + tl.math.log2(l_safe)
    if FP8:
        lse = lse - P_SHIFT
    tl.store(lse_ptr + off_bh.to(tl.int64) * SEQ_Q + offs_m, lse, mask=offs_m < SEQ_Q)


def _bwd_configs(kernel: str) -> list:
    """Backward tiles. The dK/dV kernel holds two float32 (BLOCK_N, HEAD_DIM) accumulators
    and streams short query blocks past them; the dQ kernel the reverse. None spills registers
    on sm_90 at head_dim 128 (tests/test_kernels/test_triton_compile.py): dK/dV with 64-row query blocks
    (64 x 128 on 8 warps, 64 x 64 on 4) is not among them."""
    interpret = interpreting()
    if kernel == "dkdv":
        tiles = [(16, 32, 1, 4)] if interpret else [
            (32, 128, 3, 8), (32, 64, 3, 4), (16, 128, 3, 8), (16, 64, 3, 4)]
    else:
        tiles = [(32, 16, 1, 4)] if interpret else [
            (128, 32, 3, 8), (128, 64, 2, 8), (64, 32, 3, 4), (64, 64, 3, 4)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_stages=s, num_warps=w)
            for bm, bn, s, w in tiles]


@triton.jit
def _bwd_preprocess(o_ptr, do_ptr, delta_ptr, SEQ_Q, HEAD_DIM: tl.constexpr,
                    BLOCK_M: tl.constexpr):
    """delta = rowsum(O * dO), the softmax-backward term shared by every key block.
    O and dO are contiguous (B * Hq, SEQ_Q, HEAD_DIM) here."""
    start_m = tl.program_id(0) * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    row0 = tl.program_id(1).to(tl.int64) * SEQ_Q + start_m  # first row of this block
    tile = tl.arange(0, BLOCK_M)[:, None] * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :]
    rows = offs_m[:, None] < SEQ_Q
    o = tl.load(o_ptr + row0 * HEAD_DIM + tile, mask=rows, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + row0 * HEAD_DIM + tile, mask=rows, other=0.0).to(tl.float32)
    tl.store(delta_ptr + row0 + tl.arange(0, BLOCK_M), tl.sum(o * do, axis=1),
             mask=offs_m < SEQ_Q)


@triton.jit
def _kv_head(off_bh, HEADS_Q, GROUP):
    """(batch * HEADS_Q + q head) -> (batch * HEADS_KV + its kv head)."""
    return off_bh // HEADS_Q * (HEADS_Q // GROUP) + off_bh % HEADS_Q // GROUP


@triton.autotune(configs=_bwd_configs("dkdv"), key=["SEQ_Q", "SEQ_K", "HEAD_DIM", "CAUSAL"])
@triton.jit
def _bwd_dkdv(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, sm_scale,
              HEADS_Q, GROUP, SEQ_Q, SEQ_K,
              HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One q head's share of dK and dV for one block of keys of its kv head.

    q, do: (batch, heads_q, seq_q, head_dim); k, v: (batch, heads_kv, seq_k, head_dim);
    dk, dv: (batch, heads_q, seq_k, head_dim), each q head's share (the launcher sums each
    group), or, with GROUP 1, dK and dV themselves. All contiguous."""
    start_n = tl.program_id(0) * BLOCK_N
    off_bh = tl.program_id(1).to(tl.int64)  # batch * HEADS_Q + q head; 64-bit offsets below
    off_bkv = _kv_head(off_bh, HEADS_Q, GROUP)

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    cols_ok = offs_n[:, None] < SEQ_K
    kv_tile = tl.arange(0, BLOCK_N)[:, None] * HEAD_DIM + offs_d[None, :]
    q_tile = offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    key0 = off_bkv * SEQ_K + start_n  # first key of this block, as a row of k and v
    k = tl.load(k_ptr + key0 * HEAD_DIM + kv_tile, mask=cols_ok, other=0.0)
    v = tl.load(v_ptr + key0 * HEAD_DIM + kv_tile, mask=cols_ok, other=0.0)
    dk = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)
    qk_scale = sm_scale * LOG2E

    # Causal: queries before this key block see none of it.
    first = 0
    if CAUSAL:
        first = start_n // BLOCK_M * BLOCK_M
    for start_m in range(first, SEQ_Q, BLOCK_M):
        rows = start_m + offs_m
        row0 = off_bh * SEQ_Q + tl.cast(start_m, tl.int64)  # first query of this block
        rows_ok = rows[:, None] < SEQ_Q
        q = tl.load(q_ptr + row0 * HEAD_DIM + q_tile, mask=rows_ok, other=0.0)
        do = tl.load(do_ptr + row0 * HEAD_DIM + q_tile, mask=rows_ok, other=0.0)
        lse = tl.load(lse_ptr + row0 + offs_m, mask=rows < SEQ_Q, other=0.0)
        delta = tl.load(delta_ptr + row0 + offs_m, mask=rows < SEQ_Q, other=0.0)
        # Transposed scores, (BLOCK_N, BLOCK_M): keys along rows, queries along columns.
        keep = cols_ok & (rows[None, :] < SEQ_Q)
        if CAUSAL:
            keep = keep & (rows[None, :] >= offs_n[:, None])
        qk_t = tl.dot(k, tl.trans(q))
        p_t = tl.where(keep, tl.math.exp2(tl.fma(qk_t, qk_scale, -lse[None, :])), 0.0)
        dv += tl.dot(p_t.to(do.dtype), do)
        dp_t = tl.dot(v, tl.trans(do))
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q)

    share0 = (off_bh * SEQ_K + start_n) * HEAD_DIM  # this q head's rows of dk and dv
    tl.store(dk_ptr + share0 + kv_tile, (dk * sm_scale).to(dk_ptr.dtype.element_ty), mask=cols_ok)
    tl.store(dv_ptr + share0 + kv_tile, dv.to(dv_ptr.dtype.element_ty), mask=cols_ok)


@triton.autotune(configs=_bwd_configs("dq"), key=["SEQ_Q", "SEQ_K", "HEAD_DIM", "CAUSAL"])
@triton.jit
def _bwd_dq(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, sm_scale,
            HEADS_Q, GROUP, SEQ_Q, SEQ_K,
            HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr,
            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dQ of one block of queries of one q head. Contiguous (batch, heads, seq, head_dim)."""
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1).to(tl.int64)  # 64-bit offsets below
    off_bkv = _kv_head(off_bh, HEADS_Q, GROUP)

    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    rows_ok = rows[:, None] < SEQ_Q
    row0 = off_bh * SEQ_Q + start_m  # first query of this block
    q_off = row0 * HEAD_DIM + tl.arange(0, BLOCK_M)[:, None] * HEAD_DIM + offs_d[None, :]
    kv_tile = offs_n[None, :] * HEAD_DIM + offs_d[:, None]  # (HEAD_DIM, BLOCK_N)
    q = tl.load(q_ptr + q_off, mask=rows_ok, other=0.0)
    do = tl.load(do_ptr + q_off, mask=rows_ok, other=0.0)
    lse = tl.load(lse_ptr + row0 + tl.arange(0, BLOCK_M), mask=rows < SEQ_Q, other=0.0)
    delta = tl.load(delta_ptr + row0 + tl.arange(0, BLOCK_M), mask=rows < SEQ_Q, other=0.0)
    dq = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
    qk_scale = sm_scale * LOG2E

    end = SEQ_K
    if CAUSAL:
        end = tl.minimum(start_m + BLOCK_M, SEQ_K)
    for start_n in range(0, end, BLOCK_N):
        cols = start_n + offs_n
        key0 = off_bkv * SEQ_K + tl.cast(start_n, tl.int64)  # first key of this block
        cols_ok = cols[None, :] < SEQ_K
        k_t = tl.load(k_ptr + key0 * HEAD_DIM + kv_tile, mask=cols_ok, other=0.0)
        v_t = tl.load(v_ptr + key0 * HEAD_DIM + kv_tile, mask=cols_ok, other=0.0)
        keep = cols_ok & rows_ok
        if CAUSAL:
            keep = keep & (rows[:, None] >= cols[None, :])
        qk = tl.dot(q, k_t)
        p = tl.where(keep, tl.math.exp2(tl.fma(qk, qk_scale, -lse[:, None])), 0.0)
        dp = tl.dot(do, v_t)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k_t.dtype), tl.trans(k_t))

    tl.store(dq_ptr + q_off, (dq * sm_scale).to(dq_ptr.dtype.element_ty), mask=rows_ok)


def _check_qkv(q, k, v):
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v must be (batch, heads, seq, head_dim), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    batch, heads_q, _, head_dim = q.shape
    if k.shape != v.shape or k.shape[0] != batch or k.shape[3] != head_dim:
        raise ValueError(f"k and v must be (batch={batch}, heads_kv, seq_k, head_dim={head_dim}), "
                         f"got {tuple(k.shape)} and {tuple(v.shape)}")
    if heads_q % k.shape[1]:
        raise ValueError(f"q heads ({heads_q}) must be a multiple of kv heads ({k.shape[1]})")
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"head_dim {head_dim} not supported; supported: {HEAD_DIMS}")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"empty sequence: q {tuple(q.shape)}, k {tuple(k.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")


def attention_forward(q, k, v, causal: bool, sm_scale: float, scales=None, out_dtype=None):
    """Launch the forward; returns (out, lse). ``scales`` is a float32 (3,) tensor of the q, k,
    v dequantisation scales for FP8 inputs, else None."""
    if not sm_scale > 0:
        raise ValueError(f"sm_scale must be positive, got {sm_scale}: the kernel keeps the "
                         "running maximum of the scaled scores as the scaled maximum")
    batch, heads_q, seq_q, head_dim = q.shape
    heads_kv, seq_k = k.shape[1], k.shape[2]
    fp8 = q.dtype in FP8_DTYPES.values()
    out = torch.empty(q.shape, device=q.device, dtype=out_dtype or q.dtype)
    lse = torch.empty(batch * heads_q, seq_q, device=q.device, dtype=torch.float32)
    scales = lse if scales is None else scales  # never read without FP8

    def grid(meta):
        return (triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads_q)

    _attn_fwd[grid](q, k, v, out, lse, scales, sm_scale,
                    *q.stride(), *k.stride(), *v.stride(), *out.stride(),
                    heads_q, heads_q // heads_kv, seq_q, seq_k,
                    HEAD_DIM=head_dim, CAUSAL=bool(causal), FP8=fp8,
                    P_SHIFT=P_SHIFT if fp8 else 0.0)
    return out, lse


def attention_backward(q, k, v, out, lse, do, causal: bool, sm_scale: float):
    """Launch the three backward kernels; returns (dq, dk, dv). With grouped-query heads, dK
    and dV are first written as one float32 share per q head, then summed over each group
    (module docstring)."""
    q, k, v, out, do = (t.contiguous() for t in (q, k, v, out, do))
    batch, heads_q, seq_q, head_dim = q.shape
    heads_kv, seq_k = k.shape[1], k.shape[2]
    group = heads_q // heads_kv
    delta = torch.empty_like(lse)
    _bwd_preprocess[(triton.cdiv(seq_q, 64), batch * heads_q)](out, do, delta, seq_q,
                                                                HEAD_DIM=head_dim, BLOCK_M=64)
    dq = torch.empty_like(q)
    if group == 1:
        dk, dv = torch.empty_like(k), torch.empty_like(v)
    else:
        dk, dv = (torch.empty(q.shape[:2] + k.shape[2:], device=q.device, dtype=torch.float32)
                  for _ in range(2))
    _bwd_dkdv[lambda meta: (triton.cdiv(seq_k, meta["BLOCK_N"]), batch * heads_q)](
        q, k, v, do, lse, delta, dk, dv, sm_scale, heads_q, group, seq_q, seq_k,
        HEAD_DIM=head_dim, CAUSAL=bool(causal))
    if group > 1:
        dk, dv = (t.view(batch, heads_kv, group, seq_k, head_dim).sum(2).to(k.dtype)
                  for t in (dk, dv))
    _bwd_dq[lambda meta: (triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads_q)](
        q, k, v, do, lse, delta, dq, sm_scale, heads_q, group, seq_q, seq_k,
        HEAD_DIM=head_dim, CAUSAL=bool(causal))
    return dq, dk, dv


class FlashAttention(torch.autograd.Function):
    """Flash attention as an autograd function: the backward reuses the forward's
    log-sum-exp instead of storing the S x S probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, causal, sm_scale):
        out, lse = attention_forward(q, k, v, causal, sm_scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.sm_scale = causal, sm_scale
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = attention_backward(q, k, v, out, lse, do, ctx.causal, ctx.sm_scale)
        return dq, dk, dv, None, None


def triton_attention(q, k, v, *, causal: bool = False, sm_scale: float | None = None,
                     q_scale=None, k_scale=None, v_scale=None, out_dtype=None):
    """softmax(Q K^T * sm_scale [+ causal mask]) V, flash-attention style.

    q: (batch, heads_q, seq_q, head_dim); k, v: (batch, heads_kv, seq_k, head_dim), with
    heads_q a multiple of heads_kv (grouped-query attention). head_dim 16-128 (a power of
    two); any sequence lengths. The causal mask is aligned at the top left (query i sees keys
    0..i), as in ``scaled_dot_product_attention``. ``sm_scale`` (positive) defaults to
    1/sqrt(head_dim).

    BF16/FP16 inputs: differentiable (backward in Triton). FP8 inputs (float8_e4m3fn or
    float8_e5m2): forward only, with optional float32 tensor-wise dequantisation scales
    ``q_scale``, ``k_scale``, ``v_scale`` (positive, as amax scales are; default 1); the
    output is BF16 unless
    ``out_dtype`` says otherwise.
    """
    _check_qkv(q, k, v)
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(q.shape[-1])
    if q.dtype in FP8_DTYPES.values():
        if any(t.requires_grad for t in (q, k, v)):
            raise ValueError("FP8 attention is forward-only; the backward takes bf16/fp16")
        if q.shape[-1] < 32:
            raise ValueError(f"FP8 attention needs head_dim >= 32, got {q.shape[-1]}: FP8 "
                             "tensor-core dot products take an inner dimension of 32 or more")
        ones = torch.ones((), device=q.device, dtype=torch.float32)
        scales = torch.stack([(ones if s is None else s.to(torch.float32)).reshape(())
                              for s in (q_scale, k_scale, v_scale)])
        return attention_forward(q, k, v, causal, sm_scale, scales, out_dtype or torch.bfloat16)[0]
    if q.dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"triton_attention takes bf16, fp16 or fp8 inputs, got {q.dtype}")
    if any(s is not None for s in (q_scale, k_scale, v_scale)) or out_dtype not in (None, q.dtype):
        raise ValueError("scales and out_dtype apply to FP8 inputs only")
    return FlashAttention.apply(q, k, v, bool(causal), float(sm_scale))
