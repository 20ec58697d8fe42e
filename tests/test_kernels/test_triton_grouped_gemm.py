"""The Triton grouped GEMM against float64, ``torch._grouped_mm`` and its registered specs.

Run in Triton's CPU interpreter when there is no GPU (see tests/support/triton_interpreter.py). The
interpreter's tile is 16 rows by 32 columns by 32 deep, so groups of 1, 17 and 37 rows cover a
partial tile, a full tile plus one row and several tiles; empty groups sit first, in the middle
and last.
"""

import pytest
import torch
from tests.support.triton_interpreter import DEVICE, interpreter_fixes  # noqa: F401

from kernels import registry
from kernels.fp8 import quantize_rowwise
from kernels.grouped_gemm import grouped_gemm_spec, triton_grouped_mm
from kernels.reference import grouped_reduce_reference, grouped_rows_reference, rel_fro_error
from kernels.spec import TOLERANCE, KernelError

pytestmark = [pytest.mark.interpreter, pytest.mark.usefixtures("interpreter_fixes")]

TORCH = {"bf16": torch.bfloat16, "fp16": torch.float16}
ROWS = (0, 17, 1, 0, 37, 5, 0)  # 60 rows over 7 groups, three of them empty


def _offs(group_rows):
    return torch.tensor(group_rows).cumsum(0).to(torch.int32).to(DEVICE)


def _randn(*shape, dtype=torch.float32, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(dtype).to(DEVICE)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_forward_and_dx_against_float64_with_empty_groups(dtype):
    m, k, n = sum(ROWS), 40, 48
    x = _randn(m, k, dtype=TORCH[dtype], seed=1)
    w = _randn(len(ROWS), k, n, dtype=TORCH[dtype], seed=2)
    y = triton_grouped_mm(x, w, _offs(ROWS))
    assert y.shape == (m, n) and y.dtype == TORCH[dtype]
    assert rel_fro_error(y, grouped_rows_reference(x, w, ROWS)) < TOLERANCE[dtype]
    # dX = dY W^T: W read through a transposed view, no copy
    dy = _randn(m, n, dtype=TORCH[dtype], seed=3)
    dx = triton_grouped_mm(dy, w.transpose(1, 2), _offs(ROWS))
    assert rel_fro_error(dx, grouped_rows_reference(dy, w.transpose(1, 2), ROWS)) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_dw_reduces_over_each_groups_rows_and_zeroes_empty_groups(dtype):
    m, k, n = sum(ROWS), 24, 40
    x = _randn(m, k, dtype=TORCH[dtype], seed=4)
    dy = _randn(m, n, dtype=TORCH[dtype], seed=5)
    # The output starts as uninitialised memory: empty groups must be written, not skipped.
    dw = triton_grouped_mm(x.t(), dy, _offs(ROWS))
    assert dw.shape == (len(ROWS), k, n)
    assert rel_fro_error(dw, grouped_reduce_reference(x.t(), dy, ROWS)) < TOLERANCE[dtype]
    for g, rows in enumerate(ROWS):
        if rows == 0:
            assert torch.count_nonzero(dw[g]) == 0


@pytest.mark.parametrize("group_rows", [(5, 100, 70, 0), (64, 0, 96), (0, 0, 31)],
                         ids=["head-body-tail", "aligned", "last-only"])
def test_dw_long_groups_through_aligned_blocks(group_rows):
    """Groups spanning several 32-row blocks: a masked head, unmasked whole blocks, a masked
    tail; groups that start or end on a block boundary; a tail block past the last row."""
    m = sum(group_rows)
    x = _randn(m, 16, dtype=torch.float16, seed=14)
    dy = _randn(m, 32, dtype=torch.float16, seed=15)
    dw = triton_grouped_mm(x.t(), dy, _offs(group_rows), out_dtype=torch.float32)
    assert rel_fro_error(dw, grouped_reduce_reference(x.t(), dy, group_rows)) < 1e-5


def test_accumulates_in_float32():
    """With a float32 output only the float32 sums differ from float64 (bf16 products are exact
    in float32): ~1e-7, where a bf16 output alone would give ~2e-3."""
    x = _randn(sum(ROWS), 200, dtype=torch.bfloat16, seed=6)
    w = _randn(len(ROWS), 200, 24, dtype=torch.bfloat16, seed=7)
    y = triton_grouped_mm(x, w, _offs(ROWS), out_dtype=torch.float32)
    assert y.dtype == torch.float32
    assert rel_fro_error(y, grouped_rows_reference(x, w, ROWS)) < 1e-5
    dw = triton_grouped_mm(x.t(), y.to(torch.bfloat16), _offs(ROWS), out_dtype=torch.float32)
    assert rel_fro_error(dw, grouped_reduce_reference(x.t(), y.to(torch.bfloat16), ROWS)) < 1e-5


def test_matches_torch_grouped_mm():
    """Same arguments, same results as torch._grouped_mm (up to bf16 rounding of the output)."""
    x = _randn(sum(ROWS), 32, dtype=torch.bfloat16, seed=8)
    w = _randn(len(ROWS), 32, 48, dtype=torch.bfloat16, seed=9)
    dy = _randn(sum(ROWS), 48, dtype=torch.bfloat16, seed=10)
    offs = _offs(ROWS)
    for a, b in ((x, w), (x.t(), dy)):
        ours = triton_grouped_mm(a, b, offs)
        theirs = torch._grouped_mm(a.cpu(), b.cpu(), offs=offs.cpu())
        assert ours.shape == theirs.shape
        assert rel_fro_error(ours.cpu(), theirs.double()) < 1e-2


@pytest.mark.parametrize("group_rows", [(23,), (0, 0, 9), (16, 16, 16, 16)],
                         ids=["one-group", "only-last", "whole-tiles"])
def test_group_layouts(group_rows):
    x = _randn(sum(group_rows), 32, dtype=torch.float16, seed=11)
    w = _randn(len(group_rows), 32, 40, dtype=torch.float16, seed=12)
    y = triton_grouped_mm(x, w, _offs(group_rows))
    assert rel_fro_error(y, grouped_rows_reference(x, w, group_rows)) < TOLERANCE["fp16"]


def _fp8_rows(fmt, seed):
    a = _randn(sum(ROWS), 64, seed=seed, scale=3.0).cpu()
    b = _randn(len(ROWS), 64, 48, seed=seed + 1, scale=0.5).cpu()
    (qa, sa), (qb, sb) = quantize_rowwise(a, fmt, dim=1), quantize_rowwise(b, fmt, dim=1)
    qb = qb.transpose(1, 2).contiguous().transpose(1, 2)  # column-major, as _scaled_grouped_mm
    return qa.to(DEVICE), qb.to(DEVICE), sa.reshape(-1).to(DEVICE), sb.reshape(len(ROWS), -1).to(DEVICE)


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
def test_fp8_rows_grouped_against_float64_of_the_dequantised_operands(fmt):
    qa, qb, sa, sb = _fp8_rows(fmt, seed=13)
    y = triton_grouped_mm(qa, qb, _offs(ROWS), scale_a=sa, scale_b=sb)
    assert y.dtype == torch.bfloat16
    # Exact FP8 products, float32 sums: only the bf16 output rounding remains.
    assert rel_fro_error(y, grouped_rows_reference(qa, qb, ROWS, sa, sb)) < 1e-2


def test_fp8_dw_scales_per_group():
    """dW in FP8: X^T and dY quantised per group; each group's scales reach its own output."""
    spec = registry.build("grouped_gemm", "triton", 60, 3, 48, 32, "fp8_e4m3", direction="bwd_dw",
                          variant="zipf1.0")
    a, b, offs, sa, sb = spec.make_inputs(torch.device(DEVICE), 0)
    assert a.is_contiguous() and b.t().is_contiguous()  # the reduction contiguous in both
    base = triton_grouped_mm(a, b, offs, scale_a=sa, scale_b=sb, out_dtype=torch.float32)
    doubled = sa.clone()
    doubled[32:64] *= 2  # the scales of group 1's rows of X_g^T
    twice = triton_grouped_mm(a, b, offs, scale_a=doubled, scale_b=sb, out_dtype=torch.float32)
    assert torch.allclose(twice[1], 2 * base[1], rtol=1e-6, atol=0)
    assert torch.equal(twice[0], base[0]) and torch.equal(twice[2], base[2])


@pytest.mark.parametrize("direction", ["fwd", "bwd_dx", "bwd_dw"])
@pytest.mark.parametrize("dtype", ["bf16", "fp8_e4m3", "fp8_e5m2"])
def test_registered_spec_checks_and_matches_its_baselines(dtype, direction):
    spec = registry.build("grouped_gemm", "triton", 70, 4, 48, 32, dtype, direction=direction,
                          variant="zipf1.0")
    assert spec.check(DEVICE) <= spec.tolerance
    assert spec.shape == {"tokens": 70, "experts": 4, "n": 48, "k": 32,
                          "tokens_per_expert_mean": 18, "tokens_per_expert_max": 34}
    if dtype != "fp8_e5m2":  # no torch grouped GEMM multiplies two e5m2 operands
        for impl in ("torch", "torch-loop"):
            base = registry.build("grouped_gemm", impl, 70, 4, 48, 32, dtype,
                                  direction=direction, variant="zipf1.0")
            assert spec.problem() == base.problem()


def test_explicit_groups_with_an_empty_expert():
    def run(a, b, offs):
        return triton_grouped_mm(a, b, offs)

    spec = grouped_gemm_spec("triton", ROWS, 40, 24, "bf16", direction="fwd", variant="custom",
                             run=run)
    assert spec.check(DEVICE) <= spec.tolerance
    assert spec.shape["tokens_per_expert_max"] == 37 and spec.shape["experts"] == 7


def test_bad_operands_are_refused_with_reasons():
    x = _randn(8, 16, dtype=torch.bfloat16)
    w = _randn(2, 16, 8, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="int32"):
        triton_grouped_mm(x, w, torch.tensor([4, 8], device=DEVICE))
    with pytest.raises(ValueError, match="2 groups but offs has 3"):
        triton_grouped_mm(x, w, _offs((2, 2, 4)))
    with pytest.raises(ValueError, match="inner dimensions"):
        triton_grouped_mm(x, w.transpose(1, 2), _offs((4, 4)))
    with pytest.raises(ValueError, match="two bfloat16"):
        triton_grouped_mm(x, w.half(), _offs((4, 4)))
    with pytest.raises(ValueError, match="FP8 operands only"):
        triton_grouped_mm(x, w, _offs((4, 4)), scale_a=torch.ones(8, device=DEVICE))
    q = x.to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="scale_b must be a float32 tensor of 16"):
        triton_grouped_mm(q, w.to(torch.float8_e4m3fn), _offs((4, 4)),
                          scale_a=torch.ones(8, device=DEVICE), scale_b=torch.ones(8, device=DEVICE))


def test_registered_beside_the_baselines_and_skipped_on_cpu():
    assert registry.impls("grouped_gemm") == ["torch", "torch-loop", "triton"]
    spec = registry.build("grouped_gemm", "triton", 64, 2, 64, 64, "bf16")
    assert "interpreter" in spec.unavailable(torch.device("cpu"))
    assert spec.name == "grouped_gemm-bf16-balanced-triton-64x2x64x64x32x32"
    dw = registry.build("grouped_gemm", "triton", 64, 2, 64, 64, "bf16", direction="bwd_dw")
    assert dw.name.startswith("grouped_gemm-bwd_dw-bf16-balanced-triton-")
    with pytest.raises(KernelError, match="bf16, fp16, fp8_e4m3 or fp8_e5m2"):
        registry.build("grouped_gemm", "triton", 64, 2, 64, 64, "fp32")
    with pytest.raises(KernelError, match="unknown grouped GEMM direction"):
        registry.build("grouped_gemm", "triton", 64, 2, 64, 64, "bf16", direction="bwd")
