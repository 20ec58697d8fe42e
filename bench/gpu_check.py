"""One command that checks the Triton kernels on a CUDA GPU and says whether they meet their
performance targets:

    python -m bench.gpu_check            # table
    python -m bench.gpu_check --json     # machine-readable

Every case is checked against its float64 reference (the spec's tolerance, DESIGN.md) at a
large shape before it is timed; a wrong kernel is reported as failed, never timed. Times are
medians from `bench.timing.time_call`. Each Triton row is compared with the rows it should
beat (the fastest of the registry's baselines at its shape: cuBLAS for GEMMs, each of
SDPA's backends for attention; or the BF16 Triton kernel for FP8), and flopcast's performance
targets for its Triton kernels are evaluated on an H100 SXM's terms:

* BF16 GEMM at 8192^3: at least 0.9x ``torch.matmul`` (cuBLAS).
* FP8 GEMM at 8192^3: at least 0.9x ``torch._scaled_mm``, and at least 1.6x the BF16 Triton GEMM.
* Attention forward, BF16, head_dim 128, 16k tokens, causal: at least 400 TFLOP/s
  (FlashAttention-2 reaches ~370 on H100 (Dao 2023); FlashAttention-3 ~650 (Shah et al. 2024)).
* FP8 attention forward faster than BF16 at that shape.

The mixture-of-experts kernels (grouped GEMM, dispatch, combine) are checked and timed beside
their torch baselines too; flopcast sets no targets for them.

Exit status: 0 when every kernel is correct, 1 when one is wrong or fails to run (or, with
``--strict``, when a target is missed), 2 when there is no CUDA GPU.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import torch
import triton

from bench.timing import time_call
from kernels import registry
from kernels.spec import CorrectnessError
from kernels.triton_support import interpreting
from scaling.output import format_table, print_json
from scaling.schema import compare_with_fastest, rate

# Attention shapes: 16 heads of 128 (a 2048-wide model, FlashAttention's benchmark layout);
# Llama 3 405B under tensor parallelism 8 has 16 q heads and 1 kv head per GPU
# (bench/sweeps.py). The backward runs at 8k: its float64 check keeps every head's S x S
# matrices, ~17 GB at 8k but ~70 GB at 16k.
LONG, BWD_SEQ = 16384, 8192


@dataclass(frozen=True)
class Case:
    """One row: implementation ``impl`` of ``kernel`` built with ``kwargs``; ``versus`` names
    the rows it is compared with (speedup = the fastest of those rows' times / this row's)."""

    id: str
    kernel: str
    impl: str
    kwargs: dict = field(hash=False)
    versus: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    text: str
    row: str
    threshold: float
    versus: str | None = None  # a speedup over this row; None: the row's TFLOP/s
    strictly: bool = False  # "faster than": the value must exceed the threshold


def _beside_baselines(prefix, kernel, kw):
    """A row per baseline of ``kernel`` (the registry's), then the Triton row against them."""
    base = [Case(f"{prefix}/{impl}", kernel, impl, kw) for impl in registry.baselines(kernel)]
    return base + [Case(f"{prefix}/triton", kernel, "triton", kw,
                        versus=tuple(c.id for c in base))]


def _gemm(prefix, m, n, k, dtype, variant=""):
    return _beside_baselines(prefix, "gemm", {"m": m, "n": n, "k": k, "dtype": dtype,
                                              "variant": variant})


def _attention(prefix, batch, heads_q, heads_kv, seq, head_dim, causal, direction="fwd"):
    kw = {"batch": batch, "heads_q": heads_q, "heads_kv": heads_kv, "seq": seq,
          "head_dim": head_dim, "causal": causal, "direction": direction}
    cases = _beside_baselines(prefix, "attention", {**kw, "dtype": "bf16"})
    if direction == "fwd":
        cases.append(Case(f"{prefix}/triton-fp8", "attention", "triton",
                          {**kw, "dtype": "fp8_e4m3"}, versus=(f"{prefix}/triton",)))
    return cases


CASES: list[Case] = [
    *_gemm("gemm-bf16-8192", 8192, 8192, 8192, "bf16"),
    *_gemm("gemm-fp8-tensorwise-8192", 8192, 8192, 8192, "fp8_e4m3", "tensorwise"),
    *_gemm("gemm-fp8-rowwise-8192", 8192, 8192, 8192, "fp8_e4m3", "rowwise"),
    # Llama 3 405B MLP up projection per GPU under TP 8, one 8k-token sequence (bench/sweeps.py).
    *_gemm("gemm-bf16-llama3-405b-ffn-up", 8192, 53248 // 8, 16384, "bf16"),
    *_attention("attn-fwd-d128-16k-causal", 1, 16, 16, LONG, 128, True),
    *_attention("attn-fwd-d128-16k-causal-llama3-405b-tp8", 1, 16, 1, LONG, 128, True),
    *_attention("attn-fwd-d64-16k-causal", 1, 32, 32, LONG, 64, True),
    *_attention("attn-bwd-d128-8k-causal", 1, 16, 16, BWD_SEQ, 128, True, "bwd"),
]


def _moe(prefix, kernel, kwargs):
    return [Case(f"{prefix}/torch", kernel, "torch", kwargs),
            Case(f"{prefix}/triton", kernel, "triton", kwargs, versus=(f"{prefix}/torch",))]


# Mixture of experts (bench/moe_cases.py): DeepSeek-V3's layer on one GPU of its 64-way expert
# parallelism at 16k tokens, top-8 (128k routed rows on 4 experts, Zipf-skewed), the three GEMMs
# of the fused gate/up projection in BF16 and FP8, and at 64k tokens, where X and X^T hold more
# than 2^31 elements (the kernels' 64-bit offsets); Llama 4 Maverick's 16 experts per GPU with
# a steep skew that leaves three of them empty; dispatch and combine over all 256 experts.
_V3 = {"tokens": 16384 * 8, "experts": 4, "n": 2 * 2048, "k": 7168, "variant": "zipf1.0"}
_V3_64K = {**_V3, "tokens": 65536 * 8}
_V3_ROUTING = {"tokens": 16384, "d_model": 7168, "experts": 256, "top_k": 8, "dtype": "bf16",
               "variant": "zipf1.0"}
CASES += [
    *(case for dtype in ("bf16", "fp8_e4m3") for direction in ("fwd", "bwd_dx", "bwd_dw")
      for case in _moe(f"grouped-{direction}-{dtype}-deepseek-v3-16k", "grouped_gemm",
                       {**_V3, "dtype": dtype, "direction": direction})),
    *_moe("grouped-fwd-bf16-deepseek-v3-64k", "grouped_gemm",
          {**_V3_64K, "dtype": "bf16", "direction": "fwd"}),
    *_moe("grouped-bwd_dw-fp8_e4m3-deepseek-v3-64k", "grouped_gemm",
          {**_V3_64K, "dtype": "fp8_e4m3", "direction": "bwd_dw"}),
    *_moe("grouped-fwd-bf16-llama4-maverick-16k-empty-experts", "grouped_gemm",
          {"tokens": 16384, "experts": 16, "n": 2 * 8192, "k": 5120, "dtype": "bf16",
           "direction": "fwd", "variant": "zipf4.0"}),
    *_moe("moe-dispatch-deepseek-v3-16k", "moe_dispatch", _V3_ROUTING),
    *_moe("moe-combine-deepseek-v3-16k", "moe_combine", _V3_ROUTING),
]
# The FP8 Triton GEMM against the BF16 Triton GEMM is a second comparison of the same row.
TARGETS: list[Target] = [
    Target("BF16 GEMM 8192^3: Triton >= 0.9x torch.matmul", "gemm-bf16-8192/triton", 0.9,
           "gemm-bf16-8192/torch"),
    Target("FP8 GEMM 8192^3: Triton >= 0.9x torch._scaled_mm", "gemm-fp8-tensorwise-8192/triton",
           0.9, "gemm-fp8-tensorwise-8192/torch"),
    Target("FP8 GEMM 8192^3: Triton FP8 >= 1.6x Triton BF16", "gemm-fp8-tensorwise-8192/triton",
           1.6, "gemm-bf16-8192/triton"),
    Target("Attention fwd BF16 d128 16k causal: Triton >= 400 TFLOP/s",
           "attn-fwd-d128-16k-causal/triton", 400.0),
    Target("Attention fwd d128 16k causal: Triton FP8 faster than Triton BF16",
           "attn-fwd-d128-16k-causal/triton-fp8", 1.0, "attn-fwd-d128-16k-causal/triton",
           strictly=True),
]


def evaluate(rows: list[dict], targets: list[Target] = TARGETS) -> list[dict]:
    """Each target's measured value (a speedup, or TFLOP/s) and whether it is met; a target
    whose rows did not run is reported as not evaluated (``met`` None) with the reason."""
    by_id = {r["id"]: r for r in rows}
    out = []
    for t in targets:
        entry = {"target": t.text, "value": None, "threshold": t.threshold, "met": None,
                 "unit": "x" if t.versus else "TFLOP/s", "reason": ""}
        needed = [t.row] + ([t.versus] if t.versus else [])
        missing = [i for i in needed if by_id.get(i, {}).get("time_s") is None]
        if missing:
            entry["reason"] = "; ".join(f"{i}: {by_id.get(i, {}).get('status', 'not run')}"
                                        for i in missing)
        else:
            row = by_id[t.row]
            value = by_id[t.versus]["time_s"] / row["time_s"] if t.versus else row["tflops"]
            met = value > t.threshold if t.strictly else value >= t.threshold
            entry.update(value=value, met=met)
        out.append(entry)
    return out


def run_case(case: Case, device, seed: int = 0) -> dict:
    """Check, then time, one case; never raises for a kernel's failure (the row says it)."""
    row = {"id": case.id, "kernel": case.kernel, "impl": case.impl, "versus": case.versus,
           "dtype": case.kwargs.get("dtype"), "status": "ok", "rel_error": None,
           "time_s": None, "tflops": None}
    try:
        spec = registry.build(case.kernel, case.impl, **case.kwargs)
        row.update(name=spec.name, shape=dict(spec.shape), tolerance=spec.tolerance,
                   flops=spec.flops, direction=spec.direction, variant=spec.variant,
                   baseline=spec.baseline, backend=spec.backend, gqa_method=spec.gqa_method)
        reason = spec.unavailable(device)
        if reason:
            return {**row, "status": f"skipped: {reason}"}
        with spec.context():
            row["rel_error"] = spec.check(device, seed=seed)
            inputs = spec.make_inputs(device, seed + 1)
            timing = time_call(lambda: spec.run(*inputs), device)
        row.update(time_s=timing.time_s, tflops=rate(spec.flops, timing.time_s, 1e12),
                   time_s_iqr=timing.time_s_iqr, rounds=timing.rounds)
    except CorrectnessError as exc:
        row["status"] = f"wrong: {exc}"
    except Exception as exc:  # noqa: BLE001 - a compile error or OOM fails this row only
        row["status"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        torch.cuda.empty_cache()
    return row


def add_speedups(rows: list[dict]) -> None:
    """Each row's speedup over the fastest of its ``versus`` rows that was timed
    (`scaling.schema.compare_with_fastest`, as the loader's ``speedup_vs_baseline``); ``versus``
    becomes that row's id (or, when none was timed, the ids it would have been)."""
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        fastest, speedup = compare_with_fastest(
            r["time_s"], [(i, by_id.get(i, {}).get("time_s")) for i in r["versus"]])
        r["speedup"] = speedup
        r["versus"] = fastest or (", ".join(r["versus"]) or None)


def _no_gpu_reason() -> str | None:
    if not torch.cuda.is_available():
        return (f"bench.gpu_check needs a CUDA GPU, and torch.cuda.is_available() is False here "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). On a CPU the "
                f"Triton kernels are checked by the interpreter tests: "
                f"python -m pytest -m interpreter tests/")
    if interpreting():
        return "TRITON_INTERPRET=1 is set: unset it so the Triton kernels compile for the GPU"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_check",
        description="Check every Triton kernel against float64 at large shapes on a CUDA GPU, "
                    "time it beside its baseline and evaluate the performance targets.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--only", choices=("gemm", "attention", "grouped_gemm", "moe_dispatch",
                                           "moe_combine"), help="one kernel family")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    reason = _no_gpu_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2

    device = torch.device("cuda")
    cases = [c for c in CASES if args.only in (None, c.kernel)]
    rows = []
    for case in cases:
        if not args.json:
            print(f"  {case.id} ...", file=sys.stderr, flush=True)
        rows.append(run_case(case, device))
    add_speedups(rows)
    targets = evaluate(rows)
    wrong = [r for r in rows if r["status"].startswith(("wrong", "failed"))]
    missed = [t for t in targets if t["met"] is False]
    report = {
        "device_name": torch.cuda.get_device_name(device),
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
        "torch": torch.__version__, "triton": triton.__version__,
        "cuda": torch.version.cuda, "rows": rows, "targets": targets,
        "all_correct": not wrong, "all_targets_met": all(t["met"] for t in targets),
    }
    if args.json:
        print_json(report)
    else:
        print(f"{report['device_name']} (sm {report['compute_capability']}), torch {torch.__version__}, "
              f"triton {triton.__version__}")
        print(format_table(rows, [("id", "case"), ("dtype", "dtype"), ("rel_error", "rel err"),
                                  ("time_s", "time (s)"), ("tflops", "TFLOP/s"),
                                  ("speedup", "speedup"), ("versus", "versus"), ("status", "status")]))
        print()
        for t in targets:
            t["verdict"] = {True: "met", False: "MISSED", None: "not run"}[t["met"]]
        print(format_table(targets, [("target", "target"), ("value", "measured"),
                                     ("threshold", "needed"), ("unit", "unit"),
                                     ("verdict", "verdict"), ("reason", "why not run")]))
    if wrong:
        return 1
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
