"""The report: one self-contained HTML page with the answer, the measurements, the fits and
the plan, laid out as a paper lays out its figures.

The page opens offline and can be mailed as it is: the style sheet is inline and the figures
(`scaling.report.figures`) are embedded as base64 PNG, each shown at 100 CSS pixels per inch so its
fonts read at the size they were drawn. Sections, each with a fixed ``id``:

* ``answer``: the plan in one sentence per cluster size (`scaling.plan.text`), the budget,
  and any warning about the inputs (a loss law whose coefficients miss its paper);
* ``throughput``: achieved TFLOP/s against FLOPs per call, one panel per kernel, dtype and
  direction: the measured points, the fitted curves of the measured profile and of the
  published preset, the datasheet peaks;
* ``power``: board watts against achieved TFLOP/s, or a sentence saying why no power was
  measured;
* ``law``: the loss law's compute-optimal frontier, with the budget and Llama 3 405B marked;
* ``step``: where a training step's time goes, per plan and cluster size, in words;
* ``plan``: the plan for each hardware profile and cluster size;
* ``claims``: the plan against the published figures (DESIGN.md, "Reference figures");
* ``inputs``: every input with its value, unit, label and source.
"""

from __future__ import annotations

import base64
import html
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from scaling import references
from scaling.report import figures
from scaling.errors import DataError, FlopcastError
from scaling.labels import LABELS
from scaling.plan.text import TABLE, headlines, input_text, layout_text, summary, table_rows
from scaling.model.step import TERM_NAMES
from scaling.units import format_flops, format_seconds

SECTIONS = ("answer", "throughput", "power", "law", "step", "plan", "claims", "inputs")
REPORT_NAME = "report.html"

# Published reference figures the claims table compares with (DESIGN.md, "Reference figures").
# Published reference figures the claims table compares with, with their sources, from
# `scaling.references` (DESIGN.md, "Reference figures").
LLAMA3_COMPUTE_FLOPS = references.LLAMA3_COMPUTE_FLOPS.value
LLAMA3_PARAMS = references.LLAMA3_PARAMS.value
LLAMA3_TOKENS = references.LLAMA3_TOKENS.value
LLAMA3_GPU_HOURS = references.LLAMA3_GPU_HOURS.value
LLAMA3_GPUS = int(references.LLAMA3_GPUS.value)
LLAMA3_TFLOPS_PER_GPU = references.LLAMA3_TFLOPS_PER_GPU.value
LLAMA3_EFFECTIVE_TIME = references.LLAMA3_EFFECTIVE_TIME.value
LLAMA4_GPUS = int(references.LLAMA4_GPUS.value)
CLUSTER_100K_MW = references.CLUSTER_100K_MW.value
EL_CAPITAN_MW = references.EL_CAPITAN_MW.value


# -- pieces of the page ------------------------------------------------------------------------

def img(pic: figures.Picture, alt: str) -> str:
    """A figure at its page size; ``data-min-font-pt`` carries its smallest font, so a check
    of the rendered page can tell how large the fonts read there."""
    data = base64.b64encode(pic.png).decode("ascii")
    return (f'<img alt="{html.escape(alt)}" width="{pic.page_width_px}" '
            f'data-min-font-pt="{pic.min_font_pt:g}" data-px-per-inch="{figures.PAGE_PX_PER_INCH}" '
            f'src="data:image/png;base64,{data}">')


_LABEL_WORD = re.compile(r"\b(" + "|".join(LABELS) + r")\b")


def _labelled(text: str) -> str:
    """``text`` as HTML, its label words (measured, published, ...) coloured by class."""
    return _LABEL_WORD.sub(lambda m: f'<span class="label-{m.group(1)}">{m.group(1)}</span>',
                           html.escape(text))


def html_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], *,
               labels: Iterable[str] = (), numbers: Iterable[str] = (),
               group: str | None = None) -> str:
    """A table of text cells; the ``labels`` columns hold labels (coloured), the ``numbers``
    columns are right-aligned, and rows sharing a ``group`` value (in order) come under one
    heading row instead of repeating it in a column."""
    labels, numbers = set(labels), set(numbers)

    def cell(tag: str, key: str, text: str) -> str:
        body = _labelled(text) if key in labels and tag == "td" else html.escape(text)
        return f'<{tag} class="{"num" if key in numbers else ""}">{body}</{tag}>'

    head = "".join(cell("th", k, h) for k, h in columns)
    body, current = [], object()
    for r in rows:
        if group is not None and r.get(group) != current:
            current = r.get(group)
            body.append(f'<tr class="group"><th colspan="{len(columns)}">'
                        f'{_labelled(str(current))}</th></tr>')
        body.append("<tr>" + "".join(cell("td", k, str(r.get(k, "-"))) for k, _ in columns)
                    + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


PLAN_COLUMNS = tuple((k, h) for k, h, _ in TABLE)


def _unbroken(cell: str) -> str:
    """A figure and its unit kept on one line (``362 GWh``); only an interval may go to the
    next (``362 GWh [300..400]``)."""
    return cell.replace(" ", "\u00a0").replace("\u00a0[", " [")


def plan_rows(titled_plans: Iterable[tuple[str, Any]]) -> list[dict]:
    """One row per (hardware, cluster size) in human units, an interval beside a figure only
    where it is wider than the rounding; ``hardware`` (the group heading) names the profile
    and the labels of the throughput, the GPU power and the days."""
    rows = []
    for title, plan in titled_plans:
        for p, cells in zip(plan.plans, table_rows(plan)):
            cells = {k: _unbroken(v) for k, v in cells.items()}
            said = ", ".join(f"{what} {p.labels.get(k, '-')}" for what, k in
                             (("throughput", "tflops_per_gpu"), ("power", "gpu_power_w"),
                              ("days", "days")))
            rows.append({"hardware": f"{title}: {said}", **cells})
    return rows


def step_bars(titled_plans) -> list[tuple[str, dict]]:
    """(name, step-time breakdown) per plan and cluster size that the step model timed."""
    return [(f"{title}, {p.gpus:,} GPUs\n{layout_text(p.layout)}", p.breakdown)
            for title, plan in titled_plans for p in plan.plans if p.breakdown]


def step_table(bars) -> str:
    """The step's terms in words, seconds and share per bar."""
    terms = [t for t in TERM_NAMES if any(b.get(t, 0) > 0 for _, b in bars)]
    columns = [("term", "term")]
    rows = [{"term": TERM_NAMES[t]} for t in terms] + [{"term": "step"}]
    for i, (name, breakdown) in enumerate(bars):
        total = sum(breakdown.values())
        columns.append((str(i), name.split("\n")[0]))
        for row, t in zip(rows, terms):
            row[str(i)] = (_unbroken(format_seconds(breakdown[t], ("s", 1.0)))
                           + f" ({breakdown[t] / total:.1%})")
        rows[-1][str(i)] = format_seconds(total, ("s", 1.0))
    return html_table(rows, columns, numbers=[c for c, _ in columns[1:]])


def no_power_sentence(records: pd.DataFrame | None) -> str:
    """Why there is no power plot: what the results say about their missing power."""
    reasons = []
    if records is not None and "power_missing_reason" in records:
        reasons = sorted(set(records["power_missing_reason"].dropna().astype(str)))
    why = ("; ".join(reasons) + ". ") if reasons else ""
    return (f"No board power was measured in these results, so there is no power plot. "
            f"{why}The plans use each GPU's TDP as its draw at any load, labelled assumed; "
            f"measure on a GPU with NVML (`python -m pytest --benchmark`) for a power curve.")


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { font-size: 1.25em; margin-top: 2em;
     border-bottom: 1px solid #ccc; padding-bottom: .2em; }
.meta, .note, figcaption, .caption { color: #555; font-size: .92em; }
#answer { background: #f5f8fc; border: 1px solid #c9d6e8; border-radius: 6px;
          padding: .2em 1.2em 1em; }
#answer h2 { border: none; margin-top: .6em; }
.headline { font-size: 1.3em; font-weight: 600; margin: .25em 0; }
.headline .where { font-size: .7em; font-weight: normal; color: #555; }
.warning { background: #fff4e0; border-left: 4px solid #e69f00; padding: .5em .8em; }
.panels { display: flex; flex-wrap: wrap; gap: 1.2em 2em; align-items: flex-start; }
figure { margin: 0; } figcaption { margin-top: .2em; }
img { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: .88em; margin: .5em 0 1.5em; }
th, td { border-bottom: 1px solid #e2e2e2; padding: .3em .6em; text-align: left;
         vertical-align: top; }
th { border-bottom: 2px solid #999; } .num { text-align: right; }
tr.group th { border-bottom: 1px solid #bbb; background: #f4f4f4; font-weight: 600;
              padding-top: .5em; }
.label-measured { color: #06623b; } .label-published { color: #1f4e9c; }
.label-fitted { color: #7a3ea0; } .label-modelled { color: #00707a; }
.label-given { color: #444; font-style: italic; } .label-assumed { color: #a05a00; }
"""


def _figures(pictures: Sequence[tuple[str, str, figures.Picture]]) -> str:
    """Panels side by side, each with its note (if any) under it."""
    return '<div class="panels">' + "".join(
        f'<figure>{img(pic, title)}'
        + (f'<figcaption style="max-width: {pic.page_width_px}px">{html.escape(note)}'
           f'</figcaption>' if note else "") + "</figure>"
        for title, note, pic in pictures) + "</div>"


def answer_html(titled_plans, warnings: Sequence[str], notes: Sequence[str]) -> str:
    lines = "".join(f'<p class="headline">{html.escape(sentence)} '
                    f'<span class="where">&mdash; {html.escape(title)}</span></p>'
                    for title, plan in titled_plans for sentence in headlines(plan))
    first = titled_plans[0][1]
    return (f'<section id="answer"><h2>The answer</h2>{lines}'
            f'<p>{html.escape(summary(first))}. Capacity is what the datacenter must '
            f'deliver (TDP and host power, times the PUE); cost is GPU-hours at the rental '
            f'price plus energy.</p>'
            + "".join(f'<p class="warning">Warning: {html.escape(w)}</p>' for w in warnings)
            + "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
            + "</section>")


def render_html(*, title: str, answer: str, throughput: str, power: str, law: str,
                step: str, plan_table: str, claims_table: str, inputs_table: str,
                meta: str = "") -> str:
    """The page from its parts (HTML); every section has the id in `SECTIONS`."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    labels = ", ".join(f'<span class="label-{w}">{w}</span>' for w in LABELS)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">Generated by flopcast on {when}{html.escape(meta)}. Every figure is labelled
{labels}; a derived figure carries its least certain input's label. Intervals in brackets,
shown where they are wider than the rounding.</p>
{answer}
<section id="throughput"><h2>Kernel throughput against problem size</h2>
{throughput}</section>
<section id="power"><h2>Power against throughput</h2>{power}</section>
<section id="law"><h2>Loss law and the compute-optimal frontier</h2>{law}</section>
<section id="step"><h2>Where a training step's time goes</h2>{step}</section>
<section id="plan"><h2>The plan</h2>
<p class="caption">Per hardware profile and cluster size; each profile's heading gives the
labels of the per-GPU throughput, the GPU power and the days.</p>
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
    from scaling.plan.planner import make_plan

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
        _claim(f"Llama 4 class: {format_flops(default_plan.compute_flops)} FLOPs (~10x Llama 3) on "
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

CLAIM_COLUMNS = (("claim", "claim"), ("published", "published"), ("plan", "flopcast plan"),
                 ("ratio", "plan / published"))
INPUT_COLUMNS = (("name", "input"), ("value", "value"), ("unit", "unit"), ("label", "label"),
                 ("source", "source"))


def _device_names(records: pd.DataFrame | None) -> str:
    if records is None or records.empty:
        return ""
    return ", ".join(sorted(set(records["device_name"].dropna().astype(str))))


def throughput_section(records: pd.DataFrame | None, profiles: Sequence) -> str:
    with figures.style():
        panels = [(title, note, figures.picture(fig))
                  for title, note, fig in figures.throughput_panels(records, profiles)]
    if not panels:
        return ('<p class="note">No measured records and no profile curves: run '
                '`python -m pytest --benchmark --sweep quick`.</p>')
    on = _device_names(records)
    return ('<p class="caption">Achieved TFLOP/s per kernel, dtype and direction, against FLOPs '
            'per call. Points: measured' + (f" on {html.escape(on)}" if on else "")
            + ". Solid lines: curves fitted to them; dashed lines: the published preset's "
            "curves; dotted: datasheet dense peaks. One colour per implementation; marker "
            "shapes tell FP8 scalings and attention masks apart.</p>" + _figures(panels)
            + grouped_section(records, profiles))


def grouped_section(records: pd.DataFrame | None, profiles: Sequence) -> str:
    """Grouped GEMM (the MoE experts) against tokens per expert, beside the dense GEMM curve
    at the same shapes; empty when nothing measured or fitted one."""
    with figures.style():
        panels = [(title, note, figures.picture(fig))
                  for title, note, fig in figures.grouped_panels(records, profiles)]
    if not panels:
        return ""
    return ('<h3 id="grouped">Mixture-of-experts grouped GEMM against tokens per expert</h3>'
            '<p class="caption">Achieved TFLOP/s of the experts\' grouped GEMM (forward, dX, '
            "dW) against tokens per expert, the rows each expert's GEMM gets. Points: measured "
            "(hollow: skewed routing); solid lines: curves fitted to them, which the step "
            "model times MoE expert GEMMs with; grey lines: each profile's dense GEMM curve at "
            "the same shapes, what the step model uses when a profile has no grouped "
            "curve.</p>" + _figures(panels))


def power_section(records: pd.DataFrame | None, profiles: Sequence) -> str:
    if figures.measured_power(records).empty:
        return f'<p class="note">{html.escape(no_power_sentence(records))}</p>'
    return ('<p class="caption">Board power (NVML) against achieved TFLOP/s, with the power '
            "curve fitted to the measurements and each profile's TDP.</p>"
            + img(figures.drawn(figures.power_figure, records, profiles),
                  "power against throughput"))


def law_section(law, compute_flops: float) -> str:
    caption = f"{law.name} ({law.label}, {law.form}): {law.source}"
    return (f'<p class="caption">{html.escape(caption)}</p>'
            + img(figures.drawn(figures.law_figure, law, compute_flops,
                                llama3=(LLAMA3_COMPUTE_FLOPS, LLAMA3_PARAMS, LLAMA3_TOKENS)),
                  "compute-optimal frontier"))


def step_section(titled_plans) -> str:
    bars = step_bars(titled_plans)
    if not bars:
        return ('<p class="note">No plan here was timed by the step model (a given throughput '
                'replaces it), so there is no step breakdown.</p>')
    return ("<p class=\"caption\">The step model's terms as shares of one optimizer step, per "
            "plan and cluster size, in the layout the planner chose for each.</p>"
            + img(figures.drawn(figures.step_figure, bars), "step time by term")
            + step_table(bars))


def build_report(out_dir, *, titled_plans: Sequence[tuple[str, Any]], law, claims: list[dict],
                 records: pd.DataFrame | None = None, profiles: Sequence = (),
                 notes: Sequence[str] = ()) -> Path:
    """Draw the figures, lay out the tables and write ``out_dir/report.html``.

    ``titled_plans`` are (hardware title, `Plan`) pairs for the same budget; ``profiles`` are
    the hardware profiles whose curves the throughput and power plots show.
    """
    inputs = [{"plan": title, "name": i.name, "value": input_text(i), "unit": i.unit,
               "label": i.label, "source": i.source}
              for title, plan in titled_plans for i in plan.inputs]
    devices = _device_names(records)
    page = render_html(
        title="flopcast: what this training run costs",
        answer=answer_html(titled_plans, [w for w in [law.warning()] if w], notes),
        throughput=throughput_section(records, profiles),
        power=power_section(records, profiles),
        law=law_section(law, titled_plans[0][1].compute_flops),
        step=step_section(titled_plans),
        plan_table=html_table(plan_rows(titled_plans), PLAN_COLUMNS, group="hardware",
                              numbers=[k for k, _, _ in TABLE]),
        claims_table=html_table(claims, CLAIM_COLUMNS, numbers=["ratio"]),
        inputs_table=html_table(inputs, INPUT_COLUMNS, labels=["label"], numbers=["value"],
                                group="plan"),
        meta=f", from {len(records)} measured records on {devices}" if devices else "")
    return write_report(out_dir, page)
