"""The end-of-run summary of `python -m pytest --benchmark` (`bench.summary`): one table per
kernel family, throughput, speedup over the registry's baseline, watts, times with units."""

import re

import pytest

from bench.summary import case_figures, family_table, registry_baseline, summary
from kernels import registry
from tests.support.records_factory import gemm_record


def attention_record(impl, time_s, direction="fwd", seq=1024, avg_power_w=None):
    flops = 4 * 1 * 8 * seq * seq * 64 // 2
    return {"kernel": "attention", "impl": impl, "dtype": "bf16", "direction": direction,
            "variant": "", "layout": "", "shape": {"b": 1, "h": 8, "sq": seq, "sk": seq,
                                                     "d": 64, "causal": True},
            "flops": flops, "bytes": 4 * seq * 8 * 64 * 2, "time_s": time_s,
            "tflops": flops / time_s / 1e12, "gbps": 1.0, "avg_power_w": avg_power_w}


def rows(table: str) -> list[list[str]]:
    """A titled table's lines (title, header, rule, rows), each split into cells on runs of two
    or more spaces (a cell never holds two)."""
    return [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()]


def test_the_baseline_is_the_registry_s_first_implementation():
    assert registry_baseline("gemm") == registry.impls("gemm")[0]
    assert registry_baseline("attention") == registry.impls("attention")[0]
    assert registry_baseline("fit") is None  # not a kernel family: nothing to compare with


def test_speedup_is_baseline_time_over_time_on_the_same_problem():
    records = [gemm_record(1024, impl="torch", time_s=2e-3, avg_power_w=600.0),
               gemm_record(1024, impl="triton", time_s=1.6e-3, avg_power_w=640.0),
               gemm_record(512, impl="triton", time_s=0.5e-3),  # no baseline at this size
               gemm_record(512, impl="torch", time_s=0.25e-3)]
    table = family_table("gemm", records, "torch")
    title, header, _, *cells = rows(table)
    assert "vs torch" in header and "TFLOP/s" in header and "W" in header
    by = {(c[header.index("shape")], c[header.index("impl")]): c for c in cells}
    big = by[("1024x1024x1024", "triton")]
    assert float(big[header.index("vs torch")]) == pytest.approx(2e-3 / 1.6e-3, rel=1e-2)
    assert big[header.index("time")] == "1.6 ms"
    assert float(big[header.index("TFLOP/s")]) == pytest.approx(2 * 1024**3 / 1.6e-3 / 1e12,
                                                                 rel=1e-2)
    assert big[header.index("W")] == "640"
    assert by[("512x512x512", "triton")][header.index("vs torch")] == "0.5"
    # smaller problems first, the baseline first at each
    assert [(c[header.index("shape")], c[header.index("impl")]) for c in cells] == [
        ("512x512x512", "torch"), ("512x512x512", "triton"),
        ("1024x1024x1024", "torch"), ("1024x1024x1024", "triton")]


def test_the_baseline_comes_from_the_caller_not_a_name_in_the_code():
    records = [gemm_record(1024, impl="torch", time_s=2e-3),
               gemm_record(1024, impl="triton", time_s=1e-3)]
    text = summary(records, baseline_of=lambda kernel: "triton")
    assert "vs triton" in text and "vs torch" not in text
    _, header, _, *cells = rows(text)
    torch_row = next(c for c in cells if c[header.index("impl")] == "torch")
    assert float(torch_row[header.index("vs triton")]) == pytest.approx(0.5)


def test_no_speedup_column_where_only_the_baseline_ran():
    table = family_table("gemm", [gemm_record(256, time_s=48.5e-6)], "torch")
    assert "vs torch" not in table and "48.5 us" in table


def test_gb_per_s_where_no_flops_are_counted():
    record = gemm_record(256, time_s=1e-3, flops=0, tflops=None, gbps=0.393)
    _, header, _, cells = rows(family_table("copy", [record], None))
    assert "GB/s" in header and "TFLOP/s" not in header
    assert cells[header.index("GB/s")] == "0.393"


def test_one_table_per_family_kernels_first_then_the_rest():
    fit = {"kernel": "fit", "impl": "flopcast", "dtype": "fp64", "direction": "fwd",
           "variant": "approach3", "layout": "", "shape": {"points": 240, "starts": 4500},
           "flops": 0, "bytes": 0, "time_s": 0.212, "tflops": None, "gbps": None,
           "avg_power_w": None}
    records = [fit, attention_record("torch", 2e-3, "bwd"), attention_record("torch", 1e-3),
               gemm_record(256)]
    text = summary(records)
    tables = text.split("\n\n")
    assert [table.split(":")[0] for table in tables] == ["attention", "gemm", "fit"]
    attention, _, fit_table = tables
    passes = [c[0] for c in rows(attention)[3:]]
    assert passes == ["fwd", "bwd"]  # the forward pass first
    assert "1x8x1024x1024x64-causal" in attention
    assert "212 ms" in fit_table and "TFLOP/s" not in fit_table and "layout" not in fit_table


def test_case_figures_for_the_progress_line():
    assert case_figures({"tflops": 0.692, "time_s": 48.5e-6, "avg_power_w": 310.4}) == \
        "0.692 TFLOP/s, 48.5 us, 310 W"
    assert case_figures({"tflops": None, "gbps": 812.0, "time_s": 2.0}) == "812 GB/s, 2 s"
    assert case_figures({}) == "done"


def test_a_memory_bound_kernel_is_read_in_gb_per_s_though_it_counts_flops():
    # The MoE combine: 2 T k D weighting FLOPs over ~2 T k D + 2 T D bytes (under one FLOP
    # per byte, far below any accelerator's balance): its rate is its bandwidth.
    from kernels import flops as kflops
    t, d, k = 4096, 1024, 2
    f, b = kflops.moe_combine_flops(t, d, k), kflops.moe_combine_bytes(t, d, k, "bf16")
    assert f / b < 1
    record = gemm_record(256, time_s=1e-4, flops=f, bytes=b, tflops=f / 1e-4 / 1e12,
                         gbps=b / 1e-4 / 1e9)
    _, header, _, cells = rows(family_table("moe_combine", [record], None))
    assert "GB/s" in header and "TFLOP/s" not in header
    assert float(cells[header.index("GB/s")]) == pytest.approx(b / 1e-4 / 1e9, rel=1e-2)
    assert case_figures(record).startswith(f"{b / 1e-4 / 1e9:.3g} GB/s")
    # A GEMM keeps its TFLOP/s.
    assert "TFLOP/s" in family_table("gemm", [gemm_record(256, time_s=1e-4)], "torch")
