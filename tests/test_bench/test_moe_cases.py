"""The mixture-of-experts sweep cases: published configs, the assumed expert parallelism, and
every case building into a spec whose record carries the tokens per expert."""

import pytest

from bench import moe_cases, sweeps
from kernels import registry


def test_published_configs_and_experts_per_gpu():
    scout, maverick, v3 = (moe_cases.MOE_CONFIGS[n] for n in
                           ("llama4-scout", "llama4-maverick", "deepseek-v3"))
    # Llama 4 config.json: hidden 5120, expert width 8192, 16 / 128 experts, top-1 (+ shared)
    assert (scout["d_model"], scout["expert_ffn"], scout["experts"], scout["top_k"]) == (
        5120, 8192, 16, 1)
    assert (maverick["experts"], maverick["top_k"], maverick["shared_experts"]) == (128, 1, 1)
    # DeepSeek-V3 (arXiv 2412.19437) Sec. 4.2 and 3.2: 7168, 2048, 256 + 1 shared, top-8, EP 64
    assert (v3["d_model"], v3["expert_ffn"], v3["experts"], v3["top_k"], v3["shared_experts"],
            v3["expert_parallel"]) == (7168, 2048, 256, 8, 1, 64)
    local = {n: c["experts"] // c["expert_parallel"] for n, c in moe_cases.MOE_CONFIGS.items()}
    assert local == {"llama4-scout": 2, "llama4-maverick": 16, "deepseek-v3": 4}
    for name in moe_cases.MOE_CONFIGS:
        assert moe_cases.EXPERT_PARALLEL_SOURCE[name]
    assert moe_cases.EXPERT_PARALLEL_SOURCE["llama4-scout"].startswith("assumed")
    assert moe_cases.expert_gemms(v3) == [("gate-up", 4096, 7168), ("down", 7168, 2048)]


@pytest.mark.slow
def test_full_sweep_builds_every_moe_case_with_tokens_per_expert():
    cases = [c for c in sweeps.full() if c.kernel in ("grouped_gemm", "moe_dispatch", "moe_combine")]
    # 3 configs x 3 token counts x 2 routings x (2 GEMMs x 2 dtypes x 3 directions + 2)
    assert len(cases) == 3 * 3 * 2 * (12 + 2)
    seen_tokens, variants = set(), set()
    for case in cases:
        for impl in registry.impls(case.kernel):
            spec = registry.build(case.kernel, impl, **case.kwargs)
            assert {"tokens_per_expert_mean", "tokens_per_expert_max"} <= set(spec.identity()["shape"])
        variants.add(spec.variant)
        if case.kernel == "moe_dispatch":
            seen_tokens.add(spec.shape["tokens"])
    assert seen_tokens == {4096, 16384, 65536} and variants == {"balanced", "zipf1.0"}
    # DeepSeek-V3 at 64k tokens: 512k routed rows on a GPU's 4 experts, 48% on the hottest
    skewed = [c for c in cases if c.kernel == "grouped_gemm" and c.kwargs["tokens"] == 65536 * 8
              and c.kwargs["variant"] == "zipf1.0"][0]
    spec = registry.build("grouped_gemm", "torch", **skewed.kwargs)
    assert spec.shape["experts"] == 4 and spec.shape["tokens_per_expert_max"] == 251658


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_quick_sweep_has_small_moe_cases(device_type):
    cases = [c for c in sweeps.quick(device_type)
             if c.kernel in ("grouped_gemm", "moe_dispatch", "moe_combine")]
    kinds = {(c.kernel, c.kwargs.get("direction", ""), c.kwargs["variant"]) for c in cases}
    assert {("grouped_gemm", "fwd", "balanced"), ("grouped_gemm", "fwd", "zipf1.0"),
            ("grouped_gemm", "bwd_dx", "zipf1.0"), ("grouped_gemm", "bwd_dw", "zipf1.0"),
            ("moe_dispatch", "", "balanced"), ("moe_combine", "", "zipf1.0")} <= kinds
    fp8 = {c.kwargs["direction"] for c in cases if c.kwargs.get("dtype") == "fp8_e4m3"}
    assert fp8 == ({"fwd"} if device_type == "cpu" else {"fwd", "bwd_dx", "bwd_dw"})
    for case in cases:
        spec = registry.build(case.kernel, "torch", **case.kwargs)
        assert spec.bytes < 4e6  # small: a few MB moved
