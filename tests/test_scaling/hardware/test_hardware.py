"""Hardware profiles: curve fits recover known parameters, measured profiles work end to end
from results files, published presets carry their cited figures, bad input says what to do."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.records_factory import MACHINE, gemm_record
from bench.records import write_results
from scaling.cli.main import main
from scaling.hardware import datasheets
from scaling.hardware.curves import fit_linear_power, fit_saturating
from scaling.errors import DataError, FitError, UnknownNameError
from scaling.hardware.profile import published_profile
from scaling.hardware.calibration import build_profile
from scaling.hardware.load import load_profile
from scaling.records.load import load_results

# -- curve fits --------------------------------------------------------------------------------


def synthetic(plateau_tflops, half_flops, sizes):
    """Rates of the model t = t0 + F / P: TFLOP/s = P F / (F + F_half)."""
    sizes = np.asarray(sizes, dtype=float)
    return plateau_tflops * sizes / (sizes + half_flops)


def test_fit_recovers_exact_parameters():
    sizes = np.geomspace(1e8, 1e13, 9)
    fit = fit_saturating(sizes, synthetic(700.0, 3e10, sizes))
    assert fit.plateau == pytest.approx(700.0, rel=1e-9)
    assert fit.half_size == pytest.approx(3e10, rel=1e-7)
    assert fit.ratio_lo == pytest.approx(1.0) and fit.ratio_hi == pytest.approx(1.0)
    assert fit.rate(3e10) == pytest.approx(350.0)


@settings(max_examples=60, deadline=None)
@given(plateau=st.floats(0.01, 5000), half=st.floats(1e5, 1e13), lo=st.floats(1e5, 1e9))
def test_fit_recovers_any_parameters(plateau, half, lo):
    sizes = np.geomspace(lo, lo * 1e5, 6)
    fit = fit_saturating(sizes, synthetic(plateau, half, sizes))
    assert fit.plateau == pytest.approx(plateau, rel=1e-6)
    # F_half is only determined when the sizes reach below it; then it is recovered too.
    if half > lo:
        assert fit.half_size == pytest.approx(half, rel=1e-4)
    np.testing.assert_allclose([fit.rate(s) for s in sizes], synthetic(plateau, half, sizes),
                               rtol=1e-6)


def test_fit_with_noise_stays_close_and_reports_spread():
    rng = np.random.default_rng(0)
    sizes = np.repeat(np.geomspace(1e9, 1e12, 6), 3)
    noise = rng.uniform(0.95, 1.05, sizes.size)
    rates = synthetic(400.0, 5e9, sizes) * noise
    fit = fit_saturating(sizes, rates)
    assert fit.plateau == pytest.approx(400.0, rel=0.05)
    assert fit.half_size == pytest.approx(5e9, rel=0.25)
    assert 0.93 < fit.ratio_lo < 1.0 < fit.ratio_hi < 1.07
    assert fit.points == 18 and fit.distinct_sizes == 6


def test_too_few_sizes_is_an_error_not_an_extrapolation():
    with pytest.raises(FitError, match="only 2 distinct problem size"):
        fit_saturating([1e9, 1e9, 2e9], [10.0, 11.0, 15.0], what="gemm bf16 torch fwd")
    with pytest.raises(DataError, match="positive and finite"):
        fit_saturating([1e9, 2e9, -1], [1.0, 2.0, 3.0])
    with pytest.raises(FitError, match="not growing"):
        fit_saturating([1e9, 2e9, 4e9], [1.0, 2.0, 4.0])  # the same time at every size


def test_power_line_recovered():
    u = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    fit = fit_linear_power(u, 90.0 + 560.0 * u)
    assert fit.idle_w == pytest.approx(90.0) and fit.busy_w == pytest.approx(650.0)
    assert fit.watts(0.4) == pytest.approx(314.0)
    with pytest.raises(FitError, match="2 distinct utilisation"):
        fit_linear_power([0.2, 0.2, 0.5], [100.0, 101.0, 200.0])


# -- measured profiles from results files ------------------------------------------------------

GEMM_PLATEAU, GEMM_HALF = 2.0, 4e7  # a CPU-like curve: 2 TFLOP/s, half at 4e7 FLOPs
ATTN_PLATEAU, ATTN_HALF = 1.2, 1e8


def gemm_rows(sizes=(64, 128, 256, 512, 1024), **extra):
    rows = []
    for n in sizes:
        flops = 2 * n ** 3
        time_s = flops / (synthetic(GEMM_PLATEAU, GEMM_HALF, flops) * 1e12)
        rows.append(gemm_record(n, time_s=float(time_s), **extra))
    return rows


def attention_row(seq, direction="fwd", causal=True, power=None, impl="torch",
                  plateau=ATTN_PLATEAU, **extra):
    flops = 4 * 2 * 4 * seq * seq * 64 // (2 if causal else 1)
    if direction == "bwd":
        flops = flops * 5 // 2
    time_s = float(flops / (synthetic(plateau, ATTN_HALF, flops) * 1e12))
    return gemm_record(
        64, impl, name=f"attention-{direction}-bf16-{impl}-{seq}", kernel="attention",
        direction=direction, layout="",
        shape={"batch": 2, "heads_q": 4, "heads_kv": 2, "seq": seq, "head_dim": 64,
               "causal": causal},
        flops=flops, bytes=4 * 2 * 4 * seq * 64 * 2, time_s=time_s,
        tflops=flops / time_s / 1e12, gbps=4 * 2 * 4 * seq * 64 * 2 / time_s / 1e9, **extra)


def comm_row(message_bytes, world, collective="all_reduce", plateau=40.0, half=2e6):
    busbw = plateau * message_bytes / (message_bytes + half)
    factor = 2 * (world - 1) / world
    time_s = message_bytes * factor / (busbw * 1e9)
    return gemm_record(
        64, name=f"comm-{collective}-{message_bytes}", kernel="comm", impl="gloo",
        dtype="fp32", out_dtype="fp32", variant=collective, layout="",
        shape={"message_bytes": message_bytes, "world_size": world}, flops=0,
        bytes=message_bytes, time_s=time_s, tflops=None, gbps=message_bytes / time_s / 1e9,
        busbw_gbps=busbw, algbw_gbps=message_bytes / time_s / 1e9, backend="gloo", nodes=1,
        world_size=world, message_bytes=message_bytes)


@pytest.fixture
def results_dir(tmp_path):
    rows = gemm_rows()
    rows += [attention_row(s) for s in (128, 256, 512, 1024)]
    rows += [attention_row(s, "bwd", causal=False) for s in (128, 256, 512)]
    rows += gemm_rows(sizes=(128, 256), dtype="fp32", out_dtype="fp32")  # too few sizes
    rows += [comm_row(b, 4) for b in (2 ** 12, 2 ** 16, 2 ** 20, 2 ** 24)]
    write_results(rows, MACHINE, tmp_path, source="pytest --benchmark", sweep="quick")
    return tmp_path


def test_measured_profile_end_to_end(results_dir):
    df = load_results([results_dir])
    profile = build_profile(df)
    assert profile.label == "measured" and profile.device_name == "Test CPU"
    assert any(str(results_dir) in s for s in profile.sources)
    est = profile.matmul_tflops(300, 300, 300, "bf16")
    expected = synthetic(GEMM_PLATEAU, GEMM_HALF, 2 * 300 ** 3)
    # Not capped: the measured bandwidth (the records' best bytes/s) allows more here.
    assert est.value == pytest.approx(expected, rel=1e-6)
    assert est.label == "measured" and est.lo <= est.value <= est.hi
    attn = profile.attention_tflops(2, 4, 2, 700, 64, True, "bf16", "fwd")
    assert attn.value == pytest.approx(synthetic(ATTN_PLATEAU, ATTN_HALF,
                                                 4 * 2 * 4 * 700 * 700 * 64 / 2), rel=1e-6)
    # One curve per direction holds causal and full calls alike (FLOPs already count the mask).
    bwd = profile.attention_tflops(2, 4, 2, 256, 64, True, "bf16", "bwd")
    assert bwd.value == pytest.approx(synthetic(ATTN_PLATEAU, ATTN_HALF,
                                                4 * 2 * 4 * 256 * 256 * 64 / 2 * 5 / 2))
    # The collective curve replaces the link defaults.
    bw = profile.busbw_gbps("all_reduce", 2 ** 18, 4)
    assert bw.label == "measured"
    assert bw.value == pytest.approx(40.0 * 2 ** 18 / (2 ** 18 + 2e6), rel=1e-6)
    assert profile.busbw_gbps("all_gather", 2 ** 18, 4).label == "assumed"
    # No power readings on this CPU, no datasheet: power is an error that says why.
    with pytest.raises(DataError, match="NVML library not found"):
        profile.power_w(0.5)


def test_each_sdpa_backend_is_its_own_curve_and_the_fastest_is_used(tmp_path):
    """SDPA's backends are separate baselines: each gets a curve from its own records only
    (none counted twice), and a prediction takes the fastest implementation measured."""
    seqs = (128, 256, 512, 1024)
    rows = [attention_row(s, impl="sdpa-flash", plateau=0.8, baseline=True) for s in seqs]
    rows += [attention_row(s, impl="sdpa-math", plateau=0.5, baseline=True) for s in seqs]
    rows += [attention_row(s, impl="sdpa-cudnn", plateau=1.5, baseline=True) for s in seqs[:2]]
    write_results(rows, MACHINE, tmp_path, source="pytest --benchmark", sweep="quick")
    profile = build_profile(load_results([tmp_path]))
    curves = {c.key: c for c in profile.kernel_curves}
    assert set(curves) == {"attention bf16 sdpa-flash fwd", "attention bf16 sdpa-math fwd"}
    assert all(c.source.startswith("4 records") for c in curves.values())
    assert "attention bf16 sdpa-cudnn fwd" in profile.skipped  # two sizes: no curve
    flops = 4 * 2 * 4 * 700 * 700 * 64 / 2
    best = profile.attention_tflops(2, 4, 2, 700, 64, True, "bf16", "fwd")
    assert best.value == pytest.approx(synthetic(0.8, ATTN_HALF, flops), rel=1e-6)
    assert "sdpa-flash" in best.source
    math = profile.attention_tflops(2, 4, 2, 700, 64, True, "bf16", "fwd", impl="sdpa-math")
    assert math.value == pytest.approx(synthetic(0.5, ATTN_HALF, flops), rel=1e-6)


def test_missing_dtype_and_kernel_name_what_the_profile_has(results_dir):
    profile = build_profile(load_results([results_dir]))
    with pytest.raises(DataError) as err:
        profile.matmul_tflops(256, 256, 256, "fp8")
    assert "fp8_e4m3" in str(err.value) and "gemm bf16 torch fwd" in str(err.value)
    with pytest.raises(FitError, match="only 2 distinct problem size"):
        profile.matmul_tflops(256, 256, 256, "fp32")
    assert "gemm fp32 torch fwd" in profile.skipped
    with pytest.raises(DataError, match="no datasheet peak"):
        profile.peak_tflops("bf16")


def test_power_curve_from_telemetry_fields(tmp_path):
    machine = dict(MACHINE, device="cuda", device_name="NVIDIA H100 80GB HBM3",
                   telemetry_backend="nvml")
    rows = []
    for n, util in zip((2048, 4096, 8192, 16384), (0.2, 0.4, 0.6, 0.8)):
        flops = 2 * n ** 3
        time_s = flops / (util * 989e12)
        rows.append(gemm_record(n, time_s=time_s, device="cuda", device_name=machine[
            "device_name"], avg_power_w=100.0 + 500.0 * util, telemetry_backend="nvml",
            power_missing_reason=None))
    write_results(rows, machine, tmp_path, source="pytest --benchmark", sweep="quick")
    profile = load_profile(tmp_path)
    # Recognised as an H100 SXM: datasheet figures attached, labelled published.
    assert profile.peak_tflops("bf16") == 989.0 and profile.peak("bf16").label == "published"
    assert profile.power.basis == "datasheet peak"
    watts = profile.power_w(0.5)
    assert watts.value == pytest.approx(350.0) and watts.label == "measured"
    assert profile.power_w(1.0).value == pytest.approx(600.0)


def test_save_and_load_round_trip(results_dir, tmp_path):
    profile = build_profile(load_results([results_dir]))
    path = profile.save(tmp_path / "profile.json")
    again = load_profile(path)
    assert again.to_dict() == profile.to_dict()
    assert again.matmul_tflops(512, 512, 512, "bf16") == profile.matmul_tflops(512, 512, 512,
                                                                               "bf16")
    preset = published_profile("h200")
    assert load_profile(preset.save(tmp_path / "h200.json")).to_dict() == preset.to_dict()
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(DataError, match="not a flopcast hardware profile"):
        load_profile(tmp_path / "bad.json")


def test_two_devices_must_be_told_apart(results_dir):
    df = load_results([results_dir])
    other = df.copy()
    other["device_name"] = "Other CPU"
    both = __import__("pandas").concat([df, other])
    with pytest.raises(DataError, match="2 devices"):
        build_profile(both)
    assert build_profile(both, device="other").device_name == "Other CPU"


# -- published presets -------------------------------------------------------------------------

DATASHEET = {  # DESIGN.md reference figures: BF16, FP8 dense TFLOP/s, TB/s, W
    "h100-sxm": (989, 1979, 3.35, 700), "h200": (989, 1979, 4.8, 700),
    "b200": (2250, 4500, 8.0, 1000), "mi300x": (1307, 2615, 5.3, 750)}


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_presets_carry_the_datasheet(name):
    bf16, fp8, tbps, watts = DATASHEET[name]
    p = load_profile(name)
    assert p.label == "published"
    assert (p.peak_tflops("bf16"), p.peak_tflops("fp8"), p.memory_gbps.value, p.tdp_w) == (
        bf16, fp8, tbps * 1000, watts)
    assert p.power_w(0.4).label == "assumed"


def test_h100_matmul_is_the_mamf_figure_with_a_roofline_cap():
    p = load_profile("h100-sxm")
    assert p.matmul_tflops(8192, 8192, 8192, "bf16").value == 794.5
    assert p.matmul_tflops(8192, 8192, 8192, "fp8").value == 1402.6
    # A matrix-vector product is memory-bound: 2 m k FLOPs over (m k + k + m) x 2 bytes.
    m = k = 8192
    cap = 2 * m * k / ((m * k + k + m) * 2) * 3350e9 / 1e12
    est = p.matmul_tflops(m, 1, k, "bf16")
    assert est.value == pytest.approx(cap) and "capped" in est.source


def test_attention_curve_reproduces_flashattention3_points():
    p = load_profile("h100-sxm")
    # FA3 Fig. 5, causal forward, head dim 128, seq 8k (batch 2, 16 heads): 602 TFLOP/s.
    est = p.attention_tflops(2, 16, 16, 8192, 128, True, "bf16", "fwd")
    assert est.value == pytest.approx(602, rel=0.03) and est.label == "published"
    est = p.attention_tflops(1, 16, 16, 16384, 128, False, "bf16", "bwd")
    assert est.value == pytest.approx(561, rel=0.03)
    # Other devices carry the H100 curve over, scaled, and say it is assumed.
    b200 = load_profile("b200").attention_tflops(2, 16, 16, 8192, 128, True, "bf16", "fwd")
    assert b200.label == "assumed"
    assert b200.value / load_profile("h100-sxm").attention_tflops(
        2, 16, 16, 8192, 128, True, "bf16", "fwd").value == pytest.approx(1745.0 / 794.5)


def test_published_link_defaults_and_bad_names():
    p = load_profile("h100-sxm")
    assert p.busbw_gbps("all_gather", 1e8, 8).value == 450.0
    inter = p.busbw_gbps("reduce_scatter", 1e9, 128)
    assert inter.value == 50.0 and "400 Gbps" in inter.source
    with pytest.raises(UnknownNameError, match="all_reduce"):
        p.busbw_gbps("allreduce", 1e6, 8)
    with pytest.raises(DataError, match="gemm bf16 torch fwd"):
        load_profile("mi300x").matmul_tflops(4096, 4096, 4096, "fp8")
    with pytest.raises(UnknownNameError, match="h100-sxm"):
        load_profile("h100")


def test_a100_and_h800_presets():
    # A100 SXM 80GB: BF16 312 dense, HBM2e 2,039 GB/s, 400 W, NVLink 600 GB/s bidirectional,
    # 8 x 200 Gb/s HDR per 8-GPU node (Narayanan et al. 2021, Sec. 5); no FP8 on Ampere.
    a100 = load_profile("a100-80gb")
    assert (a100.peak_tflops("bf16"), a100.memory_gbps.value, a100.tdp_w) == (312, 2039, 400)
    assert a100.link_gbps("intra_node").value == 300 and a100.link_gbps("inter_node").value == 25
    # Its GEMM rate is fitted to Megatron-LM's published layer times (the fit itself is
    # checked in tests/test_scaling/validate/test_layers.py), labelled so, MAMF's best-shape
    # figure cited beside it.
    gemm = a100.matmul_tflops(8192, 8192, 8192, "bf16")
    assert (gemm.value, gemm.label) == (201.4, "fitted")
    assert "Table 4" in gemm.source and "271.2" in gemm.source
    with pytest.raises(DataError, match="no datasheet peak for fp8"):
        a100.peak("fp8")
    # H800: H100 compute with NVLink cut to 400 GB/s bidirectional; its matmul figure is the
    # H100's, carried over and labelled assumed.
    h800, h100 = load_profile("h800"), load_profile("h100-sxm")
    assert h800.peak_tflops("bf16") == h100.peak_tflops("bf16") == 989
    assert h800.link_gbps("intra_node").value == 200
    est = h800.matmul_tflops(8192, 8192, 8192, "bf16")
    assert est.value == 794.5 and est.label == "assumed"
    assert datasheets.preset_for_device("NVIDIA A100-SXM4-80GB") == "a100-80gb"
    assert datasheets.preset_for_device("NVIDIA H800") == "h800"
    assert datasheets.preset_for_device("NVIDIA A100-PCIE-40GB") is None


@pytest.mark.parametrize("name,gib", [("h100-sxm", 80), ("h200", 141), ("b200", 180),
                                      ("mi300x", 192), ("a100-80gb", 80), ("h800", 80)])
def test_every_preset_has_its_memory_and_two_network_levels(name, gib):
    assert datasheets.hbm_gib(name)[0] == gib
    nvlink, fabric = datasheets.network_levels(name)
    p = load_profile(name)
    # The levels carry the profile's own link figures and node size, nothing new.
    assert nvlink.gbps == p.link_gbps("intra_node").value and nvlink.gpus == p.gpus_per_node
    assert fabric.gbps == p.link_gbps("inter_node").value and fabric.gpus is None
    for level in (nvlink, fabric):
        assert level.latency_us > 0 and "tuning.cc" in level.latency_source
        for fig in level.achievable.values():
            assert 0.5 < fig["fraction"] < 1.0 and fig["label"] in ("published", "assumed")
            assert fig["source"]


def test_network_fractions_are_the_published_measurements():
    nvlink, fabric = datasheets.network_levels("a100-80gb")
    # ml-engineering: 8x A100 nccl-tests all-reduce 234.89 GB/s against 300 GB/s per direction.
    assert nvlink.achievable_gbps("all_reduce") == (pytest.approx(234.89), "published",
                                                    nvlink.achievable["all_reduce"]["source"])
    # DeepSeek-V3: "NVLink offers a bandwidth of 160 GB/s" on H800.
    assert datasheets.network_levels("h800")[0].achievable_gbps("all_to_all")[0] == 160
    # B200 over EFA: 36.52 GB/s per GPU of 50; carried to the other presets as assumed.
    assert datasheets.network_levels("b200")[1].achievable_gbps("all_reduce")[:2] == (
        pytest.approx(36.52), "published")
    bw, label, source = datasheets.network_levels("h100-sxm")[1].achievable_gbps("all_to_all")
    assert label == "assumed" and "no all_to_all figure" in source
    with pytest.raises(UnknownNameError, match="a100-80gb"):
        datasheets.network_levels("a100")


# -- the command and the no-torch rule -----------------------------------------------------------


def test_profile_command(results_dir, tmp_path, capsys):
    saved = tmp_path / "p.json"
    assert main(["profile", str(results_dir), "--json", "--save", str(saved)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {c["key"] for c in out["curves"]} >= {"gemm bf16 torch fwd",
                                                 "attention bf16 torch bwd"}
    assert out["comm"][0]["collective"] == "all_reduce" and saved.exists()
    assert main(["profile", "--hardware", "h100-sxm"]) == 0
    text = capsys.readouterr().out
    assert "794" in text and "flash-attn-3" in text
    assert main(["profile", "--hardware", "tpu-v5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "h100-sxm" in err


def test_scaling_half_never_imports_torch():
    code = ("import sys; import scaling.hardware.load, scaling.model.step, scaling.model.config, "
            "scaling.cli.profile, scaling.cli.step, scaling.cli.model; "
            "scaling.hardware.load.load_profile('h100-sxm'); "
            "assert 'torch' not in sys.modules and 'triton' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
