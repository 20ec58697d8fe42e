"""The torch baselines: specs, their checks against float64, and a deliberately wrong kernel."""

import dataclasses

import pytest
import torch

from kernels import registry
from kernels.spec import CorrectnessError, KernelError


@pytest.mark.parametrize("layout", ["rr", "rc", "cr", "cc"])
def test_bf16_gemm_odd_shape_passes_check(layout):
    spec = registry.build("gemm", "torch", 77, 131, 96, "bf16", layout=layout)
    a, b = spec.make_inputs(torch.device("cpu"), 0)
    assert a.is_contiguous() == (layout[0] == "r") and b.is_contiguous() == (layout[1] == "r")
    assert spec.check("cpu") < 1e-2
    assert spec.flops == 2 * 77 * 131 * 96


@pytest.mark.parametrize("variant", ["tensorwise", "rowwise"])
def test_fp8_scaled_mm_baseline(variant):
    spec = registry.build("gemm", "torch", 64, 48, 96, "fp8_e4m3", variant=variant)
    a, b, sa, sb = spec.make_inputs(torch.device("cpu"), 1)
    assert a.dtype == torch.float8_e4m3fn and b.dtype == torch.float8_e4m3fn
    assert b.t().is_contiguous(), "the second operand must be column-major"
    assert sa.shape == ((64, 1) if variant == "rowwise" else ())
    assert sb.shape == ((1, 48) if variant == "rowwise" else ())
    out = spec.run(a, b, sa, sb)
    assert out.dtype == torch.bfloat16
    assert spec.check("cpu", seed=1) < 5e-2


@pytest.mark.parametrize("impl", ["sdpa-flash", "sdpa-math"])  # the backends a CPU runs
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_sdpa_baseline_with_grouped_query_heads(impl, causal, direction):
    spec = registry.build("attention", impl, 1, 8, 2, 33, 64, causal, "bf16", direction=direction)
    assert spec.check("cpu") < 1e-2
    expected = 4 * 1 * 8 * 33 * 33 * 64 // (2 if causal else 1)
    assert spec.flops == (expected if direction == "fwd" else expected * 5 // 2)


def test_wrong_kernel_fails_the_check():
    spec = registry.build("gemm", "torch", 32, 32, 32, "bf16")
    wrong = dataclasses.replace(spec, run=lambda a, b: torch.matmul(a, b) * 1.05)
    with pytest.raises(CorrectnessError, match="exceeds the bf16 tolerance"):
        wrong.check("cpu")


def test_nan_output_fails_the_check():
    spec = registry.build("attention", "sdpa-math", 1, 2, 2, 16, 64, False, "bf16")
    broken = dataclasses.replace(spec, run=lambda q, k, v: torch.full_like(q, float("nan")))
    with pytest.raises(CorrectnessError):
        broken.check("cpu")


def test_bad_specs_are_refused_clearly():
    with pytest.raises(KernelError, match="multiple of heads_kv"):
        registry.build("attention", "sdpa-flash", 1, 6, 4, 16, 64)
    with pytest.raises(KernelError, match="column-major"):
        registry.build("gemm", "torch", 8, 8, 8, "fp8_e4m3", layout="rr")
    with pytest.raises(KernelError, match="unknown kernel"):
        registry.build("conv", "torch", 1)
    with pytest.raises(KernelError, match="positive integer"):
        registry.build("gemm", "torch", 0, 8, 8)


def test_registry_lists_the_baselines_first():
    assert registry.impls("gemm")[0] == "torch" and registry.baselines("gemm") == ["torch"]
    sdpa = ["sdpa-cudnn", "sdpa-efficient", "sdpa-flash", "sdpa-math"]
    assert registry.baselines("attention") == sdpa
    assert registry.impls("attention")[:4] == sdpa and "triton" in registry.impls("attention")


@pytest.mark.parametrize("kernel,args", [("gemm", (32, 32, 32)), ("gemm", (32, 32, 32, "fp8_e4m3")),
                                         ("attention", (1, 2, 2, 16, 64))])
def test_every_spec_says_whether_it_is_a_baseline(kernel, args):
    for impl in registry.impls(kernel):
        try:
            spec = registry.build(kernel, impl, *args)
        except KernelError:  # e.g. no Triton on this machine
            continue
        assert spec.impl == impl
        assert spec.baseline is (impl in registry.baselines(kernel))
        assert spec.identity()["baseline"] is spec.baseline


def test_a_builder_called_directly_carries_its_registration():
    from kernels.matmul import torch_gemm, triton_gemm

    assert torch_gemm(16, 16, 16, "fp8_e4m3").baseline is True  # FP8 goes through _scaled_mm
    assert triton_gemm.__name__ == "triton_gemm" and triton_gemm(16, 16, 16).baseline is False
