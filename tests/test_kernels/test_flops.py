"""FLOP and byte counts against hand-computed values."""

import pytest

from kernels import flops


def test_gemm_flops_and_bytes_by_hand():
    # 2*M*N*K = 2 * 77 * 131 * 96
    assert flops.gemm_flops(77, 131, 96) == 1_936_704
    # bf16: (77*96 + 96*131) * 2 bytes in, 77*131 * 2 bytes out = 39_936 + 20_174
    assert flops.gemm_bytes(77, 131, 96, "bf16", "bf16") == 60_110
    # fp8 in, bf16 out, row-wise scales (77 + 131 float32)
    assert flops.gemm_bytes(77, 131, 96, "fp8_e4m3", "bf16", scale_elems=77 + 131) == (
        (77 * 96 + 96 * 131) + 77 * 131 * 2 + 4 * 208)


def test_attention_flops_by_hand():
    # 4 * B * H * S * S * D = 4 * 2 * 16 * 1024 * 1024 * 128
    assert flops.attention_fwd_flops(2, 16, 1024, 1024, 128, causal=False) == 17_179_869_184
    assert flops.attention_fwd_flops(2, 16, 1024, 1024, 128, causal=True) == 8_589_934_592
    # backward is 2.5x the forward
    assert flops.attention_bwd_flops(2, 16, 1024, 1024, 128, causal=True) == 21_474_836_480


def test_attention_bytes_by_hand():
    # GQA: 32 q heads, 8 kv heads, bf16. q and o: 1*32*100*64 each; k and v: 1*8*100*64 each.
    q, kv = 32 * 100 * 64, 8 * 100 * 64
    assert flops.attention_fwd_bytes(1, 32, 8, 100, 100, 64, "bf16") == 2 * (q + 2 * kv + q)
    # backward: read q, o, do, k, v; write dq, dk, dv; plus float32 log-sum-exp per q row
    assert flops.attention_bwd_bytes(1, 32, 8, 100, 100, 64, "bf16") == (
        2 * (3 * q + 2 * kv + q + 2 * kv) + 4 * 32 * 100)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_impossible_shapes_are_refused(bad):
    with pytest.raises(ValueError, match="positive integer"):
        flops.gemm_flops(bad, 4, 4)


def test_causal_needs_square():
    with pytest.raises(ValueError, match="seq_q == seq_k"):
        flops.attention_fwd_flops(1, 1, 8, 16, 64, causal=True)


def test_grouped_gemm_flops_and_bytes_by_hand():
    # groups of 3, 0 and 5 rows (M = 8), N = 7, K = 11: 2 * 8 * 7 * 11
    rows = (3, 0, 5)
    assert flops.grouped_gemm_flops(rows, 7, 11) == 1232
    # rows grouped, bf16: X 8x11 and the two non-empty 11x7 matrices in, Y 8x7 out, 3 int32 offsets
    assert flops.grouped_gemm_bytes(rows, 7, 11, "bf16", "bf16") == (88 + 154) * 2 + 112 + 12
    # FP8 in, bf16 out, a float32 scale per row of X and per column of each non-empty matrix
    assert flops.grouped_gemm_bytes(rows, 7, 11, "fp8_e4m3", "bf16", scaled=True) == (
        (88 + 154) + 112 + 4 * (8 + 2 * 7) + 12)
    # dW: X 8x11 and dY 8x7 in, all three 11x7 outputs written (the empty group's zeros too)
    assert flops.grouped_gemm_bytes(rows, 7, 11, "bf16", "bf16", reduce_over_rows=True) == (
        (88 + 56) * 2 + 3 * 77 * 2 + 12)
    # FP8 dW: K + N scales per non-empty group
    assert flops.grouped_gemm_bytes(rows, 7, 11, "fp8_e4m3", "bf16", reduce_over_rows=True,
                                    scaled=True) == (88 + 56) + 3 * 77 * 2 + 4 * 2 * 18 + 12


def test_dispatch_and_combine_counts_by_hand():
    # T = 10 tokens of D = 6, top-2 over 4 experts, bf16: 10 rows read, 20 written; int32 ids
    # read and destination rows written (20 each), 4 offsets written
    assert flops.moe_dispatch_bytes(10, 6, 2, 4, "bf16") == (60 + 120) * 2 + 4 * (40 + 4)
    # combine: 20 rows read with their int32 rows and float32 weights, 10 rows written
    assert flops.moe_combine_bytes(10, 6, 2, "bf16") == (120 + 60) * 2 + 8 * 20
    assert flops.moe_combine_flops(10, 6, 2) == 2 * 10 * 2 * 6


@pytest.mark.parametrize("rows,match", [((), "at least one group"), ((0, 0), "every group is empty"),
                                        ((4, -1), "non-negative"), ((2, 1.5), "non-negative")])
def test_impossible_groups_are_refused(rows, match):
    with pytest.raises(ValueError, match=match):
        flops.grouped_gemm_flops(rows, 8, 8)


def test_top_k_cannot_exceed_the_experts():
    with pytest.raises(ValueError, match="top_k 9 exceeds the 8 experts"):
        flops.moe_dispatch_bytes(16, 8, 9, 8, "bf16")


def test_stream_counts_by_hand():
    # y = c * x over 2^20 bf16 elements: 2 MiB read, 2 MiB written, one multiply each.
    assert flops.stream_flops(1 << 20) == 1 << 20
    assert flops.stream_bytes(1 << 20, "bf16") == 4 * (1 << 20)
    assert flops.stream_bytes(3, "fp32") == 24
    with pytest.raises(ValueError, match="positive integer"):
        flops.stream_bytes(0, "bf16")
