"""Only layouts that fit: `flopcast step` and `flopcast plan` refuse what does not fit the
device's memory, `flopcast memory` prints the breakdown, and full recomputation costs one more
forward pass of every layer."""

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.cli.main import main
from scaling.cli.step import checked_memory
from scaling.errors import DataError
from scaling.hardware.load import load_profile
from scaling.model.memory import GIB
from scaling.model.config import model_preset
from scaling.plan.planner import make_plan
from scaling.model.step import step_time

H100 = load_profile("h100-sxm")
GIB_PER_H100 = 80  # NVIDIA H100 SXM datasheet: 80 GB HBM3 (binary GB)


def test_step_refuses_405b_on_eight_gpus_with_the_gigabytes(capsys):
    # Llama 3 405B unsharded on one GPU: BF16 weights alone are 2 bytes x 405.9B parameters.
    assert main(["step", "llama3-405b", "--tp", "1", "--pp", "1", "--dp", "8"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    weights_gib = 2 * model_preset("llama3-405b").params / GIB
    assert f"weights {weights_gib:,.0f}" in err
    assert f"has {GIB_PER_H100} GiB" in err and "needs" in err


def test_step_prints_the_memory_of_a_layout_that_fits(capsys):
    argv = ["step", "llama3-405b", "--tp", "8", "--pp", "16", "--dp", "128", "--json"]
    assert main(argv) == 0
    mem = json.loads(capsys.readouterr().out)["memory"]
    assert mem["fits"] and mem["hbm_bytes"] == GIB_PER_H100 * GIB
    assert mem["total_bytes"] <= mem["hbm_bytes"]
    assert main(argv[:-1]) == 0
    assert "of 80 GiB per GPU" in capsys.readouterr().out


def test_memory_command_breakdown_sums_and_says_the_verdict(capsys):
    argv = ["memory", "llama3-405b", "--tp", "8", "--pp", "16", "--dp", "128"]
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    mem = out["memory"]
    terms = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "expert_bytes",
             "activations_bytes", "in_flight_bytes", "logits_bytes", "buffers_bytes",
             "fragmentation_bytes")
    assert sum(mem[t] for t in terms) == pytest.approx(mem["total_bytes"])
    assert out["gpus"] == 16384 and out["layout"]["micro_batches"] == 16
    # ZeRO-2 over 128 replicas: BF16 weights of a stage whole, FP32 gradients sharded.
    assert mem["gradients_bytes"] == pytest.approx(mem["weights_bytes"] * 2 / 128, rel=1e-9)
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "verdict: fits" in text and "in-flight micro-batches" in text and "GiB" in text
    # The same model on one GPU: printed, and exit status 1.
    assert main(["memory", "llama3-405b"]) == 1
    assert "verdict: does not fit" in capsys.readouterr().out


def test_memory_and_step_agree_on_one_layout(capsys):
    argv = ["--tp", "8", "--pp", "16", "--dp", "128", "--interleave", "2", "--json"]
    assert main(["memory", "llama3-405b"] + argv) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    assert main(["step", "llama3-405b"] + argv) == 0
    step = json.loads(capsys.readouterr().out)["memory"]
    assert memory["total_bytes"] == pytest.approx(step["total_bytes"])


def test_memory_and_step_agree_on_the_options_that_decide_bytes_held(capsys):
    # Megatron-LM's 18.4B row as it ran: FP16 gradients, equal layers per stage,
    # materialised attention. `memory` takes the same flags as `step` and gives its bytes.
    argv = ["megatron-gpt-18.4b", "--hardware", "a100-80gb", "--tp", "8", "--dp", "32",
            "--seq", "2048", "--micro-batch", "8", "--batch-tokens", "1024x2048",
            "--recompute", "full", "--zero", "0", "--no-sequence-parallel", "--json"]
    held = ["--grad-reduce", "half", "--unbalanced-pipeline", "--attention", "materialised"]
    totals = []
    for extra in ([], held):
        assert main(["memory", *argv, *extra]) == 0
        memory = json.loads(capsys.readouterr().out)
        assert main(["step", *argv, *extra]) == 0
        step = json.loads(capsys.readouterr().out)
        assert memory["memory"]["total_bytes"] == pytest.approx(step["memory"]["total_bytes"])
        totals.append(memory["memory"])
    plain, as_ran = totals
    assert memory["layout"]["grad_reduce"] == "half" and memory["layout"]["attention"] == (
        "materialised")
    # FP16 gradients: half the FP32 gradient bytes; the kept s x s scores of the layer being
    # recomputed add activations.
    assert as_ran["gradients_bytes"] == pytest.approx(plain["gradients_bytes"] / 2)
    assert as_ran["activations_bytes"] > plain["activations_bytes"]
    # One short sequence on one GPU: the optimizer step's FP32 copies are the peak, and the
    # text says so.
    assert main(["memory", "megatron-gpt-1.7b", "--hardware", "a100-80gb", "--seq", "256",
                 "--batch-tokens", "256", "--zero", "0", "--grad-reduce", "half"]) == 0
    text = capsys.readouterr().out
    assert "at the optimizer step" in text and "1 GPU;" in text and "1 micro-batch " in text
    assert "half gradients" in text


def test_full_recomputation_adds_one_forward_of_every_layer():
    # With every GEMM and attention call at a fixed rate, time is FLOPs over rate; full
    # recomputation runs each layer's forward (a third of its GEMM FLOPs: the backward is
    # twice the forward) once more, and leaves the model FLOPs as they were.
    config = model_preset("llama3-8b")
    fixed = {"gemm_tflops": 500.0, "attention_tflops": 400.0}
    kw = dict(tp=1, pp=1, dp=1, seq=4096, batch_tokens=2 * 4096, overrides=fixed)
    plain = step_time(config, H100, **kw)
    full = step_time(config, H100, recompute="full", **kw)
    tokens = 2 * 4096
    layer_matmul = (config.attention_matmul_params + config.mlp_matmul_params(config.d_ffn))
    extra_gemm_s = config.layers * 2 * layer_matmul * tokens / 500e12
    assert full.breakdown["gemm_s"] - plain.breakdown["gemm_s"] == pytest.approx(extra_gemm_s)
    extra_attn_s = plain.breakdown["attention_s"] / 3.5  # forward 1, backward 2.5
    assert full.breakdown["attention_s"] - plain.breakdown["attention_s"] == pytest.approx(
        extra_attn_s)
    assert full.model_flops_per_gpu == plain.model_flops_per_gpu
    assert full.layout["recompute"] == "full"


# -- the planner ----------------------------------------------------------------------------

def _plan(capsys, *argv):
    code = main(["plan", *argv, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


def test_plan_refuses_a_cluster_smaller_than_one_replica_with_the_gigabytes(capsys):
    # 3.8e25 FLOPs under the default law is a ~619B model: 18 bytes per parameter of state
    # (BF16 weights, FP32 gradients, FP32 master weights and two Adam moments) sharded over
    # 16 GPUs is ~650 GiB each, far over the H100's 80.
    code, _, err = _plan(capsys, "--compute", "3.8e25", "--gpus", "16")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # The layout search's smallest layout (ZeRO-2: weights sharded only over TP x PP) needs
    # more than that state alone.
    assert "fits no layout of 16 GPUs" in err and "has 80 GiB" in err
    needed = float(err.split(" needs ")[1].split(" GiB")[0].replace(",", ""))
    assert 600 < needed < 800


@pytest.mark.parametrize("argv", [
    ("--compute", "llama3", "--params", "405B", "--gpus", "8192", "16384"),
    ("--gpus", "16384", "100000"),
    ("--compute", "3.8e25", "--gpus", "32768"),
])
def test_every_planned_layout_fits_and_step_accepts_it_with_the_same_tokens_per_s(capsys,
                                                                                  argv):
    """What plan picks, `flopcast step` accepts as it stands; and the plan's days are the
    run's tokens at step's tokens/s (less the goodput), one FLOP convention for both."""
    code, plan, err = _plan(capsys, *argv)
    assert code == 0, err
    for cluster in plan["plans"]:
        lay, mem = cluster["layout"], cluster["memory"]
        assert lay["tp"] * lay["pp"] * lay["dp"] == lay["gpus_used"] <= cluster["gpus"]
        assert mem["fits"] and mem["total_bytes"] <= mem["hbm_bytes"] == 80 * GIB
        name = plan["model"]["name"]  # a preset, or the Llama-like model of N parameters
        model = [name] if name == "llama3-405b" else ["--params", f"{plan['params']:.17g}"]
        step_argv = ["step", *model, "--tp", str(lay["tp"]), "--pp", str(lay["pp"]),
                     "--dp", str(lay["dp"]),
                     "--seq", str(lay["seq"]), "--interleave", str(lay["interleave"]),
                     "--recompute", lay["recompute"],
                     "--batch-tokens", str(lay["batch_tokens"]), "--json"]
        assert main(step_argv) == 0
        step = json.loads(capsys.readouterr().out)
        assert step["memory"]["total_bytes"] == pytest.approx(mem["total_bytes"])
        busy = lay["gpus_used"] / cluster["gpus"]
        assert step["tflops_per_gpu"] * busy == pytest.approx(cluster["tflops_per_gpu"])
        wall_s = cluster["days"] * 86400 * cluster["goodput"]
        assert step["tokens_per_s"] * wall_s == pytest.approx(plan["tokens"], rel=1e-9)


def test_plan_days_are_not_the_budget_over_the_throughput():
    """6 N D over a throughput that counts attention too would give days short by the
    attention's share; the plan's days carry it (Llama 3 405B at 8,192-token sequences:
    attention adds ~3.3% to 6 x matmul parameters, causal)."""
    plan = make_plan(compute="llama3", params=405e9, gpus=[16384])
    c = plan.plans[0]
    naive_days = plan.compute_flops / (c.gpus * c.tflops_per_gpu * 1e12 * c.goodput) / 86400
    per_token = plan.model["flops_per_token"]
    assert c.days / naive_days == pytest.approx(per_token / (6 * 405e9), rel=1e-9)
    assert 1.02 < c.days / naive_days < 1.06


@settings(max_examples=12, deadline=None)
@given(params=st.floats(1e9, 3e12), gpus=st.integers(1, 200_000))
def test_a_plan_is_refused_or_fits_on_the_gpus_given(params, gpus):
    try:
        plan = make_plan(compute=1e25, params=params, gpus=[gpus])
    except DataError as exc:
        assert "GiB" in str(exc) or "GPU" in str(exc)
        return
    (cluster,) = plan.plans
    assert cluster.layout["gpus_used"] <= gpus
    assert cluster.memory["fits"] and cluster.memory["total_bytes"] <= 80 * GIB


def test_step_on_a_device_of_unknown_memory_says_memory_was_not_checked():
    cpu = replace(H100, name="measured:Test CPU", device_name="Test CPU", label="measured")
    config = model_preset("llama3-8b")
    result = step_time(config, cpu, batch_tokens=8192)
    assert checked_memory(config, cpu, result) is None
    assert any("memory not checked" in n and "Test CPU" in n for n in result.notes)
    # the H100 preset itself is checked: Llama 3 8B unsharded on one GPU does not fit
    with pytest.raises(DataError, match="has 80 GiB"):
        checked_memory(config, H100, step_time(config, H100, batch_tokens=8192))
