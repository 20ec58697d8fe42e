"""`flopcast upload`: put results files into a results database that a team shares.

Each file is validated by the loader and stored as one run, in one transaction. A file whose
run is stored already is reported "already present"; an invalid file is reported by name and
skipped while the others go in, and the exit code is then 1. Local files are only read.
"""

from __future__ import annotations

import sys

from scaling.cli.inputs import results_warnings_to_stderr
from scaling.records.database import DEFAULT_URL
from scaling.output import format_table, print_json

TABLE = [("file", "file"), ("status", "status"), ("records", "records"), ("note", "note")]


def register(sub):
    p = sub.add_parser(
        "upload", help="upload results files into a results database (SQLite or PostgreSQL)",
        description="Validate results files and store each run once in a results database. "
                    "Exit code 1 when a file was skipped (invalid, or its run id stored with "
                    "other content), 2 when the database cannot be used.")
    p.add_argument("paths", nargs="*", metavar="PATH", default=["results"],
                   help="results files or folders of them (default: results/)")
    p.add_argument("--to", dest="url", metavar="URL", default=DEFAULT_URL,
                   help="database URL: sqlite:///PATH (default: %(default)s) or "
                        "postgresql://USER@HOST:PORT/DB; the password comes from the URL, "
                        "PGPASSWORD or ~/.pgpass and is never printed")
    p.add_argument("--json", action="store_true", help="print JSON: the outcome of every file")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from scaling.records.store import UPLOADED, upload_files

    with results_warnings_to_stderr():
        report = upload_files(args.paths, args.url)
    for outcome in report.skipped:
        print(f"flopcast upload: skipped {outcome.file}: {outcome.message}", file=sys.stderr)
    if args.json:
        print_json(report.to_dict())
    else:
        rows = [{"file": o.file, "status": o.status, "records": o.records,
                 "note": "" if o.status == UPLOADED else o.message}
                for o in report.outcomes]
        if rows:
            print(format_table(rows, TABLE))
        print(f"\n{report.summary(reasons=False)}")
    return 0 if report.ok else 1
