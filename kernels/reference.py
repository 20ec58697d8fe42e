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


def _group_ends(group_rows, device) -> torch.Tensor:
    return torch.tensor(group_rows, device=device).cumsum(0)


def grouped_rows_reference(a, b, group_rows, scale_a=None, scale_b=None, rows=None):
    """Rows grouped, in float64: row r of group g is (A[r] * scale_a[r]) @ (B[g] * scale_b[g]).

    a (M, K) with the groups' rows one after another, b (G, K, N); ``scale_a`` (M,) and
    ``scale_b`` (G, N) are row-wise FP8 dequantisation scales. ``rows`` restricts the result to
    some rows (a sorted index tensor).
    """
    groups = len(group_rows)
    rows = torch.arange(a.shape[0], device=a.device) if rows is None else rows
    group_of = torch.searchsorted(_group_ends(group_rows, a.device), rows, right=True)
    out = torch.empty(len(rows), b.shape[2], dtype=torch.float64, device=a.device)
    for g in group_of.unique().tolist():
        pick = group_of == g
        a64 = a[rows[pick]].double()
        b64 = b[g].double()
        if scale_a is not None:
            a64 = a64 * scale_a.reshape(-1)[rows[pick]].double()[:, None]
            b64 = b64 * scale_b.reshape(groups, -1)[g].double()[None, :]
        out[pick] = a64 @ b64
    return out


def grouped_reduce_reference(a, b, group_rows, scale_a=None, scale_b=None, out_rows=None,
                             chunk_rows: int = 16384):
    """Reduced over each group's rows, in float64: C[g] = (A[:, rows of g] * scale_a[g]) @
    (B[rows of g] * scale_b[g]), so an empty group gives zeros.

    a (K, M), b (M, N); ``scale_a`` (G * K,) and ``scale_b`` (G * N,) are per group row-wise FP8
    scales. ``out_rows`` restricts the result to some rows of each C[g]. The float64 products
    are summed ``chunk_rows`` rows at a time, so a group of 10^5 rows is checked without
    holding it in float64 at once.
    """
    groups, k, n = len(group_rows), a.shape[0], b.shape[1]
    out_rows = torch.arange(k, device=a.device) if out_rows is None else out_rows
    out = torch.zeros(groups, len(out_rows), n, dtype=torch.float64, device=a.device)
    start = 0
    for g, count in enumerate(group_rows):
        for s in range(start, start + count, chunk_rows):
            e = min(s + chunk_rows, start + count)
            out[g] += a[out_rows, s:e].double() @ b[s:e].double()
        if scale_a is not None:
            out[g] *= scale_a.reshape(groups, k)[g, out_rows].double()[:, None]
            out[g] *= scale_b.reshape(groups, n)[g].double()[None, :]
        start += count
    return out
