"""The published runs as data: transcribed rows, citations, and FLOP-convention conversions
against the arithmetic of the papers (Narayanan et al. 2021, Eqs. (3) and (7))."""

import pytest

from scaling.errors import DataError, UnknownNameError
from scaling.model.config import model_preset
from scaling.validate.runs import (FLOP_CONVENTIONS, LAYOUT_KEYS, VALIDATION_RUNS,
                                     convert_tflops, flops_per_token, iteration_time_s,
                                     tokens_per_s_per_gpu, validation_run, validation_runs)


def test_groups_and_tolerances():
    assert len(validation_runs("llama3-table4")) == 3
    assert len(validation_runs("megatron-table1")) == 10
    assert [r.tolerance for r in validation_runs("llama3-table4")] == [0.10] * 3
    assert {r.tolerance for r in validation_runs("megatron-table1")} == {0.15}
    assert validation_run("llama4-behemoth").tolerance is None
    with pytest.raises(UnknownNameError, match="megatron-table1"):
        validation_runs("mlperf")


@pytest.mark.parametrize("run", VALIDATION_RUNS, ids=lambda r: r.name)
def test_every_run_is_complete_and_consistent(run):
    assert run.citation and run.flops in FLOP_CONVENTIONS and run.flops_source
    assert set(run.layout) == set(LAYOUT_KEYS) == set(run.layout_sources)
    model_preset(run.model)  # every model is a preset
    L = run.layout
    if L["tp"] is not None:
        # The published layout uses exactly the published GPUs.
        assert L["tp"] * L["pp"] * L["dp"] * L["cp"] == run.gpus
    assert run.to_dict()["tolerance"] == run.tolerance


def test_llama3_rows_as_printed():
    rows = [(r.gpus, r.layout["cp"], r.layout["dp"], r.layout["seq"], r.published_tflops)
            for r in validation_runs("llama3-table4")]
    assert rows == [(8192, 1, 64, 8192, 430), (16384, 1, 128, 8192, 400),
                    (16384, 16, 8, 131072, 380)]
    # Tokens per batch: DP x batch per DP x sequence = 16Mi in every row.
    assert {r.layout["global_batch"] * r.layout["seq"]
            for r in validation_runs("llama3-table4")} == {16 * 2 ** 20}
    assert all(r.flops_label == "assumed" for r in validation_runs("llama3-table4"))


# Narayanan Eq. (3) and Korthikanti Eq. (7), per iteration of B sequences of s tokens.
def eq3(B, s, l, h, V):
    return 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))


def eq7(B, s, l, h, V):
    return 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h))


@pytest.mark.parametrize("run", validation_runs("megatron-table1"), ids=lambda r: r.name)
def test_megatron_conventions_are_the_papers_equations(run):
    c = run.config()
    l, h, V, s = c.layers, c.d_model, c.vocab, 2048
    assert flops_per_token(c, "megatron-hardware") == pytest.approx(eq3(1, s, l, h, V) / s)
    assert flops_per_token(c, "model-full-attention") == pytest.approx(eq7(1, s, l, h, V) / s)
    # The batch is whole micro-batches on every replica (the script's MBS and GBS).
    assert run.layout["global_batch"] % (run.layout["dp"] * run.layout["micro_batch"]) == 0
    # Table 1's aggregate petaFLOP/s column is GPUs x TFLOP/s per GPU (printed rounding).
    assert run.gpus * run.published_tflops / 1000 == pytest.approx(
        AGGREGATE_PFLOPS[run.model], rel=0.01)


AGGREGATE_PFLOPS = dict(zip((r.model for r in validation_runs("megatron-table1")),
                            (4.4, 8.8, 18.2, 34.6, 70.8, 143.8, 227.1, 297.4, 410.2, 502.0)))


# planner-sources derived table (iteration time from Eq. (3), model TFLOP/s from Eq. (7),
# 6ND from Eq. (2)'s parameters, tokens per second per GPU).
DERIVED = {"1.7b": (3.53, 104.4, 92.1, 9287.9), "18.4b": (9.40, 101.7, 96.5, 871.6),
           "145.6b": (24.82, 111.1, 108.2, 123.8), "529.6b": (54.08, 122.3, 120.3, 37.9),
           "1t": (102.63, 122.3, 120.7, 20.0)}


@pytest.mark.parametrize("row", DERIVED)
def test_conversions_reproduce_the_derived_table(row):
    run = validation_run(f"megatron-table1-{row}")
    seconds, model_tflops, six_nd, tokens = DERIVED[row]
    assert iteration_time_s(run) == pytest.approx(seconds, abs=0.005)
    assert convert_tflops(run, "model-full-attention") == pytest.approx(model_tflops, abs=0.05)
    assert convert_tflops(run, "6n") == pytest.approx(six_nd, abs=0.05)
    assert tokens_per_s_per_gpu(run) == pytest.approx(tokens, abs=0.05)


def test_flopcast_convention_halves_causal_attention():
    run = validation_run("megatron-table1-1.7b")
    c = run.config()
    # flopcast: 6 x (12 l h^2 + V h) + 6 l s h per token (causal), against Eq. (3).
    l, h, V, s = c.layers, c.d_model, c.vocab, 2048
    ours = 6 * (12 * l * h * h + V * h) + 6 * l * s * h
    assert flops_per_token(c, "flopcast") == pytest.approx(ours)
    assert convert_tflops(run) == pytest.approx(137 * ours / (eq3(1, s, l, h, V) / s))
    # Llama 3 at 131K: attention is most of PaLM's count, and halving it moves the figure
    # from 380 to ~271 TFLOP/s; at 8K by ~4%.
    long, short = validation_run("llama3-table4-16k-gpus-131k"), validation_run(
        "llama3-table4-16k-gpus")
    assert 0.70 < convert_tflops(long) / 380 < 0.73
    assert 0.95 < convert_tflops(short) / 400 < 0.97


def test_behemoth_is_reported_only():
    run = validation_run("llama4-behemoth")
    assert run.flops == "unstated" and all(v is None for v in run.layout.values())
    assert "ASSUMED" in run.hardware_source and run.gpus == 32768
    with pytest.raises(DataError, match="cannot be converted"):
        convert_tflops(run)
    with pytest.raises(DataError, match="no published batch"):
        iteration_time_s(run)
    with pytest.raises(UnknownNameError, match="llama4-behemoth"):
        validation_run("gpt-4")
