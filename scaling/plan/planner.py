"""The training-run planner: what a compute budget costs on a given cluster.

A plan answers, for one budget and each cluster size: how big a model, how many tokens, how
many days, GPU-hours, megawatt-hours, megawatts and dollars. It chains the other modules:

1. **Budget and law** (`scaling.laws.budget`, `scaling.laws.forms`): the budget C in FLOPs, split by a
   loss law into N_opt parameters and D_opt tokens (or an explicit N and D, C = 6 N D).
2. **Model and throughput** (`scaling.plan.throughput`, over `scaling.model.step` and
   `scaling.hardware.profile`): N_opt becomes a concrete Llama-style config; the step model gives its
   per-GPU sustained TFLOP/s and MFU on the hardware profile under a Llama 3-like parallel
   layout. ``tflops_per_gpu`` or ``mfu`` override it with a given figure.
3. **Reliability** (`scaling.plan.reliability`): failures, checkpoints and restarts at this GPU
   count give the goodput, the fraction of wall-clock time that trains.
4. **Time**: the run's D tokens at the cluster's tokens per second, ``wall_s = D *
   flops_per_token / (gpus * tflops_per_gpu * 1e12 * goodput)``, where ``flops_per_token``
   is what the throughput counts (the step model's: 6 x matmul parameters plus attention,
   `ModelConfig.flops_per_token`), so days agree with `flopcast step`'s tokens/s for the same
   layout. The budget C = 6 N D is the loss law's convention; without a concrete model the
   time is ``C / (gpus * tflops_per_gpu * 1e12 * goodput)``. GPU-hours are
   ``gpus * wall_s / 3600``.
5. **Power and money** (`scaling.plan.energy`): facility capacity, average draw, energy, cost.

Every input carries a label (`scaling.labels`: measured, published, fitted, modelled, given or
assumed) and its source, and every output its unit. Intervals come from evaluating the chain
at the corners of what is uncertain:
the law's bootstrap interval on N_opt (which changes the model, its throughput and its
checkpoints), and the spread of the measured throughput and power.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from scaling.plan import energy, reliability
from scaling.laws.budget import BUDGETS, parse_compute
from scaling.errors import DataError, UnknownNameError
from scaling.labels import weakest
from scaling.laws.forms import FLOPS_PER_PARAM_TOKEN, LossLaw, load_law
from scaling.model.step import PRECISIONS
from scaling.plan.throughput import Throughput, ThroughputFn, ThroughputSource
from scaling.provenance import Figure
from scaling.units import format_flops

#: The default run: ten times Llama 3 405B's compute (scaling.laws.budget).
DEFAULT_COMPUTE = "10x-llama3"
DEFAULT_LAW = "epoch-2024"
DEFAULT_HARDWARE = "h100-sxm"
#: Llama 3's 16,384-GPU cluster and a >100,000-GPU Llama 4-class cluster (DESIGN.md).
DEFAULT_GPUS = (16_384, 100_000)
GPUS_SOURCE = ("default: Llama 3's 16,384-GPU cluster (Llama 3 paper) and a Llama 4-class "
               "cluster of >100,000 H100 (Meta earnings calls, 2024)")

#: Units of the numbers in a cluster plan (the JSON carries them beside the values).
UNITS = {
    "gpus": "GPUs", "tflops_per_gpu": "TFLOP/s per GPU", "mfu": "fraction of dense peak",
    "goodput": "fraction of wall-clock time", "days": "days", "gpu_hours": "GPU-hours",
    "energy_mwh": "MWh", "facility_mw": "MW", "avg_power_mw": "MW", "gpu_power_w": "W per GPU",
    "cost_usd": "USD", "gpu_cost_usd": "USD", "energy_cost_usd": "USD",
    "interruptions": "failures", "mtbf_h": "hours", "checkpoint_s": "s",
    "checkpoint_interval_min": "minutes", "restart_min": "minutes",
}

#: The outputs that get intervals.
INTERVAL_FIELDS = ("tflops_per_gpu", "mfu", "goodput", "days", "gpu_hours", "energy_mwh",
                   "avg_power_mw", "cost_usd")


@dataclass(frozen=True)
class Input(Figure):
    """One input of a plan: a `Figure` with the name the plan knows it by. Its value may be a
    count, a list of cluster sizes or a word (the precision), so it has no envelope of its own
    (``lo == hi == value``)."""

    name: str = ""

    @classmethod
    def of(cls, name: str, value: Any, unit: str, label: str, source: str) -> "Input":
        return cls(value, value, value, label, source, unit, name)

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "unit": self.unit,
                "label": self.label, "source": self.source}


@dataclass(frozen=True)
class ClusterPlan:
    """The run on one cluster size. Units in `UNITS`; ``labels`` says where each figure comes
    from; ``intervals`` holds (lo, hi) for the uncertain outputs."""

    gpus: int
    tflops_per_gpu: float
    mfu: float | None
    goodput: float
    days: float
    gpu_hours: float
    energy_mwh: float
    facility_mw: float
    avg_power_mw: float
    gpu_power_w: float
    gpu_cost_usd: float
    energy_cost_usd: float
    cost_usd: float
    interruptions: float
    mtbf_h: float
    checkpoint_s: float
    checkpoint_interval_min: float
    restart_min: float
    layout: dict | None = None
    breakdown: dict | None = None
    memory: dict | None = None  # the layout's bytes per GPU (`scaling.model.memory.MemoryBreakdown`)
    search: dict | None = None  # the layout search's ranked layouts (`scaling.plan.search`)
    labels: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # of the throughput and the watts
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in UNITS}
        out["layout"] = self.layout
        out["breakdown"] = self.breakdown
        out["memory"] = self.memory
        out["layout_search"] = self.search
        out["units"] = dict(UNITS)
        out["labels"] = dict(self.labels)
        out["sources"] = dict(self.sources)
        out["intervals"] = {k: list(v) for k, v in self.intervals.items()}
        return out


@dataclass(frozen=True)
class Plan:
    """A whole plan: the budget, its split, the model, and one `ClusterPlan` per size."""

    compute_flops: float
    params: float
    tokens: float
    tokens_per_param: float
    loss: float | None
    intervals: dict[str, tuple[float, float]]
    law: dict
    hardware: dict
    precision: str
    model: dict | None
    inputs: tuple[Input, ...]
    plans: tuple[ClusterPlan, ...]
    profile: Any = field(default=None, repr=False, compare=False)  # the HardwareProfile used

    def to_dict(self) -> dict:
        return {
            "compute_flops": self.compute_flops, "params": self.params, "tokens": self.tokens,
            "tokens_per_param": self.tokens_per_param, "loss": self.loss,
            "units": {"compute_flops": "FLOPs", "params": "parameters", "tokens": "tokens",
                      "tokens_per_param": "tokens per parameter", "loss": "nats per token"},
            "labels": {k: self.input(k).label for k in ("compute_flops", "params", "tokens")}
            | {"tokens_per_param": self.input("params").label,
               "loss": self.law["label"] if self.loss is not None else None},
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "law": self.law, "hardware": self.hardware, "precision": self.precision,
            "model": self.model, "inputs": [i.to_dict() for i in self.inputs],
            "plans": [p.to_dict() for p in self.plans],
        }

    def input(self, name: str) -> Input:
        for item in self.inputs:
            if item.name == name:
                return item
        raise KeyError(name)


# -- the budget --------------------------------------------------------------------------------

def _budget(compute, params, tokens, law: LossLaw):
    """(compute, params, tokens, loss, intervals, inputs) from a budget or an explicit N and D."""
    if params is not None and params <= 0 or tokens is not None and tokens <= 0:
        raise DataError(f"--params and --tokens must be positive, got {params} and {tokens}")
    if params is not None and tokens is not None:
        c = parse_compute(FLOPS_PER_PARAM_TOKEN * params * tokens)
        given = "given: --params and --tokens, C = 6 N D"
        inputs = [Input.of("compute_flops", c, "FLOPs", "given", given),
                  Input.of("params", params, "parameters", "given", "given: --params"),
                  Input.of("tokens", tokens, "tokens", "given", "given: --tokens")]
        loss = law.loss(params, tokens) if law.form == "parametric" else None
        return c, float(params), float(tokens), loss, {}, inputs
    compute = DEFAULT_COMPUTE if compute is None else compute
    c = parse_compute(compute)
    name = str(compute).strip().lower() if isinstance(compute, str) else None
    budget_in = (Input.of("compute_flops", c, "FLOPs", "published", BUDGETS[name].source)
                 if name in BUDGETS else
                 Input.of("compute_flops", c, "FLOPs", "given", f"given: --compute {compute}"))
    if params is not None or tokens is not None:
        n = params if params is not None else c / (FLOPS_PER_PARAM_TOKEN * tokens)
        d = tokens if tokens is not None else c / (FLOPS_PER_PARAM_TOKEN * params)
        flag = "--params" if params is not None else "--tokens"
        other = weakest("given", budget_in.label)  # from the budget and the given one
        inputs = [budget_in,
                  Input.of("params", n, "parameters", "given" if params is not None else other,
                        f"given: {flag}" + ("" if params is not None else ", C = 6 N D")),
                  Input.of("tokens", d, "tokens", "given" if tokens is not None else other,
                        f"given: {flag}" + ("" if tokens is not None else ", C = 6 N D"))]
        loss = law.loss(n, d) if law.form == "parametric" else None
        return c, float(n), float(d), loss, {}, inputs
    alloc = law.allocate(c)
    how = f"compute-optimal under loss law '{law.name}' ({law.source})"
    inputs = [budget_in,
              Input.of("params", alloc.params, "parameters", law.label, how),
              Input.of("tokens", alloc.tokens, "tokens", law.label, how)]
    return c, alloc.params, alloc.tokens, alloc.loss, dict(alloc.intervals), inputs


# -- one cluster -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Knobs:
    """The cost and reliability settings shared by every cluster of a plan; ``given`` names
    the ones the user set (labelled given even where they equal the default)."""

    pue: float = energy.PUE
    host_w_per_gpu: float = energy.HOST_W_PER_GPU
    usd_per_gpu_hour: float = energy.USD_PER_GPU_HOUR
    usd_per_kwh: float = energy.USD_PER_KWH
    failures_per_gpu_hour: float = reliability.LLAMA3_FAILURES_PER_GPU_HOUR
    storage_gbps: float = reliability.STORAGE_GBPS
    restart_s: float = reliability.RESTART_S
    given: frozenset = frozenset()

    def check(self) -> "Knobs":
        energy.check_pue(self.pue)
        for name in ("host_w_per_gpu", "usd_per_gpu_hour", "usd_per_kwh",
                     "failures_per_gpu_hour", "restart_s"):
            value = getattr(self, name)
            if not value >= 0:
                if name == "restart_s":
                    raise DataError(f"--restart-min must be >= 0, got {value / 60:g}")
                raise DataError(f"--{name.replace('_', '-')} must be >= 0, got {value:g}")
        if not self.storage_gbps > 0:
            raise DataError(f"--storage-gbps must be positive, got {self.storage_gbps}")
        return self

    def failures(self, gpus: float, params: float) -> reliability.Reliability:
        """Failures, checkpoints and goodput of a ``params`` model on ``gpus`` GPUs."""
        return reliability.reliability(gpus, params,
                                       failures_per_gpu_hour=self.failures_per_gpu_hour,
                                       storage_gbps=self.storage_gbps, restart_s=self.restart_s)


def work_flops(compute_flops: float, params: float, flops_per_token: float | None) -> float:
    """The FLOPs a throughput of ``flops_per_token`` FLOPs per token must do for the budget's
    tokens (``compute_flops / (6 params)``): the budget itself where that is None."""
    if flops_per_token is None:
        return compute_flops
    return compute_flops / (FLOPS_PER_PARAM_TOKEN * params) * flops_per_token


def evaluate(compute_flops: float, gpus: float, params: float, tflops: float, power_w: float,
             tdp_w: float, knobs: Knobs, flops_per_token: float | None = None
             ) -> dict[str, float]:
    """The arithmetic of one run: time, GPU-hours, power, energy, cost, reliability.

    ``tflops`` is the per-GPU sustained throughput (TFLOP/s) counting ``flops_per_token``
    FLOPs per token (None: 6 x ``params``, the budget's own), and ``power_w`` the GPU's board
    watts at that load; ``params`` sizes the checkpoints.
    """
    if not gpus > 0:
        raise DataError(f"GPU count must be positive, got {gpus}")
    if not tflops > 0:
        raise DataError(f"per-GPU throughput must be positive, got {tflops} TFLOP/s")
    rel = knobs.failures(gpus, params)
    work = work_flops(compute_flops, params, flops_per_token)
    wall_s = work / (gpus * tflops * 1e12 * rel.goodput)
    money = energy.power_and_cost(gpus=gpus, wall_s=wall_s, gpu_w=power_w, tdp_w=tdp_w,
                                  host_w=knobs.host_w_per_gpu, pue=knobs.pue,
                                  usd_per_gpu_hour=knobs.usd_per_gpu_hour,
                                  usd_per_kwh=knobs.usd_per_kwh)
    return {
        "tflops_per_gpu": tflops, "goodput": rel.goodput, "days": wall_s / 86400.0,
        "gpu_hours": gpus * wall_s / 3600.0, "gpu_power_w": power_w, **money.to_dict(),
        "interruptions": rel.interruptions(wall_s), "mtbf_h": rel.mtbf_s / 3600.0,
        "checkpoint_s": rel.checkpoint_s,
        "checkpoint_interval_min": rel.checkpoint_interval_s / 60.0,
        "restart_min": rel.restart_s / 60.0,
    }


def output_labels(inputs: dict[str, str], t: Throughput) -> dict[str, str]:
    """The label of every output of a cluster plan, from the labels of the inputs it is
    computed from (``inputs``: input name -> label)."""
    reliability_in = (inputs["failures_per_gpu_hour"], inputs["storage_gbps"],
                      inputs["checkpoint_bytes_per_param"], inputs["restart_s"])
    goodput = weakest(*reliability_in, inputs["params"])
    days = weakest(inputs["compute_flops"], t.tflops.label, goodput)
    avg = weakest(t.power_w.label, inputs["host_w_per_gpu"], inputs["pue"])
    cost = weakest(days, avg, inputs["usd_per_gpu_hour"], inputs["usd_per_kwh"])
    return {
        "gpus": inputs["gpus"] if "days" not in inputs else days,
        "tflops_per_gpu": t.tflops.label,
        "mfu": weakest(t.tflops.label, inputs.get("peak_tflops", "assumed")), "goodput": goodput,
        "days": days, "gpu_hours": days, "gpu_power_w": t.power_w.label,
        "facility_mw": weakest(inputs["tdp_w"], inputs["host_w_per_gpu"], inputs["pue"]),
        "avg_power_mw": avg, "energy_mwh": weakest(avg, days), "cost_usd": cost,
        "gpu_cost_usd": weakest(days, inputs["usd_per_gpu_hour"]),
        "energy_cost_usd": weakest(avg, days, inputs["usd_per_kwh"]),
        "interruptions": weakest(days, inputs["failures_per_gpu_hour"]),
        "mtbf_h": inputs["failures_per_gpu_hour"],
        "checkpoint_s": weakest(inputs["storage_gbps"], inputs["checkpoint_bytes_per_param"],
                                inputs["params"]),
        "checkpoint_interval_min": weakest(*reliability_in[:3], inputs["params"]),
        "restart_min": weakest(inputs["restart_s"], inputs["storage_gbps"]),
    }


def _cluster(compute_flops, gpus, params, params_range, throughput: ThroughputFn, tdp_w, peak,
             knobs: Knobs, labels: dict[str, str]) -> ClusterPlan:
    """One cluster plan with intervals from the corners of N, throughput and power."""
    central = throughput(gpus, params)
    values = evaluate(compute_flops, gpus, params, central.tflops.value, central.power_w.value,
                      tdp_w, knobs, central.flops_per_token)
    corners = []
    for n in sorted(set(params_range) | {params}):
        try:
            t = central if n == params else throughput(gpus, n)
        except DataError:
            continue  # a model of this size has no layout that fits: no corner to bound
        for tf, pw in itertools.product({t.tflops.lo, t.tflops.value, t.tflops.hi},
                                        {t.power_w.lo, t.power_w.value, t.power_w.hi}):
            try:
                corners.append(evaluate(compute_flops, gpus, n, tf, pw, tdp_w, knobs,
                                        t.flops_per_token) | {
                    "mfu": tf / peak if peak else None})
            except DataError:
                continue  # a corner where the run cannot progress has no figures to bound
    intervals = {}
    for key in INTERVAL_FIELDS:
        xs = [c[key] for c in corners if c.get(key) is not None]
        if xs and (min(xs) != max(xs)):
            intervals[key] = (float(min(xs)), float(max(xs)))
    mfu = (central.mfu if central.mfu is not None
           else (central.tflops.value / peak if peak else None))
    return ClusterPlan(
        gpus=int(gpus), mfu=mfu, layout=central.layout, breakdown=central.breakdown,
        memory=central.memory, search=central.search,
        labels=output_labels(labels, central),
        sources={"tflops_per_gpu": central.tflops.source, "gpu_power_w": central.power_w.source},
        intervals=intervals,
        **{k: values[k] for k in UNITS if k not in ("gpus", "mfu")})


def solve_gpus(compute_flops: float, days: float, params: float, throughput: ThroughputFn,
               knobs: Knobs, *, unit: int = 1, max_gpus: float = 1e8) -> int:
    """The fewest GPUs, in whole multiples of ``unit`` (one model replica, tp * pp GPUs, when
    the step model sets the layout), that finish ``compute_flops`` within ``days``.

    The cluster's useful rate ``gpus * tflops * goodput`` grows with ``gpus`` until failures
    eat the gains, so the count is found by scanning a logarithmic grid of replica counts from
    the smallest up to the first that meets the deadline (or until failures have doubled the
    fastest time found) and bisecting that bracket.
    """
    if not days > 0:
        raise DataError(f"--days must be positive, got {days}")
    target_s = days * 86400.0

    def wall_s(k: int) -> float:
        g = k * unit
        try:
            t = throughput(g, params)  # refused where no layout fits the device's memory
            rel = knobs.failures(g, params)
        except DataError:
            return math.inf
        work = work_flops(compute_flops, params, t.flops_per_token)
        return work / (g * t.tflops.value * 1e12 * rel.goodput)

    grid = sorted({int(round(k)) for k in np.geomspace(1.0, max(max_gpus / unit, 1.0), 241)})
    # Smallest first, stopping at the first count that meets the deadline: each point is a
    # layout search, and the counts above the first hit cannot be the fewest.
    # Past the fastest cluster, failures only lengthen the run: once a count takes twice the
    # fastest time so far (the factor of 2 a margin for the layout search's steps), no larger
    # count can meet a deadline the fastest so far missed.
    times = []
    for k in grid:
        times.append(wall_s(k))
        if times[-1] <= target_s or times[-1] > 2 * min(times):
            break
    hits = [i for i, t in enumerate(times) if t <= target_s]
    if not hits and all(math.isinf(t) for t in times):
        throughput(grid[-1] * unit, params)  # raises the memory refusal, with its GiB
        raise DataError(f"no cluster up to {grid[-1] * unit:,} GPUs can run this model "
                        f"within its failure rate; allow a lower failure rate")
    if not hits:
        best = int(np.argmin(times))
        raise DataError(
            f"no cluster finishes {format_flops(compute_flops)} FLOPs in {days:g} days: the "
            f"fastest, at "
            f"about {grid[best] * unit:,} GPUs, takes {times[best] / 86400:,.1f} days (failures "
            f"limit larger clusters); allow more days or a lower failure rate")
    i = hits[0]
    if i == 0:
        return grid[0] * unit
    lo, hi = grid[i - 1], grid[i]  # wall_s(lo) > target >= wall_s(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if wall_s(mid) <= target_s:
            hi = mid
        else:
            lo = mid
    return hi * unit


def check_gpus(gpus: Sequence) -> tuple[int, ...]:
    """GPU counts must be positive whole numbers."""
    out = []
    for g in gpus:
        try:
            value = float(g)
        except (TypeError, ValueError):
            raise DataError(f"GPU count must be a positive whole number, got {g!r}") from None
        if not math.isfinite(value) or value <= 0 or value != int(value):
            raise DataError(f"GPU count must be a positive whole number, got {g!r}")
        out.append(int(value))
    if not out:
        raise DataError("give at least one GPU count (--gpus 16384 100000) or --days")
    return tuple(out)


#: The knobs as plan inputs: (name, unit, default, label of the default, its source, flag).
_KNOB_INPUTS = (
    ("pue", "facility W / IT W", energy.PUE, "published", energy.PUE_SOURCE, "--pue"),
    ("host_w_per_gpu", "W per GPU", energy.HOST_W_PER_GPU, "published", energy.HOST_SOURCE,
     "--host-w-per-gpu"),
    ("usd_per_gpu_hour", "USD per GPU-hour", energy.USD_PER_GPU_HOUR, "assumed",
     energy.GPU_PRICE_SOURCE, "--usd-per-gpu-hour"),
    ("usd_per_kwh", "USD per kWh", energy.USD_PER_KWH, "assumed", energy.ENERGY_PRICE_SOURCE,
     "--usd-per-kwh"),
    ("failures_per_gpu_hour", "failures per GPU-hour", reliability.LLAMA3_FAILURES_PER_GPU_HOUR,
     "published", reliability.FAILURE_RATE_SOURCE, "--failures-per-gpu-hour"),
    ("storage_gbps", "GB/s", reliability.STORAGE_GBPS, "published", reliability.STORAGE_SOURCE,
     "--storage-gbps"),
    ("restart_s", "s", reliability.RESTART_S, "assumed", reliability.RESTART_SOURCE,
     "--restart-min"),
)


def knob_inputs(knobs: Knobs) -> list[Input]:
    """The knobs as labelled inputs: a default keeps its source, a value the user set (or any
    other value than the default) is given."""
    out = []
    for name, unit, default, label, source, flag in _KNOB_INPUTS:
        value = getattr(knobs, name)
        typed = name in knobs.given or value != default
        shown = f"{value / 60:g}" if name == "restart_s" else f"{value:g}"
        out.append(Input.of(name, value, unit, "given", f"given: {flag} {shown}") if typed
                   else Input.of(name, value, unit, label, source))
    out.append(Input.of("checkpoint_bytes_per_param", reliability.CHECKPOINT_BYTES_PER_PARAM,
                     "bytes per parameter", "assumed", reliability.CHECKPOINT_SOURCE))
    return out


def make_plan(*, compute: str | float | None = DEFAULT_COMPUTE, params: float | None = None,
              tokens: float | None = None, law: str | LossLaw = DEFAULT_LAW,
              hardware=DEFAULT_HARDWARE, results=None, precision: str | None = None,
              gpus: Sequence[int] | None = None, days: float | None = None,
              tflops_per_gpu: float | None = None, mfu: float | None = None,
              knobs: Knobs | None = None, seq: int | None = None,
              batch_tokens: int | None = None) -> Plan:
    """Plan a training run. See the module docstring for the chain; ``hardware`` is a preset
    name, a profile file or a `HardwareProfile`; ``results`` (a DataFrame of records) builds a
    measured profile instead. ``days`` solves for the GPU count instead of taking ``gpus``.
    Arguments left at None take their defaults (bf16, `DEFAULT_GPUS`), labelled as such;
    any given is labelled given. ``batch_tokens`` fixes the global batch (else the planner's,
    `scaling.plan.throughput.BATCH_SOURCE`)."""
    knobs = (knobs or Knobs()).check()
    if precision is not None and precision not in PRECISIONS:
        raise UnknownNameError("precision", precision, PRECISIONS)
    if tflops_per_gpu is not None and mfu is not None:
        raise DataError("give --tflops-per-gpu or --mfu, not both")
    if tflops_per_gpu is not None and not tflops_per_gpu > 0:
        raise DataError(f"--tflops-per-gpu must be positive, got {tflops_per_gpu}")
    if mfu is not None and not 0 < mfu <= 1:
        raise DataError(f"--mfu must be in (0, 1], got {mfu}")
    law_obj = load_law(law)
    c, n, d, loss, intervals, inputs = _budget(compute, params, tokens, law_obj)
    if batch_tokens is not None and (tflops_per_gpu is not None or mfu is not None):
        raise DataError("--batch-tokens sets the layout search's batch; with --tflops-per-gpu "
                        "or --mfu there is no layout search")
    source = ThroughputSource.build(hardware, results=results, precision=precision, seq=seq,
                                    tflops_per_gpu=tflops_per_gpu, mfu=mfu,
                                    batch_tokens=batch_tokens)
    inputs += [Input.of(*item) for item in source.inputs()] + knob_inputs(knobs)
    if batch_tokens is not None:
        inputs.append(Input.of("batch_tokens", batch_tokens, "tokens per step", "given",
                               "given: --batch-tokens"))
    if days is not None:
        counts = (solve_gpus(c, days, n, source, knobs, unit=source.replica_gpus(n)),)
        inputs.append(Input.of("days", days, "days", "given", "given: --days (GPU count solved)"))
    else:
        counts = check_gpus(DEFAULT_GPUS if gpus is None else gpus)
        inputs.append(Input.of("gpus", counts, "GPUs", "assumed", GPUS_SOURCE) if gpus is None
                      else Input.of("gpus", counts, "GPUs", "given", "given: --gpus"))
    labels = {item.name: item.label for item in inputs}
    plans = tuple(_cluster(c, g, n, intervals.get("params", ()), source, source.tdp_w,
                           source.peak_tflops, knobs, labels) for g in counts)
    return Plan(compute_flops=c, params=n, tokens=d, tokens_per_param=d / n, loss=loss,
                intervals=intervals,
                law={"name": law_obj.name, "label": law_obj.label, "source": law_obj.source,
                     "form": law_obj.form, "warning": law_obj.warning()},
                hardware=source.describe(), precision=source.precision,
                model=source.model_summary(n),
                inputs=tuple(inputs), plans=plans, profile=source.profile)
