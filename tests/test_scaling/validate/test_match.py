"""The GEMM rate a published run implies (`scaling.validate.match`): the root against a
closed form, the two ends where no rate answers, and, for every modelled validation row,
the rate put back into the step model reproducing the published figure."""

import inspect
import math

import pytest
from hypothesis import given, settings, strategies as st

from scaling.cli.validate import SAME_PEAK, validate
from scaling.errors import DataError
from scaling.hardware.load import load_profile
from scaling.model.step import PRECISIONS, step_time
from scaling.validate.match import (LOWEST_FRACTION_OF_PEAK, RATE_TOLERANCE_TFLOPS,
                                    gemm_rate_to_match)
from scaling.validate.runs import validation_run


def _amdahl(gemm_s_at_1, other_s, work):
    """Throughput of a step of ``other_s`` seconds plus GEMMs taking ``gemm_s_at_1`` seconds at
    1 TFLOP/s: ``work / (other_s + gemm_s_at_1 / rate)``."""
    return lambda rate: work / (other_s + gemm_s_at_1 / rate)


@settings(max_examples=60, deadline=None)
@given(gemm_s=st.floats(1.0, 1e4), other_s=st.floats(0.0, 50.0),
       fraction=st.floats(0.02, 0.99), peak=st.floats(50.0, 5000.0))
def test_the_root_is_the_closed_form_rate(gemm_s, other_s, fraction, peak):
    """target = work / (other + g / r)  =>  r = g / (work / target - other), by hand."""
    work = 1000.0
    rate = fraction * peak
    target = _amdahl(gemm_s, other_s, work)(rate)
    found = gemm_rate_to_match(_amdahl(gemm_s, other_s, work), target, peak)
    expected = gemm_s / (work / target - other_s)
    assert found.tflops == pytest.approx(expected, abs=10 * RATE_TOLERANCE_TFLOPS, rel=1e-6)
    assert found.reason == "" and found.peak_tflops == peak and found.target_tflops == target


def test_no_rate_up_to_the_peak_is_none_with_the_reason():
    fn = _amdahl(100.0, 1.0, 1000.0)  # at most 1000 TFLOP/s with infinitely fast GEMMs
    found = gemm_rate_to_match(fn, target_tflops=900.0, peak_tflops=312.0)
    assert found.tflops is None
    assert "not reached" in found.reason and "312" in found.reason
    assert f"{fn(312.0):.0f}" in found.reason


def test_a_target_below_the_lowest_rate_is_none_with_the_reason():
    fn = _amdahl(100.0, 0.0, 1000.0)
    low = LOWEST_FRACTION_OF_PEAK * 312.0
    found = gemm_rate_to_match(fn, target_tflops=fn(low) / 2, peak_tflops=312.0)
    assert found.tflops is None and "exceeded" in found.reason


@pytest.mark.parametrize("target, peak", [(0.0, 312.0), (-1.0, 312.0), (100.0, 0.0),
                                          (math.nan, 312.0)])
def test_non_positive_inputs_are_refused(target, peak):
    with pytest.raises(DataError):
        gemm_rate_to_match(lambda r: r, target, peak)


_STEP_ARGS = set(inspect.signature(step_time).parameters)


@pytest.fixture(scope="module")
def rows():
    return [r for r in validate() if r["modelled_tflops"] is not None]


def test_every_modelled_row_has_a_rate_to_match_or_a_reason(rows):
    assert rows
    for r in rows:
        match = r["gemm_tflops_to_match"]
        assert (match["tflops"] is None) == bool(match["reason"]), r["name"]
        assert match["target_tflops"] == pytest.approx(r["published_tflops_flopcast"])
        assert r["gemm_tflops_modelled"] > 0
        assert sum(r["breakdown_s"].values()) > 0


def test_the_rate_put_back_reproduces_the_published_figure(rows):
    """The step model rebuilt from the row's own modelled layout, every GEMM at the rate the
    row reports, gives the published throughput (in flopcast's FLOPs, the conversion being a
    fixed ratio per run)."""
    checked = 0
    for r in rows:
        rate = r["gemm_tflops_to_match"]["tflops"]
        if rate is None:
            continue
        run = validation_run(r["name"])
        lay = r["modelled_layout"]
        kwargs = {k: v for k, v in lay.items() if k in _STEP_ARGS}
        assert kwargs["attention"] == run.attention, r["name"]
        precision = SAME_PEAK.get(run.precision, (run.precision,))[0]
        assert precision in PRECISIONS
        step = step_time(run.config(), load_profile(run.hardware), precision=precision,
                         overrides={"gemm_tflops": rate}, **kwargs)
        assert step.tflops_per_gpu == pytest.approx(r["published_tflops_flopcast"], rel=1e-4)
        # A slower row needs faster GEMMs, and the reverse.
        if r["error"] > 0.005:
            assert rate < r["gemm_tflops_modelled"], r["name"]
        elif r["error"] < -0.005:
            assert rate > r["gemm_tflops_modelled"], r["name"]
        checked += 1
    assert checked >= 20
