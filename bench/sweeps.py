"""The shapes the benchmark suite measures.

``quick`` is a handful of sizes per kernel that finishes in a few minutes on a 2-core CPU.
``full`` is what a GPU user wants: square GEMMs 1024..16384, the GEMMs of Llama 3 layers under
tensor parallelism, and attention at 1k..16k context with Llama 3's head layout. Both add the
mixture-of-experts cases of `bench.moe_cases` (Llama 4 and DeepSeek-V3 experts, dispatch and
combine; a few small ones in ``quick``).

Both also measure the streaming scale (`kernels.stream`), the device's memory bandwidth, at
arrays far past the last-level cache on a GPU (`stream_cases`).

Llama 3 dimensions (Llama 3 paper, arXiv 2407.21783, Table 3):
8B: d_model 4096, d_ffn 14336, 32 q heads, 8 kv heads; 70B: 8192, 28672, 64, 8;
405B: 16384, 53248, 128, 8; head_dim 128. Llama 3 trained with tensor parallelism of 8
within a node, so each GPU holds 1/8 of every projection: the shapes below are per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench import moe_cases

LLAMA3 = {
    "8b": {"d_model": 4096, "d_ffn": 14336, "heads_q": 32, "heads_kv": 8},
    "70b": {"d_model": 8192, "d_ffn": 28672, "heads_q": 64, "heads_kv": 8},
    "405b": {"d_model": 16384, "d_ffn": 53248, "heads_q": 128, "heads_kv": 8},
}
TENSOR_PARALLEL = 8
TOKENS_PER_MICROBATCH = 8192  # one 8k-token sequence, Llama 3's pre-training context
HEAD_DIM = 128

SWEEPS = ("quick", "full")


@dataclass(frozen=True)
class Case:
    """One problem of the sweep: a kernel family and the builder's arguments."""

    kernel: str
    kwargs: dict = field(hash=False)
    label: str = ""  # e.g. "llama3-405b ffn-up" for shapes taken from a model


def llama_gemms(tokens: int = TOKENS_PER_MICROBATCH, tp: int = TENSOR_PARALLEL) -> list[tuple]:
    """(m, n, k, label) per Llama 3 model: the fused QKV projection (N = 3 d_model / tp, as a
    dense-attention model would have it), the MLP up projection (N = d_ffn / tp) and the MLP
    down projection (K = d_ffn / tp)."""
    shapes = []
    for name, dims in LLAMA3.items():
        d, f = dims["d_model"], dims["d_ffn"]
        shapes.append((tokens, 3 * d // tp, d, f"llama3-{name} qkv"))
        shapes.append((tokens, f // tp, d, f"llama3-{name} ffn-up"))
        shapes.append((tokens, d, f // tp, f"llama3-{name} ffn-down"))
    return shapes


def _gemm_cases(sizes, llama: bool, scalings=("tensorwise", "rowwise"),
                accumulations=("precise-accum", "fast-accum")) -> list[Case]:
    """BF16 and FP8 GEMMs (with the given FP8 scalings and accumulation modes: each mode is
    its own problem, timed for torch and Triton alike) at square sizes and, with ``llama``, at
    Llama 3 shapes."""
    shapes = [(s, s, s, "") for s in sizes] + (llama_gemms() if llama else [])
    cases = []
    for m, n, k, label in shapes:
        cases.append(Case("gemm", {"m": m, "n": n, "k": k, "dtype": "bf16"}, label))
        for scaling in scalings:
            for accumulation in accumulations:
                cases.append(Case("gemm", {"m": m, "n": n, "k": k, "dtype": "fp8_e4m3",
                                           "variant": f"{scaling}-{accumulation}"}, label))
    return cases


def _attention_cases(shapes, directions=("fwd", "bwd"), fp8=True) -> list[Case]:
    cases = []
    for batch, heads_q, heads_kv, seq, head_dim, causal, label in shapes:
        base = {"batch": batch, "heads_q": heads_q, "heads_kv": heads_kv, "seq": seq,
                "head_dim": head_dim, "causal": causal}
        for direction in directions:
            cases.append(Case("attention", {**base, "dtype": "bf16", "direction": direction}, label))
        if fp8:
            cases.append(Case("attention", {**base, "dtype": "fp8_e4m3", "direction": "fwd"}, label))
    return cases


# Elements per array of the streaming scale. On a GPU from 2^26 (128 MiB of bf16 per array,
# past the A100's 40 MB and the H100's 50 MB of L2, NVIDIA's architecture whitepapers) to
# 2^29 (1 GiB per array, past any cache), where the rate is the memory's own; on a CPU a few
# sizes that take milliseconds.
STREAM_ELEMENTS = {"cpu": (1 << 20, 1 << 22, 1 << 24),
                   "quick": (1 << 26, 1 << 28),
                   "full": (1 << 26, 1 << 27, 1 << 28, 1 << 29)}


def stream_cases(sizes, dtypes=("bf16",)) -> list[Case]:
    return [Case("stream", {"n": n, "dtype": dtype}) for dtype in dtypes for n in sizes]


def quick(device_type: str = "cpu") -> list[Case]:
    """A few sizes per kernel. On a CPU, tensor-wise FP8 runs at 128^3 only: torch's CPU
    ``_scaled_mm`` with tensor-wise scales takes seconds at 256^3 (about 40x its row-wise
    path, measured with torch 2.13), which alone would take the sweep past its few minutes;
    and FP8 runs with precise accumulation only (the tensor cores' accumulation modes are a
    GPU matter)."""
    if device_type == "cpu":
        gemm = _gemm_cases([256, 512, 1024], llama=False, scalings=("rowwise",),
                           accumulations=("precise-accum",))
        gemm.append(Case("gemm", {"m": 128, "n": 128, "k": 128, "dtype": "fp8_e4m3",
                                  "variant": "tensorwise-precise-accum"}))
    else:
        gemm = _gemm_cases([256, 512, 1024], llama=False)
    attention = _attention_cases([
        (1, 8, 8, 256, 64, False, ""),
        (1, 8, 8, 512, 64, True, ""),
        (1, 16, 2, 1024, 128, True, "grouped-query"),
    ])
    stream = stream_cases(STREAM_ELEMENTS["cpu" if device_type == "cpu" else "quick"])
    return (gemm + attention + [Case(*case) for case in moe_cases.quick(device_type)]
            + stream)


def full() -> list[Case]:
    gemm = _gemm_cases([1024, 2048, 4096, 8192, 16384], llama=True)
    # Llama 3 405B per GPU under TP 8: 16 q heads and 1 kv head, 16k tokens per micro-batch.
    heads_q = LLAMA3["405b"]["heads_q"] // TENSOR_PARALLEL
    heads_kv = max(1, LLAMA3["405b"]["heads_kv"] // TENSOR_PARALLEL)
    shapes = []
    for seq in (1024, 2048, 4096, 8192, 16384):
        batch = max(1, 16384 // seq)
        shapes.append((batch, heads_q, heads_kv, seq, HEAD_DIM, True, "llama3-405b tp8"))
        shapes.append((batch, heads_q, heads_q, seq, HEAD_DIM, False, ""))
    shapes.append((16384 // 4096, 16, 16, 4096, 64, True, "head_dim 64"))
    return (gemm + _attention_cases(shapes) + [Case(*case) for case in moe_cases.full()]
            + stream_cases(STREAM_ELEMENTS["full"], dtypes=("bf16", "fp32")))


def sweep(name: str, device_type: str = "cpu") -> list[Case]:
    if name == "quick":
        return quick(device_type)
    if name == "full":
        return full()
    raise ValueError(f"unknown sweep '{name}'; known: {', '.join(SWEEPS)}")
