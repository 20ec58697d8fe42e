"""Saved activations per layer against Korthikanti et al. 2022 (Table 2) and hand counts."""

from dataclasses import replace

import numpy as np
import pytest

from scaling.model.activations import (embedding_bytes, head_bytes, layer_bytes, layer_tensors,
                                 logits_bytes, recompute_codes)
from scaling.errors import DataError, UnknownNameError
from scaling.model.config import ModelConfig, model_preset

GPT = model_preset("megatron-gpt-145.6b")  # MHA, 4h GELU MLP, dropout: Korthikanti's layer
S, B = 2048, 2
H, A = GPT.d_model, GPT.heads_q


def kept(config, **kw):
    return layer_bytes(config, "dense", flash_attention=False, seq=S, micro_batch=B, **kw)[0]


@pytest.mark.parametrize("t", [1, 2, 4, 8])
def test_korthikanti_table_2_exactly(t):
    sbh, as_h = S * B * H, A * S / H
    # tensor + sequence parallel (Eq. 4) and tensor parallel without it (Eq. 2)
    assert kept(GPT, tp=t) == sbh * (34 / t + 5 * as_h / t)
    assert kept(GPT, tp=t, sequence_parallel=False) == sbh * (10 + 24 / t + 5 * as_h / t)
    # selective recomputation: the attention core's 5as/h goes
    assert kept(GPT, tp=t, recompute="selective") == sbh * 34 / t
    assert kept(GPT, tp=t, recompute="selective", sequence_parallel=False) == sbh * (10 + 24 / t)
    # full recomputation keeps the layer input: 2sbh (Table 2), split 1/t where sequence
    # parallelism passes it on sequence-sharded (Sec. 5: "further reduced to 2sbhL/t")
    assert kept(GPT, tp=t, recompute="full", sequence_parallel=False) == 2 * sbh
    assert kept(GPT, tp=t, recompute="full") == 2 * sbh / t


def test_one_call_for_many_layouts():
    tp = np.array([1, 2, 8, 8, 8])
    recompute = np.array([0, 0, 1, 2, 2])
    sp = np.array([True, False, True, True, False])
    out = kept(GPT, tp=tp, recompute=recompute, sequence_parallel=sp)
    one = [kept(GPT, tp=int(t), recompute=["none", "selective", "full"][r],
                sequence_parallel=bool(s)) for t, r, s in zip(tp, recompute, sp)]
    assert out.tolist() == one


def test_llama3_405b_layer_by_hand():
    # FlashAttention (no s^2 scores; FP32 logsumexp per head), SwiGLU, GQA with 8 kv heads,
    # RMSNorm, no dropout; TP 8 with sequence parallelism. Bytes per token on one GPU:
    config = model_preset("llama3-405b")
    h, ffn = 16384, 53248 // 8
    sequence = 4 * 2 * h / 8  # norm1 and norm2 inputs, attention and MLP inputs
    attention = 2 * 16 * 128 + 2 * 2 * 128 + 4 * 16 + 2 * 16 * 128  # q, k+v, lse, output
    mlp = 2 * 2 * ffn + 2 * ffn  # gate and up, then their product
    per_token = sequence + attention + mlp
    assert per_token == 65088
    total, rebuilt = layer_bytes(config, "dense", tp=8, seq=8192)
    assert total == 8192 * per_token and rebuilt == 0
    # Selective recomputation only drops the logsumexp under FlashAttention.
    assert layer_bytes(config, "dense", tp=8, seq=8192, recompute="selective")[0] == (
        8192 * (per_token - 4 * 16))
    # FP8 GEMM inputs: attention and MLP inputs, attention output and the down projection's
    # input at 1 byte; FlashAttention still keeps its BF16 output.
    fp8 = per_token - 2 * (h / 8) - 2 * 16 * 128 / 2 - 2 * ffn / 2 + 2 * 16 * 128
    assert layer_bytes(config, "dense", tp=8, seq=8192, fp8_gemm_inputs=True)[0] == 8192 * fp8
    # Context parallelism divides the sequence: 131,072 tokens on CP 16 is 8,192 per GPU.
    assert layer_bytes(config, "dense", tp=8, cp=16, seq=131072)[0] == total


def test_full_recomputation_rebuilds_one_layer_in_its_backward():
    config = model_preset("llama3-70b")
    none = layer_bytes(config, "dense", tp=4, seq=4096)[0]
    full, rebuilt = layer_bytes(config, "dense", tp=4, seq=4096, recompute="full")
    assert full == 4096 * 2 * 8192 / 4 and full + rebuilt == none


def test_moe_layer_by_hand():
    moe = ModelConfig("moe", layers=2, d_model=256, d_ffn=512, heads_q=4, heads_kv=2,
                      vocab=1000, seq=128, experts=8, experts_per_token=2, shared_experts=1)
    names = {t.name: t.bytes_per_token for t in layer_tensors(moe, "moe", tp=2, etp=2)}
    # Router scores FP32 for 8 experts; each GPU dispatches its half of the tokens (sequence
    # parallelism), 2 copies each; expert TP 2 gathers tokens over 2 GPUs and halves widths.
    assert names["router_scores"] == 4 * 8 / 2
    assert names["expert_input"] == 2 * 256 * 2 / 2 * 2
    assert names["expert_hidden"] == 2 * 2 * 512 * 2 / 2
    assert names["expert_down_input"] == 2 * 512 * 2 / 2
    assert names["expert_output"] == 2 * 256 * 2 / 2
    assert names["shared_expert_hidden"] == 2 * 2 * 512 / 2
    assert "mlp_hidden" not in names
    imbalanced = {t.name: t.bytes_per_token
                  for t in layer_tensors(moe, "moe", tp=2, routed_token_factor=1.5)}
    assert imbalanced["expert_hidden"] == 1.5 * names["expert_hidden"]


def test_latent_attention_tensors():
    ds = model_preset("deepseek-v3")
    names = {t.name: t.bytes_per_token for t in layer_tensors(ds, "dense", tp=1)}
    assert names["q"] == names["k"] == 2 * 128 * 192 and names["v"] == 2 * 128 * 128
    assert names["q_up_input"] == 2 * 1536 and names["kv_up_input"] == 2 * 512
    # The low-rank projections are replicated, not split, over tensor parallelism.
    assert {t.name: t.bytes_per_token for t in layer_tensors(ds, "dense", tp=8)}[
        "q_norm_input"] == 2 * 1536


def test_outside_the_layers():
    # Korthikanti Sec. 4.3: embedding dropout sbh/t per micro-batch, final norm and output
    # layer inputs 2sbh/t each, FP32 logits 4sbv/t (plus the BF16 logits while cast).
    t = 8
    assert embedding_bytes(GPT, tp=t, seq=S, micro_batch=B) == S * B * (8 + H / t)
    assert embedding_bytes(model_preset("llama3-8b"), tp=t, seq=S) == S * 8
    assert head_bytes(GPT, tp=t, seq=S, micro_batch=B) == 4 * S * B * H / t
    assert logits_bytes(GPT, tp=t, seq=S, micro_batch=B) == 6 * S * B * 51200 / t
    assert logits_bytes(GPT, tp=t, cp=4, seq=S) == 6 * S * 51200 / t / 4


def test_bad_recomputation():
    assert recompute_codes(["none", "full"]).tolist() == [0, 2]
    with pytest.raises(UnknownNameError, match="selective"):
        recompute_codes("partial")
    with pytest.raises(DataError, match="codes are 0..2"):
        recompute_codes(np.array([3]))
    with pytest.raises(UnknownNameError, match="dense"):
        layer_tensors(GPT, "sparse")


def test_no_dropout_no_masks():
    llama_like = replace(GPT, dropout=False)
    names = {t.name for t in layer_tensors(llama_like, "dense", flash_attention=False)}
    assert not any("mask" in n or "dropout" in n for n in names)
