"""Calibration: a measured hardware profile from benchmark records.

`build_profile` groups a results DataFrame (`scaling.records.load.load_results`) by device, kernel
family, dtype, implementation, direction and FP8 scaling variant (causal and full attention
together: the FLOP count already halves for a causal mask) and fits each group's achieved
TFLOP/s against FLOPs per call with the saturating curve of `scaling.hardware.curves`. Every
implementation has its own curve from its own records (each of SDPA's pinned backends is one
implementation, so no record counts twice), and a prediction takes the fastest curve at the
size asked (`HardwareProfile`); collective
records (``bench.comm``) give bus bandwidth against message size per collective and world
size; grouped-GEMM records (mixture-of-experts experts, `kernels.grouped_gemm`) give TFLOP/s
against tokens per expert per dtype, implementation, direction and routing, and MoE dispatch and
combine records GB/s against bytes per call; streaming-scale records (`kernels.stream`) the
device's streaming bandwidth, the rate memory-bound work is timed at (`_stream_bandwidth`);
records with steady-window power give watts against utilisation. A recognised device
gets its datasheet figures (peaks, TDP, memory and link bandwidth) from the matching preset,
labelled published; an unrecognised one gets none, and says so where they are needed.
Throughput is a record's ``sustained_tflops`` where it has one (`throughput_tflops`): the
planner's step times and watts then come from the same clock state.
"""

from __future__ import annotations

import math

import numpy as np

from scaling.hardware import datasheets
from scaling.hardware.curves import fit_linear_power, fit_saturating
from scaling.errors import DataError, FitError
from scaling.provenance import Figure
from scaling.hardware.profile import (CommCurve, GroupedCurve, HardwareProfile, KernelCurve,
                                      PowerCurve, RoutingCurve, canonical_dtype,
                                      published_profile)


def _column(df, name, default=np.nan):
    return df[name] if name in df.columns else np.full(len(df), default, dtype=object)


def throughput_tflops(rows) -> np.ndarray:
    """Each record's TFLOP/s for the planner: ``sustained_tflops`` (the power window's own
    calls, at the clocks its watts were read at; results/README.md) where the record has it,
    else ``tflops`` (the short timing window, often at boost clocks)."""
    sustained = _finite(_column(rows, "sustained_tflops"))
    short = _finite(_column(rows, "tflops"))
    return np.where(np.isfinite(sustained) & (sustained > 0), sustained, short)


def _finite(values) -> np.ndarray:
    return np.asarray(
        [float(v) if _is_number(v) else math.nan for v in values], dtype=float)


def _is_number(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _texts(values) -> list[str]:
    """The values that are given (not None, not NaN), as text."""
    return [str(v) for v in values if v is not None and str(v) != "nan"]


def build_profile(records, *, device: str | None = None, preset: str | None = None,
                  name: str | None = None) -> HardwareProfile:
    """A measured profile from a results DataFrame (`scaling.records.load.load_results`).

    ``device`` picks one device when the records hold several (a substring of its name);
    ``preset`` names the datasheet whose peaks, TDP and links to attach (by default the one
    matching the device name, if any). Groups with too few distinct sizes are listed in
    ``skipped`` and asking for them raises `FitError`.
    """
    _check_records(records)
    device_name = _pick_device(records, device)
    df = records[records["device_name"].astype(str) == device_name]
    preset = preset or datasheets.preset_for_device(device_name)
    facts = published_profile(preset) if preset else None
    files = sorted(set(_texts(_column(df, "file", None))))
    files_note = f"{len(files)} results file(s)" if files else "records given directly"
    fits = _Fits(device_name, files_note)
    curves = _kernel_curves(df, fits)
    grouped = _grouped_curves(df, fits)
    routing = _routing_curves(df, fits)
    comm = _comm_curves(df, fits)
    power, reason = _fit_power(df, facts, device_name, files_note)
    return HardwareProfile(
        name=name or f"measured:{device_name}", label="measured", device_name=device_name,
        sources=tuple(files) + ((f"datasheet figures of preset '{preset}'",) if facts else ()),
        peaks=dict(facts.peaks) if facts else {}, tdp=facts.tdp if facts else None,
        memory_gbps=facts.memory_gbps if facts else _measured_bandwidth(df),
        stream_gbps=_stream_bandwidth(df, files_note) or (facts.stream_gbps if facts else None),
        links=dict(facts.links) if facts else {},
        gpus_per_node=facts.gpus_per_node if facts else 8,
        kernel_curves=tuple(curves), comm_curves=tuple(comm), power=power,
        power_missing_reason=reason, skipped=fits.skipped, grouped_curves=tuple(grouped),
        routing_curves=tuple(routing))


def _check_records(records) -> None:
    import pandas as pd

    if not isinstance(records, pd.DataFrame):
        raise DataError(f"records must be a pandas DataFrame, got {type(records).__name__}")
    if records.empty:
        raise DataError("no records to build a hardware profile from; run "
                        "`python -m pytest --benchmark` first or pass results files")
    for col in ("kernel", "dtype", "device_name"):
        if col not in records.columns:
            raise DataError(f"records lack the column '{col}' (results/README.md, 'Loading')")


def _pick_device(df, device: str | None) -> str:
    """The one device the profile is of: ``device`` (a substring of its name) or the only one."""
    names = sorted({str(v) for v in df["device_name"].dropna()})
    if device is not None:
        matching = [n for n in names if device.lower() in n.lower()]
        if not matching:
            raise DataError(f"no records for device '{device}'; devices in the records: "
                            f"{', '.join(names)}")
        names = matching
    if len(names) != 1:
        raise DataError(f"records hold {len(names)} devices ({', '.join(names) or 'none'}); "
                        f"pick one (device=... / --device NAME)")
    return names[0]


class _Fits:
    """Saturating fits for one device: each returns the curve, or None with the reason kept
    in ``skipped`` under the curve's key."""

    def __init__(self, device_name: str, files_note: str):
        self.device_name, self.files_note, self.skipped = device_name, files_note, {}

    def fit(self, key: str, sizes, rates):
        try:
            return fit_saturating(sizes, rates, what=f"{key} on {self.device_name}")
        except FitError as exc:
            self.skipped[key] = str(exc)
            return None

    def source(self, n: int, extra: str = "") -> str:
        return f"{n} records{extra}, {self.files_note}"


def _text_columns(rows, defaults) -> None:
    """Fill the text columns ``defaults`` names (column -> default) in place, as text."""
    for col, default in defaults.items():
        rows[col] = [default if v is None or str(v) == "nan" else str(v)
                     for v in _column(rows, col, default)]


def _kernel_curves(df, fits: _Fits) -> list[KernelCurve]:
    """GEMM and attention: TFLOP/s against FLOPs per call, per dtype, impl, direction and
    variant."""
    rows = df[df["kernel"].isin(["gemm", "attention"])].copy()
    if rows.empty:
        return []
    rows["_tflops"] = throughput_tflops(rows)
    rows["_flops"] = _finite(_column(rows, "flops"))
    rows = rows[(rows["_tflops"] > 0) & (rows["_flops"] > 0)].copy()
    _text_columns(rows, {"impl": "", "direction": "fwd", "variant": ""})
    curves = []
    for (kernel, dtype, impl, direction, variant), g in rows.groupby(
            ["kernel", "dtype", "impl", "direction", "variant"], sort=True):
        key = " ".join(p for p in (kernel, dtype, impl, direction, variant) if p)
        fit = fits.fit(key, g["_flops"], g["_tflops"])
        if fit is not None:
            curves.append(KernelCurve(kernel, dtype, impl, direction, variant, "", fit,
                                      "measured", fits.source(len(g))))
    return curves


def _grouped_curves(df, fits: _Fits) -> list[GroupedCurve]:
    """Grouped GEMM (`kernels.grouped_gemm`): TFLOP/s against tokens per expert (the shape's
    ``tokens / experts``, exact, where ``tokens_per_expert_mean`` is rounded), per dtype,
    impl, direction and routing."""
    rows = df[df["kernel"] == "grouped_gemm"].copy()
    if rows.empty:
        return []
    rows["_tflops"] = _finite(_column(rows, "tflops"))
    rows["_tpe"] = (_finite(_column(rows, "shape_tokens"))
                    / _finite(_column(rows, "shape_experts")))
    rows["_n"] = _finite(_column(rows, "shape_n"))
    rows["_k"] = _finite(_column(rows, "shape_k"))
    rows = rows[(rows["_tflops"] > 0) & (rows["_tpe"] > 0) & np.isfinite(rows["_n"])
                & np.isfinite(rows["_k"])].copy()
    _text_columns(rows, {"impl": "", "direction": "fwd", "variant": "balanced"})
    curves = []
    for (dtype, impl, direction, routing), g in rows.groupby(
            ["dtype", "impl", "direction", "variant"], sort=True):
        key = " ".join(p for p in ("grouped_gemm", dtype, impl, direction, routing) if p)
        fit = fits.fit(key, g["_tpe"], g["_tflops"])
        if fit is None:
            continue
        shapes = tuple(sorted({(int(n), int(k)) for n, k in zip(g["_n"], g["_k"])}))
        curves.append(GroupedCurve(dtype, impl, direction, routing, shapes, fit, "measured",
                                   fits.source(len(g), " against tokens per expert")))
    return curves


def _routing_curves(df, fits: _Fits) -> list[RoutingCurve]:
    """MoE dispatch and combine (`kernels.moe_dispatch`): memory-bound, GB/s against bytes
    per call, per kernel, dtype, impl and routing."""
    rows = df[df["kernel"].isin(["moe_dispatch", "moe_combine"])].copy()
    if rows.empty:
        return []
    rows["_gbps"] = _finite(_column(rows, "gbps"))
    rows["_bytes"] = _finite(_column(rows, "bytes"))
    rows = rows[(rows["_gbps"] > 0) & (rows["_bytes"] > 0)].copy()
    _text_columns(rows, {"impl": "", "variant": "balanced"})
    curves = []
    for (kernel, dtype, impl, routing), g in rows.groupby(
            ["kernel", "dtype", "impl", "variant"], sort=True):
        key = " ".join(p for p in (kernel, dtype, impl, routing) if p)
        fit = fits.fit(key, g["_bytes"], g["_gbps"])
        if fit is not None:
            curves.append(RoutingCurve(kernel, dtype, impl, routing, fit, "measured",
                                       fits.source(len(g), " against bytes per call")))
    return curves


def _comm_curves(df, fits: _Fits) -> list[CommCurve]:
    """Collective bus bandwidth against message bytes (records written by bench.comm), per
    collective and world size."""
    rows = df[df["kernel"] == "comm"].copy()
    if rows.empty:
        return []
    rows["_busbw"] = _finite(_column(rows, "busbw_gbps"))
    size = _finite(_column(rows, "shape_message_bytes"))
    alt = _finite(_column(rows, "message_bytes"))
    rows["_bytes"] = np.where(np.isfinite(size), size, alt)
    world = _finite(_column(rows, "shape_world_size"))
    alt = _finite(_column(rows, "world_size"))
    rows["_world"] = np.where(np.isfinite(world), world, alt)
    rows["_nodes"] = _finite(_column(rows, "nodes"))
    rows = rows[(rows["_busbw"] > 0) & (rows["_bytes"] > 0) & (rows["_world"] >= 1)]
    comm = []
    for (collective, world), g in rows.groupby(["variant", "_world"], sort=True):
        fit = fits.fit(f"comm {collective} world {int(world)}", g["_bytes"], g["_busbw"])
        if fit is None:
            continue
        nodes = g["_nodes"].max()
        backend = ",".join(sorted(set(_texts(_column(g, "backend", "")))))
        comm.append(CommCurve(str(collective), int(world),
                              int(nodes) if math.isfinite(nodes) else 1, backend, fit,
                              "measured", fits.source(len(g), f" ({backend or 'backend ?'})")))
    return comm


def _stream_bandwidth(df, files_note: str) -> Figure | None:
    """The device's streaming bandwidth from its streaming-scale records (`kernels.stream`):
    the fastest implementation at the largest array measured, the one furthest past every
    cache (a fit over sizes would mix in the cached ones). None without such records."""
    rows = df[df["kernel"] == "stream"]
    if rows.empty:
        return None
    gbps, moved = _finite(_column(rows, "gbps")), _finite(_column(rows, "bytes"))
    ok = np.isfinite(gbps) & (gbps > 0) & np.isfinite(moved) & (moved > 0)
    if not ok.any():
        return None
    at = ok & (moved == moved[ok].max())
    best = int(np.flatnonzero(at)[np.argmax(gbps[at])])
    impl, dtype = str(list(_column(rows, "impl", ""))[best]), str(list(rows["dtype"])[best])
    return Figure.point(float(gbps[best]), "measured",
                        f"streaming scale y = c * x (kernels.stream), {impl} {dtype}, "
                        f"{moved[best] / 1e9:.3g} GB moved per call, the largest measured; "
                        f"fastest of {int(at.sum())} record(s) at that size, {files_note}")


def _measured_bandwidth(df) -> Figure | None:
    gbps = _finite(_column(df[df["kernel"].isin(["gemm", "attention"])], "gbps"))
    gbps = gbps[np.isfinite(gbps) & (gbps > 0)]
    if gbps.size == 0:
        return None
    return Figure.point(float(gbps.max()), "measured",
                          "highest bytes/s any kernel record reached (a lower bound on the "
                          "memory bandwidth; the device matches no datasheet preset)")


def _fit_power(df, facts, device_name, files_note):
    rows = df[df["kernel"].isin(["gemm", "attention"])]
    watts = _finite(_column(rows, "avg_power_w"))
    tflops = throughput_tflops(rows)  # from the watts' own window where recorded
    ok = np.isfinite(watts) & (watts > 0) & np.isfinite(tflops) & (tflops > 0)
    if not ok.any():
        reasons = _texts(_column(rows, "power_missing_reason", None))
        why = max(set(reasons), key=reasons.count) if reasons else "records have no power readings"
        return None, why
    dtypes = np.asarray([canonical_dtype(d) for d in rows["dtype"]])[ok]
    watts, tflops = watts[ok], tflops[ok]
    basis = "datasheet peak"
    peak = np.empty_like(tflops)
    for dt in set(dtypes):
        sel = dtypes == dt
        if facts is not None and dt in facts.peaks:
            peak[sel] = facts.peaks[dt].value
        else:
            basis = "datasheet peak where known, else the highest measured TFLOP/s of the dtype"
            peak[sel] = tflops[sel].max()
    try:
        line = fit_linear_power(tflops / peak, watts, what=f"power on {device_name}")
    except FitError as exc:
        return None, str(exc)
    return PowerCurve(line, basis, "measured",
                      f"{int(ok.sum())} records with steady-window power, {files_note}"), None
