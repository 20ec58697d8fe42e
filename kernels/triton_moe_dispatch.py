"""Triton token dispatch and combine for mixture-of-experts layers.

**Dispatch** permutes tokens into expert order: each of a token's top-k expert choices (an
*assignment*, numbered token * top_k + slot) gets one row of the output, experts one after
another, and within an expert in assignment order (the order a stable sort by expert gives,
so the result is deterministic and equal to ``torch.argsort(ids, stable=True)``'s). It returns
the permuted rows, each assignment's destination row (for the combine) and the cumulative
group ends ``offs`` that the grouped GEMM takes. Four launches, no atomics:

1. ``_count_kernel``: per chunk of CHUNK assignments, how many go to each expert
   (``tl.histogram``).
2. ``_scan_kernel`` (one program): expert totals -> ``offs``; then, per chunk and expert, the
   first destination row: the expert's start plus the counts of the chunks before (a running
   ``tl.cumsum`` down the chunks), written over the counts.
3. ``_rank_kernel``: per chunk, each assignment's row = its chunk's base for its expert plus
   the number of earlier assignments of the chunk to the same expert (a one-hot
   SUB x experts tile and ``tl.cumsum``, SUB assignments at a time).
4. ``_scatter_rows_kernel``: each token's row is read once and written to its top_k rows.

**Combine** is the inverse with the routing weights: out[t] = sum_j w[t, j] * y[row[t, j]],
accumulated in float32 and written in y's dtype. Each program gathers the top_k rows of a block
of tokens, so there is no scatter-add and no atomics.

Row offsets are 64-bit (512k routed rows of 7168 pass 2^31 elements).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_support import interpreting

# Experts are one vector per program (one-hot tiles, histograms); at most this many.
MAX_EXPERTS = 1024


def _sizes() -> dict:
    """Chunk and tile sizes: small under the interpreter (so a test of a few hundred
    assignments crosses chunks and sub-blocks), GPU-sized otherwise."""
    if interpreting():
        return {"CHUNK": 32, "SUB": 8, "SCAN_ROWS": 4}
    return {"CHUNK": 1024, "SUB": 32, "SCAN_ROWS": 32}


def _copy_configs() -> list:
    """Row-copy tiles (BLOCK_T tokens x BLOCK_D features); memory-bound, so wide rows."""
    if interpreting():
        return [triton.Config({"BLOCK_T": 4, "BLOCK_D": 32}, num_warps=4)]
    return [triton.Config({"BLOCK_T": t, "BLOCK_D": d}, num_warps=w)
            for t, d, w in ((1, 2048, 4), (4, 1024, 4), (8, 512, 4), (16, 512, 8))]


@triton.jit
def _count_kernel(ids_ptr, counts_ptr, n, CHUNK: tl.constexpr, BLOCK_E: tl.constexpr):
    c = tl.program_id(axis=0)
    a = c * CHUNK + tl.arange(0, CHUNK)
    valid = a < n
    ids = tl.load(ids_ptr + a, mask=valid, other=0)
    counts = tl.histogram(ids, BLOCK_E, mask=valid)
    tl.store(counts_ptr + c * BLOCK_E + tl.arange(0, BLOCK_E), counts)


@triton.jit
def _scan_kernel(counts_ptr, offs_ptr, chunks, E, BLOCK_E: tl.constexpr,
                 SCAN_ROWS: tl.constexpr):
    e = tl.arange(0, BLOCK_E)
    totals = tl.zeros((BLOCK_E,), dtype=tl.int32)
    for c0 in range(0, chunks, SCAN_ROWS):
        c = c0 + tl.arange(0, SCAN_ROWS)
        ptrs = counts_ptr + c[:, None] * BLOCK_E + e[None, :]
        totals += tl.sum(tl.load(ptrs, mask=c[:, None] < chunks, other=0), axis=0)
    ends = tl.cumsum(totals, axis=0)
    tl.store(offs_ptr + e, ends, mask=e < E)
    running = ends - totals  # each expert's first row
    for c0 in range(0, chunks, SCAN_ROWS):
        c = c0 + tl.arange(0, SCAN_ROWS)
        ptrs = counts_ptr + c[:, None] * BLOCK_E + e[None, :]
        inside = c[:, None] < chunks
        counts = tl.load(ptrs, mask=inside, other=0)
        tl.store(ptrs, running[None, :] + tl.cumsum(counts, axis=0) - counts, mask=inside)
        running += tl.sum(counts, axis=0)


@triton.jit
def _rank_kernel(ids_ptr, bases_ptr, rows_ptr, n, CHUNK: tl.constexpr, SUB: tl.constexpr,
                 BLOCK_E: tl.constexpr):
    c = tl.program_id(axis=0)
    e = tl.arange(0, BLOCK_E)
    base = tl.load(bases_ptr + c * BLOCK_E + e)  # next free row of each expert
    for s in range(0, CHUNK, SUB):
        a = c * CHUNK + s + tl.arange(0, SUB)
        valid = a < n
        ids = tl.load(ids_ptr + a, mask=valid, other=-1)  # -1 matches no expert
        onehot = (ids[:, None] == e[None, :]).to(tl.int32)
        earlier = tl.cumsum(onehot, axis=0) - onehot
        rows = tl.sum(onehot * (earlier + base[None, :]), axis=1)
        tl.store(rows_ptr + a, rows, mask=valid)
        base += tl.sum(onehot, axis=0)


@triton.jit
def _token_tile(T, D, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's BLOCK_T tokens and BLOCK_D features, and which of them exist."""
    t = tl.program_id(axis=0) * BLOCK_T + tl.arange(0, BLOCK_T)
    d = tl.program_id(axis=1) * BLOCK_D + tl.arange(0, BLOCK_D)
    in_t = t < T
    return t, d, in_t, in_t[:, None] & (d[None, :] < D)


@triton.jit
def _scatter_rows_kernel(x_ptr, rows_ptr, out_ptr, T, D, stride_xt, stride_xd, stride_ot,
                         stride_od, TOP_K: tl.constexpr, BLOCK_T: tl.constexpr,
                         BLOCK_D: tl.constexpr):
    t, d, in_t, mask = _token_tile(T, D, BLOCK_T, BLOCK_D)
    tile = tl.load(x_ptr + t.to(tl.int64)[:, None] * stride_xt + d[None, :] * stride_xd,
                   mask=mask)
    for j in tl.static_range(TOP_K):
        row = tl.load(rows_ptr + t * TOP_K + j, mask=in_t, other=0).to(tl.int64)
        tl.store(out_ptr + row[:, None] * stride_ot + d[None, :] * stride_od, tile, mask=mask)


@triton.jit
def _combine_kernel(y_ptr, rows_ptr, w_ptr, out_ptr, T, D, stride_yr, stride_yd, stride_ot,
                    stride_od, TOP_K: tl.constexpr, BLOCK_T: tl.constexpr,
                    BLOCK_D: tl.constexpr):
    t, d, in_t, mask = _token_tile(T, D, BLOCK_T, BLOCK_D)
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    for j in range(TOP_K):  # a loop, not unrolled: one gathered tile in registers at a time
        row = tl.load(rows_ptr + t * TOP_K + j, mask=in_t, other=0).to(tl.int64)
        weight = tl.load(w_ptr + t * TOP_K + j, mask=in_t, other=0.0)
        y = tl.load(y_ptr + row[:, None] * stride_yr + d[None, :] * stride_yd, mask=mask,
                    other=0.0)
        acc += weight[:, None] * y.to(tl.float32)
    tl.store(out_ptr + t.to(tl.int64)[:, None] * stride_ot + d[None, :] * stride_od,
             acc.to(out_ptr.dtype.element_ty), mask=mask)


_scatter_rows = triton.autotune(configs=_copy_configs(), key=["T", "D", "TOP_K"])(
    _scatter_rows_kernel)
_combine = triton.autotune(configs=_copy_configs(), key=["T", "D", "TOP_K"])(_combine_kernel)


def _copy_grid(tokens: int, d_model: int):
    def grid(meta):
        return (triton.cdiv(tokens, meta["BLOCK_T"]), triton.cdiv(d_model, meta["BLOCK_D"]))

    return grid


def _check_routing(x: torch.Tensor, table: torch.Tensor, name: str) -> tuple[int, int]:
    if x.dim() != 2 or table.dim() != 2:
        raise ValueError(f"expected 2-D rows and a 2-D (tokens, top_k) {name}, got "
                         f"{tuple(x.shape)} and {tuple(table.shape)}")
    if x.device != table.device:
        raise ValueError(f"rows on {x.device} but {name} on {table.device}")
    if table.dtype != torch.int32:
        raise ValueError(f"{name} must be int32, got {table.dtype}")
    return table.shape


def triton_dispatch(x: torch.Tensor, topk_ids: torch.Tensor, experts: int):
    """Permute the rows of ``x`` (T, D) into expert order by ``topk_ids`` (T, top_k) int32.

    Returns ``(permuted, rows, offs)``: permuted (T * top_k, D), experts one after another;
    rows (T, top_k) int32, where assignment (t, j) went; offs (experts,) int32, the cumulative
    group ends. Expert ids must lie in [0, experts).
    """
    tokens, top_k = _check_routing(x, topk_ids, "topk_ids")
    if x.shape[0] != tokens:
        raise ValueError(f"{x.shape[0]} rows but {tokens} rows of expert ids")
    if not 1 <= experts <= MAX_EXPERTS:
        raise ValueError(f"dispatch takes 1 to {MAX_EXPERTS} experts, got {experts}")
    sizes = _sizes()
    n = tokens * top_k
    ids = topk_ids.contiguous()
    block_e = triton.next_power_of_2(experts)
    chunks = triton.cdiv(n, sizes["CHUNK"])
    bases = torch.empty(chunks, block_e, device=x.device, dtype=torch.int32)
    offs = torch.empty(experts, device=x.device, dtype=torch.int32)
    rows = torch.empty(tokens, top_k, device=x.device, dtype=torch.int32)
    out = torch.empty(n, x.shape[1], device=x.device, dtype=x.dtype)
    _count_kernel[(chunks,)](ids, bases, n, CHUNK=sizes["CHUNK"], BLOCK_E=block_e)
    _scan_kernel[(1,)](bases, offs, chunks, experts, BLOCK_E=block_e,
                       SCAN_ROWS=sizes["SCAN_ROWS"])
    _rank_kernel[(chunks,)](ids, bases, rows, n, CHUNK=sizes["CHUNK"], SUB=sizes["SUB"],
                            BLOCK_E=block_e)
    _scatter_rows[_copy_grid(tokens, x.shape[1])](
        x, rows, out, tokens, x.shape[1], x.stride(0), x.stride(1), out.stride(0), out.stride(1),
        TOP_K=top_k)
    return out, rows, offs


def triton_combine(y: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """out[t] = sum_j weights[t, j] * y[rows[t, j]]: (T, D) in y's dtype, float32 sums.

    ``rows`` (T, top_k) int32 as `triton_dispatch` returns it; ``weights`` (T, top_k) float32.
    """
    tokens, top_k = _check_routing(y, rows, "rows")
    if weights.shape != rows.shape or weights.dtype != torch.float32:
        raise ValueError(f"weights must be float32 of shape {tuple(rows.shape)}, got "
                         f"{weights.dtype} {tuple(weights.shape)}")
    out = torch.empty(tokens, y.shape[1], device=y.device, dtype=y.dtype)
    _combine[_copy_grid(tokens, y.shape[1])](
        y, rows.contiguous(), weights.contiguous(), out, tokens, y.shape[1], y.stride(0),
        y.stride(1), out.stride(0), out.stride(1), TOP_K=top_k)
    return out
