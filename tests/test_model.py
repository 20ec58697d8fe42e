"""The transformer cost model against the Llama 3 paper and hand-computed counts."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.errors import DataError, UnknownNameError
from scaling.model import ModelConfig, config_for_params, llama_ffn, model_preset

# Llama 3 paper: 8B, 70B, 405B parameters; 405B trained on 15.6T tokens at 3.8e25 FLOPs.
PUBLISHED = {"llama3-8b": 8e9, "llama3-70b": 70e9, "llama3-405b": 405e9}


@pytest.mark.parametrize("name,published", PUBLISHED.items())
def test_llama3_parameter_counts_match_the_paper(name, published):
    config = model_preset(name)
    assert abs(config.params / published - 1) < 0.02
    assert config.active_params == config.params


def test_405b_parameters_by_hand():
    # Per layer: Wq, Wo 16384^2 each; Wk, Wv 16384 x 1024 each; SwiGLU 3 x 16384 x 53248;
    # two norms. Plus input and output embeddings 2 x 128000 x 16384 and the final norm.
    d = 16384
    layer = 2 * d * d + 2 * d * 1024 + 3 * d * 53248 + 2 * d
    assert model_preset("llama3-405b").params == 126 * layer + 2 * 128000 * d + d


def test_6nd_for_405b_is_the_published_compute():
    config = model_preset("llama3-405b")
    assert 6 * config.params * 15.6e12 == pytest.approx(3.8e25, rel=0.01)
    # FLOPs per token adds the attention term: a few percent at 8K context, not more.
    ratio = config.flops_per_token(8192) / (6 * config.params)
    assert 1.0 < ratio < 1.06


def test_attention_term_written_out():
    config = model_preset("llama3-8b")
    # 3 (fwd + 2x bwd) x 4 x seq x heads x head_dim per layer, halved by the causal mask.
    assert config.attention_flops_per_token(8192) == 32 * 3 * 4 * 8192 * 32 * 128 / 2
    assert config.attention_flops_per_token(8192, causal=False) == 32 * 3 * 4 * 8192 * 4096
    assert config.flops_per_token(4096) == 6 * config.matmul_params + 32 * 3 * 4 * 4096 * 4096 / 2
    # The input embedding is a lookup: not counted; the output projection is counted.
    assert config.params - config.matmul_params == 128000 * 4096 + 32 * 2 * 4096 + 4096


def test_moe_active_parameters():
    moe = ModelConfig("moe", layers=2, d_model=256, d_ffn=512, heads_q=4, heads_kv=2,
                      vocab=1000, experts=8, experts_per_token=2, shared_experts=1)
    attn = 2 * 256 * 256 + 2 * 256 * 128
    expert = 3 * 256 * 512
    norms, router = 2 * 256, 256 * 8
    emb = 2 * 1000 * 256 + 256
    assert moe.params == 2 * (attn + 9 * expert + router + norms) + emb
    assert moe.active_params == 2 * (attn + 3 * expert + router + norms) + emb
    ops = moe.layer_ops(micro_batch=1, seq=64)
    gate = [o for o in ops if o.name == "expert_gate_up"][0]
    assert gate.shape == {"m": 64 * 2 // 8, "n": 1024, "k": 256} and gate.count == 8


def test_layer_ops_flops_match_6n_per_token():
    """Forward and backward GEMMs of a layer = 6 x layer matmul params x tokens (TP = 1),
    and each GPU does 1/tp of it under tensor parallelism."""
    config = model_preset("llama3-70b")
    tokens = 2 * 4096
    per_layer = config.attention_params + config.expert_params
    for tp in (1, 8):
        ops = config.layer_ops(micro_batch=2, seq=4096, tp=tp)
        gemm = sum(o.flops * o.count for o in ops if o.kind == "gemm")
        # GQA: each of 8 GPUs keeps one of the 8 kv heads, so nothing is replicated here.
        assert gemm == 6 * per_layer * tokens // tp
        attn_fwd = [o for o in ops if o.kind == "attention" and o.direction == "fwd"][0]
        assert attn_fwd.shape["heads_q"] == 64 // tp and attn_fwd.shape["heads_kv"] == 8 // tp
        assert attn_fwd.flops == 4 * 2 * (64 // tp) * 4096 * 4096 * 128 // 2


def test_backward_gemm_shapes():
    config = model_preset("llama3-405b")
    ops = {o.name: o.shape for o in config.layer_ops(1, 8192, tp=8)}
    # QKV: 16 q heads + 2 x 1 kv head of 128 per GPU.
    assert ops["qkv"] == {"m": 8192, "n": (16 + 2) * 128, "k": 16384}
    assert ops["qkv.dgrad"] == {"m": 8192, "n": 16384, "k": 2304}
    assert ops["qkv.wgrad"] == {"m": 16384, "n": 2304, "k": 8192}
    assert ops["mlp_down"] == {"m": 8192, "n": 16384, "k": 53248 // 8}


def test_head_ops_vocabulary_parallel():
    ops = model_preset("llama3-8b").head_ops(1, 8192, tp=8)
    assert ops[0].shape == {"m": 8192, "n": 16000, "k": 4096} and len(ops) == 3


def test_ffn_rule_reproduces_llama3():
    assert llama_ffn(4096) == 14336 and llama_ffn(8192) == 28672


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=1e9, max_value=1e13))
def test_config_for_params_is_close_and_llama_shaped(n):
    config = config_for_params(n)
    # Rounding to whole layers moves the count by at most half a layer.
    layer = (config.params - 2 * config.vocab * config.d_model - config.d_model) / config.layers
    assert abs(config.params - n) <= 0.5 * layer + 1
    assert config.head_dim == 128 and config.heads_q % config.heads_kv == 0
    # Near d_model / layers = 128; small models have few widths to choose from (whole
    # groups of 8 query heads), so the ratio is looser there.
    aspect = config.d_model / config.layers / 128
    assert (0.5 < aspect < 2) if n >= 2e10 else (0.2 < aspect < 5)


def test_config_for_405b_is_near_llama3_405b():
    config = config_for_params(405e9)
    assert abs(config.params / 405e9 - 1) < 0.01
    assert config.d_model == 16384


def test_bad_input():
    with pytest.raises(UnknownNameError, match="llama3-405b"):
        model_preset("llama4")
    with pytest.raises(DataError, match="too few"):
        config_for_params(1e6)
    with pytest.raises(DataError, match="positive"):
        config_for_params(-5)
    with pytest.raises(DataError, match="multiple of heads_kv"):
        ModelConfig("x", 2, 256, 512, heads_q=4, heads_kv=3, vocab=10)
    with pytest.raises(DataError, match="not divisible by tensor parallelism"):
        model_preset("llama3-8b").layer_ops(1, 1024, tp=3)
    with pytest.raises(DataError, match="micro_batch"):
        model_preset("llama3-8b").layer_ops(0, 1024)

