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
  Hoffmann et al. 2022), in ``scaling.model``.

Bytes are the minimal traffic: every input read once and every output written once.
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
