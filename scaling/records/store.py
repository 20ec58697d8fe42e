"""The results database: many GPU nodes write runs into it, fits and plans read them back.

A store is addressed by a URL, ``sqlite:///results/flopcast.db`` (the default) or
``postgresql://USER@HOST:PORT/DB``; `scaling.records.database` parses it, masks its password in every
message, connects and retries on lock conflicts. This module holds what is stored and how.

Three tables, created on first use::

    flopcast_schema   version                 the schema version, for later migrations
    flopcast_runs     one row per results file: run id, content hash, machine, versions, time
    flopcast_records  one row per case: the loader's tidy columns, and the record as written

A run is keyed by the SHA-256 of its file's content, so uploading the same file twice, or the
same run from two nodes, stores it once ("already present"). A run and all of its records go in
one transaction: a crash or a kill halfway leaves no trace of it. Writers on SQLite take the
write lock up front (``BEGIN IMMEDIATE``), wait for each other (busy timeout, WAL journal) and
retry; on PostgreSQL the unique constraints decide which of two uploads of one run wins.

Reading back goes through the file loader's own code (`scaling.records.load`), fed the records
exactly as they were written, so `read_records` returns the same DataFrame as `load_results`
on the same files.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from scaling.records.database import describe_url, one_line, open_engine, parse_url, retry, unreachable
from scaling.errors import DataError, ResultsFileError, StoreError
from scaling.records.load import (RECORD_COLUMNS, RUN_COLUMNS, read_section, results_files,
                             section_rows, tidy)
from scaling.units import parse_duration

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------------------------

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

# Run-level fields copied from the file's `machine` section into columns of their own.
MACHINE_COLUMNS = ("hostname", "device", "device_name", "device_count", "telemetry_backend",
                   "flopcast", "torch", "triton", "cuda", "driver", "python", "os")

# A record's documented fields (results/README.md) as typed columns, so that a team can query
# the database with SQL. Family-specific fields live in `record_json`, with everything else.
RECORD_TEXT = ("name", "test", "label", "kernel", "impl", "dtype", "out_dtype", "direction",
               "variant", "layout", "shape", "device", "device_name", "telemetry_backend",
               "throttle_reasons", "power_missing_reason")
RECORD_BIGINT = ("flops", "bytes")
RECORD_INT = ("rounds", "iterations")
RECORD_FLOAT = ("time_s", "time_s_min", "time_s_mean", "time_s_stddev", "time_s_iqr", "tflops",
                "gbps", "rel_error", "tolerance", "power_window_s", "energy_j", "avg_power_w",
                "max_power_w", "tflops_per_w", "sm_clock_mhz", "mem_clock_mhz", "temp_c",
                "power_limit_w")
RECORD_BOOL = ("throttled",)

metadata = sa.MetaData()

schema_table = sa.Table(
    "flopcast_schema", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.DateTime, nullable=False),
)

runs_table = sa.Table(
    "flopcast_runs", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, unique=True),
    sa.Column("content_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("created_utc", sa.Text, nullable=False),  # as written in the file
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),  # the same, naive UTC
    sa.Column("source", sa.Text),
    sa.Column("sweep", sa.Text),
    *[sa.Column(name, sa.Integer if name == "device_count" else sa.Text)
      for name in MACHINE_COLUMNS],
    sa.Column("machine_json", sa.Text, nullable=False),
    sa.Column("source_file", sa.Text, nullable=False),  # the file's path, as uploaded
    sa.Column("record_count", sa.Integer, nullable=False),
    sa.Column("uploaded_at", sa.DateTime, nullable=False),
    sa.Column("uploaded_from", sa.Text),
)

records_table = sa.Table(
    "flopcast_records", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run", _ID, sa.ForeignKey("flopcast_runs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("position", sa.Integer, nullable=False),  # order within the file
    *[sa.Column(name, sa.Text) for name in RECORD_TEXT],
    *[sa.Column(name, sa.BigInteger) for name in RECORD_BIGINT],
    *[sa.Column(name, sa.Integer) for name in RECORD_INT],
    *[sa.Column(name, sa.Double) for name in RECORD_FLOAT],
    *[sa.Column(name, sa.Boolean) for name in RECORD_BOOL],
    sa.Column("record_json", sa.Text, nullable=False),  # the record exactly as written
    sa.UniqueConstraint("run", "position"),
    sa.Index("ix_flopcast_records_kernel_device", "kernel", "device"),
)

# --------------------------------------------------------------------------------------------
# Opening a store
# --------------------------------------------------------------------------------------------


class Store:
    """An open results database. ``write=False`` refuses to create a missing SQLite file."""

    def __init__(self, url: str | None = None, *, write: bool = False):
        self.url = parse_url(url)
        self.shown = describe_url(url)
        if self.url.get_backend_name() == "sqlite":
            path = self.url.database
            if not path or path == ":memory:":
                raise StoreError(f"{self.shown}: give the SQLite database a file, "
                                 "e.g. sqlite:///results/flopcast.db")
            if not write and not Path(path).exists():
                raise StoreError(f"no results database at {self.shown}; upload "
                                 "results there first with `flopcast upload --to URL`")
            if write:
                try:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the folder of the results database "
                                     f"{self.shown} ({Path(path).parent}): "
                                     f"{exc.strerror or exc}") from None
        self.engine = open_engine(self.url, write)
        self._connect_check()
        if write:
            self._ensure_schema()
        else:
            self._check_schema()

    # -- errors -------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Database errors as one masked line naming the store and what was being done."""
        try:
            yield
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise unreachable(self.url, self.shown, exc) from None
            raise StoreError(f"{self.shown}: {doing} failed: {one_line(exc, self.url)}") from None

    def _connect_check(self) -> None:
        """Connect once, to fail early with where the database was looked for. A lock conflict
        on connecting (SQLite's switch to WAL, taken by several first writers at once, can
        answer "database is locked" without waiting) is tried again (`retry`)."""
        def attempt():
            with self.engine.connect():
                pass

        try:
            retry(attempt)
        except sa_exc.DBAPIError as exc:
            raise unreachable(self.url, self.shown, exc) from None

    # -- schema -------------------------------------------------------------------------------

    def _schema_version(self, conn) -> int | None:
        if not sa.inspect(conn).has_table(schema_table.name):
            return None
        return conn.execute(sa.select(sa.func.max(schema_table.c.version))).scalar()

    def _ensure_schema(self) -> None:
        """Create the tables on first use, once, even with many uploaders starting together."""
        def create():
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # DDL is transactional in PostgreSQL; the lock makes concurrent first
                    # uploads create the tables one after another.
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7262851)"))
                version = self._schema_version(conn)
                if version is None:
                    metadata.create_all(conn)
                    conn.execute(schema_table.insert().values(
                        version=SCHEMA_VERSION, applied_at=_utcnow()))
                    version = SCHEMA_VERSION
                self._require_version(version)

        with self._errors("creating the schema"):
            retry(create)

    def _check_schema(self) -> None:
        with self._errors("reading the schema version"), self.engine.connect() as conn:
            version = self._schema_version(conn)
        if version is None:
            raise StoreError(f"{self.shown} holds no flopcast results yet; upload some with "
                             "`flopcast upload --to URL`")
        self._require_version(version)

    def _require_version(self, version: int) -> None:
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.shown} has schema version {version}; this flopcast "
                             f"reads version {SCHEMA_VERSION}: use a matching flopcast")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------------------------
# Uploading
# --------------------------------------------------------------------------------------------

UPLOADED, PRESENT, INVALID, CONFLICT = "uploaded", "already present", "invalid", "conflict"


@dataclass(frozen=True)
class UploadOutcome:
    """What happened to one file: ``status`` is ``uploaded``, ``already present``, ``invalid``
    (failed validation; skipped) or ``conflict`` (its run id is stored with other content;
    skipped)."""

    file: str
    status: str
    run_id: str | None = None
    records: int = 0
    message: str = ""

    @property
    def skipped(self) -> bool:
        return self.status in (INVALID, CONFLICT)


@dataclass
class UploadReport:
    """The outcome of one upload, file by file; ``ok`` is False when anything was skipped."""

    url: str  # masked
    outcomes: list[UploadOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def skipped(self) -> list[UploadOutcome]:
        return [o for o in self.outcomes if o.skipped]

    @property
    def ok(self) -> bool:
        return not self.skipped

    def summary(self, reasons: bool = True) -> str:
        """One line: what went in, what was there already, what was skipped (and why)."""
        line = (f"{self.count(UPLOADED)} uploaded, {self.count(PRESENT)} already present, "
                f"{len(self.skipped)} skipped -> {self.url}")
        if reasons:
            line += "".join(f"; skipped {o.file}: {o.message}" for o in self.skipped)
        return line

    def to_dict(self) -> dict:
        return {"url": self.url, "ok": self.ok,
                "uploaded": self.count(UPLOADED), "already_present": self.count(PRESENT),
                "skipped": len(self.skipped),
                "files": [vars(o) | {"skipped": o.skipped} for o in self.outcomes]}


def content_sha256(section: dict) -> str:
    """The key of a run: SHA-256 of its flopcast section as canonical JSON (sorted keys, no
    spaces), so the same run hashes alike however its file was indented."""
    canonical = json.dumps(section, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _typed(kind, value):
    """A record value for its typed column; None where the value does not fit the type (the
    exact value is kept in ``record_json`` either way)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if kind is sa.Text:
        return value if isinstance(value, str) else json.dumps(value)
    if kind is sa.Boolean:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind is sa.Double:
        return float(value)
    return int(value) if float(value).is_integer() else None


_RECORD_KINDS = ([(n, sa.Text) for n in RECORD_TEXT] + [(n, sa.Integer) for n in RECORD_BIGINT]
                 + [(n, sa.Integer) for n in RECORD_INT] + [(n, sa.Double) for n in RECORD_FLOAT]
                 + [(n, sa.Boolean) for n in RECORD_BOOL])


def _run_row(path: Path, section: dict, digest: str) -> dict:
    machine = section["machine"]
    created = pd.Timestamp(section["created_utc"])
    created = created.tz_convert("UTC") if created.tzinfo else created.tz_localize("UTC")
    row = {"run_id": section["run_id"], "content_sha256": digest,
           "schema_version": section["schema_version"], "created_utc": section["created_utc"],
           "created_at": created.tz_localize(None).to_pydatetime(),
           "source": section.get("source"), "sweep": section.get("sweep"),
           "machine_json": json.dumps(machine), "source_file": str(path),
           "record_count": len(section["records"]), "uploaded_at": _utcnow(),
           "uploaded_from": socket.gethostname()}
    for name in MACHINE_COLUMNS:
        row[name] = _typed(sa.Integer if name == "device_count" else sa.Text, machine.get(name))
    return row


def _record_rows(path: Path, section: dict) -> list[dict]:
    """One row per record: the loader's own tidy fields in typed columns, and the record as
    written in ``record_json``."""
    rows = []
    for position, (record, tidy_row) in enumerate(zip(section["records"], section_rows(path, section))):
        row = {name: _typed(kind, tidy_row.get(name)) for name, kind in _RECORD_KINDS}
        row.update(position=position, record_json=json.dumps(record))
        rows.append(row)
    return rows


def _insert_records(conn, run_pk: int, rows: list[dict]) -> None:
    """Insert a run's records (inside the run's transaction)."""
    if rows:
        conn.execute(records_table.insert(), [row | {"run": run_pk} for row in rows])


def _upload_section(store: Store, path: Path, section: dict) -> UploadOutcome:
    digest = content_sha256(section)
    run_id = section["run_id"]
    run_row = _run_row(path, section, digest)
    record_rows: list[dict] = []  # built only when the run is new

    def existing(conn):
        return conn.execute(sa.select(runs_table.c.content_sha256, runs_table.c.source_file)
                            .where(sa.or_(runs_table.c.content_sha256 == digest,
                                          runs_table.c.run_id == run_id))).first()

    def attempt() -> UploadOutcome:
        found = None
        try:
            with store.engine.begin() as conn:  # one transaction: the run and all its records
                found = existing(conn)
                if found is None:
                    record_rows[:] = record_rows or _record_rows(path, section)
                    inserted = conn.execute(runs_table.insert().values(**run_row))
                    run_pk = inserted.inserted_primary_key[0]
                    _insert_records(conn, run_pk, record_rows)
        except sa_exc.IntegrityError:
            # Another uploader stored this run between our check and our insert (PostgreSQL
            # makes us wait for its commit, then reports the unique key as taken).
            with store.engine.connect() as conn:
                found = existing(conn)
            if found is None:
                raise
        if found is None:
            return UploadOutcome(str(path), UPLOADED, run_id, len(record_rows),
                                 f"uploaded {len(record_rows)} records")
        if found.content_sha256 == digest:
            return UploadOutcome(str(path), PRESENT, run_id, 0,
                                 f"already present (from {found.source_file})")
        return UploadOutcome(str(path), CONFLICT, run_id, 0,
                             f"run {run_id} is already stored with different content (from "
                             f"{found.source_file}); kept the stored copy, skipped this file")

    with store._errors(f"uploading {path}"):
        return retry(attempt)


def upload_files(paths: Iterable[str | Path] | str | Path, url: str | None = None) -> UploadReport:
    """Upload results files (or directories of them) into the store at ``url`` (default
    ``sqlite:///results/flopcast.db``), one transaction per run.

    Every file goes through the validating loader first; an invalid one is reported by name
    and skipped while the others still upload. A store that cannot be reached raises
    `StoreError` before anything is written. Local files are only ever read.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = results_files(paths)
    with Store(url, write=True) as store:
        report = UploadReport(store.shown)
        for path in files:
            try:
                section = read_section(path)
            except ResultsFileError as exc:
                problem = f"field '{exc.field}': {exc.problem}" if exc.field else exc.problem
                report.outcomes.append(UploadOutcome(str(path), INVALID, message=problem))
                continue
            report.outcomes.append(_upload_section(store, path, section))
    return report


# --------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------


def parse_since(text) -> datetime:
    """``--since``: a date (``2026-11-01``), a time (``2026-11-01T12:00``, UTC unless it says
    otherwise) or an age (``90m``, ``12h``, ``7d``, ``2w``), as a naive UTC datetime."""
    if isinstance(text, datetime):
        stamp = pd.Timestamp(text)
    else:
        try:  # an age, read as every duration is
            age_s = parse_duration(text, "--since", unit=None)
        except DataError:
            age_s = None  # not an age: a date or a time
        if age_s is not None:
            try:
                return _utcnow() - timedelta(seconds=age_s)
            except OverflowError:
                raise DataError(f"--since '{text}' reaches back before the year 1; give an "
                                "age within 9999 years, or leave --since out for every "
                                "run") from None
        try:
            stamp = pd.Timestamp(str(text).strip())
        except ValueError:
            stamp = pd.NaT
        if stamp is pd.NaT:
            raise DataError(f"--since '{text}': expected a date (2026-11-01), a UTC time "
                            "(2026-11-01T12:00) or an age (90m, 12h, 7d, 2w)")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def filter_records(df: pd.DataFrame, *, device: str | None = None, kernel: str | None = None,
                   since=None) -> pd.DataFrame:
    """The loader's DataFrame narrowed as `read_records` narrows the database: ``device``
    matches the device kind exactly (``cuda``, ``cpu``) or part of the device name
    (``H100``), ignoring case; ``kernel`` is a family or a comma-separated list of them;
    ``since`` keeps runs created at or after that time (see `parse_since`)."""
    keep = pd.Series(True, index=df.index)
    if device:
        needle = device.lower()
        keep &= (df["device"].astype(str).str.lower() == needle) | \
            df["device_name"].astype(str).str.lower().str.contains(needle, regex=False)
    if kernel:
        keep &= df["kernel"].isin(_kernels(kernel))
    if since is not None:
        keep &= df["created_utc"] >= pd.Timestamp(parse_since(since), tz="UTC")
    if bool(keep.all()):
        return df
    out = _drop_empty_extras(df[keep].reset_index(drop=True))
    out.attrs = dict(df.attrs)
    return out


def _drop_empty_extras(df: pd.DataFrame) -> pd.DataFrame:
    """Without the family-specific columns (``shape_seq``, ``busbw_gbps``...) that no row left
    has a value in: a filtered frame has the columns of its own records, from files or not."""
    fixed = set(RUN_COLUMNS + RECORD_COLUMNS + ["speedup_vs_baseline", "baseline_impl"])
    empty = [c for c in df.columns if c not in fixed and df[c].isna().all()]
    return df.drop(columns=empty)


def _kernels(text: str) -> list[str]:
    return [k.strip() for k in str(text).split(",") if k.strip()]


def read_records(url: str | None = None, device: str | None = None, kernel: str | None = None,
                 since=None) -> pd.DataFrame:
    """The records in the store as the file loader's DataFrame (`scaling.records.load.load_results`),
    filtered like `filter_records`. Rows come in run time order, then by file, then in the
    order the file lists them. ``df.attrs["files"]`` names the files the runs came from.

    Unfiltered, the frame equals ``load_results`` on the uploaded files, dtypes and all.
    Filtered, it holds the same rows, columns and values as ``filter_records`` on that frame;
    dtypes follow the rows present (pandas may make a column int here and float there)."""
    r, rec = runs_table, records_table
    query = (sa.select(r.c.id, r.c.run_id, r.c.created_utc, r.c.source, r.c.sweep,
                       r.c.schema_version, r.c.machine_json, r.c.source_file,
                       rec.c.record_json)
             .join(rec, rec.c.run == r.c.id)
             .order_by(r.c.created_at, r.c.source_file, r.c.run_id, rec.c.position))
    if device:
        needle = device.lower()
        query = query.where(sa.or_(sa.func.lower(rec.c.device) == needle,
                                   sa.func.lower(rec.c.device_name).contains(needle,
                                                                             autoescape=True)))
    if kernel:
        query = query.where(rec.c.kernel.in_(_kernels(kernel)))
    if since is not None:
        query = query.where(r.c.created_at >= parse_since(since))

    with Store(url) as store, store._errors("reading records"), store.engine.connect() as conn:
        result = conn.execute(query).all()

    sections: dict[int, tuple[str, dict]] = {}
    for row in result:
        if row.id not in sections:
            sections[row.id] = (row.source_file, {
                "schema_version": row.schema_version, "run_id": row.run_id,
                "created_utc": row.created_utc, "source": row.source, "sweep": row.sweep,
                "machine": json.loads(row.machine_json), "records": []})
        sections[row.id][1]["records"].append(json.loads(row.record_json))
    rows: list[dict] = []
    for source_file, section in sections.values():
        rows += section_rows(source_file, section)
    df = tidy(rows)
    if device or kernel or since is not None:
        df = _drop_empty_extras(df)
    df.attrs.update(files=[f for f, _ in sections.values()], skipped=[], duplicates=[])
    return df


def list_runs(url: str | None = None) -> pd.DataFrame:
    """One row per stored run: when and where it ran, what it holds, who uploaded it."""
    r = runs_table
    columns = [r.c.run_id, r.c.created_utc, r.c.hostname, r.c.device, r.c.device_name,
               r.c.source, r.c.sweep, r.c.record_count, r.c.flopcast, r.c.torch, r.c.triton,
               r.c.cuda, r.c.source_file, r.c.uploaded_at, r.c.uploaded_from]
    with Store(url) as store, store._errors("listing runs"), store.engine.connect() as conn:
        result = conn.execute(sa.select(*columns).order_by(r.c.created_at, r.c.source_file))
        return pd.DataFrame(result.all(), columns=list(result.keys()))
