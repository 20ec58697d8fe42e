"""The memory model against the ZeRO paper, Korthikanti et al. 2022, hand-computed totals, and
the runs that did (and could not) train."""

import itertools
from dataclasses import replace

import numpy as np
import pytest

from scaling.model.activations import embedding_bytes, layer_bytes
from scaling.errors import DataError, UnknownNameError
from scaling.hardware.load import load_profile
from scaling.model.memory import (GIB, RESERVED_GIB, MemoryOptions, device_memory, fits,
                                  memory_breakdown, model_state_bytes, require_fit,
                                  step_memory)
from scaling.model.config import ModelConfig, config_for_params, model_preset
from scaling.validate.runs import validation_runs

BARE = MemoryOptions(optimizer="adam", fragmentation=0.0, reserved_gib=0.0, balance="uniform")


def test_zero_paper_worked_example():
    # Rajbhandari et al. 2019, Sec. 5 / Fig. 1: 7.5B parameters, 64-way data parallelism,
    # mixed-precision Adam (K = 12): 120 GB, 31.4 GB, 16.6 GB, 1.9 GB.
    totals = [sum(model_state_bytes(7.5e9, z, 64, "adam")) / 1e9 for z in range(4)]
    assert totals == pytest.approx([120, 31.4, 16.6, 1.9], abs=0.05)
    # Megatron-LM's recipe keeps FP32 gradients: 18 bytes, 6 + 12/d with its distributed
    # optimizer (ZeRO-1).
    assert sum(model_state_bytes(1, 0, 64, "adam-fp32-grads")) == 18
    assert sum(model_state_bytes(1, 1, 64, "adam-fp32-grads")) == 6 + 12 / 64


TINY = ModelConfig("tiny", layers=4, d_model=256, d_ffn=1024, heads_q=4, heads_kv=2,
                   vocab=1000, seq=128)


def test_small_layout_by_hand():
    b = memory_breakdown(TINY, "h100-sxm", tp=2, pp=2, dp=2, zero=1, micro_batches=4,
                         options=BARE)
    # Per GPU (TP 2): attention 2*256*2*64 (q, o: 2 of 4 heads) + 2*256*1*64 (k, v: 1 of
    # 2 kv heads); two RMSNorms 512 (replicated); SwiGLU 3*256*1024/2.
    layer = 2 * 256 * 2 * 64 + 2 * 256 * 64 + 512 + 3 * 256 * 1024 // 2
    table = 1000 * 256 // 2  # vocabulary-parallel embedding (and output projection)
    first = 2 * layer + table  # uniform: layers 0-1 and the embedding
    # Saved per token (FlashAttention, sequence parallel): norm and GEMM inputs 4 x 2*256/2,
    # q 2*2*64, k and v 2*64 each, logsumexp 4*2, attention output 2*2*64, gate and up
    # 2*2*512, their product 2*512.
    per_token = 4 * 256 + 256 + 128 + 128 + 8 + 256 + 2048 + 1024
    per_mb = 2 * per_token * 128 + 8 * 128  # two layers and the int64 token ids
    # ZeRO-1 with 16-byte Adam: weights 2, gradients 2, optimizer 12 / dp; the first stage
    # holds min(p, m) = 2 micro-batches.
    assert b.stage == 0
    assert (b.weights_bytes, b.gradients_bytes, b.optimizer_bytes) == (2 * first, 2 * first,
                                                                        6 * first)
    assert (b.activations_bytes, b.in_flight_bytes) == (per_mb, per_mb)
    assert b.logits_bytes == 0 and b.buffers_bytes == 0 and b.expert_bytes == 0
    assert b.total_bytes == 10 * first + 2 * per_mb
    # The last stage: the output projection and final norm, one micro-batch, the logits.
    last = memory_breakdown(TINY, "h100-sxm", tp=2, pp=2, dp=2, zero=1, micro_batches=1,
                            options=BARE)
    assert last.stage == 1 and last.logits_bytes == 128 * 6 * 1000 / 2
    # The allowances: a fixed reserve and 5% of the tensors.
    allowed = memory_breakdown(TINY, "h100-sxm", tp=2, pp=2, dp=2, zero=1, micro_batches=4,
                               options=replace(BARE, fragmentation=0.05, reserved_gib=3.27))
    assert allowed.total_bytes == pytest.approx(b.total_bytes * 1.05 + 3.27 * GIB)
    assert MemoryOptions().reserved_gib == pytest.approx(sum(v for v, _ in
                                                             RESERVED_GIB.values()))


GPT = ModelConfig("gpt", layers=8, d_model=256, d_ffn=1024, heads_q=4, heads_kv=4, vocab=1000,
                  seq=128, mlp="gelu", norm="layernorm", bias=True, tied_embeddings=True,
                  learned_positions=True, dropout=True)
NO_FLASH = replace(BARE, flash_attention=False)


@pytest.mark.parametrize("v", [1, 2])
def test_first_stage_holds_korthikanti_eq5_times_the_interleave_factor(v):
    s, b, h, a, L, p, t = 128, 1, 256, 4, 8, 4, 2
    r = memory_breakdown(GPT, "h100-sxm", tp=t, pp=p, dp=1, interleave=v, options=NO_FLASH)
    assert r.stage == 0
    # Eq. (5): L layers' worth on the first stage, scaled by 1 + (p - 1)/(p v) when
    # interleaved (Sec. 4.2.3); plus the embedding's ids and dropout mask per micro-batch.
    factor = 1 + (p - 1) / (p * v) if v > 1 else 1
    layers = s * b * h * L / t * (34 + 5 * a * s / h) * factor
    held = p * factor  # micro-batch equivalents
    embed = held * embedding_bytes(GPT, tp=t, seq=s)
    assert r.activations_bytes + r.in_flight_bytes == pytest.approx(layers + embed)
    # Fewer micro-batches than stages: only m are in flight (1F1B).
    few = memory_breakdown(GPT, "h100-sxm", tp=t, pp=p, dp=1, micro_batches=2, options=NO_FLASH)
    assert few.in_flight_bytes == few.activations_bytes


def test_the_worst_stage_decides():
    config = model_preset("llama3-405b")
    layout = dict(tp=8, pp=16, dp=128, micro_batches=16, zero=2)
    # Llama 3's balance (the embedding and output projection take a layer's place each):
    # the second stage has 8 layers and 15 micro-batches, more than the first's 7 and 16.
    assert memory_breakdown(config, "h100-sxm", **layout).stage == 1
    uniform = memory_breakdown(config, "h100-sxm", **layout,
                               options=MemoryOptions(balance="uniform"))
    assert uniform.stage == 0
    kept, _ = layer_bytes(config, "dense", tp=8, seq=8192)
    assert memory_breakdown(config, "h100-sxm", **layout).activations_bytes == pytest.approx(
        8 * kept)


def test_optimizer_state_is_sharded_over_data_and_context_parallelism():
    # Megatron-Core's distributed optimizer shards over the data-parallel group with context
    # parallelism folded in: CP 16 x DP 8 shards as DP 128 does.
    config = model_preset("llama3-405b")
    cp = memory_breakdown(config, "h100-sxm", tp=8, pp=16, dp=8, cp=16, seq=131072, zero=2)
    dp = memory_breakdown(config, "h100-sxm", tp=8, pp=16, dp=128, zero=2)
    assert cp.optimizer_bytes == dp.optimizer_bytes and cp.gradients_bytes == dp.gradients_bytes
    assert cp.weights_bytes == dp.weights_bytes  # ZeRO-2 keeps whole weights


# -- the runs that trained fit; the impossible requests are refused ---------------------------

@pytest.mark.parametrize("run", validation_runs("llama3-table4"), ids=lambda r: r.name)
def test_llama3_405b_table4_layouts_fit_on_80gb_h100(run):
    # As published: TP, CP, PP, DP, sequence and batch per DP (micro-batches of one sequence);
    # FSDP without resharding after the forward holds whole weights and sharded gradients and
    # optimizer state (ZeRO-2); no activation checkpointing at 8K (Sec. 3.3.2); the schedule's
    # chunk count is not published: 1F1B.
    L = run.layout
    b = memory_breakdown(run.config(), run.hardware, tp=L["tp"], pp=L["pp"], dp=L["dp"],
                         cp=L["cp"], seq=L["seq"], micro_batches=L["global_batch"] // L["dp"],
                         zero=2, recompute="none")
    assert b.fits and 60 * GIB < b.total_bytes < 80 * GIB, b.describe()


def test_llama3_405b_interleaved_needs_fewer_micro_batches_in_flight():
    config, layout = model_preset("llama3-405b"), dict(tp=8, pp=16, dp=64, zero=2)
    # Megatron's interleaved schedule with v = 2 and groups of N = p micro-batches holds
    # 2(p - r - 1) + (v - 1) N + 1 chunk-micro-batches: with 32 per step it does not fit.
    full = memory_breakdown(config, "h100-sxm", micro_batches=32, interleave=2, **layout)
    assert not full.fits and full.total_bytes > 100 * GIB
    # With 16 micro-batches per step every chunk is in the warm-up: m v = 32 chunks, 16
    # micro-batches' worth, and it fits.
    assert memory_breakdown(config, "h100-sxm", micro_batches=16, interleave=2,
                            **dict(layout, dp=128)).fits


def test_405b_on_8_gpus_is_refused_at_every_zero_stage():
    config = model_preset("llama3-405b")
    for zero in range(4):
        b = memory_breakdown(config, "h100-sxm", tp=1, pp=1, dp=8, zero=zero)
        with pytest.raises(DataError) as err:
            require_fit(b)
        message = str(err.value)
        assert "needs" in message and "but the H100 has 80 GiB" in message
        assert f"{b.total_bytes / GIB:,.0f} GiB" in message
    # Even fully sharded, the weights, gradients and optimizer alone are 18 x 405.8B / 8.
    assert b.weights_bytes + b.gradients_bytes + b.optimizer_bytes == pytest.approx(
        18 * config.params / 8)


def test_2t_parameters_on_16_gpus_is_refused_for_every_layout():
    config = config_for_params(2e12)
    grid = np.array([(tp, pp, 16 // (tp * pp), z, r)
                     for tp, pp in itertools.product((1, 2, 4, 8, 16), repeat=2)
                     if 16 % (tp * pp) == 0
                     for z, r in itertools.product(range(4), range(3))]).T
    b = memory_breakdown(config, "h100-sxm", tp=grid[0], pp=grid[1], dp=grid[2], zero=grid[3],
                         recompute=grid[4], micro_batches=64)
    assert b.total_bytes.shape == (grid.shape[1],) and not fits(b).any()
    # Model state alone is 18 bytes x 2T / 16 GPUs: over 2,000 GiB per GPU.
    assert b.total_bytes.min() > 18 * config.params / 16


def test_maverick_experts_are_sharded_over_expert_parallelism():
    mav = model_preset("llama4-maverick")
    layout = dict(tp=8, pp=1, dp=128, zero=1)
    b64 = memory_breakdown(mav, "h100-sxm", ep=64, **layout)
    b32 = memory_breakdown(mav, "h100-sxm", ep=32, **layout)
    # 24 MoE layers x 2 of 128 experts x 3 x 5120 x 8192; expert data parallelism
    # 128 x 8 / 64 = 16 shards the optimizer state (ZeRO-1): 2 + 4 + 12/16 bytes.
    experts = 24 * 2 * 3 * 5120 * 8192
    assert b64.expert_bytes == pytest.approx(experts * (2 + 4 + 12 / 16))
    assert b32.expert_bytes == pytest.approx(2 * experts * (2 + 4 + 12 / 32))
    # Dense and shared-expert weights are replicated across expert parallelism.
    assert b64.weights_bytes == b32.weights_bytes
    assert b64.fits and not memory_breakdown(mav, "h100-sxm", tp=1, pp=1, dp=8, ep=8,
                                             zero=1).fits


@pytest.mark.parametrize("run", validation_runs("megatron-table1"), ids=lambda r: r.name)
def test_megatron_table1_rows_fit_on_a100_only_with_their_recomputation(run):
    # Narayanan et al. 2021 ran each row with full recomputation, no distributed optimizer,
    # FP16 gradients (the script sets no --accumulate-allreduce-grads-in-fp32), no
    # FlashAttention (2021), Megatron's equal layers per stage.
    L = run.layout
    options = MemoryOptions(optimizer="adam-half-grads", flash_attention=False,
                            balance="uniform")
    layout = dict(tp=L["tp"], pp=L["pp"], dp=L["dp"], micro_batch=L["micro_batch"],
                  interleave=L["interleave"], zero=0, options=options,
                  micro_batches=L["global_batch"] // (L["micro_batch"] * L["dp"]))
    assert memory_breakdown(run.config(), run.hardware, recompute="full", **layout).fits
    assert not memory_breakdown(run.config(), run.hardware, recompute="none", **layout).fits


# -- half-precision gradients: the optimizer step's FP32 copies ---------------------------------

HALF = replace(BARE, optimizer="adam-half-grads")


def test_half_gradients_hold_16_bytes_through_the_backward():
    # Megatron-LM's FP16 optimizer: FP16 weights and gradient buffer, FP32 master weights and
    # Adam moments. With activations larger than the step's FP32 copies, the peak is the
    # backward's, byte for byte the 16-byte ZeRO recipe's.
    assert model_state_bytes(1, 0, 8, "adam-half-grads") == (2, 2, 12)
    busy = dict(tp=2, pp=2, dp=2, zero=0, micro_batch=8, micro_batches=8)
    half, zero_paper = (memory_breakdown(TINY, "h100-sxm", options=o, **busy)
                        for o in (HALF, BARE))
    assert not half.at_optimizer_step and half.step_copy_bytes == 0
    assert half.total_bytes == zero_paper.total_bytes
    assert half.activations_bytes == zero_paper.activations_bytes > 0


def test_the_optimizer_step_is_the_peak_when_activations_are_smaller_than_its_copies():
    # One 1-sequence micro-batch of 16 tokens on one GPU: the FP32 copies (4 B per
    # parameter) outweigh everything the backward held, so the peak is the step's, with no
    # activations: 2 + 2 + 12 + 4 = 20 bytes per parameter.
    one = dict(tp=1, pp=1, dp=1, zero=0, micro_batch=1, micro_batches=1, seq=16)
    b = memory_breakdown(TINY, "h100-sxm", options=HALF, **one)
    params = b.weights_bytes / 2
    assert b.at_optimizer_step
    assert b.step_copy_bytes == 4 * params
    assert b.activations_bytes == b.in_flight_bytes == b.logits_bytes == b.buffers_bytes == 0
    assert b.total_bytes == 20 * params
    # The fixed reserve stays at the step; fragmentation is over the step's tensors.
    allowed = memory_breakdown(TINY, "h100-sxm", **one, options=replace(
        HALF, fragmentation=0.05, reserved_gib=1.0))
    assert allowed.total_bytes == pytest.approx(20 * params * 1.05 + GIB)
    assert allowed.buffers_bytes == GIB
    # FP32 gradients are copied by reference (`.float()` of an FP32 tensor is itself): no
    # step peak, 18 bytes and the activations.
    fp32 = memory_breakdown(TINY, "h100-sxm", options=replace(HALF, optimizer="adam-fp32-"
                                                                          "grads"), **one)
    assert not fp32.at_optimizer_step and fp32.step_copy_bytes == 0
    assert fp32.total_bytes == 18 * params + fp32.activations_bytes + fp32.logits_bytes


def test_the_step_copies_are_sharded_as_the_optimizer_state():
    # ZeRO-1 over 4 ranks: each rank copies only the gradients of the parameters it updates.
    b = memory_breakdown(TINY, "h100-sxm", options=HALF, tp=1, pp=1, dp=4, zero=1,
                         micro_batch=1, micro_batches=1, seq=16)
    params = b.weights_bytes / 2
    assert b.at_optimizer_step
    assert b.step_copy_bytes == pytest.approx(4 * params / 4)
    assert b.optimizer_bytes == pytest.approx(12 * params / 4)
    # Many layouts at once decide the phase per layout, as one call each does: 64
    # sequences of activations outweigh the copies.
    many = memory_breakdown(TINY, "h100-sxm", options=HALF, tp=1, pp=1, dp=4, zero=1,
                            micro_batch=np.array([1, 64]), micro_batches=1, seq=16)
    assert many.at_optimizer_step.tolist() == [True, False]
    for i, mb in enumerate((1, 64)):
        one = memory_breakdown(TINY, "h100-sxm", options=HALF, tp=1, pp=1, dp=4, zero=1,
                               micro_batch=mb, micro_batches=1, seq=16)
        assert one.total_bytes == pytest.approx(many.total_bytes[i])
        assert one.step_copy_bytes == pytest.approx(many.step_copy_bytes[i])
        assert one.at_optimizer_step == bool(many.at_optimizer_step[i])


def test_step_memory_reads_the_step_models_options_from_the_layout():
    config = model_preset("megatron-gpt-18.4b")
    # 40 layers on 3 stages, placed as Megatron-LM does or with Llama 3's balance (the
    # embedding and the output layer take a layer's place): different busiest stages.
    kw = dict(tp=8, pp=3, dp=2, seq=2048, micro_batch=2, micro_batches=8, interleave=1,
              recompute="full", zero=0, sequence_parallel=False)
    base = MemoryOptions()
    as_given = {
        (): base,
        (("grad_reduce", "half"),): replace(base, optimizer="adam-half-grads"),
        (("grad_reduce", "fp32"),): base,
        (("balanced_pipeline", False),): replace(base, balance="uniform"),
        (("attention", "materialised"),): replace(base, flash_attention=False),
        (("attention", "flash2"),): base,
    }
    totals = set()
    for extra, options in as_given.items():
        got = step_memory(config, "a100-80gb", kw | dict(extra))
        want = memory_breakdown(config, "a100-80gb", options=options, **kw)
        assert got.total_bytes == want.total_bytes, extra
        totals.add(got.total_bytes)
    assert len(totals) == 4  # each option moves the bytes
    with pytest.raises(UnknownNameError, match="half"):
        step_memory(config, "a100-80gb", kw | {"grad_reduce": "fp8"})


# -- many layouts at once ---------------------------------------------------------------------

def test_arrays_give_what_scalar_calls_give():
    config = model_preset("llama4-scout")
    rng = np.random.default_rng(3)
    n = 24
    lay = {"tp": rng.choice([1, 2, 4, 8], n), "pp": rng.choice([1, 2, 4, 12], n),
           "dp": rng.choice([1, 16, 64], n), "cp": rng.choice([1, 2], n),
           "ep": rng.choice([1, 4, 16], n), "interleave": rng.choice([1, 2], n),
           "micro_batch": rng.choice([1, 2], n), "recompute": rng.choice([0, 1, 2], n),
           "zero": rng.choice([0, 1, 2, 3], n)}
    many = memory_breakdown(config, "h200", micro_batches=32, **lay)
    for i in range(n):
        one = memory_breakdown(config, "h200", micro_batches=32,
                               **{k: int(v[i]) for k, v in lay.items()})
        assert one.total_bytes == pytest.approx(many.total_bytes[i])
        assert one.stage == many.stage[i] and isinstance(one.total_bytes, float)


def test_device_memory_and_bad_input():
    assert device_memory("h100-sxm") == (80 * GIB, "H100")
    assert device_memory(load_profile("b200"))[0] == 180 * GIB
    assert device_memory(96) == (96 * GIB, "96 GiB device")
    measured = replace(load_profile("h100-sxm"), name="mine", device_name="Some CPU")
    with pytest.raises(DataError, match="not a recognised device"):
        device_memory(measured)
    with pytest.raises(UnknownNameError, match="adam-fp32-grads"):
        MemoryOptions(optimizer="sgd")
    with pytest.raises(DataError, match="ZeRO stage"):
        memory_breakdown(TINY, "h100-sxm", zero=4)
    with pytest.raises(DataError, match="tp must be a whole number"):
        memory_breakdown(TINY, "h100-sxm", tp=0)
    b = memory_breakdown(TINY, "h100-sxm", tp=np.array([1, 2]))
    with pytest.raises(DataError, match="one layout"):
        b.describe()
