"""How the Triton GEMM launchers store operands for the kernels (kernels/gemm_operands.py):
copies only where the kernels could not read fast, and never a different product."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.gemm_operands import ALIGN, aligned_output, kernel_operands, major


def _matrix(rows, cols, layout, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # Small integers: every product and sum is exact in float64, so equality is exact.
    t = torch.randint(-4, 5, (rows, cols) if layout == "r" else (cols, rows), generator=gen)
    t = t.double()
    return t if layout == "r" else t.t()


def _leading(t):
    return t.stride(0) if major(t) == "r" else t.stride(1)


def _stored(t, want):
    """``t`` is stored with majorness ``want`` (a single row or column is stored both ways)."""
    rows, cols = t.shape
    return (t.stride(1) == 1 or cols == 1) if want == "r" else (t.stride(0) == 1 or rows == 1)


@pytest.mark.parametrize("layout", ["rr", "rc", "cr", "cc"])
def test_aligned_operands_are_used_as_they_are(layout):
    """Every benchmark shape (multiples of 16): 16-bit operands in any layout, and FP8 ones
    in layout "rc", reach the kernel without a copy."""
    a, b = _matrix(64, 32, layout[0]), _matrix(32, 48, layout[1])
    a2, b2, m, n, k = kernel_operands(a, b)
    assert a2 is a and b2 is b and (m, n, k) == (64, 48, 32)
    if layout == "rc":
        a2, b2, *_ = kernel_operands(a, b, a_major="r", b_major="c")
        assert a2 is a and b2 is b


@pytest.mark.parametrize("layout", ["rr", "cr", "cc"])
def test_fp8_operands_are_made_k_major(layout):
    a, b = _matrix(64, 32, layout[0]), _matrix(32, 48, layout[1])
    a2, b2, m, n, k = kernel_operands(a, b, a_major="r", b_major="c")
    assert (major(a2), major(b2)) == ("r", "c") and (m, n, k) == (64, 48, 32)
    assert (a2 is a) == (layout[0] == "r") and (b2 is b) == (layout[1] == "c")
    assert torch.equal(a2 @ b2, a @ b)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 40), n=st.integers(1, 40), k=st.integers(1, 40),
       layout=st.sampled_from(["rr", "rc", "cr", "cc"]),
       want=st.sampled_from([(None, None), ("r", "c"), ("r", None)]))
def test_prepared_operands_give_the_same_product(m, n, k, layout, want):
    """Whatever the shape and layout: the majorness asked for, leading dimensions and K
    multiples of 16 (and M or N where an operand is contiguous along it), zero padding, and
    the (M, N) corner of the padded product is the product."""
    a, b = _matrix(m, k, layout[0], seed=1), _matrix(k, n, layout[1], seed=2)
    a2, b2, m2, n2, k2 = kernel_operands(a, b, a_major=want[0], b_major=want[1])
    assert a2.shape == (m2, k2) and b2.shape == (k2, n2) and k2 % ALIGN == 0
    assert (m2, n2) in ((m, n), (m, -(-n // ALIGN) * ALIGN), (-(-m // ALIGN) * ALIGN, n),
                        (-(-m // ALIGN) * ALIGN, -(-n // ALIGN) * ALIGN))
    for t, asked, own in ((a2, want[0], a), (b2, want[1], b)):
        stored = asked or major(own)
        assert _stored(t, stored)
        assert _leading(t) % ALIGN == 0 or min(t.shape) == 1
        contiguous_along = t.shape[1] if stored == "r" else t.shape[0]
        assert contiguous_along % ALIGN == 0 or t is own
    assert torch.equal((a2 @ b2)[:m, :n], a @ b)
    assert torch.equal(a2[m:], torch.zeros_like(a2[m:]))
    assert torch.equal(a2[:, k:], a2.new_zeros(m2, k2 - k))


def test_output_rows_start_at_aligned_offsets():
    c = aligned_output(5, 20, torch.bfloat16, "cpu")
    assert c.shape == (5, 20) and c.stride() == (32, 1)
    assert aligned_output(3, 32, torch.float32, "cpu").is_contiguous()
