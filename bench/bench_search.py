"""The layout search as a CPU benchmark case: Llama 3 405B on 16,384 H100 (the published
preset), the planner's batch. Runs only under ``python -m pytest --benchmark``."""

from __future__ import annotations

from bench.cases import case_group
from bench.device import cpu_name
from scaling.hardware.load import load_profile
from scaling.model.config import model_presets
from scaling.plan.search import search_layouts

GPUS = 16_384


def _record(extra: dict) -> dict:
    return {"kernel": "layout_search", "impl": "flopcast", "dtype": "fp64", "direction": "fwd",
            "variant": "llama3-405b", "layout": "", "shape": {"gpus": GPUS},
            "flops": 0, "bytes": 0, "device": "cpu", "device_name": cpu_name(), **extra}


def test_layout_search_405b_16k(benchmark, flopcast_session):
    config, profile = model_presets()["llama3-405b"], load_profile("h100-sxm")
    benchmark.group = case_group(_record({}))
    found = benchmark.pedantic(search_layouts, args=(config, profile, GPUS), rounds=5,
                               iterations=1, warmup_rounds=1)
    assert found.best.layout["tp"] * found.best.layout["pp"] * found.best.layout["dp"] <= GPUS
    benchmark.extra_info["flopcast"] = _record({"counts": found.counts,
                                                "best": found.best.to_dict()["layout"]})
