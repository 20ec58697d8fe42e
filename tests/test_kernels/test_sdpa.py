"""SDPA's backends as baselines, at their boundary: a fake `sdpa_kernel` and SDPA record which
backend each call had pinned and refuse, as torch does, when that backend cannot run."""

import contextlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from kernels import registry, sdpa
from kernels.torch_versions import sdpa_takes_enable_gqa

CPU = torch.device("cpu")
SHAPE = (1, 4, 2, 40, 64, True, "bf16")  # batch, heads_q, heads_kv, seq, head_dim, causal, dtype


class FakeSDPA:
    """Stands in for ``sdpa_kernel`` and ``F.scaled_dot_product_attention``. A call runs (on
    the math backend, so the numbers are real) only when exactly one backend is pinned and it
    is not in ``missing``; otherwise it raises as torch does."""

    def __init__(self, missing=(), warning=""):
        self.missing, self.warning = set(missing), warning
        self.enabled: list[SDPBackend] | None = None
        self.calls: list[str] = []
        self.pins: list[str] = []

    @contextlib.contextmanager
    def sdpa_kernel(self, backends):
        before = self.enabled
        self.enabled = [backends] if isinstance(backends, SDPBackend) else list(backends)
        self.pins.append(",".join(b.name for b in self.enabled))
        try:
            yield
        finally:
            self.enabled = before

    def sdpa(self, q, k, v, *, is_causal=False, scale=None, enable_gqa=False):
        names = [b.name for b in self.enabled] if self.enabled is not None else ["default"]
        self.calls.append(",".join(names))
        if len(names) != 1 or names[0] in self.missing or names[0] == "default":
            if self.warning:
                warnings.warn(self.warning)
            raise RuntimeError("No available kernel. Aborting execution.")
        with sdpa_kernel(SDPBackend.MATH):  # the real one: whatever the fake pinned, math runs
            return REAL_SDPA(q, k, v, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)


REAL_SDPA = F.scaled_dot_product_attention


@pytest.fixture
def fake(monkeypatch):
    def install(**kwargs):
        sdpa_takes_enable_gqa()  # asked once of the real torch, before the fake is in place
        fake = FakeSDPA(**kwargs)
        monkeypatch.setattr(sdpa, "sdpa_kernel", fake.sdpa_kernel)
        monkeypatch.setattr(F, "scaled_dot_product_attention", fake.sdpa)
        monkeypatch.setattr(sdpa, "_probed", {})
        return fake

    return install


@pytest.mark.parametrize("direction", ["fwd", "bwd"])
@pytest.mark.parametrize("impl", ["sdpa-cudnn", "sdpa-efficient", "sdpa-flash", "sdpa-math"])
def test_each_baseline_pins_exactly_its_own_backend(fake, impl, direction):
    fake = fake()
    spec = registry.build("attention", impl, *SHAPE, direction=direction)
    backend = sdpa.BACKENDS[impl]
    assert spec.backend == backend and spec.baseline and spec.identity()["backend"] == backend
    assert spec.unavailable(CPU) is None
    assert spec.check("cpu") < 1e-2
    assert fake.calls and set(fake.calls) == {backend} and set(fake.pins) == {backend}


def test_an_unavailable_backend_is_a_skip_with_the_reason_probed_once(fake):
    fake = fake(missing={"CUDNN_ATTENTION"},
                warning="cuDNN attention kernel not used because: stand-in reason")
    cudnn = registry.build("attention", "sdpa-cudnn", *SHAPE, direction="bwd")
    reason = cudnn.unavailable(CPU)
    assert "SDPA's CUDNN_ATTENTION backend does not run" in reason and cudnn.name in reason
    assert "No available kernel" in reason and "stand-in reason" in reason
    calls = len(fake.calls)
    assert cudnn.unavailable(CPU) == reason and len(fake.calls) == calls  # once per shape
    # ... and once per shape: another shape, or the same backend's other direction, is new.
    registry.build("attention", "sdpa-cudnn", 1, 4, 2, 48, 64, True, "bf16").unavailable(CPU)
    assert len(fake.calls) > calls
    flash = registry.build("attention", "sdpa-flash", *SHAPE, direction="bwd")
    assert flash.unavailable(CPU) is None
    assert "default" not in fake.calls  # no call ever ran without a pinned backend


def test_the_pin_is_held_over_a_timing_not_entered_per_call(fake):
    fake = fake()
    spec = registry.build("attention", "sdpa-flash", *SHAPE)
    inputs = spec.make_inputs(CPU, 1)
    with spec.context():
        for _ in range(5):
            spec.run(*inputs)
    assert fake.pins == ["FLASH_ATTENTION"] and fake.calls == ["FLASH_ATTENTION"] * 5
    spec.run(*inputs)  # outside the context a call pins for itself
    assert fake.pins == ["FLASH_ATTENTION"] * 2 and fake.calls[-1] == "FLASH_ATTENTION"


def test_a_backend_other_than_the_pinned_one_is_caught(fake, monkeypatch):
    fake()
    monkeypatch.setattr(sdpa, "fused_backend", lambda out: "EFFICIENT_ATTENTION")
    spec = registry.build("attention", "sdpa-flash", *SHAPE, direction="bwd")
    assert spec.unavailable(CPU) == ("SDPA ran its EFFICIENT_ATTENTION backend although only "
                                     "FLASH_ATTENTION was enabled")


def test_the_autograd_node_names_the_backend_that_ran():
    q, k, v = (torch.randn(1, 2, 32, 64, requires_grad=True) for _ in range(3))
    for backend, expected in (("FLASH_ATTENTION", "FLASH_ATTENTION"), ("MATH", None)):
        out = sdpa.pinned_forward(backend, "")(q, k, v, True, 0.125)
        assert sdpa.fused_backend(out) == expected
    assert sdpa.fused_backend(torch.ones(2)) is None


def test_math_is_no_cuda_baseline_and_says_why():
    spec = registry.build("attention", "sdpa-math", *SHAPE)
    assert spec.unavailable(torch.device("cuda")) == sdpa.MATH_ON_CUDA


def test_on_this_cpu_flash_and_math_run_efficient_and_cudnn_do_not():
    for impl in registry.baselines("attention"):
        reason = registry.build("attention", impl, *SHAPE, direction="bwd").unavailable(CPU)
        assert (reason is None) == (impl in ("sdpa-flash", "sdpa-math")), (impl, reason)


def test_fp8_has_no_sdpa_path():
    from kernels.spec import KernelError

    with pytest.raises(KernelError, match="no FP8 path"):
        registry.build("attention", "sdpa-flash", 1, 2, 2, 16, 64, True, "fp8_e4m3")
