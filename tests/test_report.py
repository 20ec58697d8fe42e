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
from scaling import cli
from scaling.laws import load_law
from scaling.report import SECTIONS, law_figure, png_bytes

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
        assert figure in sections["plan"]
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
    png = png_bytes(law_figure(load_law("llama3-2024"), 3.8e26))
    width, height = _png_size(png)
    assert width > 300 and height > 200


def test_report_bad_input_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["report", str(tmp_path), "--out", str(tmp_path / "o"), "--pue", "0.5"])
    _, err = capsys.readouterr()
    assert code != 0 and "PUE must be at least 1" in err


def test_claims_match_the_published_figures():
    from scaling.plan import make_plan
    from scaling.report import claims_rows

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
