"""Context parallelism and FP8 quantisation in the step model, against hand-computed bytes."""

import json

import pytest

from scaling.cli.main import main
from scaling.errors import DataError, UnknownNameError
from scaling.hardware.load import load_profile
from scaling.model.config import Op, model_preset
from scaling.model.step import cp_exchange_bytes, fp8_cast_bytes, step_time

H100 = load_profile("h100-sxm")
LLAMA = model_preset("llama3-405b")
BATCH = 2048 * 8192


def test_cp_exchange_bytes_by_hand():
    # 405B: 8 KV heads of 128 over TP 8 -> one per GPU; 131,072 / 16 = 8,192 tokens per block;
    # K and V in BF16: 8192 x 1 x 256 x 2 B = 4 MiB; 15 other ranks; gather fwd, gather bwd,
    # reduce-scatter of the gradients.
    assert cp_exchange_bytes(LLAMA, 8, 16, 1, 131072) == 3 * 15 * 8192 * 256 * 2
    assert cp_exchange_bytes(LLAMA, 8, 1, 1, 131072) == 0


def test_cp_gemms_see_the_local_tokens_and_attention_a_cp_th():
    long = step_time(LLAMA, H100, tp=8, cp=16, pp=16, dp=8, seq=131072, batch_tokens=BATCH)
    short = step_time(LLAMA, H100, tp=8, pp=16, dp=8, seq=8192, batch_tokens=BATCH)
    full = step_time(LLAMA, H100, tp=8, pp=16, dp=8, seq=131072, batch_tokens=BATCH)
    m_long, m_short = long.layout["micro_batches"], short.layout["micro_batches"]
    assert (m_long, m_short) == (16, 256) and long.layout["gpus"] == 16384
    # The same 8,192 local tokens per micro-batch: the same GEMMs.
    assert long.breakdown["gemm_s"] / m_long == pytest.approx(short.breakdown["gemm_s"] / m_short)
    # Each rank does 1/16 of the full sequence's causal attention.
    assert long.breakdown["attention_s"] == pytest.approx(full.breakdown["attention_s"] / 16)
    assert "cp_comm_s" in long.breakdown and "cp_comm_s" not in short.breakdown


def test_cp_comm_by_hand_with_a_given_bandwidth():
    r = step_time(LLAMA, H100, tp=8, cp=16, pp=16, dp=8, seq=131072, batch_tokens=BATCH,
                  overrides={"cp_busbw_gbps": 100})
    per_layer = 3 * 15 * 8192 * 256 * 2 / 100e9
    assert r.breakdown["cp_comm_s"] == pytest.approx(16 * 126 / 16 * per_layer)
    half = step_time(LLAMA, H100, tp=8, cp=16, pp=16, dp=8, seq=131072, batch_tokens=BATCH,
                     overrides={"cp_busbw_gbps": 100, "cp_overlap": 0.5})
    assert half.breakdown["cp_comm_s"] == pytest.approx(r.breakdown["cp_comm_s"] / 2)
    assert r.labels["cp_overlap"]["label"] == "assumed"
    assert "3.3.2" in r.labels["cp_overlap"]["source"]


def test_cp_inside_the_nvlink_domain_uses_the_nvlink_link():
    small = model_preset("llama3-8b")
    intra = step_time(small, H100, tp=2, cp=4, dp=1, seq=32768, batch_tokens=32768 * 8)
    inter = step_time(small, H100, tp=2, cp=8, dp=1, seq=32768, batch_tokens=32768 * 8)
    assert intra.labels["cp_busbw_gbps"]["value"] > 2 * inter.labels["cp_busbw_gbps"]["value"]


def test_cp_shards_the_optimizer_with_data_parallelism():
    a = step_time(LLAMA, H100, tp=8, cp=2, pp=16, dp=4, seq=16384, batch_tokens=BATCH)
    b = step_time(LLAMA, H100, tp=8, cp=1, pp=16, dp=8, seq=16384, batch_tokens=BATCH)
    assert a.breakdown["optimizer_s"] == pytest.approx(b.breakdown["optimizer_s"])


def test_cp_needs_two_chunks_per_rank():
    with pytest.raises(DataError, match="2 x cp"):
        step_time(LLAMA, H100, tp=8, cp=3, pp=16, dp=8, seq=8192, batch_tokens=BATCH)


def test_fp8_cast_bytes_by_hand():
    op = Op("gemm", "qkv", "fwd", {"m": 4, "n": 3, "k": 2}, count=1)
    # X 4x2 per forward, dY 4x3 per backward, W 2x3 once over 2 micro-batches; 4 B each
    # (read BF16, write FP8 and its transpose).
    assert fp8_cast_bytes([op], 2) == 4 * (8 + 12 + 3)
    assert fp8_cast_bytes([op], 2, recipe="current") == 6 * (8 + 12 + 3)
    assert fp8_cast_bytes([op], 2, input_passes=2) == 4 * (16 + 12 + 3)
    with pytest.raises(UnknownNameError):
        fp8_cast_bytes([op], 2, recipe="blockwise")


def test_fp8_step_times_the_casts_at_memory_bandwidth():
    config = model_preset("llama3-70b")
    r = step_time(config, H100, precision="fp8", tp=8, pp=4, dp=4, batch_tokens=64 * 8192)
    bf16 = step_time(config, H100, tp=8, pp=4, dp=4, batch_tokens=64 * 8192)
    assert "fp8_cast_s" not in bf16.breakdown
    # llama3-70b on TP 8: qkv (8192 -> (8 + 2 x 1) x 128 = 1280), attn_out (1024 -> 8192),
    # gate_up (8192 -> 2 x 3584), down (3584 -> 8192); 8,192 tokens; 16 micro-batches.
    t, m = 8192, 16
    shapes = [(1280, 8192), (8192, 1024), (7168, 8192), (8192, 3584)]  # (n, k)
    per_layer = sum(4 * (t * k + t * n + k * n / m) for n, k in shapes)
    expected = m * 80 / 4 * per_layer / (H100.memory_gbps.value * 1e9)
    assert r.breakdown["fp8_cast_s"] == pytest.approx(expected)
    assert "output head" in " ".join(r.notes)


def test_step_command_takes_cp(capsys):
    assert main(["step", "llama3-405b", "--tp", "8", "--cp", "16", "--pp", "16", "--dp", "8",
                 "--seq", "128Ki", "--batch-tokens", "128x131072", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layout"]["cp"] == 16 and data["breakdown"]["cp_comm_s"] > 0
    assert main(["step", "llama3-405b", "--tp", "8", "--cp", "16", "--pp", "16", "--dp", "8",
                 "--seq", "128Ki", "--batch-tokens", "128x131072"]) == 0
    assert "CP 16" in capsys.readouterr().out


def test_materialised_attention_kernels_by_hand():
    from scaling.model.step import materialised_attention_kernels
    k = materialised_attention_kernels(1, 2, 4, 8, dropout=True)
    n, gemm = 1 * 2 * 4 * 4, 2 * 4 * 4 * 8 * 2
    # Megatron-LM's causal softmax reads rows of 1, 2, 3 and 4 of the 4 keys (10 of each
    # matrix's 16 elements, 20 of the 32) and writes all 32: forward 2 x 20 + 2 x 32,
    # backward (gradient and output) 4 x 20 + 2 x 32; dropout 5 B per element either way.
    assert k["fwd"] == {"gemm_flops": 2 * gemm, "gemm_bytes": 4 * n,
                        "elementwise_bytes": 2 * 20 + 2 * 32 + 5 * 32}
    assert k["bwd"] == {"gemm_flops": 4 * gemm, "gemm_bytes": 8 * n,
                        "elementwise_bytes": 4 * 20 + 2 * 32 + 5 * 32}
    assert materialised_attention_kernels(1, 2, 4, 8, dropout=False)["fwd"][
        "elementwise_bytes"] == 2 * 20 + 2 * 32


def test_materialised_attention_step_by_hand():
    gpt = model_preset("megatron-gpt-1.7b")  # 24 layers, 24 heads of 96, dropout
    a100 = load_profile("a100-80gb")
    ov = {"gemm_tflops": 100, "memory_gbps": 1000}
    r = step_time(gpt, a100, tp=1, dp=1, seq=2048, micro_batch=16, batch_tokens=16 * 2048,
                  overrides=ov, attention="materialised")
    n = 16 * 24 * 2048 ** 2
    lower = 16 * 24 * 2048 * 2049 / 2  # the causal softmax's rows of 1 to 2,048 keys
    gemm = 2 * 2048 ** 2 * 96 * 16 * 24
    fwd = max(2 * gemm / 100e12, 4 * n / 1e12) + (2 * lower + 7 * n) / 1e12
    bwd = max(4 * gemm / 100e12, 8 * n / 1e12) + (4 * lower + 7 * n) / 1e12
    assert r.breakdown["attention_s"] == pytest.approx(24 * (fwd + bwd))
    flash = step_time(gpt, a100, tp=1, dp=1, seq=2048, micro_batch=16, batch_tokens=16 * 2048,
                      overrides=ov)
    assert flash.breakdown["gemm_s"] == r.breakdown["gemm_s"]
    with pytest.raises(UnknownNameError):
        step_time(gpt, a100, batch_tokens=2048, attention="sdpa")


def test_megatron_rows_say_how_they_computed_attention():
    from scaling.validate.runs import validation_runs
    for run in validation_runs("megatron-table1"):
        assert run.attention == "materialised" and "2205.14135" in run.attention_source
    for run in validation_runs("llama3-table4"):
        # Pre-trained before FlashAttention-3 (arXiv 2407.08608) was released.
        assert run.attention == "flash2" and "2407.08608" in run.attention_source
