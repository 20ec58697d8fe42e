"""The GPU acceptance check, ``python -m bench.gpu_check --all [--json]``: everything a first run
on an H100/H200 must show before its numbers are trusted, in under eight minutes (`PLAN`).

1. Versions and clocks: torch, Triton, CUDA, the driver, the device and its NVML clocks,
   power limit and clock-event reasons, read over a short idle window.
2. The compile gate: every Triton kernel's every autotune configuration compiled for sm_90
   (``tests/support/sm90_compile.py``, run in a separate process beside the GPU work, so it costs no
   GPU time); it passes when no configuration spills registers or needs more shared memory
   than the device has.
3. The kernel rows of `bench.gpu_check`: every kernel checked against float64 at large shapes,
   every SDPA backend, both FP8 accumulation modes, GQA backward, timed in interleaved rounds,
   and the performance targets.
4. The timing-method cross-check (`CROSS_CHECKS`): flopcast's device timing against
   ``triton.testing.do_bench`` (median) and ``do_bench_cudagraph``, with the host's
   ``perf_counter`` (the launch-bound method) beside them to show what it would have reported.
5. The power-window pairing (`POWER_CASES`): the short window's TFLOP/s beside the sustained
   TFLOP/s and the watts of the same 5 s window.

It writes one JSON file into ``--results-dir`` (``gpu-check-<time>-<host>.json``; it carries an
empty flopcast section, so the results loader reads it without a warning) and prints a verdict
table. Exit status: 1 when a kernel is wrong or the compile gate fails (with ``--strict``, also
when a target is missed or a timing cross-check disagrees), 2 without a CUDA GPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from scaling.schema import jsonable, rate

REPO = Path(__file__).resolve().parents[1]
COMPILE_SCRIPT = REPO / "tests" / "support" / "sm90_compile.py"
# Shared memory one block may use on compute capability 9.0 (CUDA C++ Programming Guide,
# "Technical Specifications per Compute Capability": 227 KB).
SM90_SHARED_BYTES = 227 * 1024
# The whole check must finish in 8 minutes; the kernel rows stop starting new shapes when the
# time left would not cover the steps after them.
BUDGET_S = 480.0
# Two timing methods agree when their medians differ by at most this fraction. Stated
# assumption: run-to-run spread of a median GPU kernel time on one device is a few percent.
CROSS_CHECK_TOLERANCE = 0.10
POWER_WINDOW_S = 5.0


@dataclass(frozen=True)
class Step:
    name: str
    estimate_s: float
    what: str


# Time estimates on one H100/H200 (stated assumptions, from the work each step does; the
# compile gate runs beside the others on the CPU and is not counted).
PLAN = (
    Step("versions and clocks", 2.0, "torch/Triton/CUDA/driver versions; NVML clocks over a 1 s "
                                     "idle window"),
    Step("compile gate", 0.0, "every autotune configuration compiled for sm_90 in a separate "
                              "process, in parallel (checked for spills and shared memory)"),
    Step("kernel rows", 330.0, "~70 rows in ~25 shapes: float64 check at large shapes (<1 s "
                               "each), Triton autotuning on first use (~2-5 s per Triton row), "
                               "5 interleaved rounds of 20 timed calls (<1 s per row, ~5 s for "
                               "SDPA's math backend at 16k)"),
    Step("timing cross-check", 30.0, "4 cases x (flopcast auto, events, graph, perf_counter, "
                                     "do_bench, do_bench_cudagraph): ~1 s each"),
    Step("power-window pairing", 20.0, "2 cases x (timing + a 5 s steady window)"),
    Step("results file and verdicts", 1.0, "one JSON file, one table"),
)


def plan_rows() -> list[dict]:
    return [{"step": s.name, "estimate_s": s.estimate_s, "what": s.what} for s in PLAN]


def plan_total_s() -> float:
    return sum(s.estimate_s for s in PLAN)


# -- 1. versions and clocks ------------------------------------------------------------------


def versions_and_clocks(device) -> dict:
    """The machine section (versions, NVML inventory) and what telemetry saw over 1 s idle."""
    import torch

    from bench.device import machine_info
    from bench.telemetry import open_telemetry

    info = machine_info(device)
    props = torch.cuda.get_device_properties(device)
    info.update(compute_capability=f"{props.major}.{props.minor}",
                sm_count=props.multi_processor_count, memory_bytes=props.total_memory)
    with open_telemetry(device) as telemetry:
        with telemetry.window() as measured:
            time.sleep(1.0)
    w = measured.window
    info["idle_window"] = {"sm_clock_mhz": w.sm_clock_mhz, "mem_clock_mhz": w.mem_clock_mhz,
                           "temp_c": w.temp_c, "avg_power_w": w.avg_power_w,
                           "power_limit_w": w.power_limit_w,
                           "throttle_reasons": None if w.throttle_reasons is None
                           else list(w.throttle_reasons),
                           "missing_reason": w.missing_reason}
    return info


# -- 2. the compile gate ---------------------------------------------------------------------


def start_compile_gate():
    """The compile gate's process, started now so it runs beside the GPU work; or the reason
    it cannot run."""
    if not COMPILE_SCRIPT.exists():
        return None, f"{COMPILE_SCRIPT} not found: run the check from a flopcast checkout"
    proc = subprocess.Popen([sys.executable, str(COMPILE_SCRIPT)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, None


def finish_compile_gate(proc, reason: str | None, timeout_s: float) -> dict:
    """Wait (at most ``timeout_s``) for the compile gate and summarise it."""
    if proc is None:
        return {"passed": None, "reason": reason}
    try:
        out, err = proc.communicate(timeout=max(timeout_s, 1.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"passed": None, "reason": f"did not finish within {timeout_s:.0f} s"}
    if proc.returncode != 0:
        # The script uses Triton's internal compile entry points (those of Triton 3.9), which
        # other Triton versions may lack: not a verdict on the kernels, which the kernel rows
        # compile and run on the device anyway.
        last = (err.strip().splitlines() or ["no output"])[-1]
        return {"passed": None, "reason": f"tests/support/sm90_compile.py exited {proc.returncode}: "
                                          f"{last[:200]}"}
    try:
        rows = json.loads(out)
    except ValueError as exc:
        return {"passed": None, "reason": f"tests/support/sm90_compile.py printed no JSON: {exc}"}
    return summarise_compile(rows)


def summarise_compile(rows: list[dict]) -> dict:
    """Passed when every compiled configuration has no spills and fits in shared memory."""
    spilling = [r for r in rows if r.get("n_spills") or r.get("spill_bytes")]
    too_big = [r for r in rows if (r.get("shared") or 0) > SM90_SHARED_BYTES]

    def name(r):
        return f"{r.get('name')} {r.get('config')}"

    problems = [f"spills: {name(r)}" for r in spilling] + \
               [f"shared {r['shared']} B > {SM90_SHARED_BYTES}: {name(r)}" for r in too_big]
    return {"passed": bool(rows) and not problems, "compiled": len(rows),
            "kernels": sorted({str(r.get("name")) for r in rows}),
            "max_shared_bytes": max((r.get("shared") or 0 for r in rows), default=None),
            "problems": problems[:20],
            "reason": None if rows else "no kernel was compiled"}


# -- 4. the timing-method cross-check --------------------------------------------------------

# A launch-bound GEMM (1024^3: ~4 us on an H100, under one Triton launch), the same in Triton,
# a large GEMM, and an attention forward.
CROSS_CHECKS = (
    ("gemm-bf16-1024/torch", "gemm", "torch", {"m": 1024, "n": 1024, "k": 1024, "dtype": "bf16",
                                                "variant": ""}),
    ("gemm-bf16-1024/triton", "gemm", "triton", {"m": 1024, "n": 1024, "k": 1024,
                                                  "dtype": "bf16", "variant": ""}),
    ("gemm-bf16-8192/torch", "gemm", "torch", {"m": 8192, "n": 8192, "k": 8192, "dtype": "bf16",
                                                "variant": ""}),
    ("attn-fwd-d128-4k-causal/triton", "attention", "triton",
     {"batch": 1, "heads_q": 16, "heads_kv": 16, "seq": 4096, "head_dim": 128, "causal": True,
      "direction": "fwd", "dtype": "bf16"}),
)


def error_text(exc: BaseException) -> str:
    """``TypeName: first line of the message``: how a failed row says what went wrong."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@contextmanager
def checked_call(kernel, impl, kwargs, device):
    """(spec, one call) of a registry kernel checked against its reference first, inside the
    spec's context (e.g. SDPA's backend pin), which holds while the caller times the call."""
    from kernels import registry

    spec = registry.build(kernel, impl, **kwargs)
    with spec.context():
        spec.check(device)
        inputs = spec.make_inputs(device, 1)

        def call():
            spec.run(*inputs)

        yield spec, call


def cross_check(case_id, kernel, impl, kwargs, device) -> dict:
    """One case timed by every method; ``agree`` compares flopcast's per-call events with
    ``do_bench`` (both cold L2, median), and its graph replay with ``do_bench_cudagraph``."""
    import triton.testing

    from bench.timing import CUDA_EVENTS, CUDA_GRAPH, SyncTimer, synchronize, time_call, time_host

    row = {"id": case_id}
    try:
        with checked_call(kernel, impl, kwargs, device) as (_, fn):
            auto = time_call(fn, device)
            row.update(auto_method=auto.method, auto_s=auto.time_s)
            row["events_s"] = time_call(fn, device, method=CUDA_EVENTS, l2_flush=True).time_s
            graph = time_call(fn, device, method=CUDA_GRAPH)
            row["graph_s"] = graph.time_s if graph.method == CUDA_GRAPH else None
            row["graph_fallback_reason"] = graph.fallback_reason
            row["perf_counter_s"] = time_host(fn, SyncTimer(lambda: synchronize(device)),
                                              "cuda").time_s
            row["do_bench_s"] = triton.testing.do_bench(fn, return_mode="median") / 1e3
            try:
                row["do_bench_cudagraph_s"] = triton.testing.do_bench_cudagraph(
                    fn, return_mode="median") / 1e3
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                row["do_bench_cudagraph_s"] = None
                row["do_bench_cudagraph_error"] = f"{type(exc).__name__}: {exc}"[:200]
    except Exception as exc:  # noqa: BLE001 - this row fails, the check goes on
        row["error"] = error_text(exc)
    row.update(cross_check_verdict(row))
    return row


def _ratio(a, b):
    return a / b if a and b else None


def cross_check_verdict(row: dict) -> dict:
    """Events against do_bench, graph against do_bench_cudagraph: ratios and agreement."""
    events = _ratio(row.get("events_s"), row.get("do_bench_s"))
    graph = _ratio(row.get("graph_s"), row.get("do_bench_cudagraph_s"))
    checked = [r for r in (events, graph) if r is not None]
    agree = None if not checked else all(abs(r - 1) <= CROSS_CHECK_TOLERANCE for r in checked)
    return {"events_vs_do_bench": events, "graph_vs_do_bench_cudagraph": graph,
            "launch_bound_factor": _ratio(row.get("perf_counter_s"), row.get("auto_s")),
            "agree": agree}


# -- 5. the power-window pairing -------------------------------------------------------------

POWER_CASES = (
    ("gemm-bf16-8192/torch", "gemm", "torch", {"m": 8192, "n": 8192, "k": 8192, "dtype": "bf16",
                                                "variant": ""}),
    ("gemm-bf16-8192/triton", "gemm", "triton", {"m": 8192, "n": 8192, "k": 8192,
                                                  "dtype": "bf16", "variant": ""}),
)


def power_pairing(case_id, kernel, impl, kwargs, device, telemetry,
                  window_s: float = POWER_WINDOW_S) -> dict:
    """The short window's TFLOP/s, then the sustained TFLOP/s and watts of one steady window."""
    from bench.power import power_fields
    from bench.timing import synchronize, time_call

    row = {"id": case_id}
    try:
        with checked_call(kernel, impl, kwargs, device) as (spec, fn):
            timing = time_call(fn, device)
            power = power_fields(telemetry, fn, lambda: synchronize(device), spec.flops, window_s)
        row.update(tflops=rate(spec.flops, timing.time_s, 1e12), timing_method=timing.method,
                   **{k: power[k] for k in ("sustained_tflops", "avg_power_w", "tflops_per_w",
                                            "sm_clock_mhz", "temp_c", "power_limit_w",
                                            "throttled", "throttle_reasons", "power_window_s",
                                            "power_missing_reason")})
        row["sustained_over_short"] = _ratio(row["sustained_tflops"], row["tflops"])
    except Exception as exc:  # noqa: BLE001 - this row fails, the check goes on
        row["error"] = error_text(exc)
    return row


# -- verdicts and the results file -----------------------------------------------------------


def verdicts(report: dict) -> list[dict]:
    """One line per check: what it found, in words a person reads (``verdict``), with detail."""
    out = []
    info = report.get("versions") or {}
    out.append({"check": "versions and clocks", "verdict": "recorded" if info else "not run",
                "detail": ", ".join(f"{k} {info.get(k)}" for k in
                                    ("device_name", "torch", "triton", "cuda", "driver")
                                    if info.get(k))})
    gate = report.get("compile_gate") or {}
    out.append({"check": "compile gate (sm_90, every autotune config)",
                "verdict": {True: "passed", False: "FAILED", None: "not run"}[gate.get("passed")],
                "detail": gate.get("reason") or "; ".join(gate.get("problems") or [])
                or f"{gate.get('compiled')} configurations"})
    rows = report.get("rows") or []
    wrong = [r["id"] for r in rows if str(r.get("status", "")).startswith(("wrong", "failed"))]
    timed = sum(1 for r in rows if r.get("time_s"))
    out.append({"check": "correctness at large shapes (float64 reference)",
                "verdict": "FAILED" if wrong else ("passed" if timed else "not run"),
                "detail": ", ".join(wrong) or f"{timed} of {len(rows)} rows checked and timed"})
    for t in report.get("targets") or []:
        value = "" if t.get("value") is None else f"{t['value']:.3g} {t['unit']} (needs " \
                                                  f"{t['threshold']:g})"
        out.append({"check": t["target"],
                    "verdict": {True: "met", False: "MISSED", None: "not run"}[t["met"]],
                    "detail": value or t.get("reason", "")})
    for c in report.get("cross_checks") or []:
        detail = c.get("error") or ", ".join(
            f"{k} {c[k]:.3f}" for k in ("events_vs_do_bench", "graph_vs_do_bench_cudagraph",
                                        "launch_bound_factor") if c.get(k) is not None)
        out.append({"check": f"timing methods agree: {c['id']}",
                    "verdict": {True: "agree", False: "DISAGREE", None: "not run"}[c.get("agree")],
                    "detail": detail})
    for p in report.get("power") or []:
        ok = p.get("sustained_tflops") is not None and p.get("avg_power_w") is not None
        detail = p.get("error") or p.get("power_missing_reason") or (
            f"{p['tflops']:.0f} TFLOP/s short, {p['sustained_tflops']:.0f} sustained at "
            f"{p['avg_power_w']:.0f} W" if ok else "")
        out.append({"check": f"power-window pairing: {p['id']}",
                    "verdict": "measured" if ok else "not measured", "detail": detail})
    return out


def exit_status(table: list[dict], strict: bool) -> int:
    bad = {"FAILED"} | ({"MISSED", "DISAGREE"} if strict else set())
    return 1 if any(v["verdict"] in bad for v in table) else 0


def results_path(results_dir, created_utc: str) -> Path:
    stamp = created_utc.replace("+00:00", "Z").replace(":", "").replace("-", "")
    host = "".join(c if c.isalnum() or c in "_.-" else "_" for c in socket.gethostname())
    return Path(results_dir) / f"gpu-check-{stamp}-{host}.json"


def write_report(report: dict, results_dir) -> Path:
    """The report as a JSON file beside the results files, with an empty flopcast section
    (the machine and run id) so that the results loader reads it as a run of no records."""
    from bench.records import atomic_write_text, flopcast_section

    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    section = flopcast_section([], report.get("versions") or {}, created_utc=created,
                               source="python -m bench.gpu_check --all", sweep=None)
    path = results_path(results_dir, created)
    text = json.dumps(jsonable({"gpu_check": report, "flopcast": section}), indent=1,
                      allow_nan=False, default=str)
    atomic_write_text(path, text + "\n")
    return path


def run_all(device, results_dir, run_rows, say=print) -> tuple[dict, Path]:
    """Every step of `PLAN` on ``device``; returns the report and the results file's path.
    ``run_rows(deadline_s, say)`` runs the kernel rows (`bench.gpu_check.kernel_rows`) and
    returns them with the targets' evaluation."""
    from bench.telemetry import open_telemetry

    start = time.monotonic()
    later_s = sum(s.estimate_s for s in PLAN if s.name in ("timing cross-check",
                                                           "power-window pairing"))
    proc, reason = start_compile_gate()
    report: dict = {"plan": plan_rows(), "budget_s": BUDGET_S}
    say("versions and clocks ...")
    report["versions"] = versions_and_clocks(device)
    say("kernel rows ...")
    report["rows"], report["targets"] = run_rows(start + BUDGET_S - later_s - 30.0, say)
    say("timing cross-check ...")
    report["cross_checks"] = [cross_check(*c, device) for c in CROSS_CHECKS]
    say("power-window pairing ...")
    with open_telemetry(device) as telemetry:
        report["power"] = [power_pairing(*c, device, telemetry) for c in POWER_CASES]
    say("compile gate ...")
    report["compile_gate"] = finish_compile_gate(
        proc, reason, BUDGET_S - (time.monotonic() - start) - 5.0)
    report["elapsed_s"] = time.monotonic() - start
    report["verdicts"] = verdicts(report)
    return report, write_report(report, results_dir)
