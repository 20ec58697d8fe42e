"""The Triton dispatch and combine: exact against a stable sort, against float64, and through
their registered specs.

Run in Triton's CPU interpreter when there is no GPU (see tests/support/triton_interpreter.py). The
interpreter's chunks are 32 assignments in sub-blocks of 8, so a few hundred assignments cross
chunks (the running offsets between them) and sub-blocks (the running ranks inside one).
"""

import dataclasses

import pytest
import torch
from tests.support.triton_interpreter import DEVICE, interpreter_fixes  # noqa: F401

from kernels import registry
from kernels.moe_dispatch import expert_order, torch_combine, torch_dispatch
from kernels.moe_routing import sample_topk
from kernels.reference import rel_fro_error
from kernels.spec import TOLERANCE, CorrectnessError, KernelError
from kernels.triton_moe_dispatch import triton_combine, triton_dispatch

pytestmark = [pytest.mark.interpreter, pytest.mark.usefixtures("interpreter_fixes")]

# (tokens, experts, top_k, routing): top-1 and top-8, skewed routing that leaves experts empty,
# more experts than a power of two, and a token count that fills no chunk evenly.
CASES = [(77, 16, 8, "zipf1.0"), (45, 5, 1, "balanced"), (61, 40, 2, "zipf2.0"), (3, 4, 4, "balanced")]


def _x(tokens, d_model, dtype=torch.bfloat16, seed=0):
    return torch.randn(tokens, d_model, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("tokens,experts,top_k,routing", CASES)
def test_dispatch_is_the_stable_sort_by_expert(tokens, experts, top_k, routing):
    ids = sample_topk(tokens, experts, top_k, routing)
    x = _x(tokens, 48)
    permuted, rows, offs = triton_dispatch(x.to(DEVICE), ids.to(DEVICE), experts)
    order, want_rows, want_offs = expert_order(ids, experts)
    assert torch.equal(offs.cpu(), want_offs)
    assert rows.dtype == torch.int32 and torch.equal(rows.cpu(), want_rows)
    assert torch.equal(permuted.cpu(), x[order // top_k])  # bit-exact copies
    if routing == "zipf2.0":
        assert (torch.bincount(ids.reshape(-1).long(), minlength=experts) == 0).any()


@pytest.mark.parametrize("tokens,experts,top_k,routing", CASES)
def test_combine_against_float64(tokens, experts, top_k, routing):
    ids = sample_topk(tokens, experts, top_k, routing)
    rows = expert_order(ids, experts)[1]
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(tokens * top_k, 48, generator=gen).to(torch.bfloat16)
    weights = torch.rand(tokens, top_k, generator=gen)
    out = triton_combine(y.to(DEVICE), rows.to(DEVICE), weights.to(DEVICE))
    ref = (y.double()[rows.long()] * weights.double()[..., None]).sum(1)
    assert out.dtype == torch.bfloat16 and out.shape == (tokens, 48)
    assert rel_fro_error(out.cpu(), ref) < TOLERANCE["bf16"]
    assert rel_fro_error(torch_combine(y, rows, weights), ref) < TOLERANCE["bf16"]


@pytest.mark.parametrize("top_k", [1, 2, 4, 8])
def test_combine_undoes_the_dispatch(top_k):
    """Weights 1/top_k (exact in binary) over top_k exact copies give each token back, bit for
    bit, through float32 sums."""
    ids = sample_topk(33, 8, top_k, "zipf1.0").to(DEVICE)
    x = _x(33, 40, seed=2).to(DEVICE)
    permuted, rows, _ = triton_dispatch(x, ids, 8)
    weights = torch.full((33, top_k), 1.0 / top_k, device=DEVICE)
    assert torch.equal(triton_combine(permuted, rows, weights), x)


def test_float32_rows_and_strided_input():
    ids = sample_topk(20, 6, 3, "balanced").to(DEVICE)
    x = _x(48, 20, dtype=torch.float32, seed=3).t().to(DEVICE)  # (20, 48) column-major view
    permuted, rows, offs = triton_dispatch(x, ids, 6)
    ours, theirs = (permuted, rows, offs), torch_dispatch(x.cpu(), ids.cpu(), 6)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("family", ["moe_dispatch", "moe_combine"])
@pytest.mark.parametrize("top_k", [1, 8])
def test_registered_specs_check_and_match_their_baseline(family, top_k):
    spec = registry.build(family, "triton", 50, 24, 16, top_k, "bf16", variant="zipf1.0")
    assert spec.check(DEVICE) <= spec.tolerance
    base = registry.build(family, "torch", 50, 24, 16, top_k, "bf16", variant="zipf1.0")
    assert base.check("cpu") <= base.tolerance
    assert spec.problem() == base.problem()
    counts = torch.bincount(sample_topk(50, 16, top_k, "zipf1.0").reshape(-1).long(), minlength=16)
    assert spec.shape["tokens_per_expert_max"] == int(counts.max())


def test_dispatch_check_is_exact_and_catches_every_kind_of_error():
    spec = registry.build("moe_dispatch", "torch", 40, 16, 8, 2, "bf16", variant="zipf1.0")
    assert spec.check("cpu") == 0.0

    def swap_two_rows(x, ids):
        permuted, rows, offs = torch_dispatch(x, ids, 8)
        return permuted[torch.tensor([1, 0] + list(range(2, len(permuted))))], rows, offs

    def shift_offsets(x, ids):
        permuted, rows, offs = torch_dispatch(x, ids, 8)
        return permuted, rows, offs + 1

    def reverse_an_expert(x, ids):
        permuted, rows, offs = torch_dispatch(x, ids, 8)
        return permuted, rows.flip(0), offs  # a permutation still, but rows land in wrong experts

    for wrong in (swap_two_rows, shift_offsets, reverse_an_expert):
        with pytest.raises(CorrectnessError):
            dataclasses.replace(spec, run=wrong).check("cpu")


def test_refusals_say_why():
    with pytest.raises(KernelError, match="top_k 9 exceeds the 8 experts"):
        registry.build("moe_dispatch", "torch", 16, 8, 8, 9)
    with pytest.raises(KernelError, match="fp32, bf16, fp16"):
        registry.build("moe_combine", "triton", 16, 8, 8, 2, "fp8_e4m3")
    with pytest.raises(KernelError, match="at most 1024 experts"):
        registry.build("moe_dispatch", "triton", 16, 8, 2048, 2)
    x = _x(4, 8).to(DEVICE)
    with pytest.raises(ValueError, match="int32"):
        triton_dispatch(x, torch.zeros(4, 2, dtype=torch.int64, device=DEVICE), 4)
    with pytest.raises(ValueError, match="weights must be float32"):
        triton_combine(x, torch.zeros(4, 1, dtype=torch.int32, device=DEVICE),
                       torch.ones(4, 1, dtype=torch.float64, device=DEVICE))
    spec = registry.build("moe_combine", "triton", 16, 8, 8, 2)
    assert "interpreter" in spec.unavailable(torch.device("cpu"))
