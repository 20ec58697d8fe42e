"""The step model: Llama 3 405B's published throughput, and every term against hand arithmetic."""

import json
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scaling.cli.main import main
from scaling.hardware.curves import LinearPower, SaturatingCurve
from scaling.errors import DataError, UnknownNameError
from scaling.hardware.profile import CommCurve, PowerCurve
from scaling.hardware.load import load_profile
from scaling.model.config import ModelConfig, model_preset
from scaling.model.step import step_time

H100 = load_profile("h100-sxm")
LLAMA3_405B_LAYOUT = dict(tp=8, pp=16, dp=128, seq=8192, batch_tokens=16 * 2 ** 20)


@pytest.mark.parametrize("interleave,within", [(1, 0.30), (2, 0.10), (4, None)])
def test_llama3_405b_on_16k_h100_is_near_the_published_400_tflops(interleave, within):
    # Llama 3 paper, Table 4: 400 TFLOP/s per GPU (41% MFU) on 16,384 H100 with this layout,
    # on an interleaved schedule (Sec. 3.3.2, chunks not published); plain 1F1B's bubble of
    # 15 / 31 leaves it below; 4 chunks, a bubble of 15 / 79, lift it above.
    r = step_time(model_preset("llama3-405b"), H100, interleave=interleave,
                  **LLAMA3_405B_LAYOUT)
    assert r.layout["gpus"] == 16384 and r.layout["micro_batches"] == 16
    if within is None:
        assert r.tflops_per_gpu > 400
    else:
        assert abs(r.tflops_per_gpu / 400 - 1) < within
    assert r.mfu == pytest.approx(r.tflops_per_gpu / 989)
    assert sum(r.breakdown.values()) == pytest.approx(r.step_time_s)
    # The bubble is (p - 1) / (v m + p - 1) of the pipelined part of the step (all but the
    # once-per-step data-parallel collectives and optimizer).
    pipelined = r.step_time_s - r.breakdown["dp_comm_s"] - r.breakdown["optimizer_s"]
    assert r.breakdown["pipeline_bubble_s"] / pipelined == pytest.approx(
        15 / (interleave * 16 + 15))
    # Model FLOPs of the step: 6N plus attention per token, over the GPUs.
    config = model_preset("llama3-405b")
    assert r.model_flops_per_gpu == pytest.approx(
        config.flops_per_token(8192) * 16 * 2 ** 20 / 16384)
    lo, hi = r.intervals["tflops_per_gpu"]
    assert lo <= r.tflops_per_gpu <= hi


def test_half_the_replicas_doubles_the_micro_batches_and_shrinks_the_bubble():
    # Llama 3 paper, Table 4: 430 TFLOP/s (43% MFU) on 8,192 H100 with DP 64 (32 sequences
    # per replica), more than the 400 at 16,384 GPUs with the same 16M-token batch.
    config = model_preset("llama3-405b")
    small = step_time(config, H100, **dict(LLAMA3_405B_LAYOUT, dp=64))
    big = step_time(config, H100, **LLAMA3_405B_LAYOUT)
    assert small.layout["micro_batches"] == 32
    assert abs(small.tflops_per_gpu / 430 - 1) < 0.25
    assert small.tflops_per_gpu > big.tflops_per_gpu


@settings(max_examples=15, deadline=None)
@given(tp=st.sampled_from([1, 2, 4]), pp=st.sampled_from([1, 2, 4]),
       dp=st.sampled_from([1, 2, 16]), per_replica=st.integers(1, 8),
       interleave=st.integers(1, 2), overlap=st.floats(0, 1))
def test_step_accounting_holds_for_any_layout(tp, pp, dp, per_replica, interleave, overlap):
    assume(pp * interleave <= TINY.layers)
    seq = 256
    r = step_time(TINY, H100, tp=tp, pp=pp, dp=dp, seq=seq, interleave=interleave,
                  batch_tokens=seq * dp * per_replica,
                  overrides={"tp_overlap": overlap, "dp_overlap": overlap})
    assert sum(r.breakdown.values()) == pytest.approx(r.step_time_s)
    assert r.tflops_per_gpu * 1e12 * r.step_time_s == pytest.approx(r.model_flops_per_gpu)
    assert all(v >= 0 for v in r.breakdown.values())
    slower = step_time(TINY, H100, tp=tp, pp=pp, dp=dp, seq=seq, interleave=interleave,
                       batch_tokens=seq * dp * per_replica,
                       overrides={"tp_overlap": overlap / 2, "dp_overlap": overlap / 2})
    assert slower.step_time_s >= r.step_time_s


TINY = ModelConfig("tiny", layers=4, d_model=512, d_ffn=1536, heads_q=4, heads_kv=2,
                   vocab=1000, seq=256)
FIXED = {"gemm_tflops": 100.0, "attention_tflops": 50.0, "memory_gbps": 1000.0}


def test_kernel_terms_by_hand():
    tokens = 8 * 256
    r = step_time(TINY, H100, batch_tokens=tokens, overrides=FIXED)
    gemm_flops = 6 * TINY.matmul_params * tokens
    assert r.breakdown["gemm_s"] == pytest.approx(gemm_flops / 100e12)
    # Causal forward 4 * seq * heads * head_dim / 2 per token and layer; backward 2.5x.
    attn_flops = tokens * 4 * (4 * 256 * 4 * 128 / 2) * 3.5
    assert r.breakdown["attention_s"] == pytest.approx(attn_flops / 50e12)
    for term in ("tp_comm_s", "pp_comm_s", "pipeline_bubble_s", "dp_comm_s"):
        assert r.breakdown[term] == 0.0
    # Adam: 30 bytes per parameter over the memory bandwidth.
    assert r.breakdown["optimizer_s"] == pytest.approx(TINY.params * 30 / 1000e9)
    assert r.labels["gemm_tflops"]["label"] == "given"


def test_bubble_and_interleaving():
    r = step_time(TINY, H100, pp=4, batch_tokens=8 * 256, overrides=FIXED)
    assert r.layout["micro_batches"] == 8
    busy = sum(v for k, v in r.breakdown.items()
               if k not in ("pipeline_bubble_s", "dp_comm_s", "optimizer_s"))
    assert r.breakdown["pipeline_bubble_s"] == pytest.approx(busy * 3 / 8)
    r2 = step_time(TINY, H100, pp=2, interleave=2, batch_tokens=8 * 256, overrides=FIXED)
    busy2 = sum(v for k, v in r2.breakdown.items()
                if k not in ("pipeline_bubble_s", "dp_comm_s", "optimizer_s"))
    assert r2.breakdown["pipeline_bubble_s"] == pytest.approx(busy2 * 1 / 8 / 2)


# The H100 preset's NVLink level (scaling.hardware.datasheets): nccl-tests bus bandwidth of
# 8x H200 on the same NVLink 4 fabric, all-gather 361.4 GB/s and reduce-scatter 362.9 GB/s;
# NCCL's ring latency, 8.4 us base + 3.4 us per step, one step for two ranks.
AG_GBPS, RS_GBPS, RING2_S = 361.4, 362.9, (8.4 + 3.4) * 1e-6


def test_communication_by_hand():
    tokens = 4 * 256
    r = step_time(TINY, H100, tp=2, dp=2, batch_tokens=2 * tokens, overrides=FIXED,
                  tp_backward_overlap=False)
    msg = 256 * 512 * 2  # one micro-batch: 256 tokens x d_model x BF16
    # 2 all-gathers + 2 reduce-scatters forward and again backward, each moving
    # msg * (n - 1) / n at the NVLink level's bus bandwidth plus one ring step of latency,
    # and the backward's 2 extra all-gathers of the sequence-sharded GEMM inputs, for 4
    # layers, on each of 4 micro-batches (8 sequences over 2 replicas).
    gather = msg * 0.5 / (AG_GBPS * 1e9) + RING2_S
    pair = gather + msg * 0.5 / (RS_GBPS * 1e9) + RING2_S
    assert r.layout["micro_batches"] == 4
    assert r.breakdown["tp_comm_s"] == pytest.approx(4 * 4 * (4 * pair + 2 * gather))
    assert r.labels["tp_collectives_per_layer"]["value"] == 10
    # FSDP: FP32 gradient reduce-scatter + BF16 parameter all-gather of this GPU's half,
    # inside the node (4 GPUs), each with its ring latency.
    local = TINY.params / 2
    assert r.breakdown["dp_comm_s"] == pytest.approx(
        local * 4 * 0.5 / (RS_GBPS * 1e9) + local * 2 * 0.5 / (AG_GBPS * 1e9) + 2 * RING2_S)
    assert r.labels["tp_busbw_gbps"]["value"] == pytest.approx(AG_GBPS)
    half = step_time(TINY, H100, tp=2, dp=2, batch_tokens=2 * tokens,
                     overrides=dict(FIXED, tp_overlap=0.5, dp_overlap=1.0),
                     tp_backward_overlap=False)
    assert half.breakdown["tp_comm_s"] == pytest.approx(r.breakdown["tp_comm_s"] / 2)
    assert half.breakdown["dp_comm_s"] == 0.0


def test_full_recomputation_repeats_the_forward_collectives():
    plain = step_time(TINY, H100, tp=2, batch_tokens=4 * 256, overrides=FIXED,
                      tp_backward_overlap=False)
    full = step_time(TINY, H100, tp=2, batch_tokens=4 * 256, overrides=FIXED, recompute="full",
                     tp_backward_overlap=False)
    # 4 all-gather/reduce-scatter pairs per layer become 6; the backward's 2 extra
    # all-gathers stay 2: (6 pairs + 2 gathers) - (4 pairs + 2 gathers) = 2 pairs per layer.
    msg = 256 * 512 * 2
    pair = msg * 0.5 / (AG_GBPS * 1e9) + msg * 0.5 / (RS_GBPS * 1e9) + 2 * RING2_S
    assert full.breakdown["tp_comm_s"] - plain.breakdown["tp_comm_s"] == pytest.approx(
        4 * 4 * 2 * pair)
    assert full.labels["tp_collectives_per_layer"]["value"] == 14


def test_without_sequence_parallelism_the_collectives_are_all_reduces():
    msg = 256 * 512 * 2
    r = step_time(TINY, H100, tp=2, batch_tokens=4 * 256, overrides=FIXED,
                  sequence_parallel=False, tp_backward_overlap=False)
    # 4 all-reduces per layer (2 forward, 2 backward), each 2 x msg x (n - 1) / n at the 8x
    # H100 all-reduce bus bandwidth (370 GB/s) plus 2 (n - 1) ring steps of latency.
    one = 2 * msg * 0.5 / 370e9 + (8.4 + 2 * 3.4) * 1e-6
    assert r.breakdown["tp_comm_s"] == pytest.approx(4 * 4 * 4 * one)
    assert r.layout["sequence_parallel"] is False
    # The norms and residuals run whole on both ranks: more elementwise bytes than with it.
    sp = step_time(TINY, H100, tp=2, batch_tokens=4 * 256, overrides=FIXED)
    assert r.breakdown["elementwise_s"] > sp.breakdown["elementwise_s"]


# TINY's entry GEMMs on one of two tensor-parallel GPUs, one micro-batch of 256 tokens: QKV
# (2 query heads and 1 key/value head of 128) 256 x 512 x 512, SwiGLU's gate and up
# projection (768 wide on each rank) 256 x 1536 x 512; each backward GEMM (input gradient,
# weight gradient) does the forward's 2 m n k FLOPs.
QKV_FLOPS, GATE_UP_FLOPS = 2 * 256 * 512 * 512, 2 * 256 * 1536 * 512


@pytest.mark.parametrize("gemm_tflops", [100.0, 1.0])
def test_backward_overlap_hides_the_column_parallel_collectives_under_their_gemms(gemm_tflops):
    lay = dict(tp=2, batch_tokens=4 * 256,
               overrides={"gemm_tflops": gemm_tflops, "attention_tflops": 50.0,
                          "memory_gbps": 1000.0})
    exposed = step_time(TINY, H100, tp_backward_overlap=False, **lay)
    hidden = step_time(TINY, H100, **lay)
    msg = 256 * 512 * 2
    gather = msg * 0.5 / (AG_GBPS * 1e9) + RING2_S
    reduce_scatter = msg * 0.5 / (RS_GBPS * 1e9) + RING2_S
    # Per block, the input gradient's reduce-scatter runs under the weight-gradient GEMM and
    # the input's second all-gather under the input-gradient GEMM: each hides as much of
    # itself as the GEMM lasts. 4 layers, 4 micro-batches.
    saved = 0.0
    for flops in (QKV_FLOPS, GATE_UP_FLOPS):
        gemm = flops / (gemm_tflops * 1e12)
        saved += min(reduce_scatter, gemm) + min(gather, gemm)
    assert exposed.breakdown["tp_comm_s"] - hidden.breakdown["tp_comm_s"] == pytest.approx(
        4 * 4 * saved)
    if gemm_tflops == 1.0:  # GEMMs of 134 us and more: all four collectives hidden, and
        # what stays is the forward's 2 all-gathers and 2 reduce-scatters and the backward's
        # 2 all-gathers of the output gradient.
        assert hidden.breakdown["tp_comm_s"] == pytest.approx(
            4 * 4 * (2 * (gather + reduce_scatter) + 2 * gather))
    rest = {k: v for k, v in hidden.breakdown.items() if k != "tp_comm_s"}
    assert rest == {k: v for k, v in exposed.breakdown.items() if k != "tp_comm_s"}
    assert hidden.layout["tp_backward_overlap"] is True
    assert hidden.labels["tp_backward_overlap"]["label"] == "assumed"
    assert "b462d254" in hidden.labels["tp_backward_overlap"]["source"]
    assert exposed.labels["tp_backward_overlap"]["value"] == "no"


def test_backward_overlap_without_sequence_parallelism_hides_the_all_reduce():
    lay = dict(tp=2, batch_tokens=4 * 256, sequence_parallel=False,
               overrides={"gemm_tflops": 100.0, "attention_tflops": 50.0,
                          "memory_gbps": 1000.0})
    exposed = step_time(TINY, H100, tp_backward_overlap=False, **lay)
    hidden = step_time(TINY, H100, **lay)
    all_reduce = 2 * 256 * 512 * 2 * 0.5 / 370e9 + (8.4 + 2 * 3.4) * 1e-6
    # Only the weight-gradient GEMM hides the input gradient's all-reduce; nothing is
    # gathered again.
    saved = sum(min(all_reduce, f / 100e12) for f in (QKV_FLOPS, GATE_UP_FLOPS))
    assert exposed.breakdown["tp_comm_s"] - hidden.breakdown["tp_comm_s"] == pytest.approx(
        4 * 4 * saved)


def test_measured_collective_bandwidth_replaces_the_link_default():
    flat = SaturatingCurve(plateau=100.0, half_size=0.0)
    comm = tuple(CommCurve(c, 2, 1, "nccl", flat, "measured", "test records")
                 for c in ("all_gather", "reduce_scatter"))
    profile = replace(H100, comm_curves=comm)
    r = step_time(TINY, profile, tp=2, batch_tokens=4 * 256, overrides=FIXED,
                  tp_backward_overlap=False)
    msg = 256 * 512 * 2
    # A measured curve's bus bandwidth already holds its latency: none is added.
    assert r.labels["tp_busbw_gbps"]["label"] == "measured"
    # 8 collectives per layer and the backward's 2 extra all-gathers, 4 layers, 4 micro-batches.
    assert r.breakdown["tp_comm_s"] == pytest.approx(4 * 4 * 10 * msg * 0.5 / 100e9)


def test_power_follows_the_measured_line():
    line = LinearPower(idle_w=100.0, busy_w=700.0, points=5, util_min=0.0, util_max=1.0)
    profile = replace(H100, power=PowerCurve(line, "datasheet peak", "measured", "test"))
    r = step_time(TINY, profile, batch_tokens=4 * 256)
    assert r.power_w.label == "measured"
    assert r.power_w.value == pytest.approx(100 + 600 * r.hardware_utilisation)


def test_overrides():
    config = model_preset("llama3-405b")
    r = step_time(config, H100, overrides={"mfu": 0.41}, **LLAMA3_405B_LAYOUT)
    assert r.tflops_per_gpu == pytest.approx(0.41 * 989)
    assert r.step_time_s == pytest.approx(r.model_flops_per_gpu / (0.41 * 989e12))
    assert r.labels["mfu"]["label"] == "given" and r.notes
    r = step_time(TINY, H100, batch_tokens=256, overrides=dict(FIXED, optimizer_s=2.0))
    assert r.breakdown["optimizer_s"] == 2.0


def test_fp8_uses_the_fp8_peak_and_gemm_figure():
    config = model_preset("llama3-70b")
    bf16 = step_time(config, H100, tp=8, pp=4, dp=4, batch_tokens=64 * 8192)
    fp8 = step_time(config, H100, precision="fp8", tp=8, pp=4, dp=4, batch_tokens=64 * 8192)
    assert fp8.labels["peak_tflops"]["value"] == 1979
    # The output head stays in BF16 (DeepSeek-V3 Sec. 3.3.1): 3 GEMMs of 2 x tokens x V/tp x d
    # FLOPs on each of the 16 micro-batches, shared over 4 stages, at the BF16 plateau.
    head = 16 * 3 * 2 * 8192 * (128_000 // 8) * 8192 / 4 / 794.5e12
    layers = bf16.breakdown["gemm_s"] - head
    assert fp8.breakdown["gemm_s"] == pytest.approx(layers * 794.5 / 1402.6 + head)
    assert fp8.breakdown["attention_s"] == pytest.approx(bf16.breakdown["attention_s"])


def test_bad_input():
    with pytest.raises(DataError, match="multiple of 2048"):
        step_time(TINY, H100, dp=8, batch_tokens=1000)
    with pytest.raises(UnknownNameError, match="mfu"):
        step_time(TINY, H100, batch_tokens=256, overrides={"mfu_pct": 41})
    with pytest.raises(DataError, match="fraction"):
        step_time(TINY, H100, batch_tokens=256, overrides={"tp_overlap": 1.5})
    with pytest.raises(UnknownNameError, match="bf16"):
        step_time(TINY, H100, precision="int4")
    with pytest.raises(DataError, match="interleaved"):
        step_time(TINY, H100, pp=2, interleave=3, batch_tokens=256 * 2)
    with pytest.raises(DataError, match="gemm bf16 torch fwd"):
        step_time(TINY, load_profile("mi300x"), precision="fp8", batch_tokens=256)


def test_step_and_model_commands(capsys):
    argv = ["step", "llama3-405b", "--hardware", "h100-sxm", "--tp", "8", "--pp", "16",
            "--dp", "128", "--seq", "8192", "--batch-tokens", "2048x8192", "--interleave", "2",
            "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"tflops_per_gpu", "mfu", "step_time_s", "breakdown"} <= set(out)
    assert 300 < out["tflops_per_gpu"] < 500
    assert main(argv[:-1] + ["--mfu", "0.41"]) == 0
    assert "405" in capsys.readouterr().out
    assert main(["model", "llama3-8b", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"params", "active_params", "flops_per_token", "layers", "d_model"} <= set(out)
    assert main(["model", "--params", "70B"]) == 0
    assert "parameters" in capsys.readouterr().out
    assert main(["step", "llama3-8b", "--set", "bogus=1"]) == 2
    assert "valid:" in capsys.readouterr().err


def test_unrecognised_device_gives_throughput_without_mfu_or_watts():
    cpu = replace(H100, name="measured:Test CPU", label="measured", peaks={}, tdp=None,
                  power=None, power_missing_reason="NVML library not found")
    r = step_time(TINY, cpu, batch_tokens=4 * 256)
    assert r.tflops_per_gpu > 0 and r.mfu is None and r.power_w is None
    assert "NVML library not found" in r.labels["power_w"]["source"]
    assert any("no MFU" in n for n in r.notes)
    assert json.loads(json.dumps(r.to_dict()))["mfu"] is None
    with pytest.raises(DataError, match="no datasheet peak"):
        step_time(TINY, cpu, batch_tokens=256, overrides={"mfu": 0.4})


def test_layout_labels_say_what_was_given():
    r = step_time(TINY, H100, tp=2, batch_tokens=4 * 256)
    assert r.labels["tp"] == {"value": 2, "label": "given", "source": "given"}
    assert r.labels["pp"]["label"] == "assumed" and r.labels["pp"]["value"] == 1
    assert r.labels["interleave"]["label"] == "assumed"
    chosen = step_time(TINY, H100, tp=2, batch_tokens=4 * 256,
                       chosen={"tp": ("assumed", "a rule")})
    assert chosen.labels["tp"]["label"] == "assumed"
    assert r.labels["tflops_per_gpu"]["label"] == "modelled"
    assert "published GEMM and attention curves" in r.labels["tflops_per_gpu"]["source"]
    fixed = step_time(TINY, H100, batch_tokens=4 * 256, overrides=FIXED)
    assert fixed.labels["tflops_per_gpu"]["label"] == "given"  # from given kernel rates


def test_every_step_label_is_a_label():
    from scaling.labels import LABELS, MISSING

    cpu = replace(H100, name="measured:Test CPU", label="measured", peaks={}, tdp=None,
                  power=None, power_missing_reason="no NVML")
    for r in (step_time(model_preset("llama3-405b"), H100, interleave=2, **LLAMA3_405B_LAYOUT),
              step_time(TINY, H100, batch_tokens=256, overrides={"mfu": 0.4, "tp_overlap": 0.5}),
              step_time(TINY, cpu, batch_tokens=256)):
        assert {v["label"] for v in r.labels.values()} <= set(LABELS) | {MISSING}


def test_the_plans_layout_is_not_given():
    """The planner picks the layout by a rule: its step-model inputs say so."""
    from scaling.plan.throughput import ThroughputSource

    source = ThroughputSource(H100, precision=None, seq=None)
    source(16384, 405e9)
    (search,) = source._steps.values()  # the layout search's result; its best layout's step
    step = search.best.step
    assert {step.labels[k]["label"] for k in ("tp", "pp", "dp", "interleave", "batch_tokens")} \
        == {"assumed"}
    assert step.labels["seq"]["label"] == "published"


def test_batch_tokens_are_read_as_counts_and_must_be_whole_sequences(capsys):
    argv = ["step", "llama3-405b", "--tp", "8", "--pp", "16", "--dp", "128", "--json"]
    assert main(argv + ["--batch-tokens", "16Mi"]) == 0
    binary = json.loads(capsys.readouterr().out)
    assert main(argv + ["--batch-tokens", "2048x8192"]) == 0
    product = json.loads(capsys.readouterr().out)
    assert binary["layout"]["batch_tokens"] == product["layout"]["batch_tokens"] == 2 ** 24
    assert main(argv + ["--batch-tokens", "16M"]) == 2
    err = capsys.readouterr().err
    assert "not a whole number of sequences" in err and "16Mi" in err and "2048x8192" in err
    assert len(err.strip().splitlines()) == 1


def test_step_terms_are_named_in_words(capsys):
    assert main(["step", "llama3-8b", "--tp", "8", "--pp", "2", "--dp", "4",
                 "--batch-tokens", "64x8192"]) == 0
    out = capsys.readouterr().out
    assert "pipeline bubble" in out and "tensor-parallel communication" in out
    assert "pipeline_bubble_s" not in out and "e+" not in out
