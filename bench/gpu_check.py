"""One command that checks the Triton kernels on a CUDA GPU and says whether they meet their
performance targets:

    python -m bench.gpu_check            # table
    python -m bench.gpu_check --json     # machine-readable

Every case is checked against its float64 reference (the spec's tolerance, DESIGN.md) at a
large shape before it is timed; a wrong kernel is reported as failed, never timed. Times are
device times from `bench.timing.time_call` (CUDA events, or CUDA-graph replay for short calls;
each row says which), taken in interleaved rounds: the rows of one shape (its baselines and its
Triton rows) are timed one round each in turn, round after round, so a clock or temperature
drift over the run falls on all of them alike; a row's time is the median of its rounds.
Each Triton row is compared with the rows it should
beat (the fastest of the registry's baselines at its shape: cuBLAS for GEMMs, each of
SDPA's backends for attention; or the BF16 Triton kernel for FP8), and flopcast's performance
targets for its Triton kernels are evaluated on an H100 SXM's terms:

* BF16 GEMM at 8192^3: at least 0.9x ``torch.matmul`` (cuBLAS).
* FP8 GEMM at 8192^3: at least 0.9x ``torch._scaled_mm``, and at least 1.6x the BF16 Triton GEMM.
* Attention forward, BF16, head_dim 128, 16k tokens, causal: at least 400 TFLOP/s
  (FlashAttention-2 reaches ~370 on H100 (Dao 2023); FlashAttention-3 ~650 (Shah et al. 2024)).
* FP8 attention forward faster than BF16 at that shape.

The mixture-of-experts kernels (grouped GEMM, dispatch, combine) and the streaming scale (the
device's memory bandwidth) are checked and timed beside their torch baselines too; flopcast
sets no targets for them.

``--all`` runs the whole acceptance check (`bench.acceptance`): versions and clocks, the
compile gate, these rows, a timing-method cross-check against ``triton.testing.do_bench``
and CUDA graphs, and the power-window pairing; it writes a results file and a verdict table.

Exit status: 0 when every kernel is correct, 1 when one is wrong or fails to run (or, with
``--strict``, when a target is missed), 2 when there is no CUDA GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import triton

from bench import acceptance
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
    also: tuple[str, ...] = ()  # other implementations of ``row``: the fastest one counts
    versus_also: tuple[str, ...] = ()  # the same for ``versus``


def _beside_baselines(prefix, kernel, kw, triton_impls=("triton",)):
    """A row per baseline of ``kernel`` (the registry's), then the Triton rows against them."""
    base = [Case(f"{prefix}/{impl}", kernel, impl, kw) for impl in registry.baselines(kernel)]
    return base + [Case(f"{prefix}/{impl}", kernel, impl, kw, versus=tuple(c.id for c in base))
                   for impl in triton_impls]


def _gemm(prefix, m, n, k, dtype, variant=""):
    """The GEMM rows: cuBLAS, the Triton GEMM and the persistent TMA one (`triton-tma`)."""
    return _beside_baselines(prefix, "gemm", {"m": m, "n": n, "k": k, "dtype": dtype,
                                              "variant": variant}, ("triton", "triton-tma"))


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
    # Both accumulation modes: _scaled_mm's default promotes to FP32 every 128 elements
    # (precise); fast accumulation does not. Each row names its mode in its variant.
    *_gemm("gemm-fp8-tensorwise-fast-accum-8192", 8192, 8192, 8192, "fp8_e4m3",
           "tensorwise-fast-accum"),
    *_gemm("gemm-fp8-rowwise-fast-accum-8192", 8192, 8192, 8192, "fp8_e4m3",
           "rowwise-fast-accum"),
    # Llama 3 405B MLP up projection per GPU under TP 8, one 8k-token sequence (bench/sweeps.py).
    *_gemm("gemm-bf16-llama3-405b-ffn-up", 8192, 53248 // 8, 16384, "bf16"),
    *_attention("attn-fwd-d128-16k-causal", 1, 16, 16, LONG, 128, True),
    *_attention("attn-fwd-d128-16k-causal-llama3-405b-tp8", 1, 16, 1, LONG, 128, True),
    *_attention("attn-fwd-d64-16k-causal", 1, 32, 32, LONG, 64, True),
    *_attention("attn-bwd-d128-8k-causal", 1, 16, 16, BWD_SEQ, 128, True, "bwd"),
    # GQA backward at the 16:1 grouping of Llama 3 405B under TP 8 (dK/dV split over q heads).
    *_attention("attn-bwd-d128-8k-causal-llama3-405b-tp8", 1, 16, 1, BWD_SEQ, 128, True, "bwd"),
]


def _beside_torch(prefix, kernel, kwargs):
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
      for case in _beside_torch(f"grouped-{direction}-{dtype}-deepseek-v3-16k",
                                "grouped_gemm", {**_V3, "dtype": dtype, "direction": direction})),
    *_beside_torch("grouped-fwd-bf16-deepseek-v3-64k", "grouped_gemm",
                   {**_V3_64K, "dtype": "bf16", "direction": "fwd"}),
    *_beside_torch("grouped-bwd_dw-fp8_e4m3-deepseek-v3-64k", "grouped_gemm",
                   {**_V3_64K, "dtype": "fp8_e4m3", "direction": "bwd_dw"}),
    *_beside_torch("grouped-fwd-bf16-llama4-maverick-16k-empty-experts", "grouped_gemm",
                   {"tokens": 16384, "experts": 16, "n": 2 * 8192, "k": 5120, "dtype": "bf16",
                    "direction": "fwd", "variant": "zipf4.0"}),
    *_beside_torch("moe-dispatch-deepseek-v3-16k", "moe_dispatch", _V3_ROUTING),
    *_beside_torch("moe-combine-deepseek-v3-16k", "moe_combine", _V3_ROUTING),
]
# Memory bandwidth: the streaming scale (kernels.stream) on 2^28 bf16 elements, 512 MiB read
# and 512 MiB written, far past any L2; the rate memory-bound work is timed at.
CASES += _beside_torch("stream-bf16-2^28", "stream", {"n": 1 << 28, "dtype": "bf16"})
# The FP8 Triton GEMM against the BF16 Triton GEMM is a second comparison of the same row.
# A GEMM target counts the faster of the two Triton GEMMs (the tiled and the persistent TMA one).
TARGETS: list[Target] = [
    Target("BF16 GEMM 8192^3: Triton >= 0.9x torch.matmul", "gemm-bf16-8192/triton", 0.9,
           "gemm-bf16-8192/torch", also=("gemm-bf16-8192/triton-tma",)),
    Target("FP8 GEMM 8192^3: Triton >= 0.9x torch._scaled_mm", "gemm-fp8-tensorwise-8192/triton",
           0.9, "gemm-fp8-tensorwise-8192/torch", also=("gemm-fp8-tensorwise-8192/triton-tma",)),
    Target("FP8 GEMM 8192^3: Triton FP8 >= 1.6x Triton BF16", "gemm-fp8-tensorwise-8192/triton",
           1.6, "gemm-bf16-8192/triton", also=("gemm-fp8-tensorwise-8192/triton-tma",),
           versus_also=("gemm-bf16-8192/triton-tma",)),
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

    def fastest(ids):
        timed = [by_id[i] for i in ids if by_id.get(i, {}).get("time_s") is not None]
        return min(timed, key=lambda r: r["time_s"]) if timed else None

    out = []
    for t in targets:
        entry = {"target": t.text, "value": None, "threshold": t.threshold, "met": None,
                 "unit": "x" if t.versus else "TFLOP/s", "reason": ""}
        groups = [(t.row, *t.also)] + ([(t.versus, *t.versus_also)] if t.versus else [])
        best = [fastest(ids) for ids in groups]
        if None in best:
            missing = [i for ids, b in zip(groups, best) if b is None for i in ids]
            entry["reason"] = "; ".join(f"{i}: {by_id.get(i, {}).get('status', 'not run')}"
                                        for i in missing)
        else:
            row = best[0]
            entry["row"] = row["id"]
            value = best[1]["time_s"] / row["time_s"] if t.versus else row["tflops"]
            met = value > t.threshold if t.strictly else value >= t.threshold
            entry.update(value=value, met=met)
        out.append(entry)
    return out


# Interleaved A/B timing: rounds per row, and calls (or graph replays) per round.
AB_ROUNDS, ROUND_CALLS = 5, 20


def interleave(timers: dict, rounds: int = AB_ROUNDS) -> tuple[dict[str, list], dict]:
    """Run each timer once per round, all of them in turn (the baselines' rounds and the
    candidates' alternate: A B A B ..., never all of A then all of B); returns each timer's
    results in round order, and the exception of each timer that raised (it runs no more
    rounds; the others go on)."""
    results: dict[str, list] = {key: [] for key in timers}
    failed: dict = {}
    for _ in range(rounds):
        for key, timer in timers.items():
            if key in failed:
                continue
            try:
                results[key].append(timer())
            except Exception as exc:  # noqa: BLE001 - e.g. an OOM: that row fails alone
                failed[key] = exc
    return results, failed


def _failure(exc: BaseException) -> str:
    return f"failed: {acceptance.error_text(exc)}"


def prepare_case(case: Case, device, seed: int = 0):
    """Build and check one case; returns its row and a timer of one round (None when the case
    is skipped, wrong or failed: the row's status says which). Never raises for a kernel's
    failure."""
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
            return {**row, "status": f"skipped: {reason}"}, None
        with spec.context():
            row["rel_error"] = spec.check(device, seed=seed)
            inputs = spec.make_inputs(device, seed + 1)
    except CorrectnessError as exc:
        return {**row, "status": f"wrong: {exc}"}, None
    except Exception as exc:  # noqa: BLE001 - a compile error or OOM fails this row only
        return {**row, "status": _failure(exc)}, None
    first = [True]

    def one_round():
        warmup_s, first[0] = (0.1 if first[0] else 0.01), False
        with spec.context():  # e.g. SDPA's backend pin, for this round's calls only
            return time_call(lambda: spec.run(*inputs), device, rounds=ROUND_CALLS,
                             warmup_s=warmup_s)

    return row, one_round


def _group(case_id: str) -> str:
    return case_id.split("/", 1)[0]


def run_group(cases: list[Case], device, seed: int = 0, rounds: int = AB_ROUNDS) -> list[dict]:
    """Check every case of one shape, then time them in interleaved rounds (`interleave`);
    a row's time is the median of its rounds' medians, and the row says how it was timed."""
    prepared = [prepare_case(case, device, seed) for case in cases]
    rows = [row for row, _ in prepared]
    timers = {row["id"]: timer for row, timer in prepared if timer is not None}
    timed, failed = interleave(timers, rounds)
    for row in rows:
        if row["id"] in failed:
            row["status"] = _failure(failed[row["id"]])
            continue
        results = timed.get(row["id"])
        if not results:
            continue
        time_s = statistics.median(r.time_s for r in results)
        methods = sorted({r.method for r in results})
        reasons = sorted({r.fallback_reason for r in results if r.fallback_reason})
        row.update(time_s=time_s, tflops=rate(row["flops"], time_s, 1e12),
                   time_s_iqr=max(r.time_s for r in results) - min(r.time_s for r in results),
                   rounds=len(results), timing_method=",".join(methods),
                   l2_flush=all(r.l2_flush for r in results),
                   timing_fallback_reason="; ".join(reasons) or None)
    del prepared, timers
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return rows


def run_case(case: Case, device, seed: int = 0) -> dict:
    """Check, then time, one case on its own."""
    return run_group([case], device, seed)[0]


def run_cases(cases: list[Case], device, progress=None,
              deadline_s: float | None = None) -> list[dict]:
    """Every case, one shape (group of rows) at a time; groups not started by ``deadline_s``
    (a ``time.monotonic()`` value) are reported as not run."""

    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(_group(case.id), []).append(case)
    rows = []
    for name, group in groups.items():
        if deadline_s is not None and time.monotonic() > deadline_s:
            rows += [{"id": c.id, "kernel": c.kernel, "impl": c.impl, "versus": c.versus,
                      "dtype": c.kwargs.get("dtype"), "status": "not run: time budget spent",
                      "rel_error": None, "time_s": None, "tflops": None} for c in group]
            continue
        if progress:
            progress(f"  {name} ({len(group)} rows) ...")
        rows += run_group(group, device)
    return rows


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
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed "
                        "(with --all: also when a timing cross-check disagrees)")
    parser.add_argument("--all", action="store_true",
                        help="the whole acceptance check (bench/acceptance.py): versions and "
                             "clocks, compile gate, these rows, timing cross-check, power "
                             "pairing; writes a results file and a verdict table (< 8 min)")
    parser.add_argument("--plan", action="store_true",
                        help="print the acceptance check's steps and time estimates, and exit")
    parser.add_argument("--results-dir", default="results", metavar="DIR",
                        help="where --all writes its JSON file (default: results/)")
    args = parser.parse_args(argv)

    if args.plan:
        return _print_plan(args.json)
    reason = _no_gpu_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    if args.all:
        return _run_all(args)

    device = torch.device("cuda")
    cases = [c for c in CASES if args.only in (None, c.kernel)]
    rows = run_cases(cases, device, None if args.json else
                     lambda line: print(line, file=sys.stderr, flush=True))
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


def kernel_rows(device, deadline_s=None, say=None) -> tuple[list[dict], list[dict]]:
    """Every case's row (with speedups) and the targets' evaluation."""
    rows = run_cases(CASES, device, say, deadline_s=deadline_s)
    add_speedups(rows)
    return rows, evaluate(rows)


def _print_plan(as_json: bool) -> int:

    rows, total = acceptance.plan_rows(), acceptance.plan_total_s()
    if as_json:
        print_json({"steps": rows, "total_s": total, "budget_s": acceptance.BUDGET_S})
    else:
        print(format_table(rows, [("step", "step"), ("estimate_s", "estimate (s)"),
                                  ("what", "what it does")]))
        print(f"total about {total / 60:.1f} min (budget {acceptance.BUDGET_S / 60:.0f} min)")
    return 0


def _run_all(args) -> int:

    def say(line):
        if not args.json:
            print(line, file=sys.stderr, flush=True)

    device = torch.device("cuda")
    report, path = acceptance.run_all(device, args.results_dir,
                                      lambda deadline_s, say: kernel_rows(device, deadline_s, say),
                                      say)
    if args.json:
        print_json({**report, "results_file": str(path)})
    else:
        print(format_table(report["verdicts"], [("check", "check"), ("verdict", "verdict"),
                                                ("detail", "detail")]))
        print(f"results: {path} ({report['elapsed_s']:.0f} s)")
    return acceptance.exit_status(report["verdicts"], args.strict)


if __name__ == "__main__":
    sys.exit(main())
