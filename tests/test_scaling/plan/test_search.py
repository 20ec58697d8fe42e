"""The layout search (scaling.plan.search): hand-checkable choices, pins, one refusal with the
GiB, and a ranking that agrees with step_time called directly."""

from __future__ import annotations

import time

import pytest

from scaling.errors import DataError
from scaling.hardware.load import load_profile
from scaling.model.config import model_presets
from scaling.model.memory import GIB, step_memory
from scaling.model.step import step_time
from scaling.plan.search import search_layouts
from tests.test_scaling.plan.test_plan import flopcast


@pytest.fixture(scope="module")
def h100():
    return load_profile("h100-sxm")


def test_a_model_that_needs_pipelining_gets_pp_above_one(h100):
    # 405B on 256 GPUs: without pipelining a GPU holds at least the TP-8 share of the BF16
    # weights, which ZeRO-2 does not shard: 405.9e9 x 2 B / 8 = 101 GB > 80 GB, so the search
    # must pipeline.
    c = model_presets()["llama3-405b"]
    assert c.params * 2 / 8 > 80 * GIB
    found = search_layouts(c, h100, 256, batch=256)
    assert found.best.layout["pp"] >= 2
    assert found.best.memory_bytes <= 80 * GIB


def test_pinned_tensor_parallelism_is_respected(h100):
    c = model_presets()["llama3-405b"]
    found = search_layouts(c, h100, 16384, batch=2048, pins={"tp": 4})
    assert all(cand.layout["tp"] == 4 for cand in found.ranked)


def test_infeasible_everywhere_is_one_refusal_with_gib(h100):
    c = model_presets()["llama3-405b"]
    with pytest.raises(DataError, match=r"fits no layout of 8 GPUs.*GiB per GPU and the H100 "
                                         r"has 80 GiB"):
        search_layouts(c, h100, 8, batch=2048)


def test_ranking_agrees_with_step_time_called_directly(h100):
    c = model_presets()["llama3-405b"]
    found = search_layouts(c, h100, 16384, batch=2048)
    times = []
    for cand in found.ranked:
        lay = cand.layout
        direct = step_time(c, h100, tp=lay["tp"], pp=lay["pp"], dp=lay["dp"], seq=lay["seq"],
                           batch_tokens=lay["batch_tokens"], micro_batch=lay["micro_batch"],
                           interleave=lay["interleave"], recompute=lay["recompute"],
                           cp=lay.get("cp", 1), ep=lay.get("ep", 1))
        assert direct.step_time_s == pytest.approx(cand.step.step_time_s, rel=1e-12)
        mem = step_memory(c, h100, direct.layout)
        assert mem.fits and mem.total_bytes == pytest.approx(cand.memory_bytes)
        times.append(direct.step_time_s / lay["batch_tokens"])
    assert times == sorted(times)
    # Every refused layout is one the bound put ahead of the best, and does not fit.
    for cand in found.refused:
        assert cand.memory_bytes > 80 * GIB


def test_the_bound_prunes_without_changing_the_answer(h100):
    # Overrides switch the bound off (every layout that fits is timed): same best layout.
    c = model_presets()["llama3-70b"]
    pruned = search_layouts(c, h100, 512, batch=512)
    full = search_layouts(c, h100, 512, batch=512, overrides={"pp_overlap": 0.0})
    assert pruned.counts["timed"] < full.counts["timed"] == full.counts["undominated"]
    assert full.counts["undominated"] < full.counts["fit"]
    assert pruned.best.layout == full.best.layout


def test_405b_on_16k_h100_is_searched_within_a_generous_wall_bound(h100):
    c = model_presets()["llama3-405b"]
    began = time.perf_counter()
    search_layouts(c, h100, 16384)
    assert time.perf_counter() - began < 10  # measured ~0.1 s; catches a pathological regression


def test_step_and_plan_explain_and_json_carry_the_search(capsys):
    code, out, _ = flopcast(capsys, "step", "llama3-405b", "--gpus", "16384", "--tp", "8",
                            "--explain")
    assert code == 0 and "layout search:" in out and "slower per token" in out
    import json
    code, out, _ = flopcast(capsys, "step", "llama3-405b", "--gpus", "16384", "--json")
    data = json.loads(out)
    best = data["layout_search"]["best"]["layout"]
    # the search's dimensions, as step ran them (a dense model at 8k: CP 1 and EP 1)
    assert {k: data["layout"][k] for k in best if k in data["layout"]} == \
        {k: v for k, v in best.items() if k in data["layout"]}
    assert data["layout"].get("cp", 1) == data["layout"].get("ep", 1) == 1
    assert len(data["layout_search"]["ranked"]) >= 2
    code, out, _ = flopcast(capsys, "plan", "--compute", "llama3", "--params", "405B",
                            "--gpus", "16384", "--explain")
    assert code == 0 and "1. TP 8" in out


def test_context_parallelism_is_searched_for_long_sequences_only(h100):
    from scaling.plan.search import CP_MIN_SEQ
    c = model_presets()["llama3-405b"]
    short = search_layouts(c, h100, 16384, seq=CP_MIN_SEQ, batch=2048)
    assert {cand.layout["cp"] for cand in short.ranked} == {1}
    long = search_layouts(c, h100, 16384, seq=131072, batch=128)
    assert long.best.layout["cp"] > 1  # 131k tokens do not fit one tensor-parallel group
    assert long.best.layout["tp"] * long.best.layout["cp"] * long.best.layout["pp"] * \
        long.best.layout["dp"] <= 16384
    # A pinned CP is used even at 8k.
    pinned = search_layouts(c, h100, 16384, batch=2048, pins={"cp": 2})
    assert pinned.best.layout["cp"] == 2


def test_expert_parallelism_is_searched_for_moe_models_as_the_step_model_runs_it(h100):
    c = model_presets()["llama4-maverick"]
    began = time.perf_counter()
    found = search_layouts(c, h100, 2048)
    assert time.perf_counter() - began < 10  # measured ~0.7 s
    for cand in found.ranked:
        lay = cand.layout
        assert lay["dp"] % lay["ep"] == 0 and c.experts % lay["ep"] == 0
        direct = step_time(c, h100, tp=lay["tp"], pp=lay["pp"], dp=lay["dp"], seq=lay["seq"],
                           batch_tokens=lay["batch_tokens"], micro_batch=lay["micro_batch"],
                           interleave=lay["interleave"], recompute=lay["recompute"],
                           cp=lay["cp"], ep=lay["ep"])
        assert direct.step_time_s == pytest.approx(cand.step.step_time_s, rel=1e-12)
        assert step_memory(c, h100, direct.layout).total_bytes == \
            pytest.approx(cand.memory_bytes)
    assert found.best.layout["ep"] > 1  # 128 experts of 400B total do not fit unsharded


def test_zero_stage_is_searched_and_pinnable(h100):
    c = model_presets()["llama3-405b"]
    found = search_layouts(c, h100, 256, batch=256)
    assert {cand.layout["zero"] for cand in found.ranked} <= {2, 3}
    # Stage 3 gathers the weights every micro-batch: never faster than stage 2 at equal
    # layout, so it is best only where stage 2 does not fit.
    assert found.best.layout["zero"] == 2
    pinned = search_layouts(c, h100, 256, batch=256, pins={"zero": 1})
    assert pinned.best.layout["zero"] == 1
    # Stage 1 keeps every gradient: the best layout at stage 1 holds more than at stage 2.
    same = dict(found.best.layout, zero=1)
    assert step_memory(c, h100, same).total_bytes > found.best.memory_bytes


def test_a_layout_is_not_timed_where_a_cheaper_twin_fits(h100):
    """Dominance: the same layout with less recomputation or a lower ZeRO stage is never
    slower in the step model, so where it fits the costlier twin is not timed; timing every
    fitting layout gives the same best."""
    import numpy as np

    from scaling.plan.search import dominated
    c = model_presets()["llama3-70b"]
    cand = {"tp": np.array([8] * 6), "pp": np.array([4] * 6), "dp": np.array([16] * 6),
            "recompute": np.array(["none", "selective", "full"] * 2),
            "zero": np.array([2, 2, 2, 3, 3, 3])}
    fit = np.array([False, True, True, True, True, True])
    # (selective, 2) fits: (full, 2), (selective, 3) and (full, 3) are beaten by it; (none, 3)
    # has no fitting twin below it ((none, 2) does not fit).
    assert dominated(cand, fit).tolist() == [False, False, True, False, True, True]
    found = search_layouts(c, h100, 512, batch=512)
    everything = search_layouts(c, h100, 512, batch=512, overrides={"pp_overlap": 0.0})
    for cand in everything.ranked:
        direct = step_time(c, h100, **{k: cand.layout[k] for k in (
            "tp", "pp", "dp", "cp", "ep", "micro_batch", "interleave", "recompute", "zero",
            "seq", "batch_tokens")})
        for recompute in ("none", "selective", "full"):
            if recompute == cand.layout["recompute"]:
                break
            cheaper = dict(cand.layout, recompute=recompute)
            if step_memory(c, h100, cheaper).fits:
                raise AssertionError(f"{cheaper} fits and is cheaper than {cand.layout}")
        assert direct.step_time_s == pytest.approx(cand.step.step_time_s)
    assert found.best.layout == everything.best.layout


def test_layouts_are_written_with_every_dimension_they_use():
    from scaling.plan.search import layout_words
    from scaling.plan.text import layout_text
    lay = {"tp": 8, "cp": 2, "pp": 16, "dp": 64, "ep": 8, "micro_batch": 1, "interleave": 2,
           "recompute": "full", "zero": 3, "gpus_used": 16384}
    assert layout_text(lay) == ("TP 8 x CP 2 x PP 16 x DP 64 (2 chunks, full recompute, EP 8, "
                                "ZeRO 3), 16,384 GPUs busy")
    assert layout_words(lay) == ("TP 8 x CP 2 x PP 16 x DP 64, micro-batch 1, 2 chunks, full "
                                 "recompute, EP 8, ZeRO 3")
    plain = dict(lay, cp=1, ep=1, zero=2, interleave=1, recompute="none")
    assert layout_text(plain) == "TP 8 x PP 16 x DP 64, 16,384 GPUs busy"


def test_a_fixed_batch_may_leave_gpus_idle_rather_than_find_no_layout(h100):
    import numpy as np

    from scaling.plan.search import replicas_for_batch
    # 2,048 sequences: the most replicas up to 781 that split it into micro-batches of 1 or 2
    # is 512; of 4 with at most 100 replicas, 64; micro-batches of 3 do not divide it; EP 8
    # needs a multiple of 8.
    got = replicas_for_batch(2048, np.array([1, 2, 4, 3, 1]), np.array([781, 781, 100, 50, 12]),
                             np.array([1, 1, 1, 1, 8]))
    assert got.tolist() == [512, 512, 64, 0, 8]
    c = model_presets()["llama3-405b"]
    found = search_layouts(c, h100, 100_000, batch=2048)
    lay = found.best.layout
    assert lay["dp"] * lay["micro_batch"] * lay["micro_batches"] == 2048
    assert lay["gpus_used"] == lay["tp"] * lay["pp"] * lay["dp"] <= 100_000
    assert lay["batch_tokens"] == 2048 * 8192


def test_plan_takes_a_fixed_batch(capsys):
    import json
    code, out, _ = flopcast(capsys, "plan", "--compute", "llama3", "--params", "405B",
                            "--gpus", "16384", "100000", "--batch-tokens", "2048x8192", "--json")
    assert code == 0
    data = json.loads(out)
    given = {i["name"]: i for i in data["inputs"]}["batch_tokens"]
    assert given["value"] == 2048 * 8192 and given["label"] == "given"
    for plan in data["plans"]:
        assert plan["layout"]["batch_tokens"] == 2048 * 8192
    busy = [p["layout"]["gpus_used"] for p in data["plans"]]
    assert busy[0] == 16384 and busy[1] < 100_000  # 2,048 sequences cannot keep them all busy
    code, _, err = flopcast(capsys, "plan", "--batch-tokens", "16M")
    assert code != 0 and "16Mi" in err and len(err.strip().splitlines()) == 1
