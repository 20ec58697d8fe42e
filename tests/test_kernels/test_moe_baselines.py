"""The torch baselines of the MoE kernels on this CPU: grouped GEMMs (``torch._grouped_mm``
and a loop of ``torch.matmul`` / ``torch._scaled_mm``), dispatch and combine, with their
float64 checks and the probes that skip what does not run."""

import dataclasses

import pytest
import torch

from kernels import registry
from kernels.grouped_gemm import grouped_gemm_spec
from kernels.spec import CorrectnessError

DIRECTIONS = ["fwd", "bwd_dx", "bwd_dw"]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("impl", ["torch", "torch-loop"])
def test_bf16_grouped_gemm_baselines_skewed(impl, direction):
    spec = registry.build("grouped_gemm", impl, 300, 6, 40, 24, "bf16", direction=direction,
                          variant="zipf1.0")
    assert spec.unavailable(torch.device("cpu")) is None
    assert spec.check("cpu") < 1e-2  # 300 rows: checked on a sample of 256
    assert spec.flops == 2 * 300 * 40 * 24
    a, b, offs = spec.make_inputs(torch.device("cpu"), 0)
    assert offs.dtype == torch.int32 and int(offs[-1]) == 300
    out = spec.run(a, b, offs)
    assert out.shape == {"fwd": (300, 40), "bwd_dx": (300, 24), "bwd_dw": (6, 24, 40)}[direction]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_empty_experts_through_torch_grouped_mm(direction):
    def run(a, b, offs):
        return torch._grouped_mm(a, b, offs=offs)

    spec = grouped_gemm_spec("torch", (0, 9, 0, 30, 1, 0), 32, 16, "bf16", direction=direction,
                             variant="custom", run=run)
    assert spec.check("cpu") < 1e-2


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_fp8_loop_of_scaled_mm(direction):
    spec = registry.build("grouped_gemm", "torch-loop", 90, 3, 48, 32, "fp8_e4m3",
                          direction=direction, variant="zipf1.0")
    a, b, offs, sa, sb = spec.make_inputs(torch.device("cpu"), 0)
    assert a.dtype == b.dtype == torch.float8_e4m3fn
    # reduction dimension contiguous in both operands, as FP8 tensor cores want
    assert a.stride(-1) == 1 and b.stride(-2) == 1
    assert spec.check("cpu") < 5e-2 and spec.out_dtype == "bf16"


def test_operators_that_do_not_run_are_skipped_with_their_reason(monkeypatch):
    fp8 = registry.build("grouped_gemm", "torch", 64, 2, 32, 32, "fp8_e4m3")
    reason = fp8.unavailable(torch.device("cpu"))
    assert reason.startswith("torch._scaled_grouped_mm does not run fp8_e4m3 on cpu: ")
    monkeypatch.delattr(torch, "_grouped_mm")
    old = registry.build("grouped_gemm", "torch", 64, 2, 32, 32, "bf16")
    assert f"torch {torch.__version__} has no torch._grouped_mm" == old.unavailable(
        torch.device("cpu"))


def test_wrong_grouped_kernels_fail_the_check():
    spec = registry.build("grouped_gemm", "torch", 64, 4, 32, 32, "bf16", variant="zipf1.0")
    off = dataclasses.replace(spec, run=lambda a, b, offs: torch._grouped_mm(a, b, offs=offs) * 1.05)
    with pytest.raises(CorrectnessError, match="bf16 tolerance"):
        off.check("cpu")
    # every expert multiplied by expert 0's matrix
    same = dataclasses.replace(spec, run=lambda a, b, offs: torch._grouped_mm(
        a, b[:1].expand_as(b).contiguous(), offs=offs))
    with pytest.raises(CorrectnessError):
        same.check("cpu")
    dw = registry.build("grouped_gemm", "torch", 64, 4, 32, 32, "bf16", direction="bwd_dw")
    shifted = torch.tensor([15, 32, 48, 64], dtype=torch.int32)  # balanced: 16, 32, 48, 64
    with pytest.raises(CorrectnessError):  # one row summed into the wrong expert's dW
        dataclasses.replace(dw, run=lambda a, b, offs: torch._grouped_mm(
            a, b, offs=shifted)).check("cpu")


@pytest.mark.parametrize("family", ["moe_dispatch", "moe_combine"])
@pytest.mark.parametrize("top_k", [1, 8])
def test_dispatch_and_combine_baselines(family, top_k):
    spec = registry.build(family, "torch", 300, 32, 16, top_k, "bf16", variant="zipf1.0")
    assert spec.check("cpu") <= spec.tolerance
    assert spec.shape["tokens"] == 300 and spec.shape["top_k"] == top_k
    assert spec.flops == (0 if family == "moe_dispatch" else 2 * 300 * top_k * 32)
    assert registry.impls(family) == ["torch", "triton"]
