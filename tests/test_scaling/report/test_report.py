"""The HTML report: renders from results files, every section present, real PNG plots."""

import base64
import io
import json
import re
import struct

import pytest
from matplotlib import image as mpimg

from bench.records import write_results
from kernels import flops as kflops
from scaling.cli import main as cli
from scaling.report import figures
from scaling.laws.forms import load_law
from scaling.report.page import SECTIONS
from tests.support.chromium import CHROMIUM, look, screenshot

H100 = "NVIDIA H100 80GB HBM3"


def _record(kernel, dtype, direction, shape, flops, bytes_, plateau, half, device_name,
            power=True):
    """One record whose throughput follows a saturating curve, with NVML-like power."""
    tflops = plateau * flops / (flops + half)
    time_s = flops / (tflops * 1e12)
    rec = {"name": f"{kernel}-{dtype}-{direction}-{flops}", "test": None, "kernel": kernel,
           "impl": "torch", "dtype": dtype, "out_dtype": dtype, "direction": direction,
           "variant": "", "layout": "rr" if kernel == "gemm" else "", "shape": shape,
           "flops": flops, "bytes": bytes_, "device": "cuda" if power else "cpu",
           "device_name": device_name, "time_s": time_s, "rounds": 5, "iterations": 1,
           "tflops": tflops, "gbps": bytes_ / time_s / 1e9,
           "avg_power_w": None, "power_missing_reason": "none backend"}
    if power:
        rec.update(avg_power_w=120 + 520 * tflops / 989, energy_j=None,
                   power_missing_reason=None, telemetry_backend="nvml")
    return rec


def _records(device_name=H100, power=True, scale=1.0):
    recs = []
    for s in (1024, 2048, 4096, 8192):
        recs.append(_record("gemm", "bf16", "fwd", {"m": s, "n": s, "k": s},
                            kflops.gemm_flops(s, s, s), 6 * s * s, 760 * scale, 4e10,
                            device_name, power))
        for impl, variant, plateau in (("torch", "tensorwise", 1300), ("torch", "rowwise", 1100),
                                       ("triton", "tensorwise", 1250)):
            rec = _record("gemm", "fp8_e4m3", "fwd", {"m": s, "n": s, "k": s},
                          kflops.gemm_flops(s, s, s), 4 * s * s, plateau * scale, 6e10,
                          device_name, power)
            recs.append(dict(rec, impl=impl, variant=variant, layout="rc",
                             out_dtype="bf16", name=f"{rec['name']}-{impl}-{variant}"))
    for seq in (1024, 2048, 4096, 8192):
        shape = {"batch": 16384 // seq, "heads_q": 16, "heads_kv": 16, "seq": seq,
                 "head_dim": 128, "causal": True}
        args = (shape["batch"], 16, seq, seq, 128, True)
        recs.append(_record("attention", "bf16", "fwd", shape, kflops.attention_fwd_flops(*args),
                            4 * 16384 * 16 * 128 * 2, 600 * scale, 3e10, device_name, power))
        recs.append(_record("attention", "bf16", "bwd", shape, kflops.attention_bwd_flops(*args),
                            8 * 16384 * 16 * 128 * 2, 520 * scale, 6e10, device_name, power))
    return recs


def _write(tmp_path, recs, device_name):
    machine = {"hostname": "node1", "device": "cuda", "device_name": device_name,
               "device_count": 1, "gpus": [], "telemetry_backend": "nvml",
               "telemetry_reason": None}
    return write_results(recs, machine, tmp_path / "results", source="pytest --benchmark",
                         sweep="quick")


def _report(capsys, *argv):
    code = cli.main(["report", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def _sections(html_text):
    found = {}
    for sid in SECTIONS:
        m = re.search(rf'<section id="{sid}">(.*?)</section>', html_text, re.S)
        assert m, f"section {sid} missing"
        found[sid] = m.group(1)
    return found


def _check_images(section_html):
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', section_html)
    assert images
    for data in images:
        png = base64.b64decode(data)
        width, height = _png_size(png)
        assert width > 200 and height > 100 and len(png) > 5000
        pixels = mpimg.imread(io.BytesIO(png), format="png")
        assert pixels.std() > 0.01  # something is drawn, not a blank canvas


def test_report_with_measured_gpu_results(tmp_path, capsys):
    _write(tmp_path, _records(), H100)
    out = _report(capsys, "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"))
    path = tmp_path / "out" / "report.html"
    assert out["report"] == str(path) and path.is_file()
    titles = [p["title"] for p in out["plans"]]
    assert any("(measured)" in t for t in titles) and any("(published)" in t for t in titles)
    measured = out["plans"][0]
    assert measured["plans"][0]["labels"]["tflops_per_gpu"] == "modelled"
    assert "measured GEMM and attention curves" in measured["plans"][0]["sources"]["tflops_per_gpu"]
    assert measured["compute_flops"] == 3.8e26
    text = path.read_text()
    sections = _sections(text)
    for sid in ("throughput", "power", "law"):
        _check_images(sections[sid])
    for figure in ("16,384", "100,000", "(measured)", "(published)"):
        assert figure in re.sub(r"<[^>]+>", "", sections["plan"])
    for published in ("30.84M GPU-hours", "~150 MW", "~30 MW", ">100,000 H100"):
        assert published.replace(">", "&gt;") in sections["claims"]
    assert "failures_per_gpu_hour" in sections["inputs"]
    # opens offline: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<script" not in text and "<link" not in text


def test_report_without_results_still_renders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = _report(capsys, str(tmp_path / "empty"), "--out", str(tmp_path / "out"),
                  "--gpus", "16384")
    assert any("No results" in n for n in out["notes"])
    assert len(out["plans"]) == 1
    sections = _sections((tmp_path / "out" / "report.html").read_text())
    _check_images(sections["law"])
    _check_images(sections["throughput"])  # the published profile's curves


def test_cpu_results_explain_why_there_is_no_measured_plan(tmp_path, capsys):
    _write(tmp_path, _records("Intel Xeon Platinum", power=False, scale=0.002),
           "Intel Xeon Platinum")
    out = _report(capsys, str(tmp_path / "results"), "--out", str(tmp_path / "out"),
                  "--gpus", "16384")
    assert len(out["plans"]) == 1 and "(published)" in out["plans"][0]["title"]
    assert any("measured profile" in n for n in out["notes"])
    _check_images(_sections((tmp_path / "out" / "report.html").read_text())["throughput"])


def test_law_figure_for_a_law_without_a_loss():
    pic = figures.drawn(figures.law_figure, load_law("llama3-2024"), 3.8e26)
    width, height = _png_size(pic.png)
    assert width > 300 and height > 200


def test_report_bad_input_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["report", str(tmp_path), "--out", str(tmp_path / "o"), "--pue", "0.5"])
    _, err = capsys.readouterr()
    assert code != 0 and "PUE must be at least 1" in err


def test_claims_match_the_published_figures():
    from scaling.plan.planner import make_plan
    from scaling.report.page import claims_rows

    rows = claims_rows(default_plan=make_plan(gpus=[16384, 100_000]))
    ratios = [float(r["ratio"].rstrip("x")) for r in rows]
    assert len(rows) == 6 and all("not planned" not in r["plan"] for r in rows)
    gpu_hours, effective, throughput, llama4, capacity, el_capitan = ratios
    assert 0.9 < gpu_hours < 1.1        # Llama 3 405B: 30.84M GPU-hours
    assert effective > 1.0              # > 90% effective training time
    assert 0.85 < throughput < 1.15     # 400 TFLOP/s per GPU at 16,384 GPUs
    assert llama4 == 10.0               # the default budget is 10x Llama 3
    assert 0.8 < capacity < 1.2         # ~150 MW for 100,000 H100
    assert 0.8 < el_capitan < 1.2       # ~5x El Capitan


# -- what a reader sees ------------------------------------------------------------------------

def _panel(panels, title):
    (fig,) = [f for t, _, f in panels if t == title]
    return fig


def _lines(fig):
    return {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}


def test_one_colour_per_implementation_and_fp8_scalings_drawn_apart(tmp_path):
    from scaling.hardware.load import load_profile
    from scaling.records.load import load_results

    _write(tmp_path, _records(), H100)
    records = load_results([tmp_path / "results"])
    measured = load_profile(None, results=records)
    with figures.style():
        panels = figures.throughput_panels(records, [measured, load_profile("h100-sxm")])
    lines = _lines(_panel(panels, "GEMM, fp8_e4m3"))
    row = lines["torch, row-wise scales, measured"]
    tensor = lines["torch, tensor-wise scales, measured"]
    assert row.get_marker() != tensor.get_marker()  # two series, not one
    assert {"torch, row-wise scales, fit to measured",
            "torch, tensor-wise scales, fit to measured"} <= set(lines)
    # the points and the fitted curve of an implementation share its colour; others differ
    assert row.get_color() == lines["torch, row-wise scales, fit to measured"].get_color() \
        == lines["torch, H100 (published)"].get_color()
    assert lines["triton, tensor-wise scales, measured"].get_color() != row.get_color()
    assert _lines(_panel(panels, "GEMM, bf16"))["torch, measured"].get_color() == row.get_color()


def test_legends_sit_outside_the_data_and_fonts_are_legible(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from scaling.hardware.load import load_profile
    from scaling.records.load import load_results

    _write(tmp_path, _records(), H100)
    records = load_results([tmp_path / "results"])
    profiles = [load_profile(None, results=records), load_profile("h100-sxm")]
    with figures.style():
        drawn = [f for _, _, f in figures.throughput_panels(records, profiles)]
        drawn += [figures.power_figure(records, profiles),
                  figures.law_figure(load_law("epoch-2024"), 3.8e26),
                  figures.step_figure([("a", {"gemm_s": 3.0, "pipeline_bubble_s": 1.0})])]
        pictures = [figures.picture(f) for f in drawn]
    for fig, pic in zip(drawn, pictures):
        FigureCanvasAgg(fig).draw()
        for ax in fig.axes:
            legend = ax.get_legend()
            assert legend is not None
            assert not legend.get_window_extent().overlaps(ax.get_window_extent())
        # shown at 100 CSS px per inch: F points in the figure are 1.04 F on the page
        assert pic.min_font_pt * figures.PAGE_PX_PER_INCH / 72 * 0.75 >= figures.MIN_FONT_PT


def test_answer_first_steps_in_words_and_a_sentence_for_missing_power(tmp_path, capsys):
    _write(tmp_path, _records("Intel Xeon Platinum", power=False, scale=0.002),
           "Intel Xeon Platinum")
    _report(capsys, str(tmp_path / "results"), "--out", str(tmp_path / "out"))
    text = (tmp_path / "out" / "report.html").read_text()
    assert text.index("<section") == text.index('<section id="answer">')  # the first one
    sections = _sections(text)
    assert "854 days, 336M GPU-hours, 23 MW, $709M on 16,384 H100" in sections["answer"]
    assert "No board power was measured" in sections["power"] and "<img" not in sections["power"]
    assert "pipeline bubble" in sections["step"]
    assert "tensor-parallel communication" in sections["step"]
    assert not any(term in text for term in ("pipeline_bubble_s", "tp_comm_s", "gemm_s"))
    assert "e+" not in sections["plan"]
    assert "336M" in sections["plan"] and "$709M" in sections["plan"]


def test_the_llama3_law_warns_in_the_report(tmp_path, capsys):
    code = cli.main(["report", str(tmp_path), "--out", str(tmp_path / "o"), "--law",
                     "llama3-2024", "--gpus", "16384"])
    _, err = capsys.readouterr()
    assert code == 0 and "warning" in err and "16.55T" in err
    answer = _sections((tmp_path / "o" / "report.html").read_text())["answer"]
    assert "Warning" in answer and "10.5T tokens" in answer and "16.55T" in answer


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH or at /usr/bin/chromium "
                                             "(CI installs it): the rendered report is not checked")
def test_the_report_as_a_browser_shows_it(tmp_path, capsys):
    _write(tmp_path, _records(), H100)
    _report(capsys, "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"))
    page = tmp_path / "out" / "report.html"
    seen = look(page, tmp_path)
    assert seen["errors"] == [] and seen["console"] == []
    assert list(seen["sections"]) == list(SECTIONS)  # the answer first
    assert "854 days, 336M GPU-hours, 23 MW, $709M on 16,384 H100" in seen["sections"]["answer"]
    assert "(measured)" in seen["sections"]["answer"]
    assert "pipeline bubble" in seen["sections"]["step"]
    assert seen["scroll_width"] <= seen["window_width"]  # nothing runs off the page
    assert len(seen["images"]) >= 6
    for im in seen["images"]:
        assert im["complete"] and im["natural_width"] > 0, im["alt"]
        scale = im["client_width"] / im["width_attr"]
        shown_pt = im["min_font_pt"] * im["px_per_inch"] / 72 * 0.75 * scale
        assert shown_pt >= figures.MIN_FONT_PT, (im["alt"], shown_pt)
    png = screenshot(page, tmp_path / "report.png", tmp_path)
    pixels = mpimg.imread(png)
    assert pixels.shape[1] == 1280 and pixels.std() > 0.05
