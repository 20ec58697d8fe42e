"""Printing: aligned text tables for people, JSON for machines (JSON-safe values by
`scaling.schema.jsonable`, the same conversion results files are written with).

Standard library only, so the measuring half (``bench``) can print its tables with it."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Iterable, Sequence

from scaling.schema import jsonable


def to_json(obj: Any) -> str:
    return json.dumps(jsonable(obj), indent=2, allow_nan=False)


def print_json(obj: Any, file=None) -> None:
    print(to_json(obj), file=file or sys.stdout)


def fmt_num(value: Any, digits: int = 3) -> str:
    """Compact human formatting: 3 significant digits, SI-style exponents for big numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int) and abs(value) < 10**6:
        return f"{value:,}"
    value = float(value)
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e6:
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return f"{value:.{digits - 1}e}"


def format_table(rows: Iterable[dict], columns: Sequence[tuple],
                 align_right: Iterable[str] = ()) -> str:
    """Rows of dicts as an aligned table; ``columns`` is (key, header) pairs, or (key, header,
    format) where ``format`` writes a value of that column (default `fmt_num`; e.g.
    `scaling.units.format_seconds` for durations). Numbers are right-aligned, text left-aligned;
    ``align_right`` names the columns of numbers already written as text (``258M``, ``$545M``),
    right-aligned too."""
    rows = list(rows)
    right = set(align_right)
    keys = [column[0] for column in columns]
    formats = [column[2] if len(column) > 2 else fmt_num for column in columns]
    cells = [[r.get(key) if isinstance(r.get(key), str) else write(r.get(key))
              for key, write in zip(keys, formats)] for r in rows]
    headers = [column[1] for column in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    numeric = [key in right or all(not isinstance(r.get(key), str) for r in rows)
               for key in keys]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)
