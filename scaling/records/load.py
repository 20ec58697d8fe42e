"""Loading results files into one tidy DataFrame, validating as it goes.

Schema: results/README.md. One row per record, units in column names. Every problem names the
file and the field: a truncated or non-JSON file, a file without a flopcast section, a schema
version this flopcast does not read, a missing or mistyped field, a negative or NaN time. The
same run (same ``run_id``) found in several files is counted once and reported.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from scaling.errors import ResultsFileError

SCHEMA_VERSIONS = (1,)

# The baseline of each family in records without a ``baseline`` field (files written before
# records said which implementations are baselines): speedup_vs_baseline compares with it.
BASELINE_IMPL = {"gemm": "torch", "attention": "torch"}

RUN_COLUMNS = ["run_id", "file", "created_utc", "source", "sweep", "hostname",
               "flopcast_version", "torch_version", "triton_version", "cuda_version",
               "driver_version"]
RECORD_COLUMNS = [
    "name", "test", "label", "kernel", "impl", "baseline", "backend", "gqa_method", "dtype",
    "out_dtype", "direction", "variant", "layout", "shape", "flops", "bytes", "device",
    "device_name",
    "time_s", "time_s_min", "time_s_mean", "time_s_stddev", "time_s_iqr", "rounds", "iterations",
    "timing_method", "l2_flush", "timing_fallback_reason",
    "tflops", "gbps", "rel_error", "tolerance",
    "telemetry_backend", "power_window_s", "energy_j", "avg_power_w", "max_power_w",
    "tflops_per_w", "sustained_tflops", "sm_clock_mhz", "mem_clock_mhz", "temp_c",
    "power_limit_w", "throttled",
    "throttle_reasons", "power_missing_reason",
]
TEXT_FIELDS = ("name", "kernel", "impl", "dtype", "device")
TIME_FIELDS = ("time_s", "time_s_min", "time_s_mean", "time_s_stddev", "time_s_iqr")
# Only these key groups make the rows of one table; the loader keeps other record fields too.
KEY_DEFAULTS = {"out_dtype": None, "direction": "fwd", "variant": "", "layout": "", "label": ""}


class ResultsWarning(UserWarning):
    """A results file was skipped, or a run was found twice."""


def results_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files to load: files as given, directories expanded to their ``*.json`` (recursively),
    in a stable order. What cannot be a results file is skipped with a `ResultsWarning`, never
    silently and never by blocking: a FIFO, socket or device (reading one may wait forever),
    and a folder that cannot be listed (no read permission)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += _json_files_under(path)
        elif path.is_file():
            found.append(path)
        elif path.exists():
            _warn_not_regular(path)
        else:
            raise ResultsFileError(path, "no such file or directory")
    return found


def _warn_not_regular(path: Path) -> None:
    warnings.warn(f"skipped {path}: not a regular file (a FIFO, socket or device); give the "
                  "results file itself", ResultsWarning, stacklevel=3)


def _json_files_under(root: Path) -> list[Path]:
    """``*.json`` files below ``root``, sorted; unreadable folders and non-regular files are
    warned about and skipped."""
    def unreadable(exc: OSError) -> None:
        warnings.warn(f"skipped folder {exc.filename}: cannot be read "
                      f"({exc.strerror or exc}); its results files were not loaded",
                      ResultsWarning, stacklevel=2)

    found = []
    for folder, dirs, names in os.walk(root, onerror=unreadable):
        dirs.sort()
        for name in names:
            if not name.endswith(".json"):
                continue
            path = Path(folder) / name
            if path.is_file():
                found.append(path)
            elif path.exists():
                _warn_not_regular(path)
    return sorted(found)


def _reject_constant(token: str):
    raise ValueError(f"{token} is not valid JSON")


def read_section(path: Path) -> dict:
    """The validated flopcast section of one results file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(path, f"cannot read: {exc}") from None
    if not text.strip():
        raise ResultsFileError(path, "empty file (interrupted write?)")
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ResultsFileError(path, f"not valid JSON (truncated or corrupted?): {exc}") from None
    except RecursionError:
        raise ResultsFileError(path, "not a results file: JSON nested too deeply to read "
                                     f"(past Python's limit of {sys.getrecursionlimit()} "
                                     "levels)") from None
    if not isinstance(document, dict) or "flopcast" not in document:
        raise ResultsFileError(path, "no 'flopcast' section: not a flopcast results file "
                                     "(write one with `python -m pytest --benchmark`)",
                               field="flopcast")
    section = document["flopcast"]
    if not isinstance(section, dict):
        raise ResultsFileError(path, "must be an object", field="flopcast")
    version = section.get("schema_version")
    if version not in SCHEMA_VERSIONS:
        raise ResultsFileError(
            path, f"schema version {version!r} is not one this flopcast reads "
                  f"({', '.join(map(str, SCHEMA_VERSIONS))}); upgrade flopcast to load it",
            field="flopcast.schema_version")
    for key, kind in (("run_id", str), ("created_utc", str), ("machine", dict), ("records", list)):
        if not isinstance(section.get(key), kind):
            problem = "missing" if key not in section else f"must be {kind.__name__}"
            raise ResultsFileError(path, problem, field=f"flopcast.{key}")
    for i, record in enumerate(section["records"]):
        _validate_record(path, i, record)
    return section


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_record(path: Path, i: int, record) -> None:
    where = f"flopcast.records[{i}]"
    if not isinstance(record, dict):
        raise ResultsFileError(path, "must be an object", field=where)
    for key in TEXT_FIELDS:
        if not isinstance(record.get(key), str) or not record[key]:
            raise ResultsFileError(path, "missing or not a non-empty string", field=f"{where}.{key}")
    for key in KEY_DEFAULTS:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ResultsFileError(path, f"must be a string or null, got {record[key]!r}",
                                   field=f"{where}.{key}")
    if record.get("baseline") is not None and not isinstance(record["baseline"], bool):
        raise ResultsFileError(path, f"must be true, false or null, got {record['baseline']!r}",
                               field=f"{where}.baseline")
    if not isinstance(record.get("shape"), dict):
        raise ResultsFileError(path, "missing or not an object", field=f"{where}.shape")
    for key in ("flops", "bytes"):
        value = record.get(key)
        if not _number(value) or not value >= 0:
            raise ResultsFileError(path, f"must be a non-negative number, got {value!r}",
                                   field=f"{where}.{key}")
    for key in TIME_FIELDS:
        value = record.get(key)
        if key != "time_s" and value is None:
            continue  # only time_s is required; the spread fields may be absent or null
        if not _number(value) or not math.isfinite(value) or value < 0 or (key == "time_s" and value == 0):
            raise ResultsFileError(path, f"must be a positive finite number of seconds, got {value!r}",
                                   field=f"{where}.{key}")


def shape_str(shape: dict) -> str:
    """``{"m": 8, "n": 16, "k": 32}`` -> ``8x16x32``; a causal flag becomes a ``-causal``
    suffix."""
    dims = "x".join(str(v) for k, v in shape.items() if k != "causal")
    return dims + ("-causal" if shape.get("causal") else "")


def _cell(value):
    """Lists and objects become text, so every cell is a scalar (and storable in a database)."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def section_rows(path: Path, section: dict) -> list[dict]:
    """One tidy row per record of a validated section (before `tidy`)."""
    machine = section["machine"]
    run = {
        "run_id": section["run_id"],
        "file": str(path),
        "created_utc": section["created_utc"],
        "source": section.get("source"),
        "sweep": section.get("sweep"),
        "hostname": machine.get("hostname"),
        "flopcast_version": machine.get("flopcast"),
        "torch_version": machine.get("torch"),
        "triton_version": machine.get("triton"),
        "cuda_version": machine.get("cuda"),
        "driver_version": machine.get("driver"),
    }
    rows = []
    for record in section["records"]:
        row = dict(run)
        row["telemetry_backend"] = machine.get("telemetry_backend")
        row.update({k: _cell(v) for k, v in record.items() if k != "shape"})
        for key, default in KEY_DEFAULTS.items():
            if row.get(key) is None:
                row[key] = default
        row["out_dtype"] = row["out_dtype"] or row["dtype"]
        row["shape"] = shape_str(record["shape"])
        for dim, value in record["shape"].items():
            row[f"shape_{dim}"] = value
        rows.append(row)
    return rows


def load_results(paths: Iterable[str | Path] | str | Path, *, skip_invalid: bool = False) -> pd.DataFrame:
    """Load results files (or directories of them) into one tidy DataFrame.

    An invalid file raises `ResultsFileError`; with ``skip_invalid`` it is skipped with a
    `ResultsWarning` instead. ``df.attrs`` lists the ``skipped`` files and the ``duplicates``.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = results_files(paths)
    rows: list[dict] = []
    seen: dict[str, Path] = {}
    skipped, duplicates = [], []
    for path in files:
        try:
            section = read_section(path)
        except ResultsFileError as exc:
            if not skip_invalid:
                raise
            warnings.warn(f"skipped {exc}", ResultsWarning, stacklevel=2)
            skipped.append(str(path))
            continue
        run_id = section["run_id"]
        if run_id in seen:
            warnings.warn(f"{path}: run {run_id} is already loaded from {seen[run_id]}; counted once",
                          ResultsWarning, stacklevel=2)
            duplicates.append(str(path))
            continue
        seen[run_id] = path
        rows += section_rows(path, section)
    df = tidy(rows)
    df.attrs["files"] = [str(p) for p in seen.values()]
    df.attrs["skipped"] = skipped
    df.attrs["duplicates"] = duplicates
    return df


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Rows of record fields as the loader's DataFrame: known columns first, in a fixed order,
    times parsed, and the speedup over the fastest baseline of each problem added."""
    df = pd.DataFrame(rows)
    for col in RUN_COLUMNS + RECORD_COLUMNS:
        if col not in df.columns:
            df[col] = None
    extra = sorted(c for c in df.columns if c not in RUN_COLUMNS + RECORD_COLUMNS)
    df = df[RUN_COLUMNS + RECORD_COLUMNS + extra]
    df["created_utc"] = pd.to_datetime(df["created_utc"], utc=True, format="ISO8601")
    for col in TIME_FIELDS + ("tflops", "sustained_tflops", "gbps", "flops", "bytes"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    # TFLOP/s is recomputed from the record's FLOPs and time, never taken from the file: a
    # file whose time_s is 1e308 must not keep a rate measured at another time.
    counted = df["flops"] > 0
    df["tflops"] = (df["flops"] / df["time_s"] / 1e12).where(counted, df["tflops"])
    compared = fastest_baseline(df)
    df["speedup_vs_baseline"] = compared["speedup_vs_baseline"]
    df["baseline_impl"] = compared["baseline_impl"]
    return df


# Two records measured the same problem when these agree (speedup_vs_baseline).
PROBLEM_KEY = ["run_id", "device_name", "kernel", "dtype", "direction", "variant", "layout",
               "shape"]


def is_baseline(df: pd.DataFrame) -> pd.Series:
    """Whether each record is a baseline: its ``baseline`` field, or for records without one
    (older files) whether its impl is its family's `BASELINE_IMPL`."""
    declared = df["baseline"] if "baseline" in df.columns else pd.Series(None, index=df.index)
    old_rule = df["impl"] == df["kernel"].map(BASELINE_IMPL)
    return pd.Series([bool(d) if isinstance(d, (bool, np.bool_)) else bool(o)
                      for d, o in zip(declared, old_rule)], index=df.index, dtype=bool)


def fastest_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """Per record: ``baseline_impl``, the fastest baseline implementation measured for the
    same problem (same run, device, kernel, dtype, direction, variant, layout and shape; each
    implementation by its median time over repeated records), and ``speedup_vs_baseline``,
    that baseline's time / this time. None and NaN where the run measured no baseline of the
    problem."""
    out = pd.DataFrame({"baseline_impl": pd.Series(None, index=df.index, dtype=object),
                        "speedup_vs_baseline": pd.Series(np.nan, index=df.index)})
    if df.empty:
        return out
    base = (df[is_baseline(df)].groupby(PROBLEM_KEY + ["impl"], dropna=False)["time_s"]
            .median().reset_index().sort_values(["time_s", "impl"])
            .drop_duplicates(PROBLEM_KEY).set_index(PROBLEM_KEY))
    joined = df[PROBLEM_KEY].join(base.rename(columns={"impl": "baseline_impl",
                                                       "time_s": "baseline_time_s"}),
                                  on=PROBLEM_KEY)
    out["baseline_impl"] = joined["baseline_impl"].astype(object).where(
        joined["baseline_impl"].notna(), None)
    out["speedup_vs_baseline"] = joined["baseline_time_s"] / df["time_s"]
    return out


def best_by_kernel(df: pd.DataFrame) -> pd.DataFrame:
    """The best TFLOP/s (or GB/s where FLOPs are not counted) per kernel, impl, dtype,
    direction, variant and device: the row of the fastest case, for `flopcast results`."""
    if df.empty:
        return df
    key = ["device", "device_name", "kernel", "impl", "dtype", "direction", "variant"]
    score = df["tflops"].fillna(df["gbps"]).fillna(0.0)
    best = df.assign(_score=score).sort_values("_score", ascending=False)
    return best.drop_duplicates(key).drop(columns="_score").sort_values(key).reset_index(drop=True)
