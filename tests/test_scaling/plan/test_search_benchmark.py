"""The layout search as a CPU benchmark case: Llama 3 405B on 16,384 H100 (the published
preset), the planner's batch. Runs only under ``python -m pytest --benchmark`` (the plugin adds
this file to a run without test paths; the ``flopcast_benchmark`` marker makes it a benchmark
case). It lives here, not in bench/, because it measures the planning half's code."""

from __future__ import annotations

import pytest

from bench.cases import case_group
from bench.device import cpu_name
from scaling.hardware.load import load_profile
from scaling.model.config import model_presets
from scaling.plan.search import search_layouts
from scaling.schema import make_record

pytestmark = pytest.mark.flopcast_benchmark

#: (model, GPUs): the dense case the planner's default is built on, and a mixture of experts
#: whose search also ranges over expert parallelism.
CASES = (("llama3-405b", 16_384), ("llama4-maverick", 2_048))


def _record(model: str, gpus: int, extra: dict, time_s: float = 1.0) -> dict:
    """The case's record (`scaling.schema.make_record`); the plugin builds it again with
    pytest-benchmark's final statistics."""
    return make_record("layout_search", name=f"test_layout_search[{model}-{gpus}]",
                       kernel="layout_search", impl="flopcast", dtype="fp64", direction="fwd",
                       variant=model, layout="", shape={"gpus": gpus}, flops=0,
                       bytes=0, device="cpu", device_name=cpu_name(), time_s=time_s, **extra)


@pytest.mark.parametrize("model,gpus", CASES, ids=[f"{m}-{g}" for m, g in CASES])
def test_layout_search(benchmark, flopcast_session, model, gpus):
    config, profile = model_presets()[model], load_profile("h100-sxm")
    benchmark.group = case_group(_record(model, gpus, {}))
    found = benchmark.pedantic(search_layouts, args=(config, profile, gpus), rounds=5,
                               iterations=1, warmup_rounds=1)
    lay = found.best.layout
    assert lay["tp"] * lay["cp"] * lay["pp"] * lay["dp"] <= gpus
    best = found.best.to_dict()["layout"]
    benchmark.extra_info["flopcast"] = _record(model, gpus, {"counts": found.counts,
                                                             "best": best},
                                               benchmark.stats.stats.median)
