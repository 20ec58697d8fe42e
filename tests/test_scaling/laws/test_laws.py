"""Loss-law presets, the closed-form compute-optimal allocation, law files and budgets."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from scaling.laws.budget import BUDGETS, parse_compute
from scaling.errors import DataError, UnknownNameError
from scaling.laws.forms import LossLaw, law_presets, load_law

PARAMETRIC_PRESETS = ("chinchilla-2022", "epoch-2024")


def test_presets_carry_the_published_values_and_their_sources():
    presets = law_presets()
    assert set(presets) == {"chinchilla-2022", "epoch-2024", "llama3-2024"}
    c = presets["chinchilla-2022"]
    assert (c.E, c.A, c.B, c.alpha, c.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)
    assert "Hoffmann" in c.source and "2203.15556" in c.source
    e = presets["epoch-2024"]
    assert (e.E, e.A, e.B, e.alpha, e.beta) == (1.8172, 482.01, 2085.43, 0.3478, 0.3658)
    assert "Besiroglu" in e.source
    l3 = presets["llama3-2024"]
    assert (l3.form, l3.tokens_coef, l3.tokens_exp) == ("tokens-power", 0.29, 0.53)
    assert "2407.21783" in l3.source
    assert all(law.label == "published" for law in presets.values())


def _brute_force_optimum(law, compute, k=6.0):
    """Minimise L(N, C / (k N)) over log N numerically."""
    def loss(log_n):
        n = math.exp(log_n)
        return law.loss(n, compute / (k * n))
    res = minimize_scalar(loss, bounds=(math.log(1e3), math.log(compute / k / 1e3)),
                          method="bounded", options={"xatol": 1e-10})
    return math.exp(res.x), res.fun


@pytest.mark.parametrize("name", PARAMETRIC_PRESETS)
@pytest.mark.parametrize("compute", [1e20, 3.8e25, 3.8e26])
def test_closed_form_allocation_matches_brute_force_on_the_6ND_curve(name, compute):
    law = law_presets()[name]
    alloc = law.allocate(compute)
    n_star, loss_star = _brute_force_optimum(law, compute)
    assert alloc.params == pytest.approx(n_star, rel=1e-6)
    assert alloc.params * alloc.tokens * 6 == pytest.approx(compute, rel=1e-12)
    assert alloc.loss == pytest.approx(loss_star, rel=1e-12)
    assert alloc.tokens_per_param == pytest.approx(alloc.tokens / alloc.params)
    assert alloc.intervals == {}


def test_allocation_with_a_model_specific_flop_count():
    law = law_presets()["epoch-2024"]
    alloc = law.allocate(1e24, flops_per_param_token=8.0)
    n_star, _ = _brute_force_optimum(law, 1e24, k=8.0)
    assert alloc.params == pytest.approx(n_star, rel=1e-6)
    assert 8.0 * alloc.params * alloc.tokens == pytest.approx(1e24)


@settings(max_examples=60, deadline=None)
@given(E=st.floats(1.0, 3.0), A=st.floats(10, 1e4), B=st.floats(10, 1e4),
       alpha=st.floats(0.1, 1.0), beta=st.floats(0.1, 1.0), log_c=st.floats(18, 30))
def test_closed_form_optimum_is_stationary(E, A, B, alpha, beta, log_c):
    """At the optimum on N D = C/6, d L / d log N = 0: alpha A N^-alpha = beta B D^-beta."""
    law = LossLaw("t", "fitted", "test", "parametric", E=E, A=A, B=B, alpha=alpha, beta=beta)
    alloc = law.allocate(10.0 ** log_c)
    a, b = law.optimal_exponents()
    assert a + b == pytest.approx(1.0)
    assert alpha * A * alloc.params ** -alpha == pytest.approx(beta * B * alloc.tokens ** -beta,
                                                               rel=1e-9)


def test_llama3_law_by_hand():
    law = law_presets()["llama3-2024"]
    alloc = law.allocate(3.8e25)
    tokens = 0.29 * 10 ** (0.53 * math.log10(3.8e25))  # 1.0464e13
    assert alloc.tokens == pytest.approx(tokens, rel=1e-12)
    assert alloc.tokens == pytest.approx(1.0464e13, rel=1e-4)
    assert alloc.params == pytest.approx(3.8e25 / (6 * tokens))
    assert alloc.loss is None
    assert law.optimal_exponents() == pytest.approx((0.47, 0.53))
    with pytest.raises(DataError, match="not a loss"):
        law.loss(1e9, 1e10)


def test_loss_by_hand():
    law = law_presets()["chinchilla-2022"]
    assert law.loss(70e9, 1.4e12) == pytest.approx(
        1.69 + 406.4 / 70e9 ** 0.34 + 410.7 / 1.4e12 ** 0.28, rel=1e-15)
    grid = law.loss(np.array([1e9, 1e10]), np.array([2e10, 2e11]))
    assert grid.shape == (2,) and grid[1] < grid[0]


def test_bootstrap_intervals_are_percentiles_of_the_resampled_allocations():
    base = law_presets()["epoch-2024"]
    rng = np.random.default_rng(3)
    boot = [{"E": 1.8 + 0.02 * rng.standard_normal(), "A": 480 * math.exp(0.1 * rng.standard_normal()),
             "B": 2000 * math.exp(0.1 * rng.standard_normal()),
             "alpha": 0.35 + 0.01 * rng.standard_normal(), "beta": 0.36 + 0.01 * rng.standard_normal()}
            for _ in range(200)]
    law = LossLaw("b", "fitted", "test", "parametric", **base.parameters, bootstrap=boot)
    alloc = law.allocate(3.8e26)
    singles = [LossLaw("s", "fitted", "t", "parametric", **p).allocate(3.8e26) for p in boot]
    for key in ("params", "tokens", "tokens_per_param", "loss"):
        lo, hi = np.percentile([getattr(s, key) for s in singles], (2.5, 97.5))
        assert alloc.intervals[key] == pytest.approx((lo, hi), rel=1e-12)
    assert law.intervals()["alpha"] == pytest.approx(
        tuple(np.percentile([p["alpha"] for p in boot], (2.5, 97.5))))


def test_save_and_load_round_trip(tmp_path):
    boot = [{"tokens_coef": 0.3, "tokens_exp": 0.52}, {"tokens_coef": 0.28, "tokens_exp": 0.54}]
    law = LossLaw("mine", "fitted", "a test fit", "tokens-power", tokens_coef=0.29,
                  tokens_exp=0.53, bootstrap=boot, fit={"approach": 2})
    path = law.save(tmp_path / "law.json")
    back = load_law(str(path))
    assert back == law
    assert back.allocate(1e25).intervals["tokens"][0] < back.allocate(1e25).tokens * 1.2
    assert load_law("epoch-2024") is law_presets()["epoch-2024"]


def test_load_law_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="chinchilla-2022"):
        load_law("chinchila")
    with pytest.raises(DataError, match="no such loss-law file"):
        load_law(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        load_law(str(bad))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(DataError, match="not a flopcast loss-law file"):
        load_law(str(other))
    partial = law_presets()["epoch-2024"].to_dict()
    del partial["parameters"]["beta"]
    other.write_text(json.dumps(partial))
    with pytest.raises(DataError, match="beta"):
        load_law(str(other))


def test_a_law_refuses_missing_or_non_finite_parameters():
    with pytest.raises(DataError, match="alpha"):
        LossLaw("x", "fitted", "t", "parametric", E=1.7, A=400, B=400, alpha=float("nan"), beta=0.3)
    with pytest.raises(DataError, match="tokens_exp"):
        LossLaw("x", "fitted", "t", "tokens-power", tokens_coef=0.3)
    with pytest.raises(DataError, match="compute budget"):
        law_presets()["epoch-2024"].allocate(-1)


def test_parse_compute():
    assert parse_compute("llama3") == 3.8e25
    assert parse_compute("10x-llama3") == 3.8e26
    assert parse_compute("3x-llama3") == pytest.approx(1.14e26)
    assert parse_compute("3.8e26") == 3.8e26
    assert parse_compute(" 1E24 ") == 1e24
    assert parse_compute(5e22) == 5e22
    assert all(b.source for b in BUDGETS.values())
    with pytest.raises(DataError, match="outside 1e\\+18..1e\\+30"):
        parse_compute("1e17")
    with pytest.raises(DataError, match="outside"):
        parse_compute(2e30)
    with pytest.raises(UnknownNameError):
        parse_compute("nan")
    with pytest.raises(DataError, match="ambiguous"):
        parse_compute("3,800")
    with pytest.raises(UnknownNameError, match="10x-llama3"):
        parse_compute("llama5")
    with pytest.raises(DataError):
        parse_compute(True)
