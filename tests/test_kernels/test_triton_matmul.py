"""The Triton GEMMs against float64, against ``torch._scaled_mm``, and through their specs.

Run in Triton's CPU interpreter when there is no GPU (see tests/support/triton_interpreter.py).
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.triton_interpreter import DEVICE, INTERPRETED, interpreter_fixes  # noqa: F401

from kernels import registry
from kernels.fp8 import quantize_rowwise, quantize_tensorwise
from kernels.matmul import triton_fp8_matmul, triton_matmul
from kernels.reference import gemm_reference, rel_fro_error
from kernels.spec import TOLERANCE, CorrectnessError, KernelError

pytestmark = [pytest.mark.interpreter, pytest.mark.usefixtures("interpreter_fixes")]

TORCH = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _matrix(rows, cols, major, dtype, gen, scale=1.0):
    """A (rows, cols) matrix stored row-major ("r") or column-major ("c")."""
    if major == "r":
        return (torch.randn(rows, cols, generator=gen) * scale).to(dtype).to(DEVICE)
    return (torch.randn(cols, rows, generator=gen) * scale).to(dtype).to(DEVICE).t()


@pytest.mark.parametrize("layout", ["rr", "rc", "cr", "cc"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_odd_shape_every_layout_against_float64(dtype, layout):
    gen = torch.Generator().manual_seed(0)
    a = _matrix(77, 96, layout[0], TORCH[dtype], gen)
    b = _matrix(96, 131, layout[1], TORCH[dtype], gen)
    assert a.is_contiguous() == (layout[0] == "r") and b.is_contiguous() == (layout[1] == "r")
    c = triton_matmul(a, b)
    assert c.shape == (77, 131) and c.dtype == TORCH[dtype]
    assert rel_fro_error(c, gemm_reference(a, b)) < TOLERANCE[dtype]


def test_accumulates_in_float32():
    """With a float32 output only the float32 accumulation is left to differ from float64:
    K = 777 products of bf16 values are exact in float32, so the error is ~1e-7, far below
    what a bf16 accumulator (~1e-3) would give."""
    gen = torch.Generator().manual_seed(1)
    a = _matrix(40, 777, "r", torch.bfloat16, gen)
    b = _matrix(777, 24, "c", torch.bfloat16, gen)
    c = triton_matmul(a, b, out_dtype=torch.float32)
    assert c.dtype == torch.float32
    assert rel_fro_error(c, gemm_reference(a, b)) < 1e-5


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 70),
       layout=st.sampled_from(["rr", "rc", "cr", "cc"]), seed=st.integers(0, 2**16))
def test_any_shape_is_masked_correctly(m, n, k, layout, seed):
    """Ragged M, N and K (K masked, M and N wrapped and not stored), 1x1x1 included."""
    gen = torch.Generator().manual_seed(seed)
    a = _matrix(m, k, layout[0], torch.float16, gen)
    b = _matrix(k, n, layout[1], torch.float16, gen)
    assert rel_fro_error(triton_matmul(a, b), gemm_reference(a, b)) < TOLERANCE["fp16"]


def _fp8_operands(fmt, scaling, gen, m=77, n=131, k=96):
    a = torch.randn(m, k, generator=gen) * 3.0
    b = torch.randn(k, n, generator=gen) * 0.5
    if scaling == "tensorwise":
        (qa, sa), (qb, sb) = quantize_tensorwise(a, fmt), quantize_tensorwise(b, fmt)
    else:
        (qa, sa), (qb, sb) = quantize_rowwise(a, fmt, dim=1), quantize_rowwise(b, fmt, dim=0)
    qb = qb.t().contiguous().t()  # column-major, as _scaled_mm wants
    return tuple(t.to(DEVICE) for t in (qa, qb, sa, sb))


@pytest.mark.parametrize("fast_accum", [False, True])
@pytest.mark.parametrize("scaling", ["tensorwise", "rowwise"])
@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
def test_fp8_against_float64_of_the_dequantised_operands(fmt, scaling, fast_accum):
    qa, qb, sa, sb = _fp8_operands(fmt, scaling, torch.Generator().manual_seed(2))
    c = triton_fp8_matmul(qa, qb, sa, sb, fast_accum=fast_accum)
    assert c.dtype == torch.bfloat16
    # Exact FP8 products, float32 sums: only the bf16 output rounding remains (~4e-3).
    assert rel_fro_error(c, gemm_reference(qa, qb, sa, sb)) < 1e-2


@pytest.mark.parametrize("layout", ["rr", "cr", "cc"])
def test_fp8_in_every_layout_and_an_odd_k(layout):
    """Operands that are not K-major, and a K (90) that is not a multiple of 16, are copied
    into K-major, zero-padded storage by the launcher; the result is the same product."""
    gen = torch.Generator().manual_seed(5)
    a, b = torch.randn(45, 90, generator=gen), torch.randn(90, 70, generator=gen)
    (qa, sa), (qb, sb) = quantize_rowwise(a, dim=1), quantize_rowwise(b, dim=0)
    qa = qa.contiguous() if layout[0] == "r" else qa.t().contiguous().t()
    qb = qb.contiguous() if layout[1] == "r" else qb.t().contiguous().t()
    qa, qb, sa, sb = (t.to(DEVICE) for t in (qa, qb, sa, sb))
    c = triton_fp8_matmul(qa, qb, sa, sb, out_dtype=torch.float32)
    assert c.shape == (45, 70)
    assert rel_fro_error(c, gemm_reference(qa, qb, sa, sb)) < 1e-5


def test_accumulation_modes_map_to_the_dots_argument():
    """The launcher's ``fast_accum`` reaches ``tl.dot``'s ``max_num_imprecise_acc``: one
    BLOCK_K step (precise), None (Triton's default: never; fast), 0 for 16-bit operands."""
    from kernels.triton_matmul import max_imprecise_acc

    for fp8 in (torch.float8_e4m3fn, torch.float8_e5m2):
        assert max_imprecise_acc(fp8, False, 128) == 128
        assert max_imprecise_acc(fp8, True, 128) is None
    assert max_imprecise_acc(torch.bfloat16, False, 64) == 0


@pytest.mark.parametrize("scaling", ["tensorwise", "rowwise"])
def test_fp8_matches_scaled_mm(scaling):
    """Same semantics as torch._scaled_mm: same operands, scales and output dtype give the
    same numbers up to bf16 rounding of the output."""
    qa, qb, sa, sb = _fp8_operands("fp8_e4m3", scaling, torch.Generator().manual_seed(3))
    ours = triton_fp8_matmul(qa, qb, sa, sb)
    theirs = torch._scaled_mm(qa, qb, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    assert rel_fro_error(ours, theirs.double()) < 1e-2


def test_fp8_scales_matter():
    """A scale of 2 on A doubles the result (so scales reach the epilogue at all)."""
    qa, qb, sa, sb = _fp8_operands("fp8_e4m3", "tensorwise", torch.Generator().manual_seed(4))
    once = triton_fp8_matmul(qa, qb, sa, sb, out_dtype=torch.float32)
    twice = triton_fp8_matmul(qa, qb, sa * 2, sb, out_dtype=torch.float32)
    assert torch.allclose(twice, 2 * once, rtol=1e-6, atol=0)


def test_bad_operands_are_refused_with_reasons():
    a = torch.randn(8, 16, dtype=torch.bfloat16, device=DEVICE)
    with pytest.raises(ValueError, match="inner dimensions"):
        triton_matmul(a, torch.randn(8, 4, dtype=torch.bfloat16, device=DEVICE))
    with pytest.raises(ValueError, match="bfloat16 or two float16"):
        triton_matmul(a, torch.randn(16, 4, dtype=torch.float16, device=DEVICE))
    q, s = quantize_tensorwise(torch.randn(8, 16))
    with pytest.raises(ValueError, match="row-wise"):
        triton_fp8_matmul(q.to(DEVICE), q.t().to(DEVICE), s.to(DEVICE), torch.ones(2, 8, device=DEVICE))
    with pytest.raises(ValueError, match="float8"):
        triton_fp8_matmul(a, a.t(), s, s)


@pytest.mark.skipif(not INTERPRETED, reason="a defect of Triton's CPU interpreter")
def test_interpreter_bf16_dot_defect_is_real(monkeypatch):
    """Without the work-around the interpreter's bf16 dot is garbage (triton-lang/triton#11584),
    and the spec's check catches it: the fixture is needed and the check can fail."""
    from triton.runtime.interpreter import InterpreterBuilder

    monkeypatch.undo()  # drop the fixture's patches for this test
    if "create_dot_bf16_as_fp32" in InterpreterBuilder.create_dot.__name__:
        pytest.skip("interpreter dot still patched")
    spec = registry.build("gemm", "triton", 32, 32, 32, "bf16")
    with pytest.raises(CorrectnessError):
        spec.check(DEVICE)


@pytest.mark.parametrize("dtype,variant,layout", [
    ("bf16", "", "rr"), ("bf16", "", "cc"), ("fp16", "", "rc"),
    ("fp8_e4m3", "tensorwise", ""), ("fp8_e4m3", "rowwise-fast-accum", ""),
    ("fp8_e5m2", "rowwise", "cr"),
])
def test_registered_spec_checks_and_matches_its_baseline(dtype, variant, layout):
    spec = registry.build("gemm", "triton", 77, 131, 96, dtype, variant=variant, layout=layout)
    assert spec.check(DEVICE) <= spec.tolerance
    assert spec.impl == "triton" and spec.shape == {"m": 77, "n": 131, "k": 96}
    if dtype != "fp8_e5m2":  # _scaled_mm has no e5m2 x e5m2: no baseline for it
        base = registry.build("gemm", "torch", 77, 131, 96, dtype, variant=variant,
                              layout=spec.layout)
        assert spec.problem() == base.problem()  # same problem, comparable records


def test_fp8_accumulation_is_part_of_the_problem(monkeypatch):
    """Precise and fast accumulation are two problems: the variant says which (and so every
    record and its speedup key), ``_scaled_mm`` gets the matching ``use_fast_accum``, and
    the Triton spec passes it on as ``fast_accum``."""
    from kernels import matmul

    seen = []
    real = torch._scaled_mm
    monkeypatch.setattr(torch, "_scaled_mm", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    names = set()
    for accum, fast in (("precise-accum", False), ("fast-accum", True)):
        base = registry.build("gemm", "torch", 32, 48, 64, "fp8_e4m3", variant=f"rowwise-{accum}")
        ours = registry.build("gemm", "triton", 32, 48, 64, "fp8_e4m3", variant=f"rowwise-{accum}")
        assert base.identity()["variant"] == ours.identity()["variant"] == f"rowwise-{accum}"
        base.check("cpu")
        assert seen[-1]["use_fast_accum"] is fast
        passed = []
        monkeypatch.setattr(matmul, "triton_fp8_matmul",
                            lambda *a, **kw: passed.append(kw) or triton_fp8_matmul(*a, **kw))
        registry.build("gemm", "triton", 32, 48, 64, "fp8_e4m3",
                       variant=f"rowwise-{accum}").check(DEVICE)
        assert passed == [{"fast_accum": fast}]
        names |= {base.name, ours.name}
    assert len(names) == 4  # four distinct records, none taken for another
    # The scaling alone is precise, _scaled_mm's default.
    assert registry.build("gemm", "torch", 32, 48, 64, "fp8_e4m3",
                          variant="tensorwise").variant == "tensorwise-precise-accum"


def test_registered_beside_the_baseline_and_skipped_on_cpu():
    assert registry.impls("gemm")[:2] == ["torch", "triton"]
    reason = registry.build("gemm", "triton", 64, 64, 64, "bf16").unavailable(torch.device("cpu"))
    assert "interpreter" in reason
    fp8 = registry.build("gemm", "triton", 64, 64, 64, "fp8_e4m3")
    assert fp8.unavailable(torch.device("cpu")) and fp8.layout == "rc"
    with pytest.raises(KernelError, match="tensorwise or rowwise"):
        registry.build("gemm", "triton", 64, 64, 64, "fp8_e4m3", variant="blockwise")
    with pytest.raises(KernelError, match="bf16, fp16"):
        registry.build("gemm", "triton", 64, 64, 64, "fp32")


def test_without_triton_the_baselines_still_work():
    """Triton ships for Linux only: without it the torch baselines build and check, and the
    Triton builders refuse with the reason (the benchmark suite shows it as a skip)."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "from kernels import registry\n"
        "from kernels.spec import KernelError\n"
        "assert registry.build('gemm', 'torch', 8, 8, 8, 'fp32').check('cpu') < 1e-4\n"
        "assert registry.build('attention', 'sdpa-math', 1, 2, 1, 8, 16, True, 'fp32').check('cpu') < 1e-4\n"
        "for kernel, args in (('gemm', (8, 8, 8)), ('attention', (1, 2, 1, 8, 16))):\n"
        "    try:\n"
        "        registry.build(kernel, 'triton', *args)\n"
        "    except KernelError as exc:\n"
        "        assert 'Triton is not installed' in str(exc)\n"
        "    else:\n"
        "        raise AssertionError('built a Triton spec without Triton')\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_unavailable_reasons_on_older_gpus(monkeypatch):
    """BF16 Triton kernels need Ampere (8.0), FP8 ones Ada/Hopper (8.9); the reason names the
    GPU. (No GPU here: the CUDA queries are replaced.)"""
    from kernels.triton_support import triton_unavailable

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    cuda = torch.device("cuda")
    assert triton_unavailable(cuda, "bf16") is None
    assert "8.9+; NVIDIA A100 is 8.0" in triton_unavailable(cuda, "fp8_e4m3")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    assert "8.0+" in triton_unavailable(cuda, "bf16") and triton_unavailable(cuda, "fp16") is None
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "TRITON_INTERPRET=1" in triton_unavailable(cuda, "fp16")
