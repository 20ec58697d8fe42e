"""Expert parallelism in the step model: all-to-all bytes and seconds by where the group sits,
the local permute, the load-imbalance factor, dense and MoE layers timed by kind, and the
memory model on the same layout. Expected values are worked by hand from the H100 preset's
figures (50 GB/s per GPU scale-out at 36.52/50 of it, NVLink 450 GB/s at 370/450 for the
all-reduce fraction the all-to-all takes, NCCL's latency constants)."""

import json
from dataclasses import replace

import pytest

from scaling.cli.main import main
from scaling.errors import DataError
from scaling.hardware.load import load_profile
from scaling.model.config import model_preset
from scaling.model.memory import memory_breakdown, step_memory
from scaling.model.step import step_time

H100 = load_profile("h100-sxm")
SCOUT = model_preset("llama4-scout")  # 48 MoE layers, d_model 5120, 16 experts, top-1
SCALE_OUT_GBPS = 36.52  # 50 GB/s x (36.52 / 50), datasheets.SCALE_OUT_400G
NVLINK_GBPS = 370.0  # 450 GB/s x (370 / 450), datasheets.NVLINK4 all-reduce fraction
SCALE_OUT_LATENCY_S, NVLINK_LATENCY_S = (8.4 + 14.0) * 1e-6, (8.4 + 3.4) * 1e-6


def _scout(**kw):
    return step_time(SCOUT, H100, **kw)


def test_all_to_all_across_nodes_by_hand():
    # TP8 x EP16: the group spans 128 GPUs, one member per 8-GPU node; 15 peers off-node.
    r = _scout(tp=8, dp=16, ep=16)
    tokens = 8192 // 8  # the sequence-parallel shard of one micro-batch
    per_peer = tokens * 5120 * 2 * 1 / 16
    assert r.labels["ep_bytes_per_all_to_all"]["value"] == 15 * per_peer == 9_830_400
    assert r.labels["ep_scale_out_busbw_gbps"]["value"] == pytest.approx(SCALE_OUT_GBPS)
    one = 15 * per_peer / (SCALE_OUT_GBPS * 1e9) + SCALE_OUT_LATENCY_S
    micro_batches = 2048 // 16
    expected = micro_batches * 48 * 4 * one  # dispatch and combine, forward and backward
    assert r.breakdown["ep_comm_s"] == pytest.approx(expected, rel=1e-12)
    assert r.layout["ep"] == 16 and r.layout["gpus"] == 8 * 16


def test_all_to_all_inside_the_nvlink_domain_by_hand():
    r = _scout(tp=1, dp=8, ep=8)  # 8 GPUs, one node
    per_peer = 8192 * 5120 * 2 / 8
    bw = r.labels["ep_busbw_gbps"]
    assert bw["value"] == pytest.approx(NVLINK_GBPS) and bw["label"] == "assumed"
    one = 7 * per_peer / (NVLINK_GBPS * 1e9) + NVLINK_LATENCY_S
    assert r.breakdown["ep_comm_s"] == pytest.approx(2048 // 8 * 48 * 4 * one, rel=1e-12)


def test_a_group_over_two_nodes_takes_the_slower_of_its_two_links():
    # TP4 x EP4: 16 GPUs, 2 members per node: 1 peer over NVLink, 2 over the fabric.
    r = _scout(tp=4, dp=8, ep=4)
    per_peer = 8192 / 4 * 5120 * 2 / 4
    one = max(per_peer / (NVLINK_GBPS * 1e9) + NVLINK_LATENCY_S,
              2 * per_peer / (SCALE_OUT_GBPS * 1e9) + SCALE_OUT_LATENCY_S)
    assert r.breakdown["ep_comm_s"] == pytest.approx(2048 // 8 * 48 * 4 * one, rel=1e-12)


def test_ep_busbw_override_and_full_recomputation():
    r = _scout(tp=8, dp=16, ep=16, overrides={"ep_busbw_gbps": 25})
    expected = 2048 // 16 * 48 * 4 * 9_830_400 / 25e9
    assert r.breakdown["ep_comm_s"] == pytest.approx(expected, rel=1e-12)
    full = _scout(tp=8, dp=16, ep=16, overrides={"ep_busbw_gbps": 25}, recompute="full")
    assert full.breakdown["ep_comm_s"] == pytest.approx(1.5 * expected, rel=1e-12)
    hidden = _scout(tp=8, dp=16, ep=16, overrides={"ep_busbw_gbps": 25, "ep_overlap": 0.75})
    assert hidden.breakdown["ep_comm_s"] == pytest.approx(0.25 * expected, rel=1e-12)


def test_the_imbalance_factor_scales_the_busiest_rank_s_experts_and_all_to_alls():
    base = _scout(tp=8, dp=16, ep=16)
    skew = _scout(tp=8, dp=16, ep=16, overrides={"expert_imbalance": 1.5})
    for term in ("expert_gemm_s", "ep_comm_s"):
        assert skew.breakdown[term] == pytest.approx(1.5 * base.breakdown[term], rel=1e-12)
    for term in ("gemm_s", "attention_s", "tp_comm_s", "moe_permute_s"):
        assert skew.breakdown[term] == base.breakdown[term]
    assert base.layout["expert_imbalance"] == 1.0 and skew.layout["expert_imbalance"] == 1.5
    assert skew.model_flops_per_gpu == base.model_flops_per_gpu
    with pytest.raises(DataError, match="at least 1"):
        _scout(overrides={"expert_imbalance": 0.9})


def test_permute_at_memory_bandwidth_by_hand():
    r = _scout(tp=8, dp=16, ep=16)
    t, d = 1024, 5120
    dispatch = (t * d + t * d) * 2 + 4 * (2 * t + 16)
    combine = (t * d + t * d) * 2 + (4 + 4) * t
    expected = 2048 // 16 * 48 * 2 * (dispatch + combine) / 3350e9
    assert r.breakdown["moe_permute_s"] == pytest.approx(expected, rel=1e-12)
    assert r.labels["moe_permute_gbps"]["label"] == "assumed"


def test_experts_see_ep_times_the_tokens_and_the_flops_do_not_change():
    ops = {o.name: o for o in SCOUT.layer_ops(1, 8192, tp=8, ep=4) if o.direction == "fwd"}
    assert ops["expert_gate_up"].shape["m"] == 4 * 8192 // 16 and ops["expert_gate_up"].count == 4
    assert ops["router"].shape == {"m": 8192, "n": 16, "k": 5120}  # the router GEMM
    one, four = _scout(tp=8, dp=16), _scout(tp=8, dp=16, ep=4)
    assert one.model_flops_per_gpu == four.model_flops_per_gpu
    assert four.breakdown["expert_gemm_s"] <= one.breakdown["expert_gemm_s"]


@pytest.mark.parametrize("kw, match", [
    (dict(model="llama3-8b", dp=8, ep=2), "has no experts"),
    (dict(model="llama4-scout", tp=8, dp=4, ep=8), "must divide data parallelism 4"),
    (dict(model="llama4-scout", tp=8, dp=24, ep=3), "divide"),
])
def test_impossible_expert_parallelism_is_refused(kw, match):
    config = model_preset(kw.pop("model"))
    with pytest.raises(DataError, match=match):
        step_time(config, H100, batch_tokens=24 * 8192 * 8, **kw)


def test_dense_and_moe_layers_are_timed_by_kind_and_summed():
    maverick = model_preset("llama4-maverick")  # 24 dense and 24 MoE layers
    all_moe = replace(maverick, moe_every=1)
    mixed, every = (step_time(c, H100, tp=8, dp=16, ep=16) for c in (maverick, all_moe))
    assert mixed.breakdown["expert_gemm_s"] == pytest.approx(
        0.5 * every.breakdown["expert_gemm_s"], rel=1e-12)
    assert mixed.breakdown["ep_comm_s"] == pytest.approx(0.5 * every.breakdown["ep_comm_s"],
                                                         rel=1e-12)
    assert mixed.breakdown["attention_s"] == pytest.approx(every.breakdown["attention_s"])
    assert mixed.breakdown["gemm_s"] > every.breakdown["gemm_s"]  # 16,384-wide dense MLPs
    ds = step_time(model_preset("deepseek-v3"), H100, tp=8, pp=16, dp=64, ep=64,
                   seq=4096, batch_tokens=4096 * 4096)
    assert ds.tflops_per_gpu > 0 and ds.breakdown["ep_comm_s"] > 0


def test_step_memory_shards_the_experts_as_the_step_model_runs_them():
    r = _scout(tp=8, dp=16, ep=16)
    mem = step_memory(SCOUT, "h100-sxm", r.layout)
    direct = memory_breakdown(SCOUT, "h100-sxm", tp=8, pp=1, dp=16, ep=16, etp=8,
                              micro_batch=1, micro_batches=r.layout["micro_batches"],
                              zero=2)
    assert mem.total_bytes == direct.total_bytes
    # One expert per EP rank, 1/8 of it per TP rank, states over dp*tp/(ep*etp) = 1 rank:
    # BF16 weights, FP32 gradients, 12 B of Adam: 18 B per parameter, 48 layers.
    per_gpu_params = 48 * 3 * 5120 * 8192 / 8
    assert mem.expert_bytes == pytest.approx(18 * per_gpu_params)


def test_cli_step_and_memory_take_the_same_ep(capsys):
    assert main(["step", "llama4-scout", "--tp", "8", "--dp", "16", "--ep", "16",
                 "--json"]) == 0
    step = json.loads(capsys.readouterr().out)
    assert step["layout"]["ep"] == 16 and step["breakdown"]["ep_comm_s"] > 0
    assert main(["memory", "llama4-scout", "--tp", "8", "--dp", "16", "--ep", "16",
                 "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)
    assert memory["memory"]["total_bytes"] == pytest.approx(step["memory"]["total_bytes"])
    assert main(["step", "llama3-8b", "--dp", "8", "--ep", "2"]) != 0
    err = capsys.readouterr().err
    assert "has no experts" in err and "Traceback" not in err
