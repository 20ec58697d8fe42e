"""Calibration: a measured hardware profile from benchmark records.

`build_profile` groups a results DataFrame (`scaling.records.load_results`) by device, kernel
family, dtype, implementation, direction and FP8 scaling variant (causal and full attention
together: the FLOP count already halves for a causal mask) and fits each group's achieved
TFLOP/s against FLOPs per call with the saturating curve of `scaling.curves`. Every
implementation has its own curve from its own records (each of SDPA's pinned backends is one
implementation, so no record counts twice), and a prediction takes the fastest curve at the
size asked (`HardwareProfile`); collective
records (``bench.comm``) give bus bandwidth against message size per collective and world
size; records with steady-window power give watts against utilisation. A recognised device
gets its datasheet figures (peaks, TDP, memory and link bandwidth) from the matching preset,
labelled published; an unrecognised one gets none, and says so where they are needed.
Throughput is a record's ``sustained_tflops`` where it has one (`throughput_tflops`): the
planner's step times and watts then come from the same clock state.
"""

from __future__ import annotations

import math

import numpy as np

from scaling import datasheets
from scaling.curves import fit_linear_power, fit_saturating
from scaling.errors import DataError, FitError
from scaling.hardware import (CommCurve, Estimate, HardwareProfile, KernelCurve, PowerCurve,
                              canonical_dtype, published_profile)


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
    """A measured profile from a results DataFrame (`scaling.records.load_results`).

    ``device`` picks one device when the records hold several (a substring of its name);
    ``preset`` names the datasheet whose peaks, TDP and links to attach (by default the one
    matching the device name, if any). Groups with too few distinct sizes are listed in
    ``skipped`` and asking for them raises `FitError`.
    """
    import pandas as pd

    if not isinstance(records, pd.DataFrame):
        raise DataError(f"records must be a pandas DataFrame, got {type(records).__name__}")
    if records.empty:
        raise DataError("no records to build a hardware profile from; run "
                        "`python -m pytest --benchmark` first or pass results files")
    for col in ("kernel", "dtype", "device_name"):
        if col not in records.columns:
            raise DataError(f"records lack the column '{col}' (results/README.md, 'Loading')")
    df = records
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
    device_name = names[0]
    df = df[df["device_name"].astype(str) == device_name]
    preset = preset or datasheets.preset_for_device(device_name)
    facts = published_profile(preset) if preset else None
    files = sorted(set(_texts(_column(df, "file", None))))
    files_note = f"{len(files)} results file(s)" if files else "records given directly"

    # Kernel throughput curves.
    curves, skipped = [], {}
    kernel_rows = df[df["kernel"].isin(["gemm", "attention"])].copy()
    if not kernel_rows.empty:
        kernel_rows["_tflops"] = throughput_tflops(kernel_rows)
        kernel_rows["_flops"] = _finite(_column(kernel_rows, "flops"))
        kernel_rows = kernel_rows[(kernel_rows["_tflops"] > 0) & (kernel_rows["_flops"] > 0)]
        for col, default in (("impl", ""), ("direction", "fwd"), ("variant", "")):
            kernel_rows[col] = [default if v is None or str(v) == "nan" else str(v)
                                for v in _column(kernel_rows, col, default)]
        groups = kernel_rows.groupby(["kernel", "dtype", "impl", "direction", "variant"],
                                     sort=True)
        for (kernel, dtype, impl, direction, variant), g in groups:
            key = " ".join(p for p in (kernel, dtype, impl, direction, variant) if p)
            what = f"{key} on {device_name}"
            try:
                fit = fit_saturating(g["_flops"], g["_tflops"], what=what)
            except FitError as exc:
                skipped[key] = str(exc)
                continue
            curves.append(KernelCurve(kernel, dtype, impl, direction, variant, "", fit,
                                      "measured", f"{len(g)} records, {files_note}"))

    # Collective bus bandwidth curves (records written by bench.comm).
    comm = []
    comm_rows = df[df["kernel"] == "comm"].copy()
    if not comm_rows.empty:
        comm_rows["_busbw"] = _finite(_column(comm_rows, "busbw_gbps"))
        size = _finite(_column(comm_rows, "shape_message_bytes"))
        alt = _finite(_column(comm_rows, "message_bytes"))
        comm_rows["_bytes"] = np.where(np.isfinite(size), size, alt)
        world = _finite(_column(comm_rows, "shape_world_size"))
        alt = _finite(_column(comm_rows, "world_size"))
        comm_rows["_world"] = np.where(np.isfinite(world), world, alt)
        comm_rows["_nodes"] = _finite(_column(comm_rows, "nodes"))
        comm_rows = comm_rows[(comm_rows["_busbw"] > 0) & (comm_rows["_bytes"] > 0)
                              & (comm_rows["_world"] >= 1)]
        for (collective, world), g in comm_rows.groupby(["variant", "_world"], sort=True):
            key = f"comm {collective} world {int(world)}"
            try:
                fit = fit_saturating(g["_bytes"], g["_busbw"], what=f"{key} on {device_name}")
            except FitError as exc:
                skipped[key] = str(exc)
                continue
            nodes = g["_nodes"].max()
            backend = ",".join(sorted(set(_texts(_column(g, "backend", "")))))
            comm.append(CommCurve(str(collective), int(world),
                                  int(nodes) if math.isfinite(nodes) else 1, backend, fit,
                                  "measured", f"{len(g)} records ({backend or 'backend ?'}), "
                                              f"{files_note}"))

    # Power against utilisation.
    power, reason = _fit_power(df, facts, device_name, files_note)

    peaks = dict(facts.peaks) if facts else {}
    memory = facts.memory_gbps if facts else _measured_bandwidth(df)
    return HardwareProfile(
        name=name or f"measured:{device_name}", label="measured", device_name=device_name,
        sources=tuple(files) + ((f"datasheet figures of preset '{preset}'",) if facts else ()),
        peaks=peaks, tdp=facts.tdp if facts else None, memory_gbps=memory,
        links=dict(facts.links) if facts else {},
        gpus_per_node=facts.gpus_per_node if facts else 8,
        kernel_curves=tuple(curves), comm_curves=tuple(comm), power=power,
        power_missing_reason=reason, skipped=skipped)


def _measured_bandwidth(df) -> Estimate | None:
    gbps = _finite(_column(df[df["kernel"].isin(["gemm", "attention"])], "gbps"))
    gbps = gbps[np.isfinite(gbps) & (gbps > 0)]
    if gbps.size == 0:
        return None
    return Estimate.point(float(gbps.max()), "measured",
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
