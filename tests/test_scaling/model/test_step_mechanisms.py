"""The mechanisms that tell one published run's software from another's: sequence
parallelism, pipeline balance, the attention kernel's generation, GPT's elementwise traffic
and expert weights' own data-parallel group, each against hand arithmetic."""

from dataclasses import replace

import pytest

from scaling.errors import DataError
from scaling.hardware.curves import SaturatingCurve
from scaling.hardware.load import load_profile
from scaling.model.config import ModelConfig, model_preset
from scaling.model.step import FA2_SLOWDOWN, elementwise_bytes_per_token, step_time

H100 = load_profile("h100-sxm")
FIXED = {"gemm_tflops": 100.0, "attention_tflops": 50.0, "memory_gbps": 1000.0}
TINY = ModelConfig("tiny", layers=4, d_model=512, d_ffn=1536, heads_q=4, heads_kv=2,
                   vocab=1000, seq=256)
GPT = ModelConfig("gpt", layers=4, d_model=512, d_ffn=2048, heads_q=4, heads_kv=4, vocab=1000,
                  seq=256, mlp="gelu", norm="layernorm", bias=True, tied_embeddings=True,
                  learned_positions=True, dropout=True)


def test_gpt_elementwise_bytes_by_hand():
    d, tp = 512, 2
    # Two LayerNorms (read d, write d) and two bias-dropout-adds (read 2d, write d, a 1-byte
    # mask), whole on each rank without sequence parallelism; bias-GELU reads and writes the
    # local 4d / tp; learned positions: no rotary. BF16 elements.
    norms = 2 * 2 * d + 2 * 3 * d
    without = (norms * 2 + 2 * d) + 2 * (2048 // tp) * 2
    assert elementwise_bytes_per_token(GPT, tp, sequence_parallel=False) == pytest.approx(without)
    with_sp = (norms * 2 + 2 * d) / tp + 2 * (2048 // tp) * 2
    assert elementwise_bytes_per_token(GPT, tp, sequence_parallel=True) == pytest.approx(with_sp)
    # Llama's: rotary on the local heads, SwiGLU reads two and writes one.
    hq, hkv = TINY.local_heads(tp)
    llama = norms * 2 / tp + 2 * (hq + hkv) * TINY.head_dim * 2 + 3 * (1536 // tp) * 2
    assert elementwise_bytes_per_token(TINY, tp) == pytest.approx(llama)


def test_full_recomputation_runs_the_forward_elementwise_again():
    plain = step_time(TINY, H100, batch_tokens=4 * 256, overrides=FIXED)
    full = step_time(TINY, H100, batch_tokens=4 * 256, overrides=FIXED, recompute="full")
    layer_bytes = 4 * elementwise_bytes_per_token(TINY, 1) * 256  # 4 layers, one sequence
    extra = 4 * layer_bytes / 1000e9  # four micro-batches, one more forward each
    assert full.breakdown["elementwise_s"] - plain.breakdown["elementwise_s"] == \
        pytest.approx(extra)


def test_an_unbalanced_pipeline_runs_at_its_last_stage_s_pace():
    balanced = step_time(TINY, H100, pp=2, batch_tokens=4 * 256, overrides=FIXED)
    last = step_time(TINY, H100, pp=2, batch_tokens=4 * 256, overrides=FIXED,
                     balanced_pipeline=False)
    # The output projection: 6 x vocab x d_model FLOPs per token, all of it on the last
    # stage instead of half; its FP32 loss softmax too (3 x vocab x 4 B per token).
    head_s = 6 * 1000 * 512 * 256 / 100e12
    softmax_s = 3 * 256 * 1000 * 4 / 1000e9
    per_mb = (head_s + softmax_s) / 2  # the half the balanced pipeline shared out
    assert last.breakdown["gemm_s"] - balanced.breakdown["gemm_s"] == \
        pytest.approx(4 * head_s / 2)
    assert last.breakdown["elementwise_s"] - balanced.breakdown["elementwise_s"] == \
        pytest.approx(4 * softmax_s / 2)
    # The bubble is (p - 1) of the slower micro-batch time.
    assert last.breakdown["pipeline_bubble_s"] - balanced.breakdown["pipeline_bubble_s"] == \
        pytest.approx(per_mb, rel=1e-6)
    assert last.layout["balanced_pipeline"] is False


def test_flash_attention_2_is_the_fa3_curve_over_its_published_speedup():
    fa3 = step_time(TINY, H100, batch_tokens=4 * 256)
    fa2 = step_time(TINY, H100, batch_tokens=4 * 256, attention="flash2")
    value, fast, slow = FA2_SLOWDOWN
    assert (value, fast, slow) == (1.75, 1.5, 2.0)  # arXiv 2407.08608, abstract: 1.5-2.0x
    assert fa2.breakdown["attention_s"] == pytest.approx(fa3.breakdown["attention_s"] * 1.75)
    assert fa2.breakdown["gemm_s"] == pytest.approx(fa3.breakdown["gemm_s"])
    assert fa2.labels["attention_tflops"]["label"] == "assumed"
    assert "2407.08608" in fa2.labels["attention_tflops"]["source"]


def test_flash_attention_2_refuses_a_measured_attention_curve():
    flat = SaturatingCurve(plateau=300.0, half_size=0.0)
    measured = tuple(replace(c, curve=flat, label="measured")
                     if c.kernel == "attention" else c for c in H100.kernel_curves)
    profile = replace(H100, kernel_curves=measured)
    with pytest.raises(DataError, match="measured"):
        step_time(TINY, profile, batch_tokens=4 * 256, attention="flash2")


def test_expert_weights_reduce_over_their_own_data_parallel_group():
    config = model_preset("llama4-scout")
    lay = dict(tp=8, pp=1, dp=16, seq=8192, batch_tokens=16 * 8192,
               overrides={"dp_busbw_gbps": 40.0})
    plain = step_time(config, H100, **lay)
    ep = step_time(config, H100, ep=16, **lay)
    routed = config.moe_layers * config.experts * config.expert_params
    rest = config.params - routed
    by_hand = lambda params, world: params * 6 * (world - 1) / world / 40e9  # noqa: E731
    assert plain.breakdown["dp_comm_s"] == pytest.approx(by_hand(config.params / 8, 16))
    # EP 16: the 16 experts one per rank, each reduced with nobody (16 / 16 replicas).
    assert ep.breakdown["dp_comm_s"] == pytest.approx(by_hand(rest / 8, 16))


def test_the_step_command_takes_the_mechanisms(capsys):
    import json

    from scaling.cli.main import main
    args = ["step", "megatron-gpt-18.4b", "--hardware", "a100-80gb", "--tp", "8", "--dp", "32",
            "--seq", "2048", "--micro-batch", "8", "--batch-tokens", "1024x2048",
            "--recompute", "full", "--attention", "materialised"]
    assert main(args + ["--json"]) == 0
    sp = json.loads(capsys.readouterr().out)
    assert main(args + ["--no-sequence-parallel", "--unbalanced-pipeline", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert sp["layout"]["sequence_parallel"] is True
    assert plain["layout"]["sequence_parallel"] is False
    assert plain["layout"]["balanced_pipeline"] is False
    assert plain["breakdown"]["elementwise_s"] > sp["breakdown"]["elementwise_s"]
    assert main(["step", "llama3-8b", "--gpus", "64", "--attention", "flash2"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "layout search" in err[0]


def test_selective_recomputation_runs_the_attention_core_forward_again():
    plain = step_time(TINY, H100, tp=2, batch_tokens=4 * 256, overrides=FIXED)
    sel = step_time(TINY, H100, tp=2, batch_tokens=4 * 256, overrides=FIXED,
                    recompute="selective")
    # Causal forward attention, 4 x seq x (heads / tp) x head_dim / 2 FLOPs per token and
    # layer, once more on 4 layers and 4 micro-batches of 256 tokens, at 50 TFLOP/s.
    fwd = 256 * 4 * 256 * 2 * 128 / 2
    assert sel.breakdown["attention_s"] - plain.breakdown["attention_s"] == \
        pytest.approx(4 * 4 * fwd / 50e12)
    for term in ("gemm_s", "tp_comm_s", "elementwise_s"):
        assert sel.breakdown[term] == pytest.approx(plain.breakdown[term])
    # Materialised attention: the scores' batched GEMMs and softmax traffic again too.
    gpt_plain = step_time(GPT, H100, batch_tokens=2 * 256, overrides=FIXED,
                          attention="materialised")
    gpt_sel = step_time(GPT, H100, batch_tokens=2 * 256, overrides=FIXED,
                        attention="materialised", recompute="selective")
    gpt_full = step_time(GPT, H100, batch_tokens=2 * 256, overrides=FIXED,
                         attention="materialised", recompute="full")
    assert gpt_sel.breakdown["attention_s"] == pytest.approx(gpt_full.breakdown["attention_s"])
    assert gpt_sel.breakdown["attention_s"] > gpt_plain.breakdown["attention_s"]
    assert gpt_sel.breakdown["gemm_s"] == pytest.approx(gpt_plain.breakdown["gemm_s"])


def test_zero_stages_by_hand():
    from scaling.model.step import ZERO_STAGES
    assert ZERO_STAGES == (0, 1, 2, 3)
    lay = dict(tp=1, dp=2, batch_tokens=4 * 256,
               overrides=dict(FIXED, dp_busbw_gbps=100.0))
    local = TINY.params  # TP 1, PP 1: every weight on every replica
    runs = {z: step_time(TINY, H100, zero=z, **lay) for z in ZERO_STAGES}
    half = 0.5  # (n - 1) / n for two replicas
    # Stage 0: the FP32 gradients all-reduced (2 x size x (n - 1) / n), Adam on the whole copy.
    assert runs[0].breakdown["dp_comm_s"] == pytest.approx(2 * local * 4 * half / 100e9)
    assert runs[0].breakdown["optimizer_s"] == pytest.approx(local * 30 / 1000e9)
    # Stages 1 and 2: FP32 reduce-scatter + BF16 all-gather once, Adam on half.
    for z in (1, 2):
        assert runs[z].breakdown["dp_comm_s"] == pytest.approx(local * 6 * half / 100e9)
        assert runs[z].breakdown["optimizer_s"] == pytest.approx(local / 2 * 30 / 1000e9)
    # Stage 3: the weights gathered for each of the 2 micro-batches' forward and backward.
    assert runs[3].layout["micro_batches"] == 2
    assert runs[3].breakdown["dp_comm_s"] == pytest.approx(
        (local * 4 + 2 * 2 * local * 2) * half / 100e9)
    with pytest.raises(DataError, match="ZeRO stage"):
        step_time(TINY, H100, zero=4, **lay)


def test_gradient_reduction_precision_by_hand():
    lay = dict(tp=1, dp=4, batch_tokens=4 * 256, zero=0,
               overrides=dict(FIXED, dp_busbw_gbps=100.0))
    local, ring = TINY.params, 3 / 4  # (n - 1) / n for four replicas
    fp32 = step_time(TINY, H100, **lay)
    half = step_time(TINY, H100, grad_reduce="half", **lay)
    # The all-reduce moves 2 x size x (n - 1) / n bytes: 4 B a gradient in FP32, 2 B in half.
    assert fp32.breakdown["dp_comm_s"] == pytest.approx(2 * local * 4 * ring / 100e9)
    assert half.breakdown["dp_comm_s"] == pytest.approx(2 * local * 2 * ring / 100e9)
    assert half.layout["grad_reduce"] == "half"
    assert half.labels["grad_reduce"]["label"] == "given"
    assert fp32.labels["grad_reduce"]["label"] == "assumed"
    # ZeRO 2: the reduce-scatter halves, the BF16 all-gather does not change.
    z2 = {g: step_time(TINY, H100, **dict(lay, zero=2), grad_reduce=g)
          for g in ("fp32", "half")}
    assert z2["fp32"].breakdown["dp_comm_s"] == pytest.approx(local * (4 + 2) * ring / 100e9)
    assert z2["half"].breakdown["dp_comm_s"] == pytest.approx(local * (2 + 2) * ring / 100e9)
    from scaling.errors import UnknownNameError
    with pytest.raises(UnknownNameError, match="fp8"):
        step_time(TINY, H100, grad_reduce="fp8", **lay)


@pytest.mark.parametrize("recompute, backward_share", [("none", 2 / 3), ("full", 3 / 4)])
def test_gradient_overlap_hides_the_reduction_under_the_last_backward(recompute,
                                                                       backward_share):
    lay = dict(tp=1, dp=4, batch_tokens=8 * 256, zero=0, recompute=recompute)
    local, ring = TINY.params, 3 / 4
    for busbw in (0.05, 1000.0):  # a reduction longer, then shorter, than the backward
        ov = dict(FIXED, dp_busbw_gbps=busbw)
        plain = step_time(TINY, H100, overrides=ov, **lay)
        hidden = step_time(TINY, H100, overrides=ov, grad_overlap=True, **lay)
        per_mb = sum(v for k, v in plain.breakdown.items()
                     if k not in ("pipeline_bubble_s", "dp_comm_s", "optimizer_s"))
        t_mb = per_mb / plain.layout["micro_batches"]
        reduce_s = 2 * local * 4 * ring / (busbw * 1e9)
        assert plain.breakdown["dp_comm_s"] == pytest.approx(reduce_s)
        # Only what outlasts the last micro-batch's backward (its time after the first
        # forward: 2 of 3 forward-equivalents, 3 of 4 under full recomputation) is exposed.
        assert hidden.breakdown["dp_comm_s"] == pytest.approx(
            max(reduce_s - backward_share * t_mb, 0.0), abs=1e-12)
        assert hidden.layout["grad_overlap"] is True
    assert hidden.breakdown["dp_comm_s"] == 0.0
    # Everything else is untouched.
    assert {k: v for k, v in hidden.breakdown.items() if k != "dp_comm_s"} == pytest.approx(
        {k: v for k, v in plain.breakdown.items() if k != "dp_comm_s"})


def test_unfused_gradient_accumulation_by_hand():
    lay = dict(tp=1, dp=2, batch_tokens=2 * 5 * 256, zero=0, overrides=FIXED)
    fused = step_time(TINY, H100, **lay)
    assert fused.layout["micro_batches"] == 5 and "grad_accumulation_s" not in fused.breakdown
    # The default is stated as an assumption in the inputs, as the unfused choice is given.
    assert fused.labels["grad_accumulation"]["value"] == "fused"
    assert fused.labels["grad_accumulation"]["label"] == "assumed"
    local = TINY.params
    for reduce, width in (("fp32", 4), ("half", 2)):
        unfused = step_time(TINY, H100, grad_accumulation="unfused", grad_reduce=reduce, **lay)
        # Four micro-batches after the first: the running sum read and written in the
        # reduction width, the new BF16 gradient read, at 1,000 GB/s.
        assert unfused.breakdown["grad_accumulation_s"] == pytest.approx(
            4 * local * (2 * width + 2) / 1000e9)
        assert unfused.layout["grad_accumulation"] == "unfused"
        assert unfused.labels["grad_accumulation"]["label"] == "given"
        rest = {k: v for k, v in unfused.breakdown.items() if k != "grad_accumulation_s"}
        assert rest == pytest.approx(step_time(TINY, H100, grad_reduce=reduce,
                                               **lay).breakdown)
    one = step_time(TINY, H100, grad_accumulation="unfused", **dict(lay, batch_tokens=512))
    assert one.layout["micro_batches"] == 1 and one.breakdown["grad_accumulation_s"] == 0.0
    from scaling.errors import UnknownNameError
    with pytest.raises(UnknownNameError, match="gradient accumulation"):
        step_time(TINY, H100, grad_accumulation="sometimes", **lay)


def test_the_memory_command_takes_no_sequence_parallelism(capsys):
    import json

    from scaling.cli.main import main
    from scaling.model.memory import memory_breakdown
    args = ["memory", "megatron-gpt-18.4b", "--hardware", "a100-80gb", "--tp", "8", "--dp",
            "32", "--seq", "2048", "--micro-batch", "8", "--batch-tokens", "1024x2048",
            "--json"]
    main(args)
    sp = json.loads(capsys.readouterr().out)
    main(args + ["--no-sequence-parallel"])
    whole = json.loads(capsys.readouterr().out)
    assert whole["layout"]["sequence_parallel"] is False
    # Without sequence parallelism the norms' and dropouts' activations are kept whole on
    # each of the 8 ranks: the command gives what the memory model gives for that layout.
    direct = memory_breakdown(model_preset("megatron-gpt-18.4b"), "a100-80gb", tp=8, dp=32,
                              micro_batch=8, micro_batches=4, seq=2048, zero=2, etp=8,
                              sequence_parallel=False)
    assert whole["memory"]["total_bytes"] == pytest.approx(float(direct.total_bytes))
    assert whole["memory"]["total_bytes"] > sp["memory"]["total_bytes"]


def test_the_step_command_takes_the_gradient_reduction(capsys):
    import json

    from scaling.cli.main import main
    args = ["step", "megatron-gpt-1.7b", "--hardware", "a100-80gb", "--dp", "32", "--seq",
            "2048", "--micro-batch", "16", "--batch-tokens", "512x2048", "--zero", "0",
            "--recompute", "full"]
    main(args + ["--json"])
    plain = json.loads(capsys.readouterr().out)
    main(args + ["--grad-reduce", "half", "--grad-overlap", "--json"])
    ddp = json.loads(capsys.readouterr().out)
    assert (ddp["layout"]["grad_reduce"], ddp["layout"]["grad_overlap"]) == ("half", True)
    assert plain["breakdown"]["dp_comm_s"] > 0
    # One micro-batch of 16 sequences: its backward outlasts the half-precision all-reduce.
    assert ddp["breakdown"]["dp_comm_s"] == 0.0
    main(args + ["--grad-reduce", "half", "--grad-overlap"])
    text = capsys.readouterr().out
    assert any(line.split()[:3] == ["grad_reduce", "half", "given"] for line in text.splitlines())
    assert any(line.split()[:3] == ["grad_overlap", "yes", "given"] for line in text.splitlines())


def test_the_step_command_takes_the_backward_overlap_off(capsys):
    import json

    from scaling.cli.main import main
    args = ["step", "megatron-gpt-18.4b", "--hardware", "a100-80gb", "--tp", "8", "--dp", "32",
            "--seq", "2048", "--micro-batch", "8", "--batch-tokens", "1024x2048", "--zero",
            "0", "--recompute", "full"]
    main(args + ["--json"])
    overlapped = json.loads(capsys.readouterr().out)
    main(args + ["--no-tp-backward-overlap", "--json"])
    exposed = json.loads(capsys.readouterr().out)
    assert overlapped["layout"]["tp_backward_overlap"] is True
    assert exposed["layout"]["tp_backward_overlap"] is False
    assert exposed["breakdown"]["tp_comm_s"] > overlapped["breakdown"]["tp_comm_s"]
    assert exposed["labels"]["tp_backward_overlap"]["label"] == "given"
    # Only the tensor-parallel term moves.
    for term, seconds in overlapped["breakdown"].items():
        if term not in ("tp_comm_s", "pipeline_bubble_s", "dp_comm_s"):
            assert exposed["breakdown"][term] == pytest.approx(seconds), term
    # The layout search times the default only, and says so.
    assert main(["step", "megatron-gpt-18.4b", "--hardware", "a100-80gb", "--gpus", "256",
                 "--seq", "2048", "--no-tp-backward-overlap"]) != 0
    err = capsys.readouterr().err
    assert "--no-tp-backward-overlap" in err and len(err.strip().splitlines()) == 1
