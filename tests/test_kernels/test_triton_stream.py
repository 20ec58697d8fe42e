"""The streaming scale, y = c * x: exact against float64 rounded once, for the Triton kernel
and the torch baseline, through their registered specs, and with its byte count.

The Triton kernel runs in the CPU interpreter when there is no GPU
(tests/support/triton_interpreter.py); its block there is 256 elements, so the sizes below
cross blocks and end in a ragged one.
"""

import pytest
import torch
from tests.support.triton_interpreter import DEVICE, interpreter_fixes  # noqa: F401

from kernels import registry
from kernels.spec import KernelError
from kernels.stream import SCALE, stream_spec, torch_scale
from kernels.triton_stream import triton_scale

pytestmark = [pytest.mark.interpreter, pytest.mark.usefixtures("interpreter_fixes")]

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _x(n, dtype, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("n", [1, 255, 256, 1000, 4099])
@pytest.mark.parametrize("scale", [triton_scale, torch_scale])
def test_scale_is_the_exact_product_rounded_once(scale, n, dtype):
    x = _x(n, DTYPES[dtype])
    out = torch.full_like(x, float("nan"), device=DEVICE)
    got = scale(x.to(DEVICE), SCALE, out)
    assert got is out
    # The float64 product of a 16- or 32-bit value and 1.25 is exact; one rounding to the
    # dtype (to nearest even) is the only error allowed.
    assert torch.equal(got.cpu(), (x.double() * SCALE).to(DTYPES[dtype]))


def test_the_scale_factor_is_one_the_check_can_see():
    """1.25 is not a power of two: the product needs two more mantissa bits than x, so most
    bfloat16 products are rounded, and a kernel that wrote x back unscaled, or truncated,
    would fail the exact check above."""
    x = _x(4096, torch.bfloat16)
    rounded = (x.double() * SCALE).to(torch.bfloat16)
    truncated = ((x.float() * SCALE).view(torch.int32) & ~0xFFFF).view(torch.float32)
    assert (rounded.double() != x.double() * SCALE).float().mean() > 0.3
    assert not torch.equal(truncated.to(torch.bfloat16), rounded)
    assert not torch.equal(x, rounded)


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_registered_specs_check_and_count(impl):
    spec = registry.build("stream", impl, 3000, "bf16")
    assert spec.kernel == "stream" and spec.shape == {"n": 3000}
    assert spec.baseline == (impl == "torch")
    assert spec.bytes == 2 * 3000 * 2 and spec.flops == 3000  # x read, y written; one multiply
    assert spec.check(DEVICE) < 2 ** -8  # one rounding: at most half a bfloat16 ulp each
    x, out = spec.make_inputs(torch.device(DEVICE), 1)
    assert out.shape == x.shape and out.dtype == x.dtype == torch.bfloat16
    assert spec.run(x, out) is out


def test_a_wrong_scale_fails_its_check():
    spec = stream_spec("broken", 1000, "fp32", scale=lambda x, c, out: out.copy_(x))
    with pytest.raises(AssertionError, match="relative error"):
        spec.check("cpu")


@pytest.mark.parametrize("n,dtype,match", [(0, "bf16", "positive integer"),
                                           (10, "fp8_e4m3", "stream takes fp32, bf16, fp16")])
def test_impossible_streams_are_refused(n, dtype, match):
    with pytest.raises(KernelError, match=match):
        registry.build("stream", "torch", n, dtype)


def test_the_launcher_refuses_mismatched_tensors():
    x = _x(64, torch.float32).to(DEVICE)
    with pytest.raises(ValueError, match="one shape and dtype"):
        triton_scale(x, SCALE, torch.empty(64, dtype=torch.bfloat16, device=DEVICE))
    with pytest.raises(ValueError, match="contiguous"):
        triton_scale(x[::2], SCALE, torch.empty(32, device=DEVICE))
