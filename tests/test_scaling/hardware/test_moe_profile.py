"""Mixture-of-experts in the hardware profile and the step model: a grouped-GEMM curve of
TFLOP/s against tokens per expert fitted from records, saved and loaded, and the step model's
expert term timed with it (or, labelled, with the dense GEMM curve) against hand arithmetic."""

import json
import re
from dataclasses import replace

import pytest

from bench.records import write_results
from scaling.report import figures
from scaling.cli.main import main
from scaling.hardware.curves import SaturatingCurve
from scaling.errors import DataError, FitError
from scaling.hardware.profile import GroupedCurve, HardwareProfile
from scaling.hardware.calibration import build_profile
from scaling.hardware.load import load_profile
from scaling.model.config import ModelConfig
from scaling.records.load import load_results
from scaling.model.step import step_time
from tests.support.records_factory import MACHINE, gemm_record

EXPERTS, N, K = 4, 256, 128
# The curves the records are made from: TFLOP/s = plateau * T / (T + T_half).
BF16 = (2.0, 64.0)
FP8 = (3.0, 32.0)


def rate(curve, tokens_per_expert):
    plateau, half = curve
    return plateau * tokens_per_expert / (tokens_per_expert + half)


def grouped_record(tokens_per_expert, dtype="bf16", curve=BF16, direction="fwd",
                   variant="balanced", impl="torch"):
    tokens = tokens_per_expert * EXPERTS
    flops = 2 * tokens * N * K
    tflops = rate(curve, tokens_per_expert)
    time_s = flops / (tflops * 1e12)
    return gemm_record(
        name=f"grouped_gemm-{dtype}-{direction}-{variant}-{impl}-{tokens}", kernel="grouped_gemm",
        impl=impl, dtype=dtype, out_dtype="bf16", direction=direction, variant=variant,
        layout="", flops=flops, bytes=2 * (tokens * K + EXPERTS * K * N + tokens * N),
        shape={"tokens": tokens, "experts": EXPERTS, "n": N, "k": K,
               "tokens_per_expert_mean": tokens_per_expert,
               "tokens_per_expert_max": tokens_per_expert},
        time_s=time_s, tflops=tflops, gbps=None)


def routing_record(tokens, kernel="moe_dispatch", plateau_gbps=40.0, half_bytes=1e6):
    nbytes = tokens * 256 * 2 * 5
    gbps = plateau_gbps * nbytes / (nbytes + half_bytes)
    return gemm_record(
        name=f"{kernel}-bf16-{tokens}", kernel=kernel, impl="torch", dtype="bf16",
        direction="fwd", variant="balanced", layout="", flops=0, bytes=nbytes,
        shape={"tokens": tokens, "d_model": 256, "experts": 16, "top_k": 4},
        time_s=nbytes / (gbps * 1e9), tflops=None, gbps=gbps)


SIZES = (16, 64, 256, 1024)


def moe_records():
    rows = [grouped_record(t) for t in SIZES]
    rows += [grouped_record(t, dtype="fp8_e4m3", curve=FP8) for t in SIZES]
    rows += [grouped_record(128, direction="bwd_dx", variant="zipf1.0")]  # one size: no curve
    rows += [routing_record(t) for t in (256, 1024, 4096)]
    return rows + [gemm_record(256), gemm_record(512, time_s=4e-3), gemm_record(1024, time_s=3e-2)]


@pytest.fixture
def results_dir(tmp_path):
    write_results(moe_records(), MACHINE, tmp_path, source="pytest --benchmark", sweep="quick")
    return tmp_path


def test_profile_fits_grouped_curve_against_tokens_per_expert(results_dir):
    profile = build_profile(load_results([results_dir]))
    curves = {c.dtype: c for c in profile.grouped_curves}
    assert set(curves) == {"bf16", "fp8_e4m3"}
    for dtype, (plateau, half) in (("bf16", BF16), ("fp8_e4m3", FP8)):
        c = curves[dtype]
        assert (c.impl, c.direction, c.routing, c.shapes) == ("torch", "fwd", "balanced",
                                                              ((N, K),))
        assert c.curve.plateau == pytest.approx(plateau, rel=1e-6)
        assert c.curve.half_size == pytest.approx(half, rel=1e-5)
        assert (c.curve.size_min, c.curve.size_max, c.curve.points) == (16, 1024, 4)
        assert c.label == "measured"
    # At T_half, half the plateau: 1.0 TFLOP/s for BF16 (2.0 * 64 / 128).
    est = profile.grouped_gemm_tflops(64, N, K, "bf16")
    assert est.value == pytest.approx(1.0, rel=1e-6) and est.label == "measured"
    assert profile.grouped_gemm_tflops(32, N, K, "fp8").value == pytest.approx(1.5, rel=1e-6)
    # Another shape is answered from the same curve, and says so.
    assert "not 512x7168" in profile.grouped_gemm_tflops(64, 512, 7168, "bf16").source
    # A skewed routing was measured at one size only: not fitted, and asking says why.
    assert "grouped_gemm bf16 torch bwd_dx zipf1.0" in profile.skipped
    with pytest.raises(FitError, match="1 distinct"):
        profile.grouped_gemm_tflops(64, N, K, "bf16", "bwd_dx")
    with pytest.raises(DataError, match="no grouped-GEMM data for bf16 bwd_dw"):
        profile.grouped_gemm_tflops(64, N, K, "bf16", "bwd_dw")
    # Dispatch records: GB/s against bytes per call, memory-bound.
    (disp,) = profile.routing_curves
    assert disp.kernel == "moe_dispatch"
    assert disp.curve.plateau == pytest.approx(40.0, rel=1e-6)
    assert disp.curve.half_size == pytest.approx(1e6, rel=1e-5)
    assert profile.routing_gbps("moe_dispatch", 1e6).value == pytest.approx(20.0, rel=1e-6)


def test_grouped_curves_round_trip_and_old_profiles_still_load(results_dir, tmp_path):
    profile = build_profile(load_results([results_dir]))
    path = profile.save(tmp_path / "profile.json")
    loaded = load_profile(str(path))
    assert loaded == profile
    assert loaded.grouped_gemm_tflops(64, N, K, "bf16") == profile.grouped_gemm_tflops(
        64, N, K, "bf16")
    old = json.loads(path.read_text())
    del old["grouped_curves"], old["routing_curves"]
    before = HardwareProfile.from_dict(old)
    assert before.grouped_curves == () and before.routing_curves == ()
    assert before.kernel_curves == profile.kernel_curves


def test_flopcast_profile_prints_the_grouped_curve(results_dir, capsys):
    assert main(["profile", str(results_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (bf16,) = [g for g in summary["grouped"] if g["dtype"] == "bf16"]
    assert bf16["plateau_tflops"] == pytest.approx(2.0, rel=1e-6)
    assert bf16["half_tokens_per_expert"] == pytest.approx(64.0, rel=1e-5)
    assert main(["profile", str(results_dir)]) == 0
    text = capsys.readouterr().out
    assert "Grouped GEMM (MoE experts)" in text and "grouped_gemm bf16 torch fwd balanced" in text


# -- the step model's expert term --------------------------------------------------------------

# Two MoE layers of 4 experts, top-2, expert width 128: a micro-batch of 256 tokens sends
# 256 * 2 / 4 = 128 tokens to each expert.
MOE = ModelConfig("tiny-moe", layers=2, d_model=256, d_ffn=128, heads_q=4, heads_kv=2,
                  vocab=1000, seq=256, experts=4, experts_per_token=2)
TOKENS, TOP_K, D, W = 256, 2, 256, 128
# Each expert is a SwiGLU MLP: three d x w GEMMs (gate and up fused, down), 2 FLOPs per
# multiply-add, forward and the two backward GEMMs (3x), per layer.
EXPERT_FLOPS_PER_LAYER = 3 * 2 * TOKENS * TOP_K * 3 * D * W
H100 = load_profile("h100-sxm")


def with_grouped(profile, plateau, half, dtype="bf16"):
    curve = SaturatingCurve(plateau=plateau, half_size=half)
    return replace(profile, grouped_curves=tuple(
        GroupedCurve(dtype, "triton", direction, "balanced", ((2 * W, D), (D, W)), curve,
                     "measured", "hand-made curve")
        for direction in ("fwd", "bwd_dx", "bwd_dw")))


def test_expert_term_uses_the_grouped_curve_at_the_layouts_tokens_per_expert():
    profile = with_grouped(H100, plateau=60.0, half=64.0)
    r = step_time(MOE, profile, batch_tokens=TOKENS)
    # 60 * 128 / (128 + 64) = 40 TFLOP/s, below the H100's roofline for these shapes.
    expected_s = 2 * EXPERT_FLOPS_PER_LAYER / 40e12
    assert r.breakdown["expert_gemm_s"] == pytest.approx(expected_s, rel=1e-9)
    label = r.labels["expert_gemm_tflops"]
    assert label["value"] == pytest.approx(40.0) and label["label"] == "measured"
    assert "grouped-GEMM curve" in label["source"] and "128 tokens per expert" in label["source"]
    assert not any("dense GEMM curve" in n for n in r.notes)
    # The dense GEMMs are the same whether or not the profile has a grouped curve.
    dense = step_time(MOE, H100, batch_tokens=TOKENS)
    assert r.breakdown["gemm_s"] == pytest.approx(dense.breakdown["gemm_s"], rel=1e-12)


def test_expert_term_without_a_grouped_curve_uses_the_dense_curve_and_says_so():
    r = step_time(MOE, H100, batch_tokens=TOKENS)
    # The published H100 GEMM rate is flat (no half size) but capped by its 3.35 TB/s for
    # these small GEMMs; time each of the six expert GEMMs of a layer at its own shape.
    shapes = [(128, 256, 256), (128, 256, 128),  # gate/up and down forward (m, n, k)
              (128, 256, 256), (128, 128, 256),  # their dX: (m, k, n)
              (256, 256, 128), (128, 256, 128)]  # their dW: (k, n, m)
    expected = 2 * sum(4 * 2 * m * n * k / (H100.matmul_tflops(m, n, k, "bf16").value * 1e12)
                       for m, n, k in shapes)
    assert sum(4 * 2 * m * n * k for m, n, k in shapes) == EXPERT_FLOPS_PER_LAYER
    assert r.breakdown["expert_gemm_s"] == pytest.approx(expected, rel=1e-9)
    label = r.labels["expert_gemm_tflops"]
    assert label["label"] == "published"
    assert "dense GEMM curve at the experts' shapes" in label["source"]
    assert any("dense GEMM curve" in n and "no grouped-GEMM curve in bf16" in n
               for n in r.notes)
    # An FP8 step without an FP8 grouped curve falls back too, even beside a BF16 one.
    fp8 = step_time(MOE, with_grouped(H100, 60.0, 64.0), precision="fp8", batch_tokens=TOKENS)
    assert "dense GEMM curve" in fp8.labels["expert_gemm_tflops"]["source"]


def test_all_gemm_flops_are_counted_once_between_the_dense_and_expert_terms():
    fixed = {"gemm_tflops": 100.0, "attention_tflops": 50.0, "memory_gbps": 1000.0}
    r = step_time(MOE, H100, batch_tokens=TOKENS, overrides=fixed)
    assert r.breakdown["expert_gemm_s"] == pytest.approx(2 * EXPERT_FLOPS_PER_LAYER / 100e12)
    assert r.breakdown["gemm_s"] + r.breakdown["expert_gemm_s"] == pytest.approx(
        6 * MOE.matmul_params * TOKENS / 100e12)
    own = step_time(MOE, H100, batch_tokens=TOKENS,
                    overrides=dict(fixed, expert_gemm_tflops=25.0))
    assert own.breakdown["expert_gemm_s"] == pytest.approx(2 * EXPERT_FLOPS_PER_LAYER / 25e12)
    assert own.breakdown["gemm_s"] == pytest.approx(r.breakdown["gemm_s"])
    assert own.labels["expert_gemm_tflops"]["label"] == "given"


def test_dense_models_have_no_expert_term():
    dense = ModelConfig("tiny", layers=4, d_model=512, d_ffn=1536, heads_q=4, heads_kv=2,
                        vocab=1000, seq=256)
    r = step_time(dense, H100, batch_tokens=8 * 256)
    assert "expert_gemm_s" not in r.breakdown and "expert_gemm_tflops" not in r.labels
    with pytest.raises(DataError, match="has no experts"):
        step_time(dense, H100, batch_tokens=8 * 256, overrides={"expert_gemm_s": 1.0})


# -- the report ----------------------------------------------------------------------------------


def test_report_draws_the_grouped_curve_beside_dense_gemm(results_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", "--results", str(results_dir), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    text = (out / "report.html").read_text()
    section = text[text.index('<h3 id="grouped">'):text.index('<section id="power">')]
    assert "against tokens per expert" in section and "dense GEMM curve" in section
    images = re.findall(r'<img[^>]*alt="grouped GEMM, (bf16|fp8_e4m3)"', section)
    assert sorted(images) == ["bf16", "fp8_e4m3"]
    # The skewed dX series had one size, so no curve: the panel says so, and why.
    assert "Not fitted: torch, dX, zipf1.0 (only 1 distinct problem size" in section


def test_grouped_panel_draws_points_fit_and_dense_reference(results_dir):
    records = load_results([results_dir])
    profile = build_profile(records)
    panels = dict((title, fig) for title, _, fig in figures.grouped_panels(records, [profile]))
    ax = panels["grouped GEMM, bf16"].axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "torch, forward, balanced, measured" in labels
    assert "torch, forward, balanced, fit to measured" in labels
    assert f"dense GEMM T x {N} x {K}, fit to measured" in labels
    fit = ax.get_lines()[labels.index("torch, forward, balanced, fit to measured")]
    x, y = fit.get_data()
    assert y == pytest.approx([rate(BF16, v) for v in x], rel=1e-6)
    dense = ax.get_lines()[labels.index(f"dense GEMM T x {N} x {K}, fit to measured")]
    x, y = dense.get_data()
    assert y[-1] == pytest.approx(profile.matmul_tflops(round(x[-1]), N, K, "bf16").value)
