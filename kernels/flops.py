"""FLOP and byte counts: the project's counting conventions, stated once.

Conventions (DESIGN.md, "FLOP counting"):

* matmul: ``2*M*N*K`` (one multiply and one add per term of each dot product).
* attention forward: ``4*B*H*Sq*Sk*D`` (two matmuls, Q K^T and P V, of 2*Sq*Sk*D each, per
  head), halved when causal with Sq == Sk. This is the count FlashAttention's benchmarks use
  (Dao et al. 2022, 2023); softmax exponentials are not counted.
* attention backward: 2.5x the forward: five matmuls (S = Q K^T recomputed, dV = P^T dO,
  dP = dO V^T, dQ = dS K, dK = dS^T Q) against the forward's two, as FlashAttention-2's
  benchmark counts it.
* training step of a dense transformer: ``6*N*D`` plus the attention term (Kaplan et al. 2020;
  Hoffmann et al. 2022), in ``scaling.model.config``.
* grouped GEMM (mixture-of-experts experts): ``2 * sum_g rows_g * N * K``, the matmul count
  summed over the groups; the forward (Y_g = X_g W_g) and both backward GEMMs (dX_g = dY_g W_g^T,
  dW_g = X_g^T dY_g) each do that many.
* token dispatch (the permutation into expert order): no FLOPs, it only moves data.
* token combine: ``2 * T * top_k * D``, one multiply and one add per element of each of a
  token's top_k expert outputs (the weighting by the routing weights; the matmul convention).
* stream scale (y = c * x, STREAM's "scale" kernel): ``n``, one multiply per element; its
  bytes, one read and one write of every element, are what it measures.

Bytes are the minimal traffic: every input read once and every output written once.
For the grouped GEMM, an empty group's weights and scales are not counted (a kernel need not
read them), while dW of an empty group is (its zeros must be written). Routing indices,
group offsets and routing weights are 4-byte (int32, float32) arrays.
This module is plain Python so both halves of flopcast can use it without torch.
"""

from __future__ import annotations

# Bytes per element for the dtype names used in records.
DTYPE_BYTES = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype '{dtype}'; known: {', '.join(DTYPE_BYTES)}") from None


def _positive(**dims: int) -> None:
    for name, value in dims.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def gemm_flops(m: int, n: int, k: int) -> int:
    """FLOPs of C[M,N] = A[M,K] @ B[K,N]: 2*M*N*K."""
    _positive(m=m, n=n, k=k)
    return 2 * m * n * k


def gemm_bytes(m: int, n: int, k: int, in_dtype: str, out_dtype: str, scale_elems: int = 0) -> int:
    """Minimal bytes: A and B read once, C written once, plus float32 scales if any."""
    _positive(m=m, n=n, k=k)
    return (m * k + k * n) * dtype_bytes(in_dtype) + m * n * dtype_bytes(out_dtype) + 4 * scale_elems


def attention_fwd_flops(batch: int, heads_q: int, seq_q: int, seq_k: int, head_dim: int,
                        causal: bool) -> int:
    """FLOPs of one attention forward: 4*B*H*Sq*Sk*D, halved when causal (Sq == Sk)."""
    _positive(batch=batch, heads_q=heads_q, seq_q=seq_q, seq_k=seq_k, head_dim=head_dim)
    if causal and seq_q != seq_k:
        raise ValueError(f"causal attention needs seq_q == seq_k, got {seq_q} and {seq_k}")
    flops = 4 * batch * heads_q * seq_q * seq_k * head_dim
    return flops // 2 if causal else flops


def attention_bwd_flops(batch: int, heads_q: int, seq_q: int, seq_k: int, head_dim: int,
                        causal: bool) -> int:
    """FLOPs of one attention backward: 2.5x the forward."""
    return attention_fwd_flops(batch, heads_q, seq_q, seq_k, head_dim, causal) * 5 // 2


def attention_fwd_bytes(batch: int, heads_q: int, heads_kv: int, seq_q: int, seq_k: int,
                        head_dim: int, dtype: str, out_dtype: str | None = None) -> int:
    """Minimal bytes of the forward: Q, K, V read once, O written once."""
    _positive(batch=batch, heads_q=heads_q, heads_kv=heads_kv, seq_q=seq_q, seq_k=seq_k,
              head_dim=head_dim)
    q = batch * heads_q * seq_q * head_dim
    kv = 2 * batch * heads_kv * seq_k * head_dim
    return (q + kv) * dtype_bytes(dtype) + q * dtype_bytes(out_dtype or dtype)


def attention_bwd_bytes(batch: int, heads_q: int, heads_kv: int, seq_q: int, seq_k: int,
                        head_dim: int, dtype: str) -> int:
    """Minimal bytes of the backward: Q, K, V, O, dO read, dQ, dK, dV written, plus the
    float32 row statistics (log-sum-exp) of the forward."""
    _positive(batch=batch, heads_q=heads_q, heads_kv=heads_kv, seq_q=seq_q, seq_k=seq_k,
              head_dim=head_dim)
    q = batch * heads_q * seq_q * head_dim
    kv = 2 * batch * heads_kv * seq_k * head_dim
    elems = 3 * q + kv + q + kv  # read q, o, do, k, v; write dq, dk, dv
    return elems * dtype_bytes(dtype) + 4 * batch * heads_q * seq_q


# Routing metadata: expert ids, destination rows and group offsets are int32 (what
# ``torch._grouped_mm`` takes as ``offs``); routing weights are float32.
INDEX_BYTES = 4
ROUTING_WEIGHT_BYTES = 4


def _group_rows(group_rows) -> tuple[int, ...]:
    rows = tuple(group_rows)
    if not rows:
        raise ValueError("a grouped GEMM needs at least one group")
    for i, r in enumerate(rows):
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            raise ValueError(f"rows of group {i} must be a non-negative integer, got {r!r}")
    if sum(rows) == 0:
        raise ValueError("every group is empty: there is nothing to multiply")
    return rows


def grouped_gemm_flops(group_rows, n: int, k: int) -> int:
    """FLOPs of Y_g[rows_g, N] = X_g[rows_g, K] @ W_g[K, N] over all groups:
    2 * sum(rows_g) * N * K (the same for dX_g and dW_g of that forward)."""
    rows = _group_rows(group_rows)
    _positive(n=n, k=k)
    return 2 * sum(rows) * n * k


def grouped_gemm_bytes(group_rows, n: int, k: int, in_dtype: str, out_dtype: str, *,
                       reduce_over_rows: bool = False, scaled: bool = False) -> int:
    """Minimal bytes of a grouped GEMM over ``group_rows`` (M = their sum), plus the int32 group
    offsets.

    Rows grouped (forward and dX): X[M, K] and the K x N matrix of every non-empty group read,
    Y[M, N] written; FP8 (``scaled``) adds one float32 scale per row of X and per column of
    each non-empty group's matrix. Reduced over rows (dW): X[M, K] and dY[M, N] read, every
    group's dW_g[K, N] written; FP8 adds K + N float32 scales per non-empty group.
    """
    rows = _group_rows(group_rows)
    _positive(n=n, k=k)
    m, groups = sum(rows), len(rows)
    used = sum(1 for r in rows if r)
    size_in, size_out = dtype_bytes(in_dtype), dtype_bytes(out_dtype)
    if reduce_over_rows:
        moved = (m * k + m * n) * size_in + groups * k * n * size_out
        scales = used * (k + n) if scaled else 0
    else:
        moved = (m * k + used * k * n) * size_in + m * n * size_out
        scales = (m + used * n) if scaled else 0
    return moved + 4 * scales + INDEX_BYTES * groups


def _routing(tokens: int, d_model: int, top_k: int, experts: int) -> None:
    _positive(tokens=tokens, d_model=d_model, top_k=top_k, experts=experts)
    if top_k > experts:
        raise ValueError(f"top_k {top_k} exceeds the {experts} experts")


def moe_dispatch_bytes(tokens: int, d_model: int, top_k: int, experts: int, dtype: str) -> int:
    """Minimal bytes of the dispatch: each token's row read once and written top_k times (into
    expert order), the int32 expert ids read, each assignment's int32 destination row and the
    int32 group offsets written."""
    _routing(tokens, d_model, top_k, experts)
    size = dtype_bytes(dtype)
    rows = tokens * top_k
    return (tokens * d_model + rows * d_model) * size + INDEX_BYTES * (2 * rows + experts)


def moe_combine_bytes(tokens: int, d_model: int, top_k: int, dtype: str) -> int:
    """Minimal bytes of the combine: the tokens * top_k expert-output rows, their int32 rows
    and float32 routing weights read, one row per token written."""
    _positive(tokens=tokens, d_model=d_model, top_k=top_k)
    size = dtype_bytes(dtype)
    rows = tokens * top_k
    return (rows * d_model + tokens * d_model) * size + (INDEX_BYTES + ROUTING_WEIGHT_BYTES) * rows


def moe_combine_flops(tokens: int, d_model: int, top_k: int) -> int:
    """FLOPs of the combine: 2 * T * top_k * D (a multiply and an add per weighted element)."""
    _positive(tokens=tokens, d_model=d_model, top_k=top_k)
    return 2 * tokens * top_k * d_model


def stream_flops(n: int) -> int:
    """FLOPs of y[n] = c * x[n]: one multiply per element."""
    _positive(n=n)
    return n


def stream_bytes(n: int, dtype: str) -> int:
    """Bytes of y[n] = c * x[n]: x read once, y written once."""
    _positive(n=n)
    return 2 * n * dtype_bytes(dtype)
