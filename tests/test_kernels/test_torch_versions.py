"""The torch floor pyproject.toml declares is the one the code needs, and on a torch without
the newer APIs the fallbacks run and still agree with float64."""

import re
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from packaging.requirements import Requirement

from kernels import registry, torch_versions
from kernels.torch_versions import TORCH_APIS, TORCH_FLOOR, _release

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "kernels" / "torch_versions.py"


def _source() -> str:
    """Every module of the measuring half except the table itself."""
    files = sorted((REPO / "kernels").glob("*.py")) + sorted((REPO / "bench").glob("*.py"))
    return "\n".join(p.read_text() for p in files if p != TABLE)


def _declared_torch() -> Requirement:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(Requirement(d) for d in deps if Requirement(d).name == "torch")


def test_pyproject_floor_is_the_newest_api_called_unconditionally():
    req = _declared_torch()
    floors = [s.version for s in req.specifier if s.operator == ">="]
    assert floors == [TORCH_FLOOR]
    assert _release(TORCH_FLOOR) == max(_release(a.first) for a in TORCH_APIS if not a.gate)
    assert TORCH_FLOOR == "2.4"
    assert req.specifier.contains("2.13.0") and req.specifier.contains(TORCH_FLOOR + ".0")


def test_installed_torch_is_admitted():
    assert _declared_torch().specifier.contains(torch.__version__.split("+")[0])


@pytest.mark.parametrize("api", TORCH_APIS, ids=lambda a: a.api)
def test_every_listed_api_is_called_and_has_a_source(api):
    assert api.needle in _source(), f"{api.api}: '{api.needle}' is not in kernels/ or bench/"
    assert api.source and re.fullmatch(r"2\.\d+", api.first)
    if api.gate:  # a feature check, defined beside the table and used by the code
        assert callable(getattr(torch_versions, api.gate))
        assert f"{api.gate}(" in _source() and api.without


def test_every_private_torch_api_the_code_calls_is_listed():
    """Private ops (``torch._scaled_mm``...) change between releases: each one called must
    have a row, with its first release and what the code does without it."""
    called = set(re.findall(r"\btorch\._[a-z]\w*", _source()))
    listed = " ".join(a.api for a in TORCH_APIS)
    assert called and {name for name in called if name not in listed} == set()


# -- fallbacks on an older torch ---------------------------------------------------------------


@pytest.fixture
def sdpa_without_enable_gqa(monkeypatch):
    """torch 2.4's SDPA: no enable_gqa keyword, so q and k/v heads must match."""
    real = F.scaled_dot_product_attention
    heads = []

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        heads.append((query.shape[1], key.shape[1], value.shape[1]))
        return real(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                    is_causal=is_causal, scale=scale)

    monkeypatch.setattr(F, "scaled_dot_product_attention", sdpa)
    torch_versions.sdpa_takes_enable_gqa.cache_clear()
    yield heads
    torch_versions.sdpa_takes_enable_gqa.cache_clear()


@pytest.mark.parametrize("impl", ["sdpa-flash", "sdpa-math"])
@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_without_enable_gqa_kv_heads_are_expanded(sdpa_without_enable_gqa, impl, direction):
    assert torch_versions.sdpa_takes_enable_gqa() is False
    spec = registry.build("attention", impl, 1, 8, 2, 40, 64, True, "bf16", direction=direction)
    assert spec.gqa_method == "repeat_interleave"
    assert spec.identity()["gqa_method"] == "repeat_interleave"
    assert spec.unavailable(torch.device("cpu")) is None
    assert spec.check("cpu") < 1e-2  # dQ and the group-summed dK, dV against float64
    assert sdpa_without_enable_gqa and set(sdpa_without_enable_gqa) == {(8, 8, 8)}


def test_with_enable_gqa_the_heads_go_in_as_they_are():
    spec = registry.build("attention", "sdpa-math", 1, 8, 2, 40, 64, True, "bf16")
    assert torch_versions.sdpa_takes_enable_gqa() is True  # torch 2.13 here
    assert spec.gqa_method == "enable_gqa"
    assert registry.build("attention", "sdpa-math", 1, 8, 8, 40, 64).gqa_method == ""


def _pair_returning(real):
    """torch 2.4's _scaled_mm: returns (out, amax)."""

    def scaled_mm(a, b, *, scale_a=None, scale_b=None, out_dtype=None, **kwargs):
        out = real(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype, **kwargs)
        return out, out.float().abs().amax()

    return scaled_mm


@pytest.mark.parametrize("variant", ["tensorwise", "rowwise"])
def test_scaled_mm_output_is_taken_from_torch_2_4s_pair(monkeypatch, variant):
    monkeypatch.setattr(torch, "_scaled_mm", _pair_returning(torch._scaled_mm))
    spec = registry.build("gemm", "torch", 64, 48, 96, "fp8_e4m3", variant=variant)
    assert spec.check("cpu", seed=3) < 5e-2


def test_without_rowwise_scaled_mm_the_case_is_skipped_with_the_reason(monkeypatch):
    pair = _pair_returning(torch._scaled_mm)

    def tensorwise_only(a, b, *, scale_a=None, scale_b=None, **kwargs):
        if scale_a.numel() != 1 or scale_b.numel() != 1:  # as a torch before 2.5 refuses
            raise RuntimeError("stand-in: only tensor-wise scales")
        return pair(a, b, scale_a=scale_a, scale_b=scale_b, **kwargs)

    monkeypatch.setattr(torch, "_scaled_mm", tensorwise_only)
    monkeypatch.setattr(torch_versions, "_SCALED_MM_PROBED", {})
    cpu = torch.device("cpu")
    rowwise = registry.build("gemm", "torch", 64, 48, 96, "fp8_e4m3", variant="rowwise")
    reason = rowwise.unavailable(cpu)
    assert reason and "no rowwise torch._scaled_mm on cpu" in reason
    assert torch.__version__ in reason and "only tensor-wise scales" in reason
    tensorwise = registry.build("gemm", "torch", 64, 48, 96, "fp8_e4m3", variant="tensorwise")
    assert tensorwise.unavailable(cpu) is None and tensorwise.check("cpu") < 5e-2


def test_without_a_cpu_scaled_mm_both_scalings_are_skipped(monkeypatch):
    def missing(*args, **kwargs):
        raise NotImplementedError("stand-in: no CPU kernel for aten::_scaled_mm")

    monkeypatch.setattr(torch, "_scaled_mm", missing)
    monkeypatch.setattr(torch_versions, "_SCALED_MM_PROBED", {})
    for variant in ("tensorwise", "rowwise"):
        spec = registry.build("gemm", "torch", 32, 32, 32, "fp8_e4m3", variant=variant)
        assert "no CPU kernel" in spec.unavailable(torch.device("cpu"))


def test_the_probe_runs_once_per_device_and_scaling(monkeypatch):
    calls = []
    real = torch._scaled_mm

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "_scaled_mm", counting)
    monkeypatch.setattr(torch_versions, "_SCALED_MM_PROBED", {})
    for _ in range(3):
        assert torch_versions.scaled_mm_unavailable(torch.device("cpu"), "fp8_e4m3",
                                                    "rowwise") is None
    assert len(calls) == 1
