"""Numbers for people and from people: the formatters and parsers of scaling.units."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.errors import DataError
from scaling.units import (BINARY_MULTIPLIERS, DURATION_UNITS, SI_MULTIPLIERS, SIZE_UNITS,
                           binary_spelling, format_count, format_days, format_flops, format_usd,
                           format_watt_hours, format_watts, parse_count, parse_duration,
                           parse_number, parse_size, parse_whole, with_interval)

# -- writing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, text", [
    (16_384, "16,384"), (100_000, "100,000"), (5_090.3, "5,090"), (0.462, "0.462"),
    (2.58e8, "258M"), (4.123e8, "412M"), (2.014e12, "2.01T"), (3.14e13, "31.4T"),
    (999_999_999, "1B"), (999.6, "1,000"), (1.97e-5, "1.97e-5"), (3.8e26, "3.8e26"),
    (None, "-"), (math.nan, "-"),
])
def test_counts_are_written_as_people_say_them(value, text):
    assert format_count(value) == text


def test_money_power_energy_days_and_budgets():
    assert format_usd(5.45e8) == "$545M" and format_usd(1.234e9) == "$1.23B"
    assert format_usd(2) == "$2" and format_usd(0.08) == "$0.08"
    assert format_watts(22.98e6) == "23 MW" and format_watts(1.4e8) == "140 MW"
    assert format_watts(700) == "700 W" and format_watts(10_200) == "10.2 kW"
    assert format_watt_hours(3.6174e11) == "362 GWh"
    assert format_days(656.3) == "656 days" and format_days(1) == "1 day"
    assert format_flops(3.8e26) == "3.8e26" and format_flops(1e24) == "1e24"


def test_an_interval_is_shown_only_when_wider_than_the_rounding():
    assert with_interval(656.2, (655.1, 657.3), format_days) == "656 days"
    assert with_interval(2.58e8, (2.577e8, 2.583e8)) == "258M"
    assert with_interval(456, (420, 480)) == "456 [420..480]"
    assert with_interval(456, None) == "456"
    assert with_interval(72.6, (58.1, 96.8), format_days) == "72.6 days [58.1..96.8]"
    assert with_interval(6e7, (4.8e7, 8e7), format_usd) == "$60M [$48M..$80M]"


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1.0, max_value=9.99e14))
def test_a_written_count_reads_back_within_its_rounding(value):
    # Commas group thousands for people; a count typed back writes them as underscores.
    back = parse_count(format_count(value).replace(",", "_"))
    assert back == pytest.approx(value, rel=5e-3)


# -- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("16384", 16384), ("16_384", 16384), ("16Ki", 16384), ("405B", 405e9), ("15.6T", 15.6e12),
    ("3.8e26", 3.8e26), ("16M", 16e6), ("16Mi", 2 ** 24), ("1k", 1000), (".5", 0.5),
])
def test_counts(text, value):
    assert parse_count(text) == pytest.approx(value)


def test_products_only_where_a_command_takes_them():
    assert parse_count("2048x8192", products=True) == 2048 * 8192
    assert parse_count("2Kix8Ki", products=True) == 2 ** 24
    with pytest.raises(DataError, match="not a number"):
        parse_count("2048x8192")
    with pytest.raises(DataError, match="each side"):
        parse_count("x8192", products=True)


@pytest.mark.parametrize("text, message", [
    ("16,384", "ambiguous"), ("1,000,000", "write 1000000 or 1_000_000"),
    ("16384,100000", "commas are not accepted"), ("1__0", "not a number"),
    ("nan", "not a number"), ("inf", "not a number"), ("16Q", "unknown multiplier"),
    ("", "not a number"), ("16 M", "not a number"),
])
def test_refusals_say_how_to_write_it(text, message):
    with pytest.raises(DataError, match=message):
        parse_count(text, "--gpus", several=True)


def test_a_list_flag_says_how_to_write_a_list():
    with pytest.raises(DataError, match="'--gpus 16 384'"):
        parse_count("16,384", "--gpus", several=True)
    with pytest.raises(DataError) as info:
        parse_count("16,384", "--params")
    assert "--params 16 384" not in str(info.value)


def test_whole_numbers_and_plain_numbers():
    assert parse_whole("8Ki") == 8192 and isinstance(parse_whole("8Ki"), int)
    with pytest.raises(DataError, match="not a whole number"):
        parse_whole("1.5")
    assert parse_number("0.41") == 0.41 and parse_number("2e-5") == 2e-5
    with pytest.raises(DataError, match="plain number"):
        parse_number("400K")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10 ** 12), st.sampled_from(["", *SI_MULTIPLIERS, *BINARY_MULTIPLIERS]))
def test_integers_with_multipliers_and_separators(n, suffix):
    scale = {**SI_MULTIPLIERS, **BINARY_MULTIPLIERS}.get(suffix, 1)
    assert parse_whole(f"{n}{suffix}") == n * scale  # exactly
    assert parse_count(f"{n:_}{suffix.lower()}") == float(n * scale)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_python_spellings_of_floats_read_back_exactly(x):
    assert parse_count(repr(x)) == x
    assert parse_number(repr(x)) == x


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10 ** 6), st.integers(1, 10 ** 6))
def test_products_multiply(a, b):
    assert parse_count(f"{a}x{b}", products=True) == a * b
    assert parse_whole(f"{a}X{b}", products=True) == a * b


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=12))
def test_garbage_is_a_data_error_or_a_finite_number(text):
    for parse in (parse_count, parse_number, parse_size, parse_duration):
        try:
            value = parse(text)
        except DataError:
            continue
        assert math.isfinite(value)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789,._kKmMx", min_size=1, max_size=12).filter(lambda t: "," in t))
def test_anything_with_a_comma_is_refused(text):
    for parse in (parse_count, parse_number, parse_size, parse_duration):
        with pytest.raises(DataError):
            parse(text)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10 ** 9), st.sampled_from(sorted(SIZE_UNITS)))
def test_sizes(n, unit):
    assert parse_size(f"{n}{unit}") == n * SIZE_UNITS[unit]
    assert parse_size(f"{n}{unit.lower()}") == n * SIZE_UNITS[unit]


def test_bare_multipliers_on_sizes_are_ambiguous():
    assert parse_size("4096") == 4096 and parse_size("64Ki") == 65536
    for text in ("64K", "1M", "1G", "2T"):
        with pytest.raises(DataError, match="ambiguous"):
            parse_size(text)
    with pytest.raises(DataError, match="whole number of bytes"):
        parse_size("1.5B")


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1e6), st.sampled_from(sorted(DURATION_UNITS)))
def test_durations(x, unit):
    assert parse_duration(f"{x!r}{unit}") == pytest.approx(x * DURATION_UNITS[unit])
    assert parse_duration(repr(x), unit="d") == pytest.approx(x * 86400)


def test_durations_refuse_what_they_cannot_read():
    with pytest.raises(DataError, match="needs a unit"):
        parse_duration("12", unit=None)
    with pytest.raises(DataError, match="negative"):
        parse_duration("-3d")
    with pytest.raises(DataError, match="unknown unit"):
        parse_duration("5y")


def test_binary_spelling_of_an_si_count():
    assert binary_spelling("16M") == ("16Mi", 2 ** 24)
    assert binary_spelling("2B") == ("2Gi", 2 ** 31)
    assert binary_spelling("16Mi") is None and binary_spelling("2048x8192") is None
