"""bench.gpu_check without a GPU: its cases are buildable, its target arithmetic is right,
and it refuses clearly when there is no CUDA device."""

import pytest
import torch

from bench import gpu_check
from kernels import registry


def test_without_cuda_it_exits_2_and_says_what_to_do(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "pytest -m interpreter" in err


def test_every_case_builds_and_every_reference_exists():
    ids = {c.id for c in gpu_check.CASES}
    assert len(ids) == len(gpu_check.CASES)
    for case in gpu_check.CASES:
        spec = registry.build(case.kernel, case.impl, **case.kwargs)
        assert spec.impl == case.impl
        assert set(case.versus) <= ids
    for target in gpu_check.TARGETS:
        assert target.row in ids and (target.versus is None or target.versus in ids)


def test_target_shapes_are_the_stated_ones():
    by_id = {c.id: c for c in gpu_check.CASES}
    assert by_id["gemm-bf16-8192/triton"].kwargs == {"m": 8192, "n": 8192, "k": 8192,
                                                     "dtype": "bf16", "variant": ""}
    attn = by_id["attn-fwd-d128-16k-causal/triton"].kwargs
    assert (attn["seq"], attn["head_dim"], attn["causal"], attn["dtype"]) == (16384, 128, True, "bf16")


def _row(id_, time_s, tflops=None, status="ok", versus=()):
    return {"id": id_, "time_s": time_s, "tflops": tflops, "status": status, "versus": versus}


def test_evaluate_speedups_tflops_and_missing_rows():
    targets = [
        gpu_check.Target("ratio", "a/triton", 0.9, "a/torch"),
        gpu_check.Target("rate", "b/triton", 400.0),
        gpu_check.Target("absent", "c/triton", 1.0, "c/torch"),
    ]
    rows = [_row("a/torch", 1.0), _row("a/triton", 1.2), _row("b/triton", 2.0, tflops=410.0),
            _row("c/torch", 1.0), _row("c/triton", None, status="wrong: relative error 0.3")]
    ratio, rate, absent = gpu_check.evaluate(rows, targets)
    assert ratio["value"] == pytest.approx(1 / 1.2) and ratio["met"] is False
    assert rate["value"] == 410.0 and rate["met"] is True and rate["unit"] == "TFLOP/s"
    assert absent["met"] is None and "relative error 0.3" in absent["reason"]


def test_speedup_is_the_other_rows_time_over_ours():
    rows = [_row("x/torch", 3.0), _row("x/triton", 2.0, versus=("x/torch",))]
    gpu_check.add_speedups(rows)
    assert rows[0]["speedup"] is None and rows[1]["speedup"] == pytest.approx(1.5)


def test_speedup_is_over_the_fastest_baseline_that_ran():
    rows = [_row("a/sdpa-cudnn", 1.0), _row("a/sdpa-flash", 2.0),
            _row("a/sdpa-efficient", None, status="skipped: no kernel"),
            _row("a/triton", 1.25, versus=("a/sdpa-cudnn", "a/sdpa-efficient", "a/sdpa-flash")),
            _row("b/triton", 1.0, versus=("b/sdpa-flash",))]
    gpu_check.add_speedups(rows)
    assert rows[3]["speedup"] == pytest.approx(0.8) and rows[3]["versus"] == "a/sdpa-cudnn"
    assert rows[4]["speedup"] is None and rows[4]["versus"] == "b/sdpa-flash"


def test_attention_rows_are_the_registry_baselines_then_triton():
    prefix = "attn-fwd-d128-16k-causal"
    ids = [c.id for c in gpu_check.CASES if c.id.startswith(prefix + "/")]
    baselines = [f"{prefix}/{impl}" for impl in registry.baselines("attention")]
    assert ids == baselines + [f"{prefix}/triton", f"{prefix}/triton-fp8"]
    triton = next(c for c in gpu_check.CASES if c.id == f"{prefix}/triton")
    assert triton.versus == tuple(baselines)


def test_run_case_on_cpu_times_torch_and_skips_triton_with_the_reason():
    kw = {"m": 32, "n": 32, "k": 32, "dtype": "fp32", "variant": ""}
    torch_row = gpu_check.run_case(gpu_check.Case("g/torch", "gemm", "torch", kw), torch.device("cpu"))
    assert torch_row["status"] == "ok" and torch_row["rel_error"] < 1e-4 and torch_row["time_s"] > 0
    bf16 = {**kw, "dtype": "bf16"}
    triton_row = gpu_check.run_case(gpu_check.Case("g/triton", "gemm", "triton", bf16),
                                    torch.device("cpu"))
    assert triton_row["status"].startswith("skipped") and "interpreter" in triton_row["status"]
    assert triton_row["time_s"] is None


def _fake_gpu(monkeypatch, times):
    """Pretend to be on a GPU whose cases take ``times[id]`` seconds at 1e15 FLOPs each."""
    monkeypatch.setattr(gpu_check, "_no_gpu_reason", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))

    def run_case(case, device, seed=0):
        t = times.get(case.id, 1.0)
        status = "ok" if t else "wrong: relative error 0.5 against the float64 reference"
        return {"id": case.id, "kernel": case.kernel, "impl": case.impl, "versus": case.versus,
                "dtype": case.kwargs["dtype"], "status": status, "rel_error": 1e-3,
                "time_s": t or None, "tflops": 1e15 / t / 1e12 if t else None}

    monkeypatch.setattr(gpu_check, "run_group",
                        lambda cases, device, seed=0: [run_case(c, device) for c in cases])


def test_report_on_a_gpu_table_json_and_exit_codes(monkeypatch, capsys):
    fast = {"gemm-bf16-8192/triton": 1.0, "gemm-bf16-8192/torch": 1.05,
            "gemm-fp8-tensorwise-8192/triton": 0.5, "gemm-fp8-tensorwise-8192/torch": 0.5,
            "attn-fwd-d128-16k-causal/triton": 2.0, "attn-fwd-d128-16k-causal/triton-fp8": 1.5}
    _fake_gpu(monkeypatch, fast)
    assert gpu_check.main(["--strict"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA H100" in out and "MISSED" not in out and "gemm-bf16-8192/triton" in out

    import json

    _fake_gpu(monkeypatch, {**fast, "gemm-bf16-8192/triton": 1.5,  # both Triton GEMMs 0.7x
                            "gemm-bf16-8192/triton-tma": 1.5})  # cuBLAS
    assert gpu_check.main(["--json"]) == 0  # a missed target is reported, not an error...
    report = json.loads(capsys.readouterr().out)
    assert report["all_correct"] and not report["all_targets_met"]
    missed = [t["target"] for t in report["targets"] if t["met"] is False]
    assert missed == ["BF16 GEMM 8192^3: Triton >= 0.9x torch.matmul"]
    assert gpu_check.main(["--json", "--strict"]) == 1  # ...unless --strict
    capsys.readouterr()

    _fake_gpu(monkeypatch, {**fast, "attn-fwd-d64-16k-causal/triton": 0})  # a wrong kernel
    assert gpu_check.main(["--only", "attention"]) == 1
    assert "wrong: relative error 0.5" in capsys.readouterr().out


def test_faster_than_means_strictly_faster():
    target = gpu_check.Target("fp8 faster", "a/fp8", 1.0, "a/bf16", strictly=True)
    tie = gpu_check.evaluate([_row("a/bf16", 1.0), _row("a/fp8", 1.0)], [target])[0]
    win = gpu_check.evaluate([_row("a/bf16", 1.0), _row("a/fp8", 0.9)], [target])[0]
    assert tie["met"] is False and win["met"] is True


class _DriftingDevice:
    """A fake device and clock whose calls get slower as it warms (1% per call made so far),
    as a GPU's clocks fall from boost towards the power cap."""

    def __init__(self):
        self.calls, self.log = 0, []

    def timer(self, name, work_s):
        def one_round():
            self.log.append(name)
            self.calls += 1
            return work_s * (1 + 0.01 * self.calls)
        return one_round


def test_interleaved_rounds_alternate_baseline_and_candidate():
    dev = _DriftingDevice()
    out, failed = gpu_check.interleave({"a/torch": dev.timer("a/torch", 1.0),
                                        "a/triton": dev.timer("a/triton", 1.0)}, rounds=4)
    assert dev.log == ["a/torch", "a/triton"] * 4 and failed == {}
    assert len(out["a/torch"]) == len(out["a/triton"]) == 4


def test_a_row_that_fails_while_timing_fails_alone():
    dev = _DriftingDevice()
    calls = []

    def out_of_memory():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory")
        return 1.0

    out, failed = gpu_check.interleave({"a": dev.timer("a", 1.0), "b": out_of_memory}, rounds=3)
    assert len(out["a"]) == 3 and out["b"] == [1.0] and len(calls) == 2
    assert str(failed["b"]) == "CUDA out of memory"


def test_interleaving_shares_a_drift_that_back_to_back_blocks_would_charge_to_one_side():
    import statistics

    dev = _DriftingDevice()
    out, _ = gpu_check.interleave({"a": dev.timer("a", 1.0), "b": dev.timer("b", 1.0)}, rounds=21)
    ratio = statistics.median(out["b"]) / statistics.median(out["a"])
    # Same kernel: interleaved, B is one call later each round: (1 + 0.01*22)/(1 + 0.01*21).
    assert ratio == pytest.approx(1.22 / 1.21, rel=1e-12)
    blocks = _DriftingDevice()
    a = [blocks.timer("a", 1.0)() for _ in range(21)]
    b = [blocks.timer("b", 1.0)() for _ in range(21)]
    # All of A, then all of B: B's median is 21 calls later, ~18% "slower" for no kernel reason.
    assert statistics.median(b) / statistics.median(a) == pytest.approx(1.32 / 1.11, rel=1e-12)


def test_run_group_times_each_row_in_its_own_rounds_on_cpu():
    kw = {"m": 32, "n": 32, "k": 32, "dtype": "fp32", "variant": ""}
    rows = gpu_check.run_group([gpu_check.Case("g/torch", "gemm", "torch", kw),
                                gpu_check.Case("g/torch2", "gemm", "torch", kw)],
                               torch.device("cpu"), rounds=3)
    for row in rows:
        assert row["status"] == "ok" and row["rounds"] == 3 and row["time_s"] > 0
        assert row["timing_method"] == "cpu-perf-counter" and row["l2_flush"] is False


def test_a_target_counts_the_fastest_triton_implementation():
    target = gpu_check.Target("best", "g/triton", 0.9, "g/torch", also=("g/triton-tma",))
    rows = [_row("g/torch", 1.0), _row("g/triton", 2.0), _row("g/triton-tma", 1.0)]
    entry = gpu_check.evaluate(rows, [target])[0]
    assert entry["value"] == pytest.approx(1.0) and entry["row"] == "g/triton-tma"
    rows[2] = _row("g/triton-tma", None, status="skipped: no TMA descriptors")
    entry = gpu_check.evaluate(rows, [target])[0]
    assert entry["value"] == pytest.approx(0.5) and entry["row"] == "g/triton"
