"""FP8 quantisation helpers: amax scaling, saturation, row-wise scales, degenerate inputs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.fp8 import _quantize, dequantize, fp8_dtype, fp8_max, quantize_rowwise, quantize_tensorwise

FORMATS = ["fp8_e4m3", "fp8_e5m2"]
# Half a unit in the last place, relative (3 and 2 mantissa bits), and half the smallest
# subnormal (2^-9 for e4m3fn, 2^-16 for e5m2): the largest rounding error of one value, in
# units of the scale (OCP 8-bit floating point specification, 2023).
HALF_ULP = {"fp8_e4m3": 2.0**-4, "fp8_e5m2": 2.0**-3}
HALF_SUBNORMAL = {"fp8_e4m3": 2.0**-10, "fp8_e5m2": 2.0**-17}


def test_format_limits_are_the_published_ones():
    assert fp8_max(fp8_dtype("fp8_e4m3")) == 448.0
    assert fp8_max(fp8_dtype("fp8_e5m2")) == 57344.0
    with pytest.raises(ValueError, match="known: fp8_e4m3, fp8_e5m2"):
        fp8_dtype("fp8_e3m4")


def _assert_within_rounding(x, q, scale, fmt):
    """Every value is within half an FP8 step of the original (relative for normal values,
    absolute below the normal range), measured in float64."""
    x64, deq = x.double(), dequantize(q, scale).double()
    bound = HALF_ULP[fmt] * x64.abs() + HALF_SUBNORMAL[fmt] * scale.double()
    assert torch.all((deq - x64).abs() <= bound * (1 + 1e-9))


@pytest.mark.parametrize("fmt", FORMATS)
def test_tensorwise_maps_amax_to_the_largest_value(fmt):
    x = torch.randn(64, 33, generator=torch.Generator().manual_seed(0)) * 7.0
    q, scale = quantize_tensorwise(x, fmt)
    assert q.dtype == fp8_dtype(fmt) and scale.dtype == torch.float32 and scale.dim() == 0
    assert float(scale) == pytest.approx(float(x.abs().max()) / fp8_max(q.dtype), rel=1e-6)
    assert float(q.float().abs().max()) == fp8_max(q.dtype)
    _assert_within_rounding(x, q, scale, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rowwise_scales_have_scaled_mm_shapes(fmt):
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(5, 12, generator=gen) * torch.logspace(-3, 3, 5).unsqueeze(1)
    qa, sa = quantize_rowwise(a, fmt, dim=1)
    assert sa.shape == (5, 1)
    assert torch.equal(qa.float().abs().amax(dim=1), torch.full((5,), fp8_max(qa.dtype)))
    _assert_within_rounding(a, qa, sa, fmt)
    b = torch.randn(12, 7, generator=gen)
    qb, sb = quantize_rowwise(b, fmt, dim=0)
    assert sb.shape == (1, 7)
    _assert_within_rounding(b, qb, sb, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_all_zero_rows_give_scale_one_and_no_nan(fmt):
    x = torch.randn(4, 9)
    x[1] = 0.0
    q, scale = quantize_rowwise(x, fmt, dim=1)
    assert float(scale[1, 0]) == 1.0
    assert torch.all(q[1].float() == 0.0)
    assert torch.isfinite(dequantize(q, scale)).all()
    qz, sz = quantize_tensorwise(torch.zeros(3, 3), fmt)
    assert float(sz) == 1.0 and torch.all(qz.float() == 0.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_values_beyond_the_scale_saturate_instead_of_becoming_nan(fmt):
    """A value above amax (a stale scale, as in delayed scaling) clamps to the largest finite
    value; an unclamped cast to e4m3fn would give NaN."""
    q, scale = _quantize(torch.tensor([5.0, -1e9, 1.0]), torch.tensor(2.0), fp8_dtype(fmt))
    assert float(scale) == pytest.approx(2.0 / fp8_max(q.dtype))
    assert q.float().tolist() == [fp8_max(q.dtype), -fp8_max(q.dtype), fp8_max(q.dtype) / 2]


def test_subnormal_amax_never_gives_a_zero_scale():
    x = torch.tensor([1e-40, -3e-41, 0.0])  # float32 subnormals
    q, scale = quantize_tensorwise(x, "fp8_e4m3")
    assert float(scale) > 0.0
    assert torch.isfinite(q.float()).all() and torch.isfinite(dequantize(q, scale)).all()


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_input_is_refused(bad):
    with pytest.raises(ValueError, match="inf or NaN"):
        quantize_tensorwise(torch.tensor([1.0, bad]))
    with pytest.raises(ValueError, match="inf or NaN"):
        quantize_rowwise(torch.tensor([[1.0, 2.0], [bad, 0.0]]), dim=1)


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(FORMATS),
    rows=st.integers(1, 6),
    cols=st.integers(1, 20),
    log_magnitude=st.floats(-20, 20),
    seed=st.integers(0, 2**16),
)
def test_quantisation_error_is_bounded_at_any_magnitude(fmt, rows, cols, log_magnitude, seed):
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 10.0**log_magnitude
    for q, scale in (quantize_tensorwise(x, fmt), quantize_rowwise(x, fmt, dim=1),
                     quantize_rowwise(x, fmt, dim=0)):
        assert not torch.isnan(q.float()).any()
        assert float(q.float().abs().max()) <= fp8_max(q.dtype)
        _assert_within_rounding(x, q, scale, fmt)
