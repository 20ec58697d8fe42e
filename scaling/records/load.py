"""Loading results files into one tidy DataFrame, validating as it goes.

The schema and its rules are `scaling.schema` (tabled in results/README.md); this module reads
files and makes the DataFrame. One row per record, units in column names. Every problem names the
file and the field: a truncated or non-JSON file, a file without a flopcast section, a schema
version this flopcast does not read, a missing or mistyped field, a negative or NaN time. The
same run (same ``run_id``) found in several files is counted once and reported.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from scaling import schema
from scaling.errors import ResultsFileError
from scaling.schema import KEY_DEFAULTS, TIME_FIELDS, shape_str

SCHEMA_VERSIONS = schema.READABLE_VERSIONS

RUN_COLUMNS = ["run_id", "file", "created_utc", "source", "sweep", "hostname",
               "flopcast_version", "torch_version", "triton_version", "cuda_version",
               "driver_version"]
RECORD_COLUMNS = list(schema.FIELD_NAMES)


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
    try:
        schema.validate_section(section)
    except schema.SchemaError as exc:
        raise ResultsFileError(path, exc.problem, field=exc.field) from None
    return section


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
    """Whether each record is a baseline (`scaling.schema.is_baseline`: its ``baseline``
    field, or the documented fallback for older files without one)."""
    return pd.Series([schema.is_baseline(r) for r in df[["kernel", "impl"] + (
        ["baseline"] if "baseline" in df.columns else [])].to_dict("records")],
        index=df.index, dtype=bool)


def fastest_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """Per record: ``baseline_impl``, the fastest baseline implementation measured for the
    same problem (same run, device, kernel, dtype, direction, variant, layout and shape; each
    implementation by its median time over repeated records), and ``speedup_vs_baseline``,
    that baseline's time / this time (`scaling.schema.fastest_baselines`). None and NaN where
    the run measured no baseline of the problem."""
    out = pd.DataFrame({"baseline_impl": pd.Series(None, index=df.index, dtype=object),
                        "speedup_vs_baseline": pd.Series(np.nan, index=df.index)})
    if df.empty:
        return out
    columns = PROBLEM_KEY + ["impl", "time_s", "kernel"] + (
        ["baseline"] if "baseline" in df.columns else [])
    rows = df[list(dict.fromkeys(columns))].astype(object).to_dict("records")
    compared = schema.fastest_baselines(rows, PROBLEM_KEY)
    out["baseline_impl"] = pd.Series([impl for impl, _ in compared], index=df.index, dtype=object)
    out["speedup_vs_baseline"] = pd.Series([np.nan if s is None else s for _, s in compared],
                                           index=df.index, dtype=float)
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
