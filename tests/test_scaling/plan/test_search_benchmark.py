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

GPUS = 16_384


def _record(extra: dict, time_s: float = 1.0) -> dict:
    """The case's record (`scaling.schema.make_record`); the plugin builds it again with
    pytest-benchmark's final statistics."""
    return make_record("layout_search", name="test_layout_search_405b_16k",
                       kernel="layout_search", impl="flopcast", dtype="fp64", direction="fwd",
                       variant="llama3-405b", layout="", shape={"gpus": GPUS}, flops=0,
                       bytes=0, device="cpu", device_name=cpu_name(), time_s=time_s, **extra)


def test_layout_search_405b_16k(benchmark, flopcast_session):
    config, profile = model_presets()["llama3-405b"], load_profile("h100-sxm")
    benchmark.group = case_group(_record({}))
    found = benchmark.pedantic(search_layouts, args=(config, profile, GPUS), rounds=5,
                               iterations=1, warmup_rounds=1)
    assert found.best.layout["tp"] * found.best.layout["pp"] * found.best.layout["dp"] <= GPUS
    benchmark.extra_info["flopcast"] = _record({"counts": found.counts,
                                                "best": found.best.to_dict()["layout"]},
                                               benchmark.stats.stats.median)
