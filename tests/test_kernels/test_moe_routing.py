"""Routing distributions: expected loads by hand, sampled top-k choices, the name parser."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kernels import moe_routing
from kernels.moe_routing import expert_rows, load_stats, routing_probs, sample_topk
from kernels.spec import KernelError


def test_zipf_shares_by_hand():
    # s = 1 over 4 experts: (1, 1/2, 1/3, 1/4) / (25/12)
    assert routing_probs("zipf1.0", 4) == pytest.approx([0.48, 0.24, 0.16, 0.12])
    assert routing_probs("balanced", 4) == [0.25] * 4
    # 100 rows: exactly 48, 24, 16, 12; 70 rows: quotas 33.6, 16.8, 11.2, 8.4, the two largest
    # remainders (0.8, 0.6) round up
    assert expert_rows(100, 4, "zipf1.0") == (48, 24, 16, 12)
    assert expert_rows(70, 4, "zipf1.0") == (34, 17, 11, 8)
    assert expert_rows(10, 4, "balanced") == (3, 3, 2, 2)
    assert load_stats((34, 17, 11, 8)) == {"tokens_per_expert_mean": 18, "tokens_per_expert_max": 34}


@given(rows=st.integers(1, 10**6), experts=st.integers(1, 300),
       s=st.sampled_from(["balanced", "zipf0.5", "zipf1.0", "zipf1.2"]))
def test_expected_loads_sum_exactly_and_follow_popularity(rows, experts, s):
    counts = expert_rows(rows, experts, s)
    assert sum(counts) == rows and len(counts) == experts and min(counts) >= 0
    if s == "balanced":
        assert max(counts) - min(counts) <= 1
    else:
        assert list(counts) == sorted(counts, reverse=True)


@given(st.text(max_size=12))
def test_routing_names_parse_or_are_refused_clearly(name):
    try:
        probs = routing_probs(name, 8)
    except KernelError as exc:
        assert "unknown routing" in str(exc)
    else:
        assert sum(probs) == pytest.approx(1.0) and len(probs) == 8


@pytest.mark.parametrize("name", ["zipf0", "zipf-1", "zipf", "Zipf1.0", "uniform"])
def test_bad_routing_names(name):
    with pytest.raises(KernelError, match="unknown routing"):
        routing_probs(name, 4)


@pytest.mark.parametrize("top_k", [1, 8])
def test_sampled_choices_are_distinct_seeded_and_skewed(top_k):
    ids = sample_topk(2000, 16, top_k, "zipf1.0")
    assert ids.shape == (2000, top_k) and ids.dtype == torch.int32
    assert int(ids.min()) >= 0 and int(ids.max()) < 16
    assert all(len(set(row)) == top_k for row in ids.tolist())
    moe_routing._sample.cache_clear()  # drawn again, not remembered: the seed is fixed
    assert torch.equal(ids, sample_topk(2000, 16, top_k, "zipf1.0"))
    skewed = torch.bincount(ids.reshape(-1).long(), minlength=16)
    balanced = torch.bincount(sample_topk(2000, 16, top_k, "balanced").reshape(-1).long(),
                              minlength=16)
    assert skewed.max() > 1.5 * balanced.max()
    if top_k == 1:  # the most popular expert draws about its Zipf share, 1 / H_16 = 29.6%
        assert abs(int(skewed[0]) / 2000 - 1 / sum(1 / i for i in range(1, 17))) < 0.03
