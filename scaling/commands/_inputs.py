"""Where a command's measurements come from: results files (default ``results/``).

Every command that reads results uses `add_results_arguments` and `load_records`, so a new
source or filter reaches all of them at once.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import pandas as pd

from scaling.records import ResultsWarning, load_results


def add_results_arguments(parser: argparse.ArgumentParser, *, positional: bool = True,
                          default=("results",)) -> None:
    if positional:
        parser.add_argument("paths", nargs="*", metavar="PATH", default=list(default),
                            help="results files or folders of them (default: results/)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip files that fail validation (one warning each) instead of stopping")


def load_records(args: argparse.Namespace, paths=None) -> pd.DataFrame:
    """The records the command's arguments point at, as the loader's DataFrame. Warnings
    (skipped files, runs found twice) go to stderr, one line each."""
    paths = paths if paths is not None else args.paths
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        df = load_results(paths, skip_invalid=getattr(args, "skip_invalid", False))
    for w in caught:
        if issubclass(w.category, ResultsWarning):
            print(f"flopcast: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return df
