"""The report's figures, drawn the way a good paper draws them.

Every figure is drawn with matplotlib's object API (no pyplot, no display) in one style
(`STYLE`): fonts of at least `MIN_FONT_PT` at the page's scale, legends outside the data,
light grids, no top or right spines. Colours mean one thing throughout: one colour per
implementation (torch, triton, flash-attn-3), shared by its measured points and its fitted
curves. Marker shapes tell kinds of call apart (FP8 tensor-wise and row-wise scaling, causal
and full attention), line styles the source (solid: fitted to this machine's measurements;
dashed: the published preset), and black dotted lines are datasheet peaks.

A figure becomes a `Picture`: PNG bytes at `DPI`, its size in inches and the smallest font
in it, which the report shows at `PAGE_PX_PER_INCH` CSS pixels per inch, so that a font of F
points in the figure is F x 100/72 x 0.75 = 1.04 F points on the page.
"""

from __future__ import annotations

import io
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import PercentFormatter

from scaling import references
from scaling.errors import FlopcastError
from scaling.model.step import TERM_NAMES
from scaling.units import format_count, format_flops

DPI = 200
PAGE_PX_PER_INCH = 100
#: The smallest font size allowed in a figure, in points at the page's scale.
MIN_FONT_PT = 8.0
STYLE = {
    "font.family": "DejaVu Sans", "font.size": 10, "axes.titlesize": 10.5,
    "axes.titleweight": "bold", "axes.labelsize": 10, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "legend.fontsize": 9, "legend.frameon": False,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.35, "grid.linewidth": 0.6, "lines.linewidth": 1.8,
    "lines.markersize": 6, "axes.axisbelow": True,
}
#: Okabe and Ito's colour-blind-safe palette (Okabe & Ito 2008, "Color Universal Design").
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
#: Known implementations keep their colour in every report.
IMPL_COLOURS = {"torch": PALETTE[0], "triton": PALETTE[1], "flash-attn-3": PALETTE[2]}
#: Marker shapes for the kinds of call within one implementation.
MARKERS = {"": "o", "tensorwise": "o", "rowwise": "^", "causal": "o", "full": "s"}
KIND_WORDS = {"tensorwise": "tensor-wise scales", "rowwise": "row-wise scales",
              "causal": "causal", "full": "full mask"}
DIRECTION_WORDS = {"fwd": "forward", "bwd": "backward"}
# Tableau's ten colours for the step-time terms (they are not implementations).
TERM_COLOURS = ("#4e79a7", "#59a14f", "#9c755f", "#f28e2b", "#edc948", "#e15759", "#b07aa1",
                "#bab0ac")


@dataclass(frozen=True)
class Picture:
    """A drawn figure: PNG bytes, its size in inches and its smallest font in points."""

    png: bytes
    width_in: float
    height_in: float
    min_font_pt: float

    @property
    def page_width_px(self) -> int:
        """Its width on the page, in CSS pixels."""
        return round(self.width_in * PAGE_PX_PER_INCH)


@contextmanager
def style():
    """The report's style, for figures made and saved inside it."""
    with matplotlib.rc_context(STYLE):
        yield


def picture(fig: Figure) -> Picture:
    """Save ``fig`` as PNG, cropped to what is drawn (legends outside the axes included)."""
    fonts = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    png = buf.getvalue()
    width_px, height_px = struct.unpack(">II", png[16:24])
    return Picture(png, width_px / DPI, height_px / DPI, min(fonts) if fonts else 0.0)


def colours_for(impls: Iterable[str]) -> dict[str, str]:
    """One colour per implementation: the known ones fixed, the others in turn."""
    out = {i: IMPL_COLOURS[i] for i in impls if i in IMPL_COLOURS}
    free = [c for c in PALETTE if c not in IMPL_COLOURS.values()]
    for impl in sorted(set(impls) - set(out)):
        out[impl] = free[len(out) % len(free)] if free else PALETTE[len(out) % len(PALETTE)]
    return out


def _peak(profile, dtype: str) -> float | None:
    try:
        return profile.peak_tflops(dtype)
    except FlopcastError:  # no datasheet peak for this dtype or device
        return None


def _who(profile) -> str:
    """How a profile is named in a legend: ``fit`` for this machine, ``H100 (published)``."""
    if profile.label == "measured":
        return "fit to measured"
    return f"{profile.short_name} ({profile.label})"


def _kind(*parts: str) -> str:
    words = [KIND_WORDS.get(p, p) for p in parts if p]
    return (", " + ", ".join(words)) if words else ""


# -- throughput --------------------------------------------------------------------------------

def _measured(records: pd.DataFrame | None) -> pd.DataFrame | None:
    if records is None or records.empty or "tflops" not in records:
        return None
    df = records[records["tflops"].notna() & (records["flops"] > 0)
                 & records["kernel"].isin(["gemm", "attention"])].copy()
    df["variant"] = df["variant"].fillna("").astype(str)
    causal = df["shape_causal"] if "shape_causal" in df else pd.Series(pd.NA, index=df.index)
    df["mask"] = [("causal" if bool(c) else "full") if k == "attention" and not pd.isna(c)
                  else "" for k, c in zip(df["kernel"], causal)]
    return df


def throughput_panels(records: pd.DataFrame | None,
                      profiles: Sequence = ()) -> list[tuple[str, str, Figure]]:
    """(title, note, figure) per kernel, dtype and direction: achieved TFLOP/s against FLOPs
    per call (log-log, so a CPU and an H100 share an axis), the measured points, each
    profile's fitted curves and its datasheet peak; the note says which measured series got
    no curve, and why."""
    df = _measured(records)
    groups = set() if df is None else set(df.groupby(["kernel", "dtype", "direction"]).groups)
    for prof in profiles:
        groups |= {(c.kernel, c.dtype, c.direction) for c in prof.kernel_curves}
    impls = set() if df is None else set(df["impl"])
    impls |= {c.impl for prof in profiles for c in prof.kernel_curves}
    colour = colours_for(impls)
    panels = []
    order = {"gemm": 0, "attention": 1, "fwd": 0, "bwd": 1}
    for kernel, dtype, direction in sorted(groups, key=lambda g: (order.get(g[0], 2), g[1],
                                                                  order.get(g[2], 2))):
        part = None if df is None else df[(df["kernel"] == kernel) & (df["dtype"] == dtype)
                                          & (df["direction"] == direction)]
        title = ("GEMM" if kernel == "gemm"
                 else f"attention {DIRECTION_WORDS.get(direction, direction)}")
        letter = f"({chr(97 + len(panels))}) "
        why = [_not_fitted(key, reason) for prof in profiles
               for key, reason in sorted(prof.skipped.items())
               if key.startswith(f"{kernel} {dtype} ") and f" {direction}" in key]
        panels.append((f"{title}, {dtype}", "Not fitted: " + "; ".join(why) + "." if why else "",
                       _throughput_panel(
            f"{letter}{title}, {dtype}", part, [(p, [c for c in p.kernel_curves
                                             if (c.kernel, c.dtype, c.direction)
                                             == (kernel, dtype, direction)]) for p in profiles],
            dtype, colour)))
    return panels


def _not_fitted(key: str, reason: str) -> str:
    """``torch, row-wise scales (the data show time not growing with size)`` from a profile's
    skipped curve key (``gemm fp8_e4m3 torch fwd rowwise``) and its reason."""
    parts = key.split()
    why = reason.split(": ", 1)[1] if ": " in reason else reason
    return f"{parts[2]}{_kind(*parts[4:])} ({why.rstrip('.')})" if len(parts) > 2 else reason


def _throughput_panel(title, part, curves, dtype, colour) -> Figure:
    fig = Figure(figsize=(5.4, 3.0))
    ax = fig.add_subplot()
    lo, hi = 1e8, 1e15
    if part is not None and not part.empty:
        lo, hi = float(part["flops"].min()) / 2, float(part["flops"].max()) * 2
        for (impl, variant, mask), g in part.groupby(["impl", "variant", "mask"]):
            ax.plot(g["flops"], g["tflops"], MARKERS.get(variant or mask, "D"), ls="none",
                    color=colour[impl], mec="white", mew=0.6, ms=7,
                    label=f"{impl}{_kind(variant, mask)}, measured")
    peaks = set()
    for prof, found in curves:
        for c in found:
            xs = np.geomspace(min(lo, c.curve.size_min) if c.curve.points else lo,
                              max(hi, c.curve.size_max) if c.curve.points else hi, 60)
            kind = c.variant or c.mask
            ax.plot(xs, [c.curve.rate(x) for x in xs], "-" if prof.label == "measured" else "--",
                    color=colour[c.impl], marker=MARKERS.get(kind) if kind else None,
                    markevery=12, mfc="white", ms=5,
                    label=f"{c.impl}{_kind(c.variant, c.mask)}, {_who(prof)}")
        peak = _peak(prof, dtype)
        if peak and (prof.short_name, peak) not in peaks:  # a measured H100 has the H100's
            peaks.add((prof.short_name, peak))
            ax.axhline(peak, ls=":", color="k", lw=1.2,
                       label=f"{prof.short_name} datasheet peak, {peak:,.0f} TFLOP/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title, loc="left")
    ax.set_xlabel("FLOPs per call")
    ax.set_ylabel("achieved TFLOP/s")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=1, borderaxespad=0.0)
    return fig


# -- grouped GEMM (mixture-of-experts experts) -------------------------------------------------

GROUPED_MARKERS = {"fwd": "o", "bwd_dx": "^", "bwd_dw": "s"}
GROUPED_WORDS = {"fwd": "forward", "bwd_dx": "dX", "bwd_dw": "dW"}
#: Fitted grouped curves: solid for the forward, dotted-dense for the two backward GEMMs (the
#: dense reference lines are grey dashes).
GROUPED_LINES = {"fwd": "-", "bwd_dx": (0, (1, 1)), "bwd_dw": (0, (3, 1, 1, 1))}


def _grouped_measured(records: pd.DataFrame | None) -> pd.DataFrame | None:
    if records is None or records.empty or "tflops" not in records \
            or not {"shape_tokens", "shape_experts"} <= set(records.columns):
        return None
    df = records[(records["kernel"] == "grouped_gemm") & records["tflops"].notna()].copy()
    df["tokens_per_expert"] = (df["shape_tokens"].astype(float)
                               / df["shape_experts"].astype(float))
    df["variant"] = df["variant"].fillna("balanced").astype(str)
    return df[df["tokens_per_expert"] > 0]


def grouped_panels(records: pd.DataFrame | None,
                   profiles: Sequence = ()) -> list[tuple[str, str, Figure]]:
    """(title, note, figure) per dtype of grouped-GEMM (MoE expert) measurements: achieved
    TFLOP/s against tokens per expert, the measured points (marker: forward, dX, dW; hollow:
    skewed routing), each profile's fitted grouped-GEMM curves, and beside them the dense
    GEMM curve of each profile at the same shapes (one expert's GEMM as a plain matmul of
    tokens-per-expert rows), which the step model falls back to without a grouped curve."""
    df = _grouped_measured(records)
    dtypes = set() if df is None else set(df["dtype"])
    dtypes |= {c.dtype for prof in profiles for c in prof.grouped_curves}
    impls = set() if df is None else set(df["impl"])
    impls |= {c.impl for prof in profiles for c in prof.grouped_curves}
    colour = colours_for(impls)
    panels = []
    for dtype in sorted(dtypes):
        part = None if df is None else df[df["dtype"] == dtype]
        curves = [(p, [c for c in p.grouped_curves if c.dtype == dtype]) for p in profiles]
        why = [_grouped_not_fitted(key, reason) for prof in profiles
               for key, reason in sorted(prof.skipped.items())
               if key.startswith(f"grouped_gemm {dtype} ")]
        title = f"({chr(97 + len(panels))}) grouped GEMM (MoE experts), {dtype}"
        panels.append((f"grouped GEMM, {dtype}",
                       "Not fitted: " + "; ".join(why) + "." if why else "",
                       _grouped_panel(title, part, curves, profiles, dtype, colour)))
    return panels


def _grouped_not_fitted(key: str, reason: str) -> str:
    """``torch, dX, zipf1.0 (only 1 distinct ...)`` from ``grouped_gemm bf16 torch bwd_dx
    zipf1.0`` and its reason."""
    parts = key.split()
    why = reason.split(": ", 1)[1] if ": " in reason else reason
    words = [GROUPED_WORDS.get(p, p) for p in parts[2:]]
    return f"{', '.join(words)} ({why.split('; ')[0].rstrip('.')})"


def _grouped_shape(part, curves) -> tuple[int, int] | None:
    """The (n, k) the dense reference line is drawn at: the most measured one."""
    if part is not None and not part.empty and {"shape_n", "shape_k"} <= set(part.columns):
        n, k = part.groupby(["shape_n", "shape_k"]).size().idxmax()
        return int(n), int(k)
    shapes = [s for _, found in curves for c in found for s in c.shapes]
    return shapes[0] if shapes else None


def _grouped_panel(title, part, curves, profiles, dtype, colour) -> Figure:
    fig = Figure(figsize=(5.4, 3.0))
    ax = fig.add_subplot()
    lo, hi = 8.0, 65536.0
    if part is not None and not part.empty:
        lo = float(part["tokens_per_expert"].min()) / 2
        hi = float(part["tokens_per_expert"].max()) * 2
        for (impl, direction, routing), g in part.groupby(["impl", "direction", "variant"]):
            skewed = routing != "balanced"
            ax.plot(g["tokens_per_expert"], g["tflops"],
                    GROUPED_MARKERS.get(direction, "D"), ls="none", color=colour[impl],
                    mfc="white" if skewed else colour[impl], mec=colour[impl] if skewed
                    else "white", mew=1.2 if skewed else 0.6, ms=7,
                    label=f"{impl}, {GROUPED_WORDS.get(direction, direction)}, {routing}, "
                          "measured")
    for prof, found in curves:
        for c in found:
            xs = np.geomspace(min(lo, c.curve.size_min), max(hi, c.curve.size_max), 60)
            words = GROUPED_WORDS.get(c.direction, c.direction)
            ax.plot(xs, [c.curve.rate(x) for x in xs], ls=GROUPED_LINES.get(c.direction, "-"),
                    color=colour[c.impl], label=f"{c.impl}, {words}, {c.routing}, {_who(prof)}")
    shape = _grouped_shape(part, curves)
    if shape is not None:
        n, k = shape
        xs = np.geomspace(lo, hi, 40)
        for prof in profiles:
            try:
                ys = [prof.matmul_tflops(max(1, round(x)), n, k, dtype).value for x in xs]
            except FlopcastError:  # no dense GEMM curve of this dtype
                continue
            ax.plot(xs, ys, "--" if prof.label != "measured" else "-.", color="0.35", lw=1.4,
                    label=f"dense GEMM T x {n} x {k}, {_who(prof)}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(title, loc="left")
    ax.set_xlabel("tokens per expert (rows of each expert's GEMM)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=1, borderaxespad=0.0)
    return fig


# -- power -------------------------------------------------------------------------------------

def measured_power(records: pd.DataFrame | None) -> pd.DataFrame:
    """The records with a measured board power (empty when none has one)."""
    if records is None or records.empty or "avg_power_w" not in records:
        return pd.DataFrame()
    watts = pd.to_numeric(records["avg_power_w"], errors="coerce")
    df = records.assign(_w=watts)
    return df[df["_w"].notna() & df["tflops"].notna()]


def power_figure(records: pd.DataFrame, profiles: Sequence = ()) -> Figure:
    """Board watts against achieved TFLOP/s: the measured points (one colour per
    implementation), each profile's power curve and its TDP. Only drawn where some power was
    measured; the report says so in words otherwise."""
    df = measured_power(records)
    colour = colours_for(set(df["impl"]) if not df.empty else ())
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.add_subplot()
    for (impl, kernel, dtype), g in df.groupby(["impl", "kernel", "dtype"]):
        ax.plot(g["tflops"], g["_w"], "o" if kernel == "gemm" else "s", ls="none",
                color=colour[impl], mec="white", mew=0.6, ms=7,
                label=f"{impl} {'GEMM' if kernel == 'gemm' else kernel} {dtype}, measured")
    tdps = set()
    for prof in profiles:
        peak = _peak(prof, "bf16")
        try:
            est = [prof.power_w(float(u)) for u in np.linspace(0.0, 1.0, 41)] if peak else []
        except FlopcastError:
            est = []
        if est and est[0].label == "measured":
            ax.plot(np.linspace(0.0, 1.0, 41) * peak, [e.value for e in est], "-",
                    color="0.35", label=f"{prof.short_name} power curve, fitted to measured")
        if prof.tdp_w and (prof.short_name, prof.tdp_w) not in tdps:
            tdps.add((prof.short_name, prof.tdp_w))
            ax.axhline(prof.tdp_w, ls=":", color="k", lw=1.2,
                       label=f"{prof.short_name} TDP, {prof.tdp_w:,.0f} W")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("achieved TFLOP/s")
    ax.set_ylabel("board power (W)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return fig


# -- the loss law ------------------------------------------------------------------------------

def law_figure(law, compute_flops: float, *,
               llama3=(references.LLAMA3_COMPUTE_FLOPS.value, references.LLAMA3_PARAMS.value,
                       references.LLAMA3_TOKENS.value),
               points: int = 41) -> Figure:
    """The compute-optimal frontier of a law from 1e20 to 1e28 FLOPs (with its bootstrap band
    when it has one), the chosen budget, and Llama 3 405B's published N and D
    (``llama3``: compute, parameters, tokens)."""
    cs = np.geomspace(1e20, 1e28, points)
    allocs = [law.allocate(c) for c in cs]
    parametric = law.form == "parametric"
    fig = Figure(figsize=(10.8 if parametric else 5.4, 3.2))
    fig.subplots_adjust(wspace=0.3)
    ax = fig.add_subplot(1, 2 if parametric else 1, 1)
    for key, colour, name in (("params", PALETTE[0], "parameters, N_opt"),
                              ("tokens", PALETTE[1], "tokens, D_opt")):
        ax.plot(cs, [getattr(a, key) for a in allocs], color=colour, label=name)
        band = [a.intervals.get(key) for a in allocs]
        if all(b is not None for b in band):
            ax.fill_between(cs, [b[0] for b in band], [b[1] for b in band], color=colour,
                            alpha=0.2, lw=0, label=f"{name.split(',')[0]}, 95% interval")
    c, n, d = llama3
    ax.plot([c, c], [n, d], "k^", ms=7,
            label=f"Llama 3 405B (published): {format_count(n)} parameters, "
                  f"{format_count(d)} tokens")
    ax.axvline(compute_flops, ls="--", color="0.3", lw=1.2,
               label=f"this budget, {format_flops(compute_flops)} FLOPs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("parameters or tokens")
    ax.set_title(f"{law.name}: compute-optimal model and data", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), borderaxespad=0.0)
    if parametric:
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.plot(cs, [a.loss for a in allocs], color=PALETTE[2],
                 label="predicted loss at the optimum")
        band = [a.intervals.get("loss") for a in allocs]
        if all(b is not None for b in band):
            ax2.fill_between(cs, [b[0] for b in band], [b[1] for b in band], color=PALETTE[2],
                             alpha=0.2, lw=0, label="loss, 95% interval")
        ax2.axvline(compute_flops, ls="--", color="0.3", lw=1.2, label="this budget")
        ax2.set_xscale("log")
        ax2.set_xlabel("training compute (FLOPs)")
        ax2.set_ylabel("loss (nats per token)")
        ax2.set_title(f"{law.name}: predicted loss", loc="left")
        ax2.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), borderaxespad=0.0)
    return fig


# -- the step ----------------------------------------------------------------------------------

def step_figure(bars: Sequence[tuple[str, dict]]) -> Figure:
    """Where a training step's time goes: one horizontal bar per plan and cluster size
    (``bars``: (name, breakdown in seconds)), its terms as shares of the step, named in words."""
    terms = [t for t in TERM_NAMES if any(b.get(t, 0) > 0 for _, b in bars)]
    fig = Figure(figsize=(10.8, 0.4 + 0.6 * len(bars)))
    ax = fig.add_subplot()
    left = np.zeros(len(bars))
    for i, term in enumerate(terms):
        total = np.array([sum(b.values()) or 1.0 for _, b in bars])
        share = np.array([b.get(term, 0.0) for _, b in bars]) / total
        ax.barh(range(len(bars)), share, left=left, color=TERM_COLOURS[i % len(TERM_COLOURS)],
                height=0.62, label=TERM_NAMES[term], edgecolor="white", linewidth=0.6)
        for y, (x0, w) in enumerate(zip(left, share)):
            if w >= 0.06:
                ax.text(x0 + w / 2, y, f"{w:.0%}", ha="center", va="center", fontsize=9,
                        color="white" if i in (0, 1, 2, 5, 6) else "black")
        left += share
    ax.set_yticks(range(len(bars)), [name for name, _ in bars])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of the step time")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.45 / max(1, len(bars)) - 0.25),
              ncol=4, borderaxespad=0.0)
    return fig


def drawn(make, *args, **kwargs) -> Picture:
    """Draw a figure with ``make(*args, **kwargs)`` in the report's style (the style applies
    as artists are made, so drawing happens inside it) and return its `Picture`."""
    with style():
        return picture(make(*args, **kwargs))
