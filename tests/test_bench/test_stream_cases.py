"""The sweeps measure memory bandwidth with the streaming scale: on a GPU at arrays past the
L2 cache, so the rate is the memory's own; on a CPU at a few small sizes."""

import pytest

from bench.sweeps import sweep
from kernels import registry

L2_BYTES = 50e6  # the H100's 50 MB L2, the largest of the NVIDIA parts the presets carry


def _stream(cases):
    return [c for c in cases if c.kernel == "stream"]


@pytest.mark.parametrize("name", ["quick", "full"])
def test_gpu_sweeps_stream_past_the_l2_cache(name):
    cases = _stream(sweep(name, "cuda"))
    assert len(cases) >= 2
    for case in cases:
        for impl in registry.impls("stream"):
            spec = registry.build("stream", impl, **case.kwargs)
            assert spec.bytes / 2 > L2_BYTES  # the array read alone is past the cache
    sizes = sorted({c.kwargs["n"] for c in cases})
    assert sizes[-1] >= 4 * sizes[0]  # a range, so a fit can see the plateau


def test_full_sweep_streams_bf16_and_fp32_up_to_4gib_moved():
    cases = _stream(sweep("full", "cuda"))
    assert {c.kwargs["dtype"] for c in cases} == {"bf16", "fp32"}
    biggest = max(registry.build("stream", "torch", **c.kwargs).bytes for c in cases)
    assert biggest == 2 * (1 << 29) * 4  # 2^29 fp32 elements read and written: 4 GiB


def test_cpu_quick_sweep_streams_a_few_small_sizes():
    cases = _stream(sweep("quick", "cpu"))
    assert [c.kwargs for c in cases] == [{"n": 1 << p, "dtype": "bf16"} for p in (20, 22, 24)]
