"""Where a command's measurements come from: results files (default ``results/``).

Every command that reads results uses `add_results_arguments` and `load_records`, so a new
source or filter reaches all of them at once. The loader (pandas) and the database
(SQLAlchemy) are imported only when records are loaded, so building the parser stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from functools import partial
from typing import TYPE_CHECKING

from scaling.errors import DataError
from scaling.model.config import model_presets
from scaling.units import binary_spelling, parse_count, parse_whole

if TYPE_CHECKING:
    import pandas as pd


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model a command works on: a preset by name, or ``--params N`` for a Llama-like
    model of N parameters (`scaling.model.config.resolve_model` reads both)."""
    parser.add_argument("name", nargs="?", metavar="NAME",
                        help="model preset: " + ", ".join(sorted(model_presets())))
    parser.add_argument("--params", metavar="N", type=partial(parse_count, what="--params"),
                        help="a Llama-like model of N parameters instead (405e9, 405B, 1.2T)")


def add_results_arguments(parser: argparse.ArgumentParser, *, positional: bool = True) -> None:
    if positional:
        default_paths = ["results"]  # kept by identity: tells "no PATH given" apart
        parser.add_argument("paths", nargs="*", metavar="PATH", default=default_paths,
                            help="results files or folders of them (default: results/)")
        parser.set_defaults(results_default_paths=default_paths)
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip files that fail validation (one warning each) instead of stopping")
    db = parser.add_argument_group("results database and filters")
    db.add_argument("--from", dest="from_url", metavar="URL",
                    help="read records from a results database instead of files: "
                         "sqlite:///PATH or postgresql://USER@HOST:PORT/DB (see `flopcast upload`)")
    db.add_argument("--device", help="only records on this device: cuda, cpu, or part of its "
                                     "name (H100); ignores case")
    db.add_argument("--kernel", help="only these kernel families, comma-separated (gemm,attention)")
    db.add_argument("--since", metavar="WHEN",
                    help="only runs from this UTC date or time (2026-11-01, 2026-11-01T12:00) or "
                         "this recent (12h, 7d, 2w)")


def add_profile_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device`` for a command whose ``--hardware`` may be a results file or folder: the
    device to build the profile of when the records hold several."""
    parser.add_argument("--device", metavar="NAME",
                        help="with --hardware a results file or folder holding several "
                             "devices, the one to profile: cuda, cpu, or part of its name "
                             "(A100); ignores case")


def _filters(args: argparse.Namespace) -> dict:
    return {key: getattr(args, key, None) for key in ("device", "kernel", "since")}


@contextlib.contextmanager
def results_warnings_to_stderr():
    """Inside: each `ResultsWarning` (a skipped file or folder, a run found twice) becomes one
    ``flopcast: warning:`` line on stderr, after the block; other warnings are shown as usual."""
    from scaling.records.load import ResultsWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, ResultsWarning):
                    print(f"flopcast: warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def load_records(args: argparse.Namespace, paths=None) -> pd.DataFrame:
    """The records the command's arguments point at, as the loader's DataFrame. Warnings
    (skipped files, runs found twice) go to stderr, one line each. With ``--from URL`` the
    records come from the results database instead; ``--device``, ``--kernel`` and
    ``--since`` narrow either source alike."""
    filters = _filters(args)
    url = getattr(args, "from_url", None)
    if url:
        given = paths if paths is not None else getattr(args, "paths", None)
        if given and given is not getattr(args, "results_default_paths", None):
            raise DataError("give results files or --from URL, not both")
        from scaling.records.store import read_records

        return read_records(url, **filters)
    from scaling.records.load import load_results

    paths = paths if paths is not None else args.paths
    with results_warnings_to_stderr():
        df = load_results(paths, skip_invalid=getattr(args, "skip_invalid", False))
    if any(value is not None for value in filters.values()):
        from scaling.records.store import filter_records

        df = filter_records(df, **filters)
    return df


def source_name(args: argparse.Namespace) -> str:
    """Where the records came from, fit to print (a database URL with its password masked)."""
    url = getattr(args, "from_url", None)
    if url:
        from scaling.records.database import describe_url

        return describe_url(url)
    return ", ".join(map(str, getattr(args, "paths", None) or []))


def runs_table(args: argparse.Namespace, df: pd.DataFrame) -> str:
    """The database's runs behind ``df`` (after the filters), one line each: when, where, what."""
    from scaling.output import format_table
    from scaling.records.store import list_runs

    runs = list_runs(args.from_url)
    runs = runs[runs["run_id"].isin(set(df["run_id"]))]
    rows = [{"run": r["run_id"][:8], "created": r["created_utc"], "host": r["hostname"] or "-",
             "device": r["device_name"] or "-", "sweep": r["sweep"] or "-",
             "records": int(r["record_count"]),
             "uploaded": f"{r['uploaded_at']:%Y-%m-%d %H:%M} from {r['uploaded_from'] or '-'}"}
            for r in runs.to_dict("records")]
    columns = [("run", "run"), ("created", "created (UTC)"), ("host", "host"),
               ("device", "device"), ("sweep", "sweep"), ("records", "records"),
               ("uploaded", "uploaded")]
    return f"Runs in {source_name(args)}:\n" + format_table(rows, columns)


def parse_batch_tokens(text: str, seq: int) -> int:
    """Tokens per step (``2048x8192``, ``16Mi``, ``16777216``), which must be a whole number
    of ``seq``-token sequences; if not, the error suggests the nearest spellings that are."""
    tokens = parse_whole(text, "--batch-tokens", products=True)
    if tokens >= seq and tokens % seq == 0:
        return tokens
    hints = []
    binary = binary_spelling(text)
    if binary and binary[1] % seq == 0:
        hints.append(f"{binary[0]} ({binary[1] // seq}x{seq} = {binary[1]:,})")
    nearest = max(1, round(tokens / seq))
    hints.append(f"{nearest}x{seq} ({nearest * seq:,})")
    raise DataError(f"--batch-tokens {text} is {tokens:,} tokens, {tokens / seq:,.7g} "
                    f"sequences of {seq:,}: not a whole number of sequences; did you mean "
                    + " or ".join(hints) + "?")
