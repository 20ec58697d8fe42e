"""The benchmark sweeps time FP8 GEMMs in both accumulation modes on a GPU, each mode its own
problem for torch and Triton alike; the CPU quick sweep stays small."""

from collections import Counter

import pytest

from bench.sweeps import sweep
from kernels import registry


def _fp8(cases):
    return [c for c in cases if c.kernel == "gemm" and c.kwargs["dtype"].startswith("fp8")]


@pytest.mark.parametrize("name", ["quick", "full"])
def test_gpu_sweeps_time_precise_and_fast_accumulation(name):
    cases = _fp8(sweep(name, "cuda"))
    by_problem = Counter((c.kwargs["m"], c.kwargs["n"], c.kwargs["k"], c.label,
                          c.kwargs["variant"].split("-")[0]) for c in cases)
    assert by_problem and set(by_problem.values()) == {2}
    assert {c.kwargs["variant"] for c in cases} == {
        "tensorwise-precise-accum", "tensorwise-fast-accum",
        "rowwise-precise-accum", "rowwise-fast-accum"}


def test_each_mode_is_one_problem_for_every_implementation():
    """The same case builds, for torch, Triton and the TMA GEMM, specs of one problem: their
    records pair up, precise with precise, fast with fast."""
    for case in _fp8(sweep("quick", "cuda"))[:4]:
        ids = [registry.build("gemm", impl, **case.kwargs).problem()
               for impl in registry.impls("gemm")]
        assert len({repr(i) for i in ids}) == 1, ids
        assert ids[0]["variant"] == case.kwargs["variant"]


def test_cpu_quick_sweep_keeps_its_size():
    """On a CPU, FP8 runs precise only (the modes are a matter of tensor cores): three
    row-wise sizes and one tensor-wise, as before the modes existed."""
    cases = [c for c in sweep("quick", "cpu") if c.kernel in ("gemm", "attention")]
    assert len(cases) == 16
    assert Counter(c.kwargs["variant"] for c in _fp8(cases)) == {
        "rowwise-precise-accum": 3, "tensorwise-precise-accum": 1}
