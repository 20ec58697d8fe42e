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
