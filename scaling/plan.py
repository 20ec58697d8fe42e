"""The training-run planner: what a compute budget costs on a given cluster.

A plan answers, for one budget and each cluster size: how big a model, how many tokens, how
many days, GPU-hours, megawatt-hours, megawatts and dollars. It chains the other modules:

1. **Budget and law** (`scaling.budget`, `scaling.laws`): the budget C in FLOPs, split by a
   loss law into N_opt parameters and D_opt tokens (or an explicit N and D, C = 6 N D).
2. **Model and throughput** (`scaling.model`, `scaling.step`, `scaling.hardware`): N_opt
   becomes a concrete Llama-style config; the step model gives its per-GPU sustained TFLOP/s
   and MFU on the hardware profile under a Llama 3-like parallel layout. ``tflops_per_gpu`` or
   ``mfu`` override it with a given figure.
3. **Reliability** (`scaling.reliability`): failures, checkpoints and restarts at this GPU
   count give the goodput, the fraction of wall-clock time that trains.
4. **Time**: ``wall_s = C / (gpus * tflops_per_gpu * 1e12 * goodput)``; GPU-hours are
   ``gpus * wall_s / 3600``.
5. **Power and money** (`scaling.energy`): facility capacity, average draw, energy, cost.

Every input carries a label (measured, published, fitted or assumed) and its source, and every
output its unit. Intervals come from evaluating the chain at the corners of what is uncertain:
the law's bootstrap interval on N_opt (which changes the model, its throughput and its
checkpoints), and the spread of the measured throughput and power.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from scaling import energy, reliability
from scaling.budget import BUDGETS, parse_compute
from scaling.errors import DataError
from scaling.laws import FLOPS_PER_PARAM_TOKEN, LossLaw, load_law

#: The default run: ten times Llama 3 405B's compute (scaling.budget).
DEFAULT_COMPUTE = "10x-llama3"
DEFAULT_LAW = "epoch-2024"
DEFAULT_HARDWARE = "h100-sxm"
#: Llama 3's 16,384-GPU cluster and a >100,000-GPU Llama 4-class cluster (DESIGN.md).
DEFAULT_GPUS = (16_384, 100_000)
PRECISIONS = ("bf16", "fp8")
LABELS = ("measured", "published", "fitted", "assumed")

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
class Input:
    """One labelled input of a plan."""

    name: str
    value: Any
    unit: str
    label: str  # measured | published | fitted | assumed
    source: str

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "unit": self.unit,
                "label": self.label, "source": self.source}


@dataclass(frozen=True)
class Throughput:
    """What one GPU sustains on a cluster: TFLOP/s with its spread, and board watts."""

    tflops: float
    tflops_lo: float
    tflops_hi: float
    label: str
    source: str
    power_w: float
    power_w_lo: float
    power_w_hi: float
    power_label: str
    power_source: str
    mfu: float | None = None
    layout: dict | None = None
    breakdown: dict | None = None


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
    labels: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in UNITS}
        out["layout"] = self.layout
        out["breakdown"] = self.breakdown
        out["units"] = {k: UNITS[k] for k in out if k in UNITS}
        out["labels"] = dict(self.labels)
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
        inputs = [Input("compute_flops", c, "FLOPs", "assumed", given),
                  Input("params", params, "parameters", "assumed", "given: --params"),
                  Input("tokens", tokens, "tokens", "assumed", "given: --tokens")]
        loss = law.loss(params, tokens) if law.form == "parametric" else None
        return c, float(params), float(tokens), loss, {}, inputs
    c = parse_compute(compute if compute is not None else DEFAULT_COMPUTE)
    name = str(compute).strip().lower() if isinstance(compute, str) else None
    budget_in = (Input("compute_flops", c, "FLOPs", "published", BUDGETS[name].source)
                 if name in BUDGETS else
                 Input("compute_flops", c, "FLOPs", "assumed", f"given: --compute {compute}"))
    if params is not None or tokens is not None:
        n = params if params is not None else c / (FLOPS_PER_PARAM_TOKEN * tokens)
        d = tokens if tokens is not None else c / (FLOPS_PER_PARAM_TOKEN * params)
        flag = "--params" if params is not None else "--tokens"
        inputs = [budget_in,
                  Input("params", n, "parameters", "assumed", f"given: {flag}, C = 6 N D"),
                  Input("tokens", d, "tokens", "assumed", f"given: {flag}, C = 6 N D")]
        loss = law.loss(n, d) if law.form == "parametric" else None
        return c, float(n), float(d), loss, {}, inputs
    alloc = law.allocate(c)
    how = f"compute-optimal under loss law '{law.name}' ({law.source})"
    inputs = [budget_in,
              Input("params", alloc.params, "parameters", law.label, how),
              Input("tokens", alloc.tokens, "tokens", law.label, how)]
    return c, alloc.params, alloc.tokens, alloc.loss, dict(alloc.intervals), inputs


# -- one cluster -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Knobs:
    """The cost and reliability settings shared by every cluster of a plan."""

    pue: float = energy.PUE
    host_w_per_gpu: float = energy.HOST_W_PER_GPU
    usd_per_gpu_hour: float = energy.USD_PER_GPU_HOUR
    usd_per_kwh: float = energy.USD_PER_KWH
    failures_per_gpu_hour: float = reliability.LLAMA3_FAILURES_PER_GPU_HOUR
    storage_gbps: float = reliability.STORAGE_GBPS
    restart_s: float = reliability.RESTART_S

    def check(self) -> "Knobs":
        energy.check_pue(self.pue)
        for name in ("host_w_per_gpu", "usd_per_gpu_hour", "usd_per_kwh",
                     "failures_per_gpu_hour", "restart_s"):
            if not getattr(self, name) >= 0:
                raise DataError(f"{name.replace('_', ' ')} must be >= 0, got {getattr(self, name)}")
        if not self.storage_gbps > 0:
            raise DataError(f"storage bandwidth must be positive, got {self.storage_gbps} GB/s")
        return self


def evaluate(compute_flops: float, gpus: float, params: float, tflops: float, power_w: float,
             tdp_w: float, knobs: Knobs) -> dict[str, float]:
    """The arithmetic of one run: time, GPU-hours, power, energy, cost, reliability.

    ``tflops`` is the per-GPU sustained throughput (TFLOP/s) and ``power_w`` the GPU's board
    watts at that load; ``params`` sizes the checkpoints.
    """
    if not gpus > 0:
        raise DataError(f"GPU count must be positive, got {gpus}")
    if not tflops > 0:
        raise DataError(f"per-GPU throughput must be positive, got {tflops} TFLOP/s")
    rel = reliability.reliability(gpus, params, failures_per_gpu_hour=knobs.failures_per_gpu_hour,
                                  storage_gbps=knobs.storage_gbps, restart_s=knobs.restart_s)
    wall_s = compute_flops / (gpus * tflops * 1e12 * rel.goodput)
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


ThroughputFn = Callable[[float, float], Throughput]  # (gpus, params) -> Throughput

#: Llama 3 405B's layout (Llama 3 paper, Table 4): tensor parallelism 8 inside a node,
#: pipeline stages as the model needs, 8,192-token sequences, a 16M-token batch, and per
#: data-parallel replica one sequence per pipeline stage per step (128 x 16 x 8192 = 16M).
TENSOR_PARALLEL = 8
SEQ = 8192
BATCH_TOKENS = 16 * 2**20
#: Weights and gradients (bf16, 4 bytes per parameter) per GPU kept under 16 GB, a fifth of
#: an 80 GB H100, which gives Llama 3 405B's 16 pipeline stages (405e9 * 4 / 8 / 16 = 12.7 GB).
STAGE_BYTES = 16e9
STAGE_BYTES_PER_PARAM = 4
#: Llama 3 ran an interleaved 1F1B pipeline schedule (Llama 3 paper, Sec. 3.3.2; Narayanan et
#: al. 2021) but does not publish its number of model chunks per GPU; 2 is assumed (it cuts the
#: pipeline bubble of 16 micro-batches on 16 stages from 48% to 32%).
INTERLEAVE = 2


def llama3_layout(params: float, gpus: float, max_tp: int = TENSOR_PARALLEL) -> dict:
    """A Llama 3-like parallel layout for a ``params``-parameter model on ``gpus`` GPUs.

    Tensor parallelism grows in powers of two up to ``max_tp`` (one node) and then pipeline
    stages double, until the bf16 weights and gradients of a GPU's share fit `STAGE_BYTES`;
    the rest is data parallelism: ``gpus_used = tp * pp * dp <= gpus`` (at least one
    replica; the remainder idles).
    """
    tp, pp = 1, 1
    while params * STAGE_BYTES_PER_PARAM / (tp * pp) > STAGE_BYTES:
        if tp < max_tp:
            tp *= 2
        else:
            pp *= 2
    dp = max(1, int(gpus // (tp * pp)))
    return {"tp": tp, "pp": pp, "dp": dp, "gpus_used": min(tp * pp * dp, gpus),
            "interleave": INTERLEAVE if pp > 1 else 1}


class ThroughputSource:
    """Per-GPU throughput and watts for a plan: from a hardware profile through the step
    model, or from a given TFLOP/s or MFU (then only the watts come from the profile)."""

    def __init__(self, profile, *, precision: str, seq: int | None,
                 tflops_per_gpu: float | None = None, mfu: float | None = None):
        self.profile = profile
        self.precision = precision
        self.seq = seq or SEQ
        self.dtype = "bf16" if precision == "bf16" else "fp8_e4m3"
        self.tflops_per_gpu = tflops_per_gpu
        self.mfu = mfu
        try:
            self.peak = profile.peak(self.dtype)
        except DataError:
            self.peak = None
        if mfu is not None and self.peak is None:
            profile.peak(self.dtype)  # raises: --mfu needs a datasheet peak
        self.tdp = profile.tdp
        if self.tdp is None:
            raise DataError(f"hardware profile '{profile.name}' has no TDP, so no facility power; "
                            f"use a published preset (--hardware h100-sxm, ...) or a profile "
                            f"of a recognised GPU")
        self._configs: dict[float, Any] = {}
        self._steps: dict[tuple, Any] = {}

    @classmethod
    def build(cls, hardware, *, results=None, precision: str, seq: int | None = None,
              tflops_per_gpu: float | None = None, mfu: float | None = None):
        from scaling.hardware import HardwareProfile, load_profile

        if isinstance(hardware, HardwareProfile):
            profile = hardware
        elif results is not None:
            profile = load_profile(None, results=results)
        else:
            profile = load_profile(hardware)
        return cls(profile, precision=precision, seq=seq, tflops_per_gpu=tflops_per_gpu, mfu=mfu)

    @property
    def peak_tflops(self) -> float | None:
        return None if self.peak is None else self.peak.value

    @property
    def tdp_w(self) -> float:
        return self.tdp.value

    def config(self, params: float):
        """The concrete model: a Llama 3 preset when ``params`` is within 1% of its size
        (so 405e9 plans the published 405B architecture), else `config_for_params`."""
        from scaling.model import config_for_params, model_presets

        if params not in self._configs:
            near = [c for c in model_presets().values() if abs(c.params / params - 1) < 0.01]
            self._configs[params] = (replace(near[0], seq=self.seq) if near
                                     else config_for_params(params, seq=self.seq))
        return self._configs[params]

    def _power(self, tflops: float) -> Any:
        util = tflops / self.peak.value if self.peak is not None else 1.0
        return self.profile.power_w(min(util, 1.0))

    def __call__(self, gpus: float, params: float) -> Throughput:
        if self.tflops_per_gpu is not None or self.mfu is not None:
            if self.tflops_per_gpu is not None:
                t, src = self.tflops_per_gpu, "given: --tflops-per-gpu"
            else:
                t, src = self.mfu * self.peak.value, f"given: --mfu {self.mfu:g} x datasheet peak"
            w = self._power(t)
            return Throughput(t, t, t, "assumed", src, w.value, w.lo, w.hi, w.label, w.source,
                              mfu=t / self.peak.value if self.peak is not None else None)
        from scaling.step import step_time

        layout = llama3_layout(params, gpus)
        key = (params, layout["tp"], layout["pp"], layout["dp"])
        if key not in self._steps:
            config = self.config(params)
            self._steps[key] = step_time(
                config, self.profile, precision=self.precision, tp=layout["tp"],
                pp=layout["pp"], dp=layout["dp"], seq=self.seq,
                batch_tokens=layout["dp"] * self.micro_batches(layout) * self.seq,
                interleave=layout["interleave"])
        step = self._steps[key]
        idle = layout["gpus_used"] / gpus
        t = step.tflops_per_gpu * idle
        lo, hi = _step_spread(step)
        w = step.power_w if getattr(step, "power_w", None) is not None else self._power(t)
        label = "measured" if self.profile.label == "measured" else "published"
        return Throughput(t, lo * idle, hi * idle, label,
                          f"step model on {self.profile.name} ({self.profile.label} profile)",
                          w.value, w.lo, w.hi, w.label, w.source,
                          mfu=t / self.peak.value if self.peak is not None else None,
                          layout=layout, breakdown=dict(getattr(step, "breakdown", {}) or {}))

    def micro_batches(self, layout: dict) -> int:
        """Sequences per replica per step: at least one per pipeline stage, and enough for
        Llama 3's 16M-token batch (Llama 3 paper, Table 4) where the replicas are few."""
        return max(layout["pp"], math.ceil(BATCH_TOKENS / (layout["dp"] * self.seq)))

    def replica_gpus(self, params: float) -> int:
        """GPUs of one model replica (tp * pp) under the step model's layout; 1 when a given
        throughput replaces the step model (no layout)."""
        if self.tflops_per_gpu is not None or self.mfu is not None:
            return 1
        layout = llama3_layout(params, 1)
        return layout["tp"] * layout["pp"]

    def inputs(self) -> list[Input]:
        p = self.profile
        out = [Input("hardware", p.name, "profile", p.label, "; ".join(p.sources) or p.name),
               Input("precision", self.precision, "", "assumed", "given: --precision"),
               Input("tdp_w", self.tdp.value, "W per GPU", self.tdp.label, self.tdp.source)]
        if self.peak is not None:
            out.append(Input("peak_tflops", self.peak.value, "TFLOP/s per GPU (dense)",
                             self.peak.label, self.peak.source))
        return out

    def describe(self) -> dict:
        p = self.profile
        return {"name": p.name, "label": p.label, "device_name": p.device_name,
                "sources": list(p.sources), "peak_tflops": self.peak_tflops,
                "tdp_w": self.tdp_w}

    def model_summary(self, params: float) -> dict | None:
        try:
            c = self.config(params)
        except DataError:
            return None
        return {"name": c.name, "params": c.params, "layers": c.layers, "d_model": c.d_model,
                "d_ffn": c.d_ffn, "heads_q": c.heads_q, "heads_kv": c.heads_kv,
                "vocab": c.vocab, "seq": c.seq,
                "flops_per_token": c.flops_per_token(), "source": c.source}


def _step_spread(step) -> tuple[float, float]:
    """(lo, hi) of the step model's per-GPU TFLOP/s (from the profile's envelopes)."""
    lo, hi = step.intervals.get("tflops_per_gpu", (step.tflops_per_gpu, step.tflops_per_gpu))
    return float(lo), float(hi)


#: How sure a label is, most to least: a derived number carries its least sure input's label.
_CERTAINTY = {"measured": 0, "published": 1, "fitted": 2, "assumed": 3}


def weakest(*labels: str) -> str:
    """The least certain of ``labels`` (measured < published < fitted < assumed)."""
    return max(labels, key=lambda label: _CERTAINTY.get(label, 3))


def output_labels(inputs: dict[str, str], t: Throughput) -> dict[str, str]:
    """The label of every output of a cluster plan, from the labels of the inputs it is
    computed from (``inputs``: input name -> label)."""
    reliability_in = (inputs["failures_per_gpu_hour"], inputs["storage_gbps"],
                      inputs["checkpoint_bytes_per_param"], inputs["restart_s"])
    goodput = weakest(*reliability_in, inputs["params"])
    days = weakest(inputs["compute_flops"], t.label, goodput)
    avg = weakest(t.power_label, inputs["host_w_per_gpu"], inputs["pue"])
    cost = weakest(days, avg, inputs["usd_per_gpu_hour"], inputs["usd_per_kwh"])
    return {
        "gpus": "assumed" if "days" not in inputs else days, "tflops_per_gpu": t.label,
        "mfu": weakest(t.label, inputs.get("peak_tflops", "assumed")), "goodput": goodput,
        "days": days, "gpu_hours": days, "gpu_power_w": t.power_label,
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
    values = evaluate(compute_flops, gpus, params, central.tflops, central.power_w, tdp_w, knobs)
    corners = []
    for n in sorted(set(params_range) | {params}):
        t = central if n == params else throughput(gpus, n)
        for tf, pw in itertools.product({t.tflops_lo, t.tflops, t.tflops_hi},
                                        {t.power_w_lo, t.power_w, t.power_w_hi}):
            try:
                corners.append(evaluate(compute_flops, gpus, n, tf, pw, tdp_w, knobs) | {
                    "mfu": tf / peak if peak else None})
            except DataError:
                continue  # a corner where the run cannot progress has no figures to bound
    intervals = {}
    for key in INTERVAL_FIELDS:
        xs = [c[key] for c in corners if c.get(key) is not None]
        if xs and (min(xs) != max(xs)):
            intervals[key] = (float(min(xs)), float(max(xs)))
    mfu = central.mfu if central.mfu is not None else (central.tflops / peak if peak else None)
    return ClusterPlan(
        gpus=int(gpus), mfu=mfu, layout=central.layout, breakdown=central.breakdown,
        labels=output_labels(labels, central),
        intervals=intervals,
        **{k: values[k] for k in UNITS if k not in ("gpus", "mfu")})


def solve_gpus(compute_flops: float, days: float, params: float, throughput: ThroughputFn,
               knobs: Knobs, *, unit: int = 1, max_gpus: float = 1e8) -> int:
    """The fewest GPUs, in whole multiples of ``unit`` (one model replica, tp * pp GPUs, when
    the step model sets the layout), that finish ``compute_flops`` within ``days``.

    The cluster's useful rate ``gpus * tflops * goodput`` grows with ``gpus`` until failures
    eat the gains, so the count is found by scanning a logarithmic grid of replica counts and
    bisecting the first bracket that meets the deadline.
    """
    if not days > 0:
        raise DataError(f"--days must be positive, got {days}")
    target_s = days * 86400.0

    def wall_s(k: int) -> float:
        g = k * unit
        t = throughput(g, params)
        try:
            rel = reliability.reliability(g, params, failures_per_gpu_hour=knobs.failures_per_gpu_hour,
                                          storage_gbps=knobs.storage_gbps, restart_s=knobs.restart_s)
        except DataError:
            return math.inf
        return compute_flops / (g * t.tflops * 1e12 * rel.goodput)

    grid = sorted({int(round(k)) for k in np.geomspace(1.0, max(max_gpus / unit, 1.0), 241)})
    times = [wall_s(k) for k in grid]
    hits = [i for i, t in enumerate(times) if t <= target_s]
    if not hits:
        best = int(np.argmin(times))
        raise DataError(
            f"no cluster finishes {compute_flops:.3g} FLOPs in {days:g} days: the fastest, at "
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
        raise DataError("give at least one GPU count (--gpus 16384,100000) or --days")
    return tuple(out)


def make_plan(*, compute: str | float | None = DEFAULT_COMPUTE, params: float | None = None,
              tokens: float | None = None, law: str | LossLaw = DEFAULT_LAW,
              hardware=DEFAULT_HARDWARE, results=None, precision: str = "bf16",
              gpus: Sequence[int] = DEFAULT_GPUS, days: float | None = None,
              tflops_per_gpu: float | None = None, mfu: float | None = None,
              knobs: Knobs | None = None, seq: int | None = None) -> Plan:
    """Plan a training run. See the module docstring for the chain; ``hardware`` is a preset
    name, a profile file or a `HardwareProfile`; ``results`` (a DataFrame of records) builds a
    measured profile instead. ``days`` solves for the GPU count instead of taking ``gpus``."""
    knobs = (knobs or Knobs()).check()
    if precision not in PRECISIONS:
        from scaling.errors import UnknownNameError
        raise UnknownNameError("precision", precision, PRECISIONS)
    if tflops_per_gpu is not None and mfu is not None:
        raise DataError("give --tflops-per-gpu or --mfu, not both")
    if tflops_per_gpu is not None and not tflops_per_gpu > 0:
        raise DataError(f"--tflops-per-gpu must be positive, got {tflops_per_gpu}")
    if mfu is not None and not 0 < mfu <= 1:
        raise DataError(f"--mfu must be in (0, 1], got {mfu}")
    law_obj = load_law(law)
    c, n, d, loss, intervals, inputs = _budget(compute, params, tokens, law_obj)

    source = ThroughputSource.build(hardware, results=results, precision=precision, seq=seq,
                             tflops_per_gpu=tflops_per_gpu, mfu=mfu)
    throughput = source
    model = source.model_summary(n)
    n_range = intervals.get("params", ())

    inputs += source.inputs()
    inputs += [
        Input("pue", knobs.pue, "facility W / IT W",
              "published" if knobs.pue == energy.PUE else "assumed",
              energy.PUE_SOURCE if knobs.pue == energy.PUE else "given: --pue"),
        Input("host_w_per_gpu", knobs.host_w_per_gpu, "W per GPU",
              "published" if knobs.host_w_per_gpu == energy.HOST_W_PER_GPU else "assumed",
              energy.HOST_SOURCE if knobs.host_w_per_gpu == energy.HOST_W_PER_GPU
              else "given: --host-w-per-gpu"),
        Input("usd_per_gpu_hour", knobs.usd_per_gpu_hour, "USD per GPU-hour", "assumed",
              energy.GPU_PRICE_SOURCE if knobs.usd_per_gpu_hour == energy.USD_PER_GPU_HOUR
              else "given: --usd-per-gpu-hour"),
        Input("usd_per_kwh", knobs.usd_per_kwh, "USD per kWh", "assumed",
              energy.ENERGY_PRICE_SOURCE if knobs.usd_per_kwh == energy.USD_PER_KWH
              else "given: --usd-per-kwh"),
        Input("failures_per_gpu_hour", knobs.failures_per_gpu_hour, "failures per GPU-hour",
              "published" if knobs.failures_per_gpu_hour == reliability.LLAMA3_FAILURES_PER_GPU_HOUR
              else "assumed",
              reliability.FAILURE_RATE_SOURCE
              if knobs.failures_per_gpu_hour == reliability.LLAMA3_FAILURES_PER_GPU_HOUR
              else "given: --failures-per-gpu-hour"),
        Input("storage_gbps", knobs.storage_gbps, "GB/s",
              "published" if knobs.storage_gbps == reliability.STORAGE_GBPS else "assumed",
              reliability.STORAGE_SOURCE if knobs.storage_gbps == reliability.STORAGE_GBPS
              else "given: --storage-gbps"),
        Input("checkpoint_bytes_per_param", reliability.CHECKPOINT_BYTES_PER_PARAM,
              "bytes per parameter", "assumed", reliability.CHECKPOINT_SOURCE),
        Input("restart_s", knobs.restart_s, "s", "assumed",
              reliability.RESTART_SOURCE if knobs.restart_s == reliability.RESTART_S
              else "given: --restart-min"),
    ]
    if days is not None:
        counts = (solve_gpus(c, days, n, throughput, knobs, unit=source.replica_gpus(n)),)
        inputs.append(Input("days", days, "days", "assumed", "given: --days (GPU count solved)"))
    else:
        counts = check_gpus(gpus)
    labels = {item.name: item.label for item in inputs}
    plans = tuple(_cluster(c, g, n, n_range, throughput, source.tdp_w, source.peak_tflops,
                           knobs, labels) for g in counts)
    return Plan(compute_flops=c, params=n, tokens=d, tokens_per_param=d / n, loss=loss,
                intervals=intervals,
                law={"name": law_obj.name, "label": law_obj.label, "source": law_obj.source,
                     "form": law_obj.form},
                hardware=source.describe(), precision=precision, model=model,
                inputs=tuple(inputs), plans=plans, profile=source.profile)
