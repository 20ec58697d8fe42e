"""The GPU acceptance check's CPU-checkable parts: its command line, its plan fits in 8 minutes,
the verdict table from fake rows, the compile-gate and cross-check arithmetic, the results
file, and the order of its steps (with every GPU step replaced by a fake)."""

import json
import warnings

import pytest
import torch

from bench import acceptance, gpu_check
from scaling.records.load import load_results


def test_all_without_a_gpu_is_one_clear_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--all", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "needs a CUDA GPU" in captured.err


def test_the_plan_fits_in_eight_minutes_and_prints_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["total_s"] == pytest.approx(sum(s["estimate_s"] for s in plan["steps"]))
    assert plan["total_s"] < 8 * 60 and plan["budget_s"] <= 8 * 60
    assert [s["step"] for s in plan["steps"]] == [
        "versions and clocks", "compile gate", "kernel rows", "timing cross-check",
        "power-window pairing", "results file and verdicts"]
    assert gpu_check.main(["--plan"]) == 0
    assert "budget 8 min" in capsys.readouterr().out


def test_unknown_arguments_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--all", "--everything"])
    assert exc.value.code == 2 and "unrecognized arguments: --everything" in capsys.readouterr().err


def test_the_acceptance_cases_cover_what_the_check_promises():
    cases = gpu_check.CASES
    variants = {c.kwargs.get("variant") for c in cases if c.kernel == "gemm"}
    assert {"tensorwise", "tensorwise-fast-accum", "rowwise", "rowwise-fast-accum"} <= variants
    sdpa = {c.impl for c in cases if c.impl.startswith("sdpa-")}
    assert sdpa == {"sdpa-cudnn", "sdpa-efficient", "sdpa-flash", "sdpa-math"}
    gqa_bwd = [c for c in cases if c.kernel == "attention" and c.kwargs["direction"] == "bwd"
               and c.kwargs["heads_kv"] < c.kwargs["heads_q"] and c.impl == "triton"]
    assert gqa_bwd and gqa_bwd[0].kwargs["seq"] == 8192
    assert any(c.impl == "triton-tma" for c in cases)


def test_compile_gate_passes_only_without_spills_and_within_shared_memory():
    fine = [{"name": "matmul", "config": {"BLOCK_M": 128}, "shared": 147456, "n_spills": 0,
             "spill_bytes": 0}]
    assert acceptance.summarise_compile(fine)["passed"] is True
    spilled = fine + [{"name": "attn_fwd", "config": {"BLOCK_M": 128}, "shared": 1000,
                       "n_spills": 238, "spill_bytes": 952}]
    result = acceptance.summarise_compile(spilled)
    assert result["passed"] is False and result["problems"][0].startswith("spills: attn_fwd")
    big = [{"name": "matmul", "config": {}, "shared": 227 * 1024 + 1, "n_spills": 0}]
    assert acceptance.summarise_compile(big)["passed"] is False
    assert acceptance.summarise_compile([])["passed"] is False
    assert acceptance.finish_compile_gate(None, "no checkout", 1.0) == {"passed": None,
                                                                        "reason": "no checkout"}


def test_the_compile_gate_process_is_waited_for_and_read(tmp_path):
    import subprocess
    import sys

    def proc(code):
        return subprocess.Popen([sys.executable, "-c", code], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    rows = [{"name": "matmul", "config": {}, "shared": 1024, "n_spills": 0, "spill_bytes": 0}]
    ok = acceptance.finish_compile_gate(proc(f"print({json.dumps(rows)!r})"), None, 60.0)
    assert ok["passed"] is True and ok["compiled"] == 1 and ok["kernels"] == ["matmul"]
    broken = acceptance.finish_compile_gate(
        proc("import sys; sys.exit('AttributeError: no triton.compiler.ASTSource')"), None, 60.0)
    assert broken["passed"] is None and "exited 1: AttributeError" in broken["reason"]
    slow = acceptance.finish_compile_gate(proc("import time; time.sleep(30)"), None, 1.0)
    assert slow == {"passed": None, "reason": "did not finish within 1 s"}


def test_cross_check_ratios_and_agreement():
    row = {"events_s": 1.05e-3, "do_bench_s": 1.0e-3, "graph_s": 4.0e-6,
           "do_bench_cudagraph_s": 4.2e-6, "perf_counter_s": 30e-6, "auto_s": 4.0e-6}
    v = acceptance.cross_check_verdict(row)
    assert v["events_vs_do_bench"] == pytest.approx(1.05)
    assert v["graph_vs_do_bench_cudagraph"] == pytest.approx(4.0 / 4.2)
    assert v["launch_bound_factor"] == pytest.approx(7.5)  # perf_counter saw 7.5x the kernel
    assert v["agree"] is True
    assert acceptance.cross_check_verdict({**row, "events_s": 1.2e-3})["agree"] is False
    assert acceptance.cross_check_verdict({"error": "OOM"})["agree"] is None


def fake_report():
    return {
        "versions": {"device_name": "NVIDIA H200", "torch": "2.5.1", "triton": "3.1.0",
                     "cuda": "12.4", "driver": "550.54"},
        "compile_gate": {"passed": True, "compiled": 120, "problems": [], "reason": None},
        "rows": [{"id": "a/torch", "status": "ok", "time_s": 1.0},
                 {"id": "a/triton", "status": "wrong: relative error 0.3", "time_s": None}],
        "targets": [{"target": "T1", "value": 0.8, "unit": "x", "threshold": 0.9,
                     "met": False, "reason": ""},
                    {"target": "T2", "value": None, "unit": "x", "threshold": 1.0,
                     "met": None, "reason": "a/x: not run"}],
        "cross_checks": [{"id": "c1", "agree": True, "events_vs_do_bench": 1.01},
                         {"id": "c2", "agree": False, "events_vs_do_bench": 1.3}],
        "power": [{"id": "p1", "tflops": 700.0, "sustained_tflops": 640.0, "avg_power_w": 690.0},
                  {"id": "p2", "error": "RuntimeError: no NVML"}],
    }


def test_verdict_table_from_fake_rows():
    table = acceptance.verdicts(fake_report())
    by_check = {v["check"]: v for v in table}
    assert by_check["versions and clocks"]["verdict"] == "recorded"
    assert "NVIDIA H200" in by_check["versions and clocks"]["detail"]
    assert by_check["compile gate (sm_90, every autotune config)"]["verdict"] == "passed"
    correctness = by_check["correctness at large shapes (float64 reference)"]
    assert correctness["verdict"] == "FAILED" and correctness["detail"] == "a/triton"
    assert by_check["T1"]["verdict"] == "MISSED" and "0.8 x (needs 0.9)" in by_check["T1"]["detail"]
    assert by_check["T2"]["verdict"] == "not run" and by_check["T2"]["detail"] == "a/x: not run"
    assert by_check["timing methods agree: c2"]["verdict"] == "DISAGREE"
    p1 = by_check["power-window pairing: p1"]
    assert p1["verdict"] == "measured"
    assert p1["detail"] == "700 TFLOP/s short, 640 sustained at 690 W"
    assert by_check["power-window pairing: p2"]["verdict"] == "not measured"
    assert acceptance.exit_status(table, strict=False) == 1  # a wrong kernel fails always


def test_exit_status_misses_count_only_when_strict():
    report = fake_report()
    report["rows"] = report["rows"][:1]
    table = acceptance.verdicts(report)
    assert acceptance.exit_status(table, strict=False) == 0
    assert acceptance.exit_status(table, strict=True) == 1


def test_the_results_file_is_read_by_the_loader_as_a_run_of_no_records(tmp_path):
    path = acceptance.write_report({"versions": {"hostname": "h"}, "rows": [],
                                    "x": float("nan")}, tmp_path)
    assert path.name.startswith("gpu-check-") and path.suffix == ".json"
    document = json.loads(path.read_text())
    assert document["gpu_check"]["x"] is None and document["flopcast"]["records"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipped" warning
        df = load_results([tmp_path])
    assert len(df) == 0


def test_run_all_runs_every_step_in_order_and_writes_the_file(monkeypatch, tmp_path):
    order = []

    class FakeProc:
        pass

    monkeypatch.setattr(acceptance, "start_compile_gate",
                        lambda: (order.append("compile started") or FakeProc(), None))
    monkeypatch.setattr(acceptance, "versions_and_clocks",
                        lambda device: order.append("versions") or {"device_name": "fake"})

    def run_cases(cases, device, say, deadline_s=None):
        order.append("rows")
        assert deadline_s is not None  # the rows stop in time for the later steps
        return [{"id": c.id, "versus": c.versus, "status": "ok", "time_s": 1.0, "tflops": 1.0}
                for c in cases]

    monkeypatch.setattr(gpu_check, "run_cases", run_cases)
    device = torch.device("cpu")
    monkeypatch.setattr(acceptance, "cross_check",
                        lambda *a: order.append("cross") or {"id": a[0], "agree": True})
    monkeypatch.setattr(acceptance, "power_pairing",
                        lambda *a: order.append("power") or {"id": a[0], "error": "fake"})
    monkeypatch.setattr(acceptance, "finish_compile_gate",
                        lambda proc, reason, timeout_s: order.append("compile finished")
                        or {"passed": True, "compiled": 3, "problems": [], "reason": None})
    report, path = acceptance.run_all(
        device, tmp_path, lambda deadline_s, say: gpu_check.kernel_rows(device, deadline_s, say),
        say=lambda line: None)
    assert order == (["compile started", "versions", "rows"] + ["cross"] * 4 + ["power"] * 2
                     + ["compile finished"])
    assert path.exists() and json.loads(path.read_text())["gpu_check"]["verdicts"]
    assert all(t["met"] is not None for t in report["targets"])


def test_main_all_prints_the_report_with_its_file(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gpu_check, "_no_gpu_reason", lambda: None)
    report = {**fake_report(), "elapsed_s": 1.0}
    report["verdicts"] = acceptance.verdicts(report)
    monkeypatch.setattr(acceptance, "run_all",
                        lambda device, results_dir, run_rows, say: (report, tmp_path / "f.json"))
    assert gpu_check.main(["--all", "--json", "--results-dir", str(tmp_path)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["results_file"] == str(tmp_path / "f.json") and out["verdicts"]
    assert gpu_check.main(["--all"]) == 1
    text = capsys.readouterr().out
    assert "DISAGREE" in text and "results:" in text
