"""Float64 references and the error measure every check uses."""

from __future__ import annotations

import torch


def rel_fro_error(output, reference) -> float:
    """Relative Frobenius error ||out - ref|| / ||ref||, in float64.

    Tuples (e.g. the three gradients of attention) are compared as one concatenated vector.
    A non-finite output gives inf, never a pass.
    """
    if isinstance(output, (tuple, list)):
        if len(output) != len(reference):
            raise ValueError(f"{len(output)} outputs against {len(reference)} references")
        num = sum(float(torch.sum((o.double() - r.double()) ** 2)) for o, r in zip(output, reference))
        den = sum(float(torch.sum(r.double() ** 2)) for r in reference)
    else:
        if output.shape != reference.shape:
            raise ValueError(f"output shape {tuple(output.shape)} != reference {tuple(reference.shape)}")
        num = float(torch.sum((output.double() - reference.double()) ** 2))
        den = float(torch.sum(reference.double() ** 2))
    if not (num == num) or num == float("inf"):
        return float("inf")
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return (num / den) ** 0.5


def gemm_reference(a, b, scale_a=None, scale_b=None, rows=None) -> torch.Tensor:
    """(A * scale_a) @ (B * scale_b) in float64; ``rows`` restricts to some rows of the output."""
    a64 = a.double() if rows is None else a[rows].double()
    b64 = b.double()
    if scale_a is not None:
        sa = scale_a.double()
        if rows is not None and sa.dim() == 2 and sa.shape[0] > 1:
            sa = sa[rows]
        a64 = a64 * sa
    if scale_b is not None:
        b64 = b64 * scale_b.double()
    return a64 @ b64


def attention_reference(q, k, v, causal: bool, sm_scale: float, heads=None) -> torch.Tensor:
    """softmax(Q K^T * scale [+ causal mask]) V in float64, one head at a time.

    q: (B, Hq, Sq, D); k, v: (B, Hkv, Sk, D) with Hq a multiple of Hkv (grouped-query
    attention: q head h reads kv head h // (Hq // Hkv)). ``heads`` restricts to some q heads
    (the output then has only those heads) so large problems can be checked on a sample.
    """
    batch, heads_q, seq_q, _ = q.shape
    group = heads_q // k.shape[1]
    heads = range(heads_q) if heads is None else heads
    out = []
    for h in heads:
        qh = q[:, h].double()
        kh = k[:, h // group].double()
        vh = v[:, h // group].double()
        s = (qh @ kh.transpose(-1, -2)) * sm_scale
        if causal:
            mask = torch.ones(seq_q, kh.shape[1], dtype=torch.bool, device=q.device).triu(1)
            s = s.masked_fill(mask, float("-inf"))
        out.append(torch.softmax(s, dim=-1) @ vh)
    return torch.stack(out, dim=1)
