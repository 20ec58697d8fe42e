"""Durations for people (`scaling.units`): each in the unit that keeps it at or above 1, with
three significant digits and its unit named, as the benchmark's progress lines and summary and
`flopcast results` write them."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaling.units import TIME_UNITS, format_seconds, time_unit

SCALE = dict(TIME_UNITS)


@pytest.mark.parametrize("seconds, text", [
    (48.5e-6, "48.5 us"), (0.0177, "17.7 ms"), (2.25, "2.25 s"), (3.2e-9, "3.2 ns"),
    (1e-3, "1 ms"), (999e-6, "999 us"), (4.5e-10, "0.45 ns"), (3600.0, "3,600 s"),
    (0.99999, "1 s"), (999.96e-6, "1 ms"),  # rounded up into the next unit
])
def test_known_durations(seconds, text):
    assert format_seconds(seconds) == text


@pytest.mark.parametrize("missing", [None, math.nan, math.inf])
def test_a_missing_time_is_a_dash(missing):
    assert format_seconds(missing) == "-"


@given(st.floats(min_value=1e-9, max_value=999.0, allow_nan=False))
def test_written_time_reads_back_within_three_digits(seconds):
    value, unit = format_seconds(seconds).split()
    assert 1 <= float(value) < 1000 or unit == "s"
    assert float(value.replace(",", "")) * SCALE[unit] == pytest.approx(seconds, rel=5e-3)


def test_a_column_shares_the_unit_of_its_smallest_value():
    assert time_unit([2.0, 0.0031, None, math.nan]) == ("ms", 1e-3)
    assert format_seconds(2.0, time_unit([2.0, 0.0031])) == "2,000 ms"
    assert time_unit([]) == ("s", 1.0)
