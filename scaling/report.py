"""The report: one self-contained HTML file with the measurements, the fits and the plan.

Plots are drawn with matplotlib's object API (no pyplot, no display) into PNG bytes and
embedded as base64 ``data:`` images, and the style sheet is inline, so the file opens offline
and can be mailed as it is. Sections, each with a fixed ``id``:

* ``throughput``: achieved TFLOP/s against FLOPs per call, per kernel and dtype: the measured
  points, the fitted curves of the measured profile and of the published preset, the
  datasheet peaks;
* ``power``: board watts against achieved TFLOP/s, measured points and each profile's curve;
* ``law``: the loss law's compute-optimal frontier (N_opt, D_opt and loss against compute),
  with the chosen budget and Llama 3 405B marked;
* ``plan``: the plan for each hardware profile and cluster size;
* ``claims``: the plan against the published figures (DESIGN.md, "Reference figures");
* ``inputs``: every input with its value, unit, label and source.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scaling import reliability
from scaling.budget import BUDGETS
from scaling.errors import DataError, FlopcastError
from scaling.output import fmt_num

SECTIONS = ("throughput", "power", "law", "plan", "claims", "inputs")
REPORT_NAME = "report.html"

# Published reference figures the claims table compares with (DESIGN.md, "Reference figures").
LLAMA3_COMPUTE_FLOPS = BUDGETS["llama3"].compute_flops  # Llama 3 paper (scaling.budget)
LLAMA3_PARAMS = 405e9                  # Llama 3 paper
LLAMA3_TOKENS = 15.6e12                # Llama 3 paper
LLAMA3_GPU_HOURS = 30.84e6             # Llama 3.1 model card, 405B
LLAMA3_GPUS = reliability.LLAMA3_GPUS  # Llama 3 paper (scaling.reliability)
LLAMA3_TFLOPS_PER_GPU = 400.0          # Llama 3 paper, Table 4 (16,384 GPUs, 41% MFU)
LLAMA3_EFFECTIVE_TIME = 0.90           # Llama 3 paper: ">90% effective training time"
LLAMA4_GPUS = 100_000                  # Meta earnings calls: a cluster of >100,000 H100
CLUSTER_100K_MW = 150.0                # SemiAnalysis 2024 press estimate
EL_CAPITAN_MW = 30.0                   # SemiAnalysis 2024, for comparison


# -- drawing -----------------------------------------------------------------------------------

def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)  # fixed margins: layout engines cost seconds
    return buf.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _message_figure(text: str) -> Figure:
    fig = Figure(figsize=(6, 1.2))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


def _peak(profile, dtype: str) -> float | None:
    try:
        return profile.peak_tflops(dtype)
    except FlopcastError:  # no datasheet peak for this dtype or device
        return None


def _curve_range(curve, lo: float, hi: float) -> np.ndarray:
    """FLOPs per call to draw a fitted curve over: ``lo..hi`` (the data shown, else
    1e8..1e15), widened to the curve's measured range where it has points."""
    if curve.points:
        lo, hi = min(lo, curve.size_min), max(hi, curve.size_max)
    return np.geomspace(lo, hi, 60)


def throughput_figure(records: pd.DataFrame | None, profiles: Sequence = ()) -> Figure:
    """Achieved TFLOP/s against FLOPs per call, one panel per kernel and dtype: measured
    points, each profile's fitted curves and its datasheet peak (log-log, so a CPU and an
    H100 fit on one plot)."""
    df = None
    if records is not None and not records.empty and "tflops" in records:
        df = records[records["tflops"].notna() & (records["flops"] > 0)
                     & records["kernel"].isin(["gemm", "attention"])]
    groups = set() if df is None else set(df.groupby(["kernel", "dtype"]).groups)
    for prof in profiles:
        groups |= {(c.kernel, c.dtype) for c in prof.kernel_curves}
    groups = sorted(groups)
    if not groups:
        return _message_figure("no measured records and no profile curves: run "
                               "`python -m pytest --benchmark --sweep quick`")
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows))
    inches = 3.6 * rows
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.5 / inches, top=1 - 0.3 / inches,
                        wspace=0.3, hspace=0.75 / 3.6)
    for i, (kernel, dtype) in enumerate(groups):
        ax = fig.add_subplot(rows, cols, i + 1)
        lo, hi = 1e8, 1e15
        if df is not None:
            part = df[(df["kernel"] == kernel) & (df["dtype"] == dtype)]
            if not part.empty:
                lo, hi = float(part["flops"].min()) / 2, float(part["flops"].max()) * 2
            for (impl, direction, dev), g in part.groupby(["impl", "direction", "device_name"],
                                                          dropna=False):
                ax.plot(g["flops"], g["tflops"], "o", ms=4,
                        label=f"{impl} {direction} on {dev} (measured)")
        for prof in profiles:
            style = "-" if prof.label == "measured" else "--"
            for c in prof.kernel_curves:
                if (c.kernel, c.dtype) != (kernel, dtype):
                    continue
                xs = _curve_range(c.curve, lo, hi)
                ax.plot(xs, [c.curve.rate(x) for x in xs], style, lw=1,
                        label=f"{prof.name}: {c.impl} {c.direction} {c.mask} ({c.label})")
            peak = _peak(prof, dtype)
            if peak:
                ax.axhline(peak, ls=":", color="k", lw=1,
                           label=f"{prof.name} datasheet peak {peak:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{kernel} {dtype}")
        ax.set_xlabel("FLOPs per call")
        ax.set_ylabel("TFLOP/s")
        ax.legend(fontsize=5.5)
    return fig


def power_figure(records: pd.DataFrame | None, profiles: Sequence = ()) -> Figure:
    """Board watts against achieved TFLOP/s: measured points, each profile's power curve
    (labelled with where it comes from) and its TDP."""
    fig = Figure(figsize=(6.5, 4.2))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.95)
    ax = fig.add_subplot()
    drawn = False
    if records is not None and not records.empty and "avg_power_w" in records:
        watts = pd.to_numeric(records["avg_power_w"], errors="coerce")
        df = records.assign(_w=watts)
        df = df[df["_w"].notna() & df["tflops"].notna()]
        for (kernel, dtype), g in df.groupby(["kernel", "dtype"]):
            ax.plot(g["tflops"], g["_w"], "o", ms=4, label=f"{kernel} {dtype} (measured)")
            drawn = True
    for prof in profiles:
        peak = _peak(prof, "bf16")
        if peak:
            util = np.linspace(0.0, 1.0, 41)
            try:
                est = [prof.power_w(float(u)) for u in util]
            except FlopcastError:
                est = []
            if est:
                ax.plot(util * peak, [e.value for e in est], "-" if prof.label == "measured"
                        else "--", label=f"{prof.name} power curve, bf16 ({est[0].label})")
                drawn = True
        if prof.tdp_w:
            ax.axhline(prof.tdp_w, ls=":", color="k", lw=1,
                       label=f"{prof.name} TDP {prof.tdp_w:g} W")
            drawn = True
    if not drawn:
        return _message_figure("no power measurements and no power curve")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("TFLOP/s")
    ax.set_ylabel("board power (W)")
    ax.legend(fontsize=7)
    return fig


def law_figure(law, compute_flops: float, points: int = 41) -> Figure:
    """The compute-optimal frontier of a law from 1e20 to 1e28 FLOPs (with its bootstrap band
    when it has one), the chosen budget, and Llama 3 405B's published N and D."""
    cs = np.geomspace(1e20, 1e28, points)
    allocs = [law.allocate(c) for c in cs]
    parametric = law.form == "parametric"
    fig = Figure(figsize=(10.5 if parametric else 6, 4.2))
    fig.subplots_adjust(left=0.08 if parametric else 0.13, right=0.98, bottom=0.13, top=0.92,
                        wspace=0.25)
    ax = fig.add_subplot(1, 2 if parametric else 1, 1)
    for key, colour, name in (("params", "C0", "params (N_opt)"),
                              ("tokens", "C1", "tokens (D_opt)")):
        ys = [getattr(a, key) for a in allocs]
        ax.plot(cs, ys, color=colour, label=name)
        band = [a.intervals.get(key) for a in allocs]
        if all(b is not None for b in band):
            ax.fill_between(cs, [b[0] for b in band], [b[1] for b in band], color=colour, alpha=0.2)
    ax.plot([LLAMA3_COMPUTE_FLOPS] * 2, [LLAMA3_PARAMS, LLAMA3_TOKENS], "k^",
            label="Llama 3 405B (published)")
    ax.axvline(compute_flops, ls="--", color="r", lw=1, label=f"budget {compute_flops:.2g} FLOPs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("parameters / tokens")
    ax.set_title(f"{law.name}: compute-optimal frontier")
    ax.legend(fontsize=7)
    if parametric:
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.plot(cs, [a.loss for a in allocs], color="C2", label="loss at the optimum")
        band = [a.intervals.get("loss") for a in allocs]
        if all(b is not None for b in band):
            ax2.fill_between(cs, [b[0] for b in band], [b[1] for b in band], color="C2", alpha=0.2)
        ax2.axvline(compute_flops, ls="--", color="r", lw=1)
        ax2.set_xscale("log")
        ax2.set_xlabel("training compute (FLOPs)")
        ax2.set_ylabel("predicted loss")
        ax2.legend(fontsize=7)
    return fig


# -- tables ------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if isinstance(value, str):
        return html.escape(value)
    return html.escape(fmt_num(value))


def html_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(k))}</td>" for k, _ in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _with_interval(value, interval) -> str:
    if value is None:
        return "-"
    if not interval:
        return fmt_num(value)
    return f"{fmt_num(value)} [{fmt_num(interval[0])}, {fmt_num(interval[1])}]"


PLAN_COLUMNS = (
    ("hardware", "hardware"), ("gpus", "GPUs"), ("tflops_per_gpu", "TFLOP/s per GPU"),
    ("mfu", "MFU"), ("goodput", "goodput"), ("days", "days"), ("gpu_hours", "GPU-hours"),
    ("energy_mwh", "energy (MWh)"), ("facility_mw", "capacity (MW)"),
    ("avg_power_mw", "avg draw (MW)"), ("cost_usd", "cost (USD)"),
    ("interruptions", "interruptions"), ("checkpoint_interval_min", "ckpt every (min)"),
    ("labels", "throughput / power / days from"),
)


def plan_rows(titled_plans: Iterable[tuple[str, Any]]) -> list[dict]:
    """One row per (hardware, cluster size), each number with its interval as text."""
    rows = []
    for title, plan in titled_plans:
        for p in plan.plans:
            row = {"hardware": title}
            for key, _ in PLAN_COLUMNS[1:-1]:
                row[key] = _with_interval(getattr(p, key), p.intervals.get(key))
            row["labels"] = " / ".join(p.labels.get(k, "-") for k in
                                       ("tflops_per_gpu", "gpu_power_w", "days"))
            rows.append(row)
    return rows


# -- the page ----------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } .note { color: #555; font-size: .9em; }
.label-measured { color: #06623b; } .label-published { color: #1f4e9c; }
.label-fitted { color: #7a3ea0; } .label-assumed { color: #a05a00; }
"""


def render_html(*, title: str, summary: str, throughput_png: bytes, power_png: bytes,
                law_png: bytes, plan_table: str, claims_table: str, inputs_table: str,
                law_text: str = "", notes: Sequence[str] = ()) -> str:
    """The report page from its parts; every section has the id in `SECTIONS`."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary)}</p>
<p class="note">Generated by flopcast on {when}. Labels:
<span class="label-measured">measured</span>,
<span class="label-published">published</span>, <span class="label-fitted">fitted</span>,
<span class="label-assumed">assumed</span>. Intervals in brackets.</p>
{notes_html}
<section id="throughput"><h2>Throughput against problem size</h2>
<p>Achieved TFLOP/s per kernel and dtype: measured points, the fitted curves of the measured
profile (solid) and of the published preset (dashed), and the datasheet dense peaks.</p>
{_img(throughput_png, "throughput against FLOPs per call")}</section>
<section id="power"><h2>Power against throughput</h2>
<p>Board power (NVML) against achieved TFLOP/s, with each profile's power curve and TDP.</p>
{_img(power_png, "power against throughput")}</section>
<section id="law"><h2>Loss law and the compute-optimal frontier</h2>
<p>{html.escape(law_text)}</p>
{_img(law_png, "compute-optimal frontier")}</section>
<section id="plan"><h2>The plan</h2>
<p>Per cluster size, with intervals from the law's bootstrap and the measured spread. A derived
figure carries the label of its least certain input (measured, published, fitted, assumed).</p>
{plan_table}</section>
<section id="claims"><h2>Claims: the plan against published figures</h2>{claims_table}</section>
<section id="inputs"><h2>Inputs and their sources</h2>{inputs_table}</section>
</body></html>
"""


def write_report(out_dir, page: str) -> Path:
    """Write the page as ``out_dir/report.html`` and return its path."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / REPORT_NAME
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{out}: cannot write the report: {exc.strerror}") from None
    return path


# -- claims ------------------------------------------------------------------------------------

def _ratio(plan_value: float, published: float) -> str:
    return f"{plan_value / published:.2f}x"


def _claim(claim: str, published: str, compare) -> dict:
    """One row of the claims table; ``compare()`` gives (plan text, ratio text)."""
    try:
        plan, ratio = compare()
    except FlopcastError as exc:
        plan, ratio = f"not planned: {exc}", "-"
    return {"claim": claim, "published": published, "plan": plan, "ratio": ratio}


def claims_rows(*, default_plan, hardware="h100-sxm") -> list[dict]:
    """The plan against the published reference figures (DESIGN.md).

    The Llama 3 rows re-plan Llama 3 405B itself (3.8e25 FLOPs, 405B parameters, 16,384
    GPUs) on ``hardware`` with the default reliability, power and price settings, so they
    check flopcast's defaults against what was published. The other rows read
    ``default_plan``, the plan of the budget on the H100 profile (its largest cluster, or
    100,000 GPUs where it has that size).
    """
    from scaling.plan import make_plan

    def llama(**kw):
        return make_plan(compute="llama3", params=LLAMA3_PARAMS, gpus=[LLAMA3_GPUS],
                         hardware=hardware, **kw).plans[0]

    def published_rate():
        p = llama(tflops_per_gpu=LLAMA3_TFLOPS_PER_GPU)
        return (f"{p.gpu_hours / 1e6:.2f}M GPU-hours, {p.days:.0f} days",
                _ratio(p.gpu_hours, LLAMA3_GPU_HOURS))

    def effective_time():
        p = llama(tflops_per_gpu=LLAMA3_TFLOPS_PER_GPU)
        return (f"goodput {p.goodput:.1%}, {p.interruptions:.0f} interruptions",
                _ratio(p.goodput, LLAMA3_EFFECTIVE_TIME))

    def step_model():
        p = llama()
        return (f"{p.tflops_per_gpu:.0f} TFLOP/s, MFU {p.mfu:.0%}",
                _ratio(p.tflops_per_gpu, LLAMA3_TFLOPS_PER_GPU))

    sizes = {p.gpus: p for p in default_plan.plans}
    big = sizes.get(LLAMA4_GPUS) or max(default_plan.plans, key=lambda p: p.gpus)
    mw_100k = big.facility_mw * LLAMA4_GPUS / big.gpus  # capacity scales with the GPU count
    return [
        _claim("Llama 3 405B: 3.8e25 FLOPs on 16,384 H100 at the published 400 TFLOP/s per "
               "GPU, with the Llama 3 failure rate",
               f"{LLAMA3_GPU_HOURS / 1e6:.2f}M GPU-hours (Llama 3.1 model card)",
               published_rate),
        _claim("Llama 3 405B: share of time training on 16,384 GPUs",
               ">90% effective training time (Llama 3 paper)", effective_time),
        _claim("Llama 3 405B: per-GPU throughput on 16,384 H100 (step model)",
               "400 TFLOP/s, 41% MFU (Llama 3 paper, Table 4)", step_model),
        _claim(f"Llama 4 class: {default_plan.compute_flops:.2g} FLOPs (~10x Llama 3) on "
               f"{big.gpus:,} H100",
               "~10x Llama 3 compute on a cluster of >100,000 H100 (Meta earnings calls)",
               lambda: (f"{big.days:.0f} days, {big.gpu_hours / 1e6:.0f}M GPU-hours, "
                        f"goodput {big.goodput:.0%}",
                        _ratio(default_plan.compute_flops, LLAMA3_COMPUTE_FLOPS))),
        _claim(f"Facility capacity of {big.gpus:,} H100", "~150 MW (SemiAnalysis 2024)",
               lambda: (f"{big.facility_mw:.0f} MW capacity, {big.avg_power_mw:.0f} MW "
                        "average draw", _ratio(mw_100k, CLUSTER_100K_MW))),
        _claim("A 100,000-H100 cluster against El Capitan",
               "~30 MW for El Capitan, ~5x less than 150 MW (SemiAnalysis 2024)",
               lambda: (f"{mw_100k / EL_CAPITAN_MW:.1f}x El Capitan's power",
                        _ratio(mw_100k / EL_CAPITAN_MW, CLUSTER_100K_MW / EL_CAPITAN_MW))),
    ]


CLAIM_COLUMNS = (("claim", "claim"), ("published", "published"), ("plan", "flopcast plan"),
                 ("ratio", "plan / published"))


# -- the whole report --------------------------------------------------------------------------

def build_report(out_dir, *, titled_plans: Sequence[tuple[str, Any]], law, claims: list[dict],
                 records: pd.DataFrame | None = None, profiles: Sequence = (),
                 notes: Sequence[str] = ()) -> Path:
    """Draw the plots, lay out the tables and write ``out_dir/report.html``.

    ``titled_plans`` are (hardware title, `Plan`) pairs for the same budget; ``profiles`` are
    the hardware profiles whose curves the throughput and power plots show.
    """
    first = titled_plans[0][1]
    inputs = []
    for title, plan in titled_plans:
        for item in plan.inputs:
            value = item.value if isinstance(item.value, str) else fmt_num(item.value)
            inputs.append({"plan": title, "name": item.name, "value": value, "unit": item.unit,
                           "label": item.label, "source": item.source})
    summary = (f"Budget {first.compute_flops:.3g} FLOPs, split by the {first.law['name']} law "
               f"({first.law['label']}) into {fmt_num(first.params)} parameters and "
               f"{fmt_num(first.tokens)} tokens"
               + (f", predicted loss {first.loss:.3f}." if first.loss is not None else "."))
    page = render_html(
        title="flopcast: what this training run costs", summary=summary,
        throughput_png=png_bytes(throughput_figure(records, profiles)),
        power_png=png_bytes(power_figure(records, profiles)),
        law_png=png_bytes(law_figure(law, first.compute_flops)),
        law_text=f"{law.name} ({law.label}, {law.form}): {law.source}",
        plan_table=html_table(plan_rows(titled_plans), PLAN_COLUMNS),
        claims_table=html_table(claims, CLAIM_COLUMNS),
        inputs_table=html_table(inputs, [("plan", "plan"), ("name", "input"),
                                         ("value", "value"), ("unit", "unit"),
                                         ("label", "label"), ("source", "source")]),
        notes=notes)
    return write_report(out_dir, page)
