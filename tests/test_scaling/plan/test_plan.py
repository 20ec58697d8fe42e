"""The planner against published figures and hand computation, and its CLI."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.cli import main as cli
from scaling.errors import DataError, UnknownNameError
from scaling.laws.forms import load_law
from scaling.labels import LABELS
from scaling.plan.planner import Knobs, make_plan

LLAMA3_GPU_HOURS = 30.84e6  # Llama 3.1 model card, 405B


def flopcast(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_llama3_405b_gpu_hours_within_10_percent():
    """3.8e25 FLOPs on 16,384 H100 at the published 400 TFLOP/s, Llama 3 failure rate."""
    plan = make_plan(compute="llama3", params=405e9, gpus=[16384], tflops_per_gpu=400)
    p = plan.plans[0]
    assert plan.compute_flops == 3.8e25
    assert abs(p.gpu_hours / LLAMA3_GPU_HOURS - 1) < 0.10
    # goodput is what closes the gap: without failures the run's 15.6T tokens take 27.4M
    # GPU-hours at 400 TFLOP/s counted as the step model counts them (6 x matmul parameters
    # plus causal attention per token), not 6N
    tokens = 3.8e25 / (6 * 405e9)
    ideal = tokens * plan.model["flops_per_token"] / (400e12 * 3600)
    assert ideal == pytest.approx(27.4e6, rel=0.01)
    assert p.gpu_hours == pytest.approx(ideal / p.goodput)
    assert 0.90 < p.goodput < 0.95  # the paper: >90% effective training time


def test_llama3_405b_step_model_throughput_near_published():
    plan = make_plan(compute="llama3", params=405e9, gpus=[16384])
    p = plan.plans[0]
    assert plan.model["name"] == "llama3-405b"
    # The layout search's best is within 2% of Llama 3's published TP 8 x PP 16 x DP 128,
    # which it ranks among its runners-up (the step model puts PP 32 1% ahead).
    assert p.layout["tp"] == 8 and p.layout["pp"] * p.layout["dp"] == 2048
    published = [c for c in p.search["ranked"]
                 if (c["layout"]["tp"], c["layout"]["pp"], c["layout"]["dp"]) == (8, 16, 128)]
    assert published and published[0]["tflops_per_gpu"] > 0.98 * p.tflops_per_gpu
    assert abs(p.tflops_per_gpu / 400 - 1) < 0.15  # Llama 3 paper, Table 4
    assert abs(p.gpu_hours / LLAMA3_GPU_HOURS - 1) < 0.15


def test_default_budget_is_ten_times_llama3_on_two_clusters(capsys):
    code, out, _ = flopcast(capsys, "plan", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["compute_flops"] == 3.8e26
    assert [p["gpus"] for p in data["plans"]] == [16384, 100000]
    for key in ("params", "tokens", "loss"):
        assert data[key] > 0
    assert data["params"] * data["tokens"] * 6 == pytest.approx(3.8e26)
    for p in data["plans"]:
        for key in ("gpus", "tflops_per_gpu", "mfu", "goodput", "days", "gpu_hours",
                    "energy_mwh", "facility_mw", "avg_power_mw", "cost_usd"):
            assert isinstance(p[key], (int, float)) and p[key] > 0, key
            assert key in p["units"]
        assert set(p["labels"].values()) <= set(LABELS)
    assert {i["label"] for i in data["inputs"]} <= set(LABELS)
    names = {i["name"] for i in data["inputs"]}
    assert {"compute_flops", "params", "tokens", "hardware", "pue", "host_w_per_gpu",
            "failures_per_gpu_hour", "usd_per_gpu_hour", "usd_per_kwh"} <= names


def test_days_and_gpus_are_inverse():
    base = make_plan(gpus=[20000], tflops_per_gpu=400)
    days = base.plans[0].days
    solved = make_plan(days=days, tflops_per_gpu=400)
    assert solved.plans[0].gpus == 20000
    assert solved.plans[0].days <= days * (1 + 1e-9)
    # without failures, twice the GPUs take exactly half the days
    k = Knobs(failures_per_gpu_hour=0)
    one, two = make_plan(gpus=[10000, 20000], tflops_per_gpu=400, knobs=k).plans
    assert one.days == pytest.approx(2 * two.days)
    assert one.gpu_hours == pytest.approx(two.gpu_hours)


def test_days_solver_with_the_step_model_finds_the_fewest_gpus():
    plan = make_plan(compute="llama3", days=80)
    g = plan.plans[0].gpus
    assert plan.plans[0].days <= 80
    replica = plan.plans[0].layout["tp"] * plan.plans[0].layout["pp"]
    assert g % replica == 0  # whole model replicas
    fewer = make_plan(compute="llama3", gpus=[g - replica])
    # One replica fewer is no faster by more than 1%: the layout search picks each count's
    # own layout, so days are not strictly monotonic in the GPU count at that level.
    assert fewer.plans[0].days > 80 * 0.99


def test_impossible_deadline_says_what_is_possible():
    with pytest.raises(DataError, match="fastest"):
        make_plan(days=10)


def test_energy_power_and_cost_by_hand():
    knobs = Knobs(pue=1.2, host_w_per_gpu=500, usd_per_gpu_hour=3, usd_per_kwh=0.1,
                  failures_per_gpu_hour=0)
    plan = make_plan(compute=1e24, params=1e10, gpus=[1000], tflops_per_gpu=250, knobs=knobs)
    p = plan.plans[0]
    tokens = 1e24 / (6 * 1e10)                  # C = 6 N D
    wall_s = tokens * plan.model["flops_per_token"] / (1000 * 250e12)  # goodput 1
    assert p.goodput == 1.0
    assert p.days == pytest.approx(wall_s / 86400)
    assert p.gpu_hours == pytest.approx(1000 * wall_s / 3600)
    assert p.facility_mw == pytest.approx(1000 * (700 + 500) * 1.2 / 1e6)   # H100 TDP 700 W
    watts = p.gpu_power_w
    assert p.avg_power_mw == pytest.approx(1000 * (watts + 500) * 1.2 / 1e6)
    assert p.energy_mwh == pytest.approx(p.avg_power_mw * wall_s / 3600)
    assert p.cost_usd == pytest.approx(p.gpu_hours * 3 + p.energy_mwh * 1000 * 0.1)


def test_100k_h100_need_about_150_mw():
    p = make_plan(gpus=[100_000]).plans[0]
    assert abs(p.facility_mw / 150 - 1) < 0.20          # SemiAnalysis 2024 estimate
    assert p.facility_mw == pytest.approx(100_000 * 1275 * 1.1 / 1e6)
    assert p.avg_power_mw <= p.facility_mw


def test_failures_cost_more_at_100k_gpus():
    small, big = make_plan(gpus=[16384, 100_000]).plans
    assert big.goodput < small.goodput - 0.2
    assert big.interruptions > small.interruptions


def test_law_bootstrap_gives_intervals_on_days_gpu_hours_energy():
    law = load_law("epoch-2024")
    boot = [dict(law.parameters, alpha=law.alpha * f, beta=law.beta * (2 - f))
            for f in (0.97, 0.98, 0.99, 1.0, 1.01, 1.02, 1.03)]
    law = law.with_parameters(law.parameters).__class__(**{**law.__dict__, "bootstrap": boot})
    plan = make_plan(law=law, gpus=[16384])
    lo, hi = plan.intervals["params"]
    assert lo < plan.params < hi
    p = plan.plans[0]
    for key in ("days", "gpu_hours", "energy_mwh"):
        a, b = p.intervals[key]
        assert a <= getattr(p, key) <= b and a < b, key


@settings(max_examples=25, deadline=None)
@given(compute=st.floats(1e21, 1e27), gpus=st.integers(64, 50_000),
       tflops=st.floats(50, 900))
def test_time_scales_with_compute_and_inverse_throughput(compute, gpus, tflops):
    k = Knobs(failures_per_gpu_hour=0)
    p = make_plan(compute=compute, params=1e9, gpus=[gpus], tflops_per_gpu=tflops, knobs=k)
    c = p.plans[0]
    work = compute / (6 * 1e9) * p.model["flops_per_token"]  # the tokens, as the step counts
    assert c.gpu_hours == pytest.approx(work / (tflops * 1e12) / 3600, rel=1e-9)
    assert c.days * 86400 * gpus * tflops * 1e12 == pytest.approx(work, rel=1e-9)


@pytest.mark.parametrize("argv, message", [
    (["--hardware", "h1000"], "valid: a100-80gb, b200, h100-sxm, h200, h800, mi300x"),
    (["--law", "kaplan"], "valid: chinchilla-2022, epoch-2024, llama3-2024"),
    (["--compute", "1e17"], "outside 1e+18..1e+30"),
    (["--compute", "1e31"], "outside 1e+18..1e+30"),
    (["--compute", "ten"], "valid: 10x-llama3, llama3"),
    (["--gpus", "16384", "0"], "positive whole number"),
    (["--gpus", "16,384"], "ambiguous"),
    (["--gpus", "16384,100000"], "--gpus 16384 100000"),
    (["--gpus", "-8"], "positive whole number"),
    (["--gpus", "1.5"], "positive whole number"),
    (["--pue", "0.9"], "PUE must be at least 1"),
    (["--days", "0"], "--days must be positive"),
    (["--mfu", "1.5"], "--mfu must be in"),
])
def test_bad_input_is_one_clear_line(capsys, argv, message):
    code, out, err = flopcast(capsys, "plan", *argv)
    assert code != 0 and out == ""
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_names_raise_the_projects_error():
    with pytest.raises(UnknownNameError):
        make_plan(hardware="h1000")
    with pytest.raises(UnknownNameError):
        make_plan(precision="fp4")


def test_text_output_names_labels(capsys):
    code, out, _ = flopcast(capsys, "plan", "--gpus", "16384", "--compute", "llama3",
                            "--params", "405e9", "--tflops-per-gpu", "400")
    assert code == 0
    assert "16,384" in out and "published" in out and "assumed" in out
    assert "failures_per_gpu_hour" in out


def test_params_and_tokens_take_suffixes(capsys):
    code, out, _ = flopcast(capsys, "plan", "--params", "405B", "--tokens", "15.6T",
                            "--gpus", "16384", "--json")
    data = json.loads(out)
    assert code == 0 and data["params"] == 405e9 and data["tokens"] == 15.6e12
    assert data["compute_flops"] == pytest.approx(6 * 405e9 * 15.6e12)  # ~3.8e25
    assert data["labels"]["compute_flops"] == "given"


@settings(max_examples=50, deadline=None)
@given(params=st.floats(1e8, 1e13), layers=st.integers(8, 400), gpus=st.integers(1, 200_000))
def test_layout_uses_whole_replicas_and_keeps_stages_whole(params, layers, gpus):
    from scaling.plan.throughput import MIN_LAYERS_PER_STAGE, llama3_layout

    lay = llama3_layout(params, layers, gpus)
    replica = lay["tp"] * lay["pp"]
    assert lay["dp"] >= 1 and lay["gpus_used"] <= max(gpus, 1)
    if gpus >= replica:
        assert lay["gpus_used"] == replica * lay["dp"] > gpus - replica
    assert lay["pp"] == 1 or layers >= lay["pp"] * MIN_LAYERS_PER_STAGE
    assert lay["tp"] in (1, 2, 4, 8)


def test_measured_spread_gives_intervals_by_hand():
    from scaling.plan.planner import _cluster
    from scaling.plan.throughput import Throughput
    from scaling.provenance import Figure

    def spread(gpus, params):  # a measured throughput of 400 (380..420) TFLOP/s at 600 (550..650) W
        return Throughput(Figure(400, 380, 420, "measured", "test"),
                          Figure(600, 550, 650, "measured", "test"))

    labels = {i.name: i.label for i in make_plan(compute="llama3", params=405e9, gpus=[8],
                                                 tflops_per_gpu=400).inputs}
    k = Knobs(failures_per_gpu_hour=0)
    p = _cluster(3.8e25, 16384, 405e9, (), spread, 700, 989, k, labels)
    hours = lambda t: 3.8e25 / (16384 * t * 1e12) / 3600  # noqa: E731
    assert p.days == pytest.approx(hours(400) / 24)
    assert p.intervals["days"] == pytest.approx((hours(420) / 24, hours(380) / 24))
    mw = lambda w: 16384 * (w + 575) * 1.1 / 1e6  # noqa: E731
    assert p.intervals["avg_power_mw"] == pytest.approx((mw(550), mw(650)))
    assert p.intervals["energy_mwh"] == pytest.approx((mw(550) * hours(420), mw(650) * hours(380)))
    assert p.labels["tflops_per_gpu"] == "measured" and p.labels["gpu_power_w"] == "measured"
    assert p.labels["avg_power_mw"] == "published"  # measured watts, published host and PUE
    assert p.labels["days"] == "assumed"  # goodput rests on an assumed restart time


def test_a_step_without_watts_is_a_clear_error(monkeypatch):
    """A profile that cannot place the step's load on a power curve gives a named error, not an
    AttributeError on None."""
    from dataclasses import replace as dc_replace

    from scaling.plan import throughput
    from scaling.errors import DataError
    from scaling.hardware.load import load_profile

    from scaling.plan import search

    real_step_time = search.step_time
    # the layout search times the candidates; the chosen layout's step then has no watts
    monkeypatch.setattr(search, "step_time",
                        lambda *a, **k: dc_replace(real_step_time(*a, **k), power_w=None))
    source = throughput.ThroughputSource(load_profile("h100-sxm"), precision="bf16", seq=None)
    with pytest.raises(DataError, match="gives no watts at this load"):
        source(16_384, 405e9)


# -- the answer for people ---------------------------------------------------------------------

def test_the_plan_leads_with_one_sentence_per_cluster(capsys):
    """The README's default plan, in the words it uses."""
    code, out, _ = flopcast(capsys, "plan")
    assert code == 0
    first, second = out.splitlines()[:2]
    assert first == "854 days, 336M GPU-hours, 23 MW, $709M on 16,384 H100"
    assert second == "223 days, 535M GPU-hours, 140 MW, $1.13B on 100,000 H100"
    # no exponents for GPU-hours, dollars or energy in the human output, and no intervals
    # narrower than the rounding (the step model's spread here is a fraction of a percent)
    assert "e+" not in out and "[" not in out
    assert "336M" in out and "$709M" in out and "471 GWh" in out


def test_headline_shows_an_interval_wider_than_the_rounding():
    from scaling.plan.planner import _cluster
    from scaling.plan.text import headline
    from scaling.plan.throughput import Throughput
    from scaling.provenance import Figure

    def spread(gpus, params):
        return Throughput(Figure(400, 300, 500, "measured", "test"),
                          Figure(600, 600, 600, "measured", "test"))

    labels = {i.name: i.label for i in make_plan(compute="llama3", params=405e9, gpus=[8],
                                                 tflops_per_gpu=400).inputs}
    p = _cluster(3.8e25, 16384, 405e9, (), spread, 700, 989, Knobs(), labels)
    lo, hi = p.intervals["days"]
    assert headline(p, "H100").startswith(f"{p.days:.3g} days [{lo:.3g}..{hi:.3g}], ")


# -- reading numbers ---------------------------------------------------------------------------

def test_lists_are_spaces_or_a_repeated_flag(capsys):
    spaced = json.loads(flopcast(capsys, "plan", "--gpus", "16384", "100000", "--json")[1])
    repeated = json.loads(flopcast(capsys, "plan", "--gpus", "16Ki", "--gpus", "1e5",
                                   "--json")[1])
    assert [p["gpus"] for p in spaced["plans"]] == [p["gpus"] for p in repeated["plans"]] \
        == [16384, 100000]


@pytest.mark.parametrize("argv", [["--params", "16,384"], ["--compute", "3,800e23"],
                                  ["--days", "1,000"], ["--pue", "1,1"]])
def test_commas_are_refused_everywhere(capsys, argv):
    code, out, err = flopcast(capsys, "plan", *argv)
    assert code == 2 and out == ""
    assert err.startswith("flopcast plan: error: ") and len(err.strip().splitlines()) == 1


def test_days_take_units_and_compute_takes_separators(capsys):
    runs = [json.loads(flopcast(capsys, "plan", "--compute", "llama3", "--days", days,
                                "--tflops-per-gpu", "400", "--json")[1])
            for days in ("80", "80d", "1920h")]
    assert len({r["plans"][0]["gpus"] for r in runs}) == 1
    data = json.loads(flopcast(capsys, "plan", "--compute", "3_800e23", "--gpus", "16384",
                               "--json")[1])
    assert data["compute_flops"] == 3.8e26


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"flopcast {metadata.version('flopcast')}"


# -- labels ------------------------------------------------------------------------------------

def test_what_the_user_typed_is_given_and_defaults_say_so(capsys):
    typed = json.loads(flopcast(capsys, "plan", "--precision", "bf16", "--pue", "1.1",
                                "--gpus", "16384", "100000", "--compute", "3.8e26",
                                "--seq", "8192", "--json")[1])
    default = json.loads(flopcast(capsys, "plan", "--json")[1])
    typed_in = {i["name"]: i for i in typed["inputs"]}
    default_in = {i["name"]: i for i in default["inputs"]}
    for name in ("precision", "pue", "gpus", "compute_flops", "seq"):
        assert typed_in[name]["label"] == "given", name
        assert typed_in[name]["value"] == default_in[name]["value"], name
    assert default_in["precision"]["label"] == "assumed"
    assert default_in["precision"]["source"].startswith("default")
    assert default_in["pue"]["label"] == "published"
    assert default_in["gpus"]["label"] == "assumed"
    assert typed["plans"][0]["labels"]["gpus"] == "given"


def test_step_model_throughput_is_modelled_from_its_curves(capsys):
    data = json.loads(flopcast(capsys, "plan", "--gpus", "16384", "--json")[1])
    p = data["plans"][0]
    assert p["labels"]["tflops_per_gpu"] == "modelled"
    assert "published GEMM and attention curves" in p["sources"]["tflops_per_gpu"]
    given = json.loads(flopcast(capsys, "plan", "--gpus", "16384", "--tflops-per-gpu", "400",
                                "--json")[1])
    assert given["plans"][0]["labels"]["tflops_per_gpu"] == "given"


def test_labels_rank_from_measured_to_assumed():
    from scaling.labels import modelled_from, weakest

    assert LABELS == ("measured", "published", "fitted", "modelled", "given", "assumed")
    assert weakest("published", "modelled") == "modelled"
    assert weakest("modelled", "given") == "given"
    assert weakest("measured", "assumed", "fitted") == "assumed"
    assert modelled_from("measured", "published") == "modelled"
    assert modelled_from("published", "assumed") == "assumed"
    with pytest.raises(ValueError):
        weakest("published", "override")


def test_llama3_law_warns_that_its_coefficients_miss_the_paper(capsys):
    law = load_law("llama3-2024")
    alloc = law.allocate(3.8e25)
    assert alloc.tokens == pytest.approx(0.29 * 3.8e25 ** 0.53)  # 10.46T, not 16.55T
    assert alloc.tokens == pytest.approx(10.46e12, rel=1e-3)
    assert "10.5T tokens" in law.warning() and "16.55T" in law.warning()
    assert load_law("epoch-2024").warning() is None
    code, out, err = flopcast(capsys, "plan", "--law", "llama3-2024", "--gpus", "16384")
    assert code == 0 and "warning" in err and "16.55T" in err and "16.55T" not in out
