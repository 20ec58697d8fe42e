"""Writing results files (schema: `scaling.schema`, tabled in results/README.md).

A results file is written atomically: the JSON goes to a temporary file in the target folder,
is flushed and fsynced, and is renamed over the final name (an atomic step on POSIX and
Windows). A crash at any moment leaves either no file or the whole file, never half of one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

from scaling.schema import SCHEMA_VERSION, jsonable

def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode open() would (0666 less the umask),
        # so a team sharing the results folder can read it. The umask can only be read by
        # setting it, so it is set back at once.
        umask = os.umask(0o022)
        os.umask(umask)
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def flopcast_section(records: list[dict], machine: dict, *, source: str, sweep: str | None,
                     run_id: str | None = None, created_utc: str | None = None) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id or uuid.uuid4().hex,
        "created_utc": created_utc or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "sweep": sweep,
        "machine": machine,
        "records": records,
    }


def results_filename(section: dict) -> str:
    stamp = section["created_utc"].replace("+00:00", "Z").replace(":", "").replace("-", "")
    host = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(section["machine"].get("hostname") or "host"))
    return f"flopcast-{stamp}-{host}-{section['run_id'][:8]}.json"


def write_results(records: list[dict], machine: dict, results_dir, *, source: str,
                  sweep: str | None, benchmark_json: dict | None = None) -> Path:
    """Write one results file into ``results_dir`` and return its path.

    ``benchmark_json`` is pytest-benchmark's own JSON for the run (when there is one); the
    flopcast section is added beside its keys, so pytest-benchmark's tools still read the file.
    """
    section = flopcast_section(records, machine, source=source, sweep=sweep)
    return write_section(section, results_dir, benchmark_json)


def write_section(section: dict, results_dir, benchmark_json: dict | None = None) -> Path:
    """Write an already built flopcast section (with pytest-benchmark's JSON, if any). Its
    records were validated when `scaling.schema.make_record` built them."""
    document = dict(benchmark_json or {"machine_info": {}, "commit_info": {}, "benchmarks": []})
    document["flopcast"] = section
    path = Path(results_dir) / results_filename(section)
    text = json.dumps(jsonable(document), indent=1, allow_nan=False, default=str)
    atomic_write_text(path, text + "\n")
    return path


# -- the journal of a run in progress ----------------------------------------------------------
#
# Each finished case's record is appended to the run's journal, one JSON line, flushed and
# fsynced, in the results folder; the results file is built from the journal at the end and the
# journal removed once the file is safely written. A run that is interrupted, or whose final
# write fails (a full disk), leaves every finished record in the journal and says where.

JOURNAL_SUFFIX = ".journal.jsonl"


def journal_path(results_dir, run_id: str) -> Path:
    return Path(results_dir) / f"flopcast-{run_id[:8]}{JOURNAL_SUFFIX}"


def start_journal(results_dir, run_id: str) -> Path:
    """Create the run's (empty) journal, which proves the results folder writable before the
    first case runs; raises OSError (with the reason) when it is not."""
    path = journal_path(results_dir, run_id)
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.flush()
        os.fsync(f.fileno())
    return path


def append_journal(path: Path, records: list[dict]) -> None:
    """Append ``records`` to the journal, one JSON line each, durably (fsync)."""
    if not records:
        return
    text = "".join(json.dumps(jsonable(r), allow_nan=False, default=str) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_journal(path: Path) -> list[dict]:
    """The records of a journal; a last line cut short by a crash is left out."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # only the line being written when the process died can be incomplete
    return records
