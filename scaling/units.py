"""Numbers with units, for people: one home for how flopcast writes (and reads) them.

Standard library only, so the measuring half (``bench``) can import it without pulling in the
planning half's dependencies.

**Time.** A duration is written in the largest of ns, us, ms and s that keeps it at or above 1
(``3.2 us``, ``17.7 ms``, ``2.25 s``), with three significant digits, as pytest-benchmark
scales its tables, and always with its unit: that is how the benchmark's progress lines and
summary and `flopcast results` write every time, in tables too, where one column can hold
microsecond kernels beside a fit of seconds. Where a column's values are close enough to share
one unit, `time_unit` picks it (by the smallest value) so the numbers compare by eye.
"""

from __future__ import annotations

import math
from typing import Iterable

# (name, seconds per unit), largest first.
TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))


def time_unit(seconds: Iterable[float | None]) -> tuple[str, float]:
    """The unit (name, seconds per unit) for a set of durations: the largest unit in which the
    smallest positive finite one is at least 1; seconds when there is none."""
    finite = [abs(s) for s in seconds if s is not None and math.isfinite(s) and s != 0]
    if not finite:
        return TIME_UNITS[0]
    smallest = min(finite)
    for name, scale in TIME_UNITS:
        if smallest >= scale:
            return name, scale
    return TIME_UNITS[-1]


def format_seconds(seconds: float | None, unit: tuple[str, float] | None = None,
                   digits: int = 3) -> str:
    """``seconds`` in ``unit`` (default: its own, `time_unit`), with the unit's name:
    ``format_seconds(0.0177)`` is ``'17.7 ms'``; ``'-'`` for a missing value."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    # The unit of the value as written: 0.99999 s is "1 s", not "1e+03 ms".
    name, scale = unit or time_unit([_significant(seconds, digits)])
    value = _significant(seconds / scale, digits)
    text = f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return f"{text} {name}"


def _significant(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")
