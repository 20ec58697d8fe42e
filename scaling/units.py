"""Numbers with units, for people: one home for how flopcast writes (and reads) them.

Standard library only (and `scaling.errors`, which is too), so the measuring half (``bench``)
can import it without pulling in the planning half's dependencies.

**Time.** A duration is written in the largest of ns, us, ms and s that keeps it at or above 1
(``3.2 us``, ``17.7 ms``, ``2.25 s``), with three significant digits, as pytest-benchmark
scales its tables, and always with its unit: that is how the benchmark's progress lines and
summary and `flopcast results` write every time, in tables too, where one column can hold
microsecond kernels beside a fit of seconds. Where a column's values are close enough to share
one unit, `time_unit` picks it (by the smallest value) so the numbers compare by eye.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Iterable

from scaling.errors import DataError  # itself standard library only

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


# -- counts, money, power and energy, for people ---------------------------------------------
#
# A plan's answer is written the way people say it: 656 days, 258M GPU-hours, 23 MW, $545M.
# Counts of a million and more take SI multipliers (K, M, B, T: thousand, million, billion,
# trillion); below that they are grouped by thousands (16,384). Three significant digits.
# Machine output (``--json``) keeps the raw numbers.

#: Multipliers for large counts, largest first.
COUNT_SUFFIXES = (("T", 1e12), ("B", 1e9), ("M", 1e6))
WATT_UNITS = (("GW", 1e9), ("MW", 1e6), ("kW", 1e3), ("W", 1.0))
WATT_HOUR_UNITS = (("TWh", 1e12), ("GWh", 1e9), ("MWh", 1e6), ("kWh", 1e3), ("Wh", 1.0))
#: Rounding to three significant digits moves a figure by up to this fraction: an interval
#: whose ends are nearer the value than that says nothing the figure does not.
ROUNDING = 0.005


def _missing(value) -> bool:
    return value is None or isinstance(value, bool) or not math.isfinite(float(value))


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, grouped by thousands where it has more
    integer digits than that: ``23.4``, ``656``, ``5,090``, ``0.462``; below 1e-4 in exponent
    form (``1.97e-5``)."""
    rounded = float(f"{value:.{digits}g}")
    if abs(rounded) >= 10 ** digits:
        return f"{rounded:,.0f}"
    text = f"{rounded:.{digits}g}"
    return format_flops(rounded, digits) if "e" in text else text


def format_count(value: float | None, digits: int = 3) -> str:
    """A count for people: ``16,384``, ``5,090``, ``258M``, ``2.01T``; exponent form from 1e15
    (``3.8e26``); ``'-'`` for a missing value."""
    if _missing(value):
        return "-"
    value = float(value)
    if abs(value) >= 1e15:
        return format_flops(value, digits)
    for suffix, scale in COUNT_SUFFIXES:
        if abs(value) >= scale * (1 - 0.5 * 10 ** -digits):  # 999,999,999 is 1B
            return significant(value / scale, digits) + suffix
    if value == int(value):
        return f"{int(value):,}"
    return significant(value, digits)


def format_usd(value: float | None, digits: int = 3) -> str:
    """Dollars: ``$545M``, ``$1.23B``, ``$2``, ``$0.08``."""
    if _missing(value):
        return "-"
    return ("-$" if value < 0 else "$") + format_count(abs(float(value)), digits)


def _scaled(value: float | None, units, digits: int) -> str:
    if _missing(value):
        return "-"
    value = float(value)
    for name, scale in units:
        if abs(value) >= scale * (1 - 0.5 * 10 ** -digits):
            return f"{significant(value / scale, digits)} {name}"
    name, scale = units[-1]
    return f"{significant(value / scale, digits)} {name}"


def format_watts(watts: float | None, digits: int = 3) -> str:
    """Power: ``700 W``, ``10.2 kW``, ``23 MW``, ``1.2 GW``."""
    return _scaled(watts, WATT_UNITS, digits)


def format_watt_hours(watt_hours: float | None, digits: int = 3) -> str:
    """Energy: ``362 GWh``, ``5.6 kWh``."""
    return _scaled(watt_hours, WATT_HOUR_UNITS, digits)


def format_days(days: float | None, digits: int = 3) -> str:
    """A run's wall-clock time: ``656 days``, ``1 day``, ``0.5 days``."""
    if _missing(days):
        return "-"
    text = significant(float(days), digits)
    return f"{text} day" if text == "1" else f"{text} days"


def format_flops(value: float | None, digits: int = 3) -> str:
    """A FLOP count in exponent form, as papers write budgets: ``3.8e26``, ``1e24``."""
    if _missing(value):
        return "-"
    mantissa, _, exponent = f"{float(value):.{digits}g}".partition("e")
    if not exponent:
        return mantissa
    return f"{mantissa}e{int(exponent)}"


def wider_than_rounding(value: float | None, interval) -> bool:
    """Whether ``interval`` (lo, hi) says more than ``value`` printed to three significant
    digits: an end further from the value than `ROUNDING` of it."""
    if _missing(value) or not interval or any(_missing(x) for x in interval):
        return False
    return max(abs(interval[0] - value), abs(interval[1] - value)) > ROUNDING * abs(value)


def with_interval(value: float | None, interval, fmt=format_count) -> str:
    """``fmt(value)``, followed by ``[lo..hi]`` only where the interval is wider than the
    rounding (`wider_than_rounding`); a unit the ends share with the value is written once
    (``72.6 days [58.1..96.8]``)."""
    text = fmt(value)
    if not wider_than_rounding(value, interval):
        return text
    lo, hi = fmt(interval[0]), fmt(interval[1])
    unit = text[text.rfind(" "):] if " " in text else ""
    if unit and lo.endswith(unit) and hi.endswith(unit):
        lo, hi = lo.removesuffix(unit), hi.removesuffix(unit)
    return f"{text} [{lo}..{hi}]"


# -- reading numbers typed on the command line -----------------------------------------------
#
# One grammar for every number a command reads. A number is digits with an optional fraction
# and exponent (``16384``, ``0.41``, ``3.8e26``); underscores may separate digits
# (``16_384``). Counts may end in an SI multiplier, K M B T (thousand, million, billion,
# trillion: ``405B``, ``15.6T``), or a binary one, Ki Mi Gi Ti (``16Mi`` = 16 x 2^20); where a
# command accepts products, ``AxB`` multiplies (``2048x8192``). Sizes in bytes take units
# (``64KB`` = 64,000, ``64KiB`` = 65,536); durations take s, m (minutes), h, d, w. Commas are
# refused: ``16,384`` could be one number or a list of two, so lists are written with spaces
# (``--gpus 16384 100000``) or by repeating the flag. Every refusal is a `DataError` that says
# how to write the value.

SI_MULTIPLIERS = {"K": 10 ** 3, "M": 10 ** 6, "B": 10 ** 9, "T": 10 ** 12}
BINARY_MULTIPLIERS = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}
SIZE_UNITS = {"B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
              "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40}
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

_NUMBER = r"[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?"
_NUMBER_WITH = re.compile(rf"({_NUMBER})([A-Za-z]*)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _refuse_commas(text: str, what: str, several: bool) -> None:
    if "," not in text:
        return
    parts = [p.strip() for p in text.split(",") if p.strip()]
    spaced = " ".join(parts)
    lists = f"; for several values write '{what} {spaced}'" if several else ""
    if _THOUSANDS.fullmatch(text.strip()):
        joined = text.replace(",", "")
        raise DataError(f"{what} '{text}' is ambiguous (one number with a thousands separator, "
                        f"or a list?): write {joined} or {text.replace(',', '_')} for one "
                        f"number{lists}")
    raise DataError(f"{what} '{text}': commas are not accepted"
                    + (f"; write several values as '{what} {spaced}' or repeat {what}"
                       if several else "; write one number such as 16384 or 16_384"))


def _split_number(text: str, what: str, example: str) -> tuple[Fraction, str]:
    """(number, the letters after it) of ``text``, or a DataError naming ``what``. The number
    is exact, so that ``36893489T`` is 36,893,489 x 10^12 to the last digit."""
    match = _NUMBER_WITH.fullmatch(text.strip())
    if not match:
        raise DataError(f"{what} '{text}' is not a number; write e.g. {example}")
    digits = match.group(1).replace("_", "")
    exponent = digits.lower().partition("e")[2]
    if exponent and abs(int(exponent)) > 400:  # beyond any float; kept from exact arithmetic
        raise DataError(f"{what} '{text}' is not a finite number")
    return Fraction(digits), match.group(2)


def _multiplier(suffix: str, what: str, text: str) -> int:
    if not suffix:
        return 1
    for table in (SI_MULTIPLIERS, BINARY_MULTIPLIERS):
        for name, scale in table.items():
            if suffix.lower() == name.lower():
                return scale
    raise DataError(f"{what} '{text}': unknown multiplier '{suffix}'; use K, M, B, T "
                    f"(10^3..10^12) or Ki, Mi, Gi, Ti (2^10..2^40)")


COUNT_EXAMPLE = "16384, 16_384, 16Ki, 405B, 15.6T or 3.8e26"


def parse_number(text, what: str = "value", *, several: bool = False) -> float:
    """A plain number (``400``, ``0.41``, ``2e-5``, ``1_000``), no multipliers."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return _checked(float(text), what, text)
    text = str(text)
    _refuse_commas(text, what, several)
    value, suffix = _split_number(text, what, "400, 0.41 or 2e-5")
    if suffix:
        raise DataError(f"{what} '{text}' takes a plain number, without '{suffix}'")
    return _float(value, what, text)


def _exact_count(text, what: str, products: bool, several: bool) -> Fraction:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return Fraction(_checked(text, what, text))
    text = str(text)
    _refuse_commas(text, what, several)
    factors = re.split("[xX]", text) if products else [text]
    if len(factors) > 1 and not all(f.strip() for f in factors):
        raise DataError(f"{what} '{text}': a product needs a number on each side of 'x' "
                        f"(e.g. 2048x8192)")
    value = Fraction(1)
    for factor in factors:
        number, suffix = _split_number(factor, what, COUNT_EXAMPLE)
        value *= number * _multiplier(suffix, what, text)
    return value


def parse_count(text, what: str = "count", *, products: bool = False,
                several: bool = False) -> float:
    """A count: a number with an optional SI (K, M, B, T) or binary (Ki, Mi, Gi, Ti)
    multiplier; with ``products``, factors joined by ``x`` (``2048x8192``, ``2Kix8Ki``).
    ``several``: the flag takes a list (the comma message then says how to write one)."""
    return _float(_exact_count(text, what, products, several), what, text)


def parse_whole(text, what: str = "count", *, products: bool = False,
                several: bool = False) -> int:
    """A count that must be a whole number (GPUs, sequences, tokens), exactly."""
    value = _exact_count(text, what, products, several)
    if value.denominator != 1:
        raise DataError(f"{what} '{text}' is {significant(float(value), 6)}, not a whole number")
    return int(value)


def _float(value: Fraction, what: str, text) -> float:
    try:
        return _checked(float(value), what, text)
    except OverflowError:
        raise DataError(f"{what} '{text}' is not a finite number") from None


def _checked(value: float, what: str, text) -> float:
    if not math.isfinite(value):
        raise DataError(f"{what} '{text}' is not a finite number")
    return value


def parse_size(text, what: str = "size") -> int:
    """Bytes: ``4096``, ``4096B``, SI ``64KB`` (64,000) or binary ``64KiB`` (65,536); a bare
    ``64K`` is refused (which of the two?)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    text = str(text)
    _refuse_commas(text, what, False)
    number, unit = _split_number(text, what, "4096, 64KB, 64KiB or 1GiB")
    scale = next((s for name, s in SIZE_UNITS.items() if unit.lower() == name.lower()), None)
    if scale is None and unit.upper() in ("K", "M", "G", "T"):
        base, prefix = text.strip()[:-len(unit)], unit.upper()
        raise DataError(f"{what} '{text}' is ambiguous: write {base}{prefix}B (SI, "
                        f"powers of 1000) or {base}{prefix}iB (binary, powers of 1024)")
    if scale is None and unit.lower() in {k.lower() for k in BINARY_MULTIPLIERS}:
        scale = BINARY_MULTIPLIERS[unit[0].upper() + "i"]
    if scale is None and unit:
        raise DataError(f"{what} '{text}': unknown unit '{unit}'; use B, KB, MB, GB, TB or "
                        f"KiB, MiB, GiB, TiB")
    value = number * (scale or 1)
    if value.denominator != 1:
        raise DataError(f"{what} '{text}' is not a whole number of bytes")
    return int(value)


def parse_duration(text, what: str = "duration", *, unit: str | None = "s") -> float:
    """Seconds of a duration: a number with s, m (minutes), h, d or w; a bare number is in
    ``unit`` (None: a unit is required)."""
    given_number = isinstance(text, (int, float)) and not isinstance(text, bool)
    text = repr(text) if given_number else str(text)
    _refuse_commas(text, what, False)
    number, name = _split_number(text, what, "200d, 36h, 90m or 600s")
    name = name.lower() or unit
    if name is None:
        raise DataError(f"{what} '{text}' needs a unit: s, m (minutes), h, d or w")
    if name not in DURATION_UNITS:
        raise DataError(f"{what} '{text}': unknown unit '{name}'; use s, m (minutes), h, d or w")
    if number < 0:
        raise DataError(f"{what} '{text}': a duration cannot be negative")
    return _float(number * Fraction(DURATION_UNITS[name]), what, text)


def binary_spelling(text: str) -> tuple[str, int] | None:
    """The same digits with the binary multiplier instead of the SI one, and its value:
    ``16M`` -> (``16Mi``, 16,777,216); None when ``text`` has no SI multiplier (B, billion,
    becomes Gi)."""
    match = _NUMBER_WITH.fullmatch(str(text).strip())
    if not match or match.group(2).upper() not in SI_MULTIPLIERS:
        return None
    binary = {"K": "Ki", "M": "Mi", "B": "Gi", "T": "Ti"}[match.group(2).upper()]
    value = Fraction(match.group(1).replace("_", "")) * BINARY_MULTIPLIERS[binary]
    return f"{match.group(1)}{binary}", int(value) if value.denominator == 1 else float(value)


def _significant(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")
