"""The transformer cost model against the Llama 3 paper and hand-computed counts."""

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.errors import DataError, UnknownNameError
from scaling.model.config import ModelConfig, config_for_params, llama_ffn, model_preset

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



# -- GPT rows of Megatron-LM (Narayanan et al. 2021, Table 1) ---------------------------------

# Table 1: parameters (billion), heads, hidden size, layers; V = 51,200 and s = 2,048 (Sec. 5.1).
MEGATRON_TABLE_1 = {
    "megatron-gpt-1.7b": (1.7, 24, 2304, 24), "megatron-gpt-3.6b": (3.6, 32, 3072, 30),
    "megatron-gpt-7.5b": (7.5, 32, 4096, 36), "megatron-gpt-18.4b": (18.4, 48, 6144, 40),
    "megatron-gpt-39.1b": (39.1, 64, 8192, 48), "megatron-gpt-76.1b": (76.1, 80, 10240, 60),
    "megatron-gpt-145.6b": (145.6, 96, 12288, 80),
    "megatron-gpt-310.1b": (310.1, 128, 16384, 96),
    "megatron-gpt-529.6b": (529.6, 128, 20480, 105),
    "megatron-gpt-1t": (1008.0, 160, 25600, 128)}


@pytest.mark.parametrize("name", MEGATRON_TABLE_1)
def test_megatron_rows_reproduce_eq2_and_the_published_count(name):
    billions, heads, h, l = MEGATRON_TABLE_1[name]
    config = model_preset(name)
    assert (config.heads_q, config.heads_kv, config.d_model, config.layers) == (heads, heads, h, l)
    # Eq. (2): P = 12 l h^2 (1 + 13 / (12 h) + (V + s) / (12 l h)).
    V, s = 51200, 2048
    eq2 = 12 * l * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * l * h))
    assert abs(eq2 / 1e9 - billions) <= 0.05  # the table prints one decimal
    # The config counts every tensor: Eq. (2) leaves out only the final LayerNorm (2h).
    assert config.params == pytest.approx(eq2 + 2 * h, rel=1e-12)
    assert config.mlp == "gelu" and config.d_ffn == 4 * h and config.tied_embeddings


@pytest.mark.parametrize("name, heads, h, l", [("megatron-gpt-22b", 64, 6144, 48),
                                                ("megatron-gpt-175b", 96, 12288, 96)])
def test_korthikanti_models_are_megatron_gpts_of_their_shape(name, heads, h, l):
    """Korthikanti et al. 2022's 22B and 175B (GPT-3's shape, Brown et al. 2020, Table 2.1):
    Eq. (2) of Narayanan et al. plus the final LayerNorm gives 22.1B and 174.6B."""
    config = model_preset(name)
    assert (config.heads_q, config.d_model, config.layers, config.vocab) == (heads, h, l, 51200)
    eq2 = 12 * l * h * h * (1 + 13 / (12 * h) + (51200 + 2048) / (12 * l * h))
    assert config.params == pytest.approx(eq2 + 2 * h, rel=1e-12)
    assert config.params / 1e9 == pytest.approx({"megatron-gpt-22b": 22.0,
                                                 "megatron-gpt-175b": 175.0}[name], rel=0.01)
    assert "2205.05198" in config.source


def test_gpt_layer_by_hand():
    config = model_preset("megatron-gpt-1.7b")
    h = 2304
    # QKV 3h^2 + 3h, out h^2 + h, fc1 4h^2 + 4h, fc2 4h^2 + h, two LayerNorms 4h.
    assert config.layer_params("dense") == 12 * h * h + 13 * h
    # Matmul weights only (no biases, norms or the position table); the tied head counts.
    assert config.matmul_params == 24 * 12 * h * h + 51200 * h
    ops = {o.name: o.shape for o in config.layer_ops(1, 2048, tp=1)}
    assert ops["mlp_up"] == {"m": 2048, "n": 4 * h, "k": h}
    assert ops["mlp_down"] == {"m": 2048, "n": h, "k": 4 * h} and "mlp_gate_up" not in ops


# -- mixture-of-experts presets --------------------------------------------------------------

def test_llama4_counts_against_the_model_card():
    # Model card: Scout 17B active / 109B total, Maverick 17B / 400B. By hand from the
    # released config (d 5120, 40 q and 8 kv heads of 128, experts and shared expert 8192
    # wide, dense MLP 16384, vocabulary 202,048, untied):
    d, V = 5120, 202048
    attn = 2 * d * d + 2 * d * 1024
    expert, dense = 3 * d * 8192, 3 * d * 16384
    norms, emb = 2 * d, 2 * V * d + d
    scout, maverick = model_preset("llama4-scout"), model_preset("llama4-maverick")
    assert scout.params == 48 * (attn + 17 * expert + d * 16 + norms) + emb
    assert maverick.params == (24 * (attn + dense + norms)
                               + 24 * (attn + 129 * expert + d * 128 + norms) + emb)
    assert maverick.active_params == (24 * (attn + dense + norms)
                                      + 24 * (attn + 2 * expert + d * 128 + norms) + emb)
    assert abs(maverick.params / 400e9 - 1) < 0.005
    assert abs(scout.active_params / 17e9 - 1) < 0.02
    assert abs(maverick.active_params / 17e9 - 1) < 0.02
    # Scout's 109B includes the vision tower; the text model is 1.2% smaller.
    assert 0.98 < scout.params / 109e9 < 1.0


def test_moe_layer_placement():
    maverick, ds = model_preset("llama4-maverick"), model_preset("deepseek-v3")
    # transformers: moe_layers = range(step - 1, layers, step) -> 1, 3, ..., 47.
    assert [i for i in range(48) if maverick.moe_layers_between(i, i + 1)] == list(range(1, 48, 2))
    assert (maverick.dense_layers, maverick.moe_layers) == (24, 24)
    assert (ds.dense_layers, ds.moe_layers) == (3, 58)
    # Vectorised: the MoE layers of several ranges at once.
    starts, stops = np.array([0, 2, 3, 10]), np.array([4, 3, 9, 10])
    assert list(ds.moe_layers_between(starts, stops)) == [1, 0, 6, 0]
    assert list(maverick.moe_layers_between(starts, stops)) == [2, 0, 3, 0]
    with pytest.raises(DataError, match="layer='dense' or layer='moe'"):
        maverick.layer_ops(1, 1024, tp=1)
    assert model_preset("llama4-scout").layer_kinds() == ("moe",)


def test_deepseek_v3_with_latent_attention():
    ds = model_preset("deepseek-v3")
    d, H = 7168, 128
    # config_671B.json: q_lora 1536, kv_lora 512, qk nope 128 + rope 64, v 128.
    mla = (d * 1536 + 1536 + 1536 * H * 192 + d * (512 + 64) + 512 + 512 * H * (128 + 128)
           + H * 128 * d)
    assert ds.attention_params == mla
    expert = 3 * d * 2048
    layer_moe = mla + 2 * d + 257 * expert + 256 * d
    layer_dense = mla + 2 * d + 3 * d * 18432
    assert ds.params == 3 * layer_dense + 58 * layer_moe + 2 * 129280 * d + d
    # README: "671B total parameters with 37B activated for each token".
    assert abs(ds.params / 671e9 - 1) < 0.001
    assert abs(ds.active_params / 37e9 - 1) < 0.02
    # Attention FLOPs per token: fwd 2 * seq * H * (192 + 128), halved (causal), x3.
    assert ds.attention_flops_per_token(4096) == 61 * 3 * 2 * 4096 * H * (192 + 128) / 2
    # Every GEMM of a dense layer: 6 FLOPs per matmul weight per token (TP 1).
    ops = ds.layer_ops(2, 4096, tp=1, layer="dense")
    gemm = sum(o.flops * o.count for o in ops if o.kind == "gemm")
    assert gemm == 6 * (ds.attention_matmul_params + 3 * d * 18432) * 2 * 4096
    shapes = {o.name: o.shape for o in ds.layer_ops(1, 4096, tp=8, layer="moe")}
    assert shapes["q_down"] == {"m": 4096, "n": 1536, "k": d}  # replicated over TP
    assert shapes["kv_up"] == {"m": 4096, "n": 16 * 256, "k": 512}  # 16 heads per GPU


def test_behemoth_is_labelled_assumed():
    b = model_preset("llama4-behemoth")
    assert b.source.startswith("ASSUMED") and len(b.assumptions) >= 3
    # The published figures it was solved for: 288B active, 16 experts, nearly 2T total.
    assert abs(b.active_params / 288e9 - 1) < 0.01 and b.experts == 16
    assert 1.9e12 < b.params < 2.0e12


# -- config_for_params is bounded --------------------------------------------------------------

def _brute_force(n, vocab=128000, heads_kv=8):
    """The exhaustive search over every width, the reference the bisection must match."""
    best, d = None, 128
    while True:
        heads = d // 128
        kv = min(heads_kv, heads)
        if heads % kv == 0:
            per_layer = ModelConfig("p", 1, d, llama_ffn(d), heads, kv, vocab).params - (
                2 * vocab * d + d)
            layers = (n - 2 * vocab * d - d) / per_layer
            if layers < 0.5:
                return best
            score = abs(math.log(d / layers / 128))
            if best is None or score < best[0]:
                best = (score, d, max(1, round(layers)))
        d += 128


@pytest.mark.parametrize("n", [3e8, 2.2e9, 7.1e10, 405e9, 2.06e12, 9e12])
def test_config_for_params_matches_the_exhaustive_search(n):
    _, d, layers = _brute_force(n)
    config = config_for_params(n)
    assert (config.d_model, config.layers) == (d, layers)


def test_config_for_params_is_fast_at_any_size():
    for n in (1e22, 1e30):
        start = time.perf_counter()
        config = config_for_params(n)
        assert time.perf_counter() - start < 1.0
        assert abs(config.params / n - 1) < 1e-3
        assert 0.5 < config.d_model / config.layers / 128 < 2
