"""Streaming bandwidth: the rate memory-bound work is timed at. Presets carry a published
streaming measurement where there is one, measured profiles take the suite's own streaming
scale records, and a device with neither is timed at its datasheet figure, which says it is
an upper bound."""

import json

import pytest

from bench.records import write_results
from scaling.errors import DataError
from scaling.hardware.calibration import build_profile
from scaling.hardware.load import load_profile
from scaling.hardware.profile import HardwareProfile, published_profile
from scaling.model.config import model_preset
from scaling.model.step import step_time
from scaling.records.load import load_results
from tests.support.records_factory import MACHINE, gemm_record


def stream_record(n, gbps, impl="torch", dtype="bf16", device_name="Test CPU"):
    moved = 2 * n * (2 if dtype == "bf16" else 4)
    time_s = moved / (gbps * 1e9)
    return gemm_record(
        n, impl, name=f"stream-{dtype}-{impl}-{n}", kernel="stream", dtype=dtype,
        out_dtype=dtype, layout="", shape={"n": n}, flops=n, bytes=moved, time_s=time_s,
        tflops=n / time_s / 1e12, gbps=gbps, device_name=device_name)


def profile_of(tmp_path, records, device_name="Test CPU"):
    machine = dict(MACHINE, device_name=device_name)
    write_results(records, machine, tmp_path, source="pytest --benchmark", sweep="quick")
    return build_profile(load_results([tmp_path]))


def test_presets_with_a_published_streaming_measurement():
    # gpu-benches' gpu-stream scale kernel at full occupancy (a100_80.txt, h200.txt).
    for name, gbps, datasheet in (("a100-80gb", 1732, 2039), ("h200", 3165, 4800)):
        p = published_profile(name)
        assert p.stream_gbps.value == gbps and p.stream_gbps.label == "published"
        assert "gpu-benches" in p.stream_gbps.source and "scale" in p.stream_gbps.source
        assert p.streaming_gbps() is p.stream_gbps
        assert p.memory_gbps.value == datasheet  # the datasheet figure stays the ceiling
        assert gbps < datasheet


@pytest.mark.parametrize("name", ["h100-sxm", "b200", "mi300x", "h800"])
def test_presets_without_one_use_the_datasheet_and_say_so(name):
    p = published_profile(name)
    assert p.stream_gbps is None
    timed = p.streaming_gbps()
    assert timed.value == p.memory_gbps.value and timed.label == "published"
    assert timed.source.startswith("datasheet HBM bandwidth, an upper bound")


def test_measured_streaming_is_the_fastest_at_the_largest_array(tmp_path):
    # Smaller arrays sit in cache and run faster; the largest is the memory's own rate.
    records = [stream_record(1 << 20, 900.0), stream_record(1 << 24, 310.0),
               stream_record(1 << 24, 325.0, impl="triton"), stream_record(1 << 22, 500.0)]
    p = profile_of(tmp_path, records)
    assert p.stream_gbps.value == pytest.approx(325.0) and p.stream_gbps.label == "measured"
    # 2 x 2^24 elements x 2 bytes moved per call.
    assert "triton bf16" in p.stream_gbps.source and "0.0671 GB moved" in p.stream_gbps.source
    assert "2 record(s) at that size" in p.stream_gbps.source
    assert p.streaming_gbps() is p.stream_gbps


def test_a_measured_stream_replaces_the_presets_published_one(tmp_path):
    name = "NVIDIA A100-SXM4-80GB"
    records = [gemm_record(n, device_name=name) for n in (64, 128, 256, 512)]
    without = profile_of(tmp_path / "a", records, name)
    assert without.stream_gbps == published_profile("a100-80gb").stream_gbps
    with_stream = profile_of(tmp_path / "b", records + [stream_record(1 << 28, 1650.0,
                                                                      device_name=name)], name)
    assert with_stream.stream_gbps.value == pytest.approx(1650.0)
    assert with_stream.stream_gbps.label == "measured"
    assert with_stream.memory_gbps.value == 2039  # the datasheet ceiling is kept


def test_an_unrecognised_device_without_streams_keeps_its_lower_bound(tmp_path):
    p = profile_of(tmp_path, [gemm_record(n) for n in (64, 128, 256, 512)])
    assert p.stream_gbps is None
    assert p.streaming_gbps() is p.memory_gbps and p.memory_gbps.label == "measured"
    assert "lower bound" in p.memory_gbps.source


def test_streaming_bandwidth_survives_saving_and_old_profiles_load(tmp_path):
    p = published_profile("a100-80gb")
    again = load_profile(p.save(tmp_path / "a100.json"))
    assert again.stream_gbps == p.stream_gbps
    data = p.to_dict()
    del data["stream_gbps"]  # a profile saved before the field existed
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = load_profile(tmp_path / "old.json")
    assert old.stream_gbps is None and old.streaming_gbps().value == 2039


def test_the_step_model_times_memory_traffic_at_the_streaming_rate():
    config = model_preset("megatron-gpt-18.4b")
    a100 = published_profile("a100-80gb")
    layout = dict(tp=8, pp=1, dp=32, seq=2048, batch_tokens=1024 * 2048, micro_batch=8,
                  recompute="full")
    streamed = step_time(config, a100, **layout)
    at_datasheet = step_time(config, a100, overrides={"memory_gbps": 2039.0}, **layout)
    assert streamed.labels["memory_gbps"]["value"] == 1732
    assert "gpu-benches" in streamed.labels["memory_gbps"]["source"]
    for term in ("elementwise_s", "optimizer_s"):  # bytes over bandwidth, nothing else
        assert streamed.breakdown[term] == pytest.approx(
            at_datasheet.breakdown[term] * 2039 / 1732, rel=1e-12)
    assert streamed.breakdown["gemm_s"] == at_datasheet.breakdown["gemm_s"]
    h100 = step_time(config, published_profile("h100-sxm"), **layout)
    assert h100.labels["memory_gbps"]["value"] == 3350
    assert "upper bound" in h100.labels["memory_gbps"]["source"]


def test_a_profile_with_no_bandwidth_at_all_is_refused_by_the_step_model():
    bare = HardwareProfile(name="bare", label="measured", device_name="Bare",
                           kernel_curves=published_profile("h100-sxm").kernel_curves)
    assert bare.streaming_gbps() is None
    with pytest.raises(DataError, match="no memory bandwidth"):
        step_time(model_preset("llama3-8b"), bare, tp=1, pp=1, dp=1)
