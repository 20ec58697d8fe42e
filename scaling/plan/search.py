"""The layout search: the fastest parallel layout of a model on a number of GPUs that fits the
device's memory, and the runners-up with the reason each loses.

A layout is one value per dimension of `DIMENSIONS` (tensor ``tp``, pipeline ``pp``,
context ``cp`` (sequences over `CP_MIN_SEQ` tokens), expert ``ep`` (MoE), micro-batch size,
interleaved chunks, recomputation, ZeRO stage), with the data-parallel degree the GPUs
left: ``dp = gpus // (tp * pp * cp)`` (the remainder idles, whole replicas only) unless ``dp``
is pinned. The search

1. enumerates every combination (the candidates of each dimension, or the one value a caller
   pins), keeps those whose micro-batches divide the global batch;
2. checks all of them against the device's memory in one vectorised call
   (`scaling.model.memory.memory_breakdown` over numpy arrays, the same terms
   `scaling.model.memory.step_memory` gives the step model's layouts);
3. leaves out a layout whose cheaper twin fits (the same layout with less recomputation or
   a lower ZeRO stage, which the step model never times slower: `dominated`);
4. times the rest with the step model (`scaling.model.step.step_time`), best first by a
   lower bound, and stops when no untimed layout can beat the ones kept.

The bound: a micro-batch's kernels, elementwise traffic and tensor-parallel collectives on a
stage are those of the whole model on one stage divided by ``pp`` (the step model balances
its stages), so with ``T1`` that time at ``pp = 1`` (one `step_time` call per distinct
``tp``, micro-batch size, recomputation, ...), a layout's step is at least
``T1 / pp * (m + (pp - 1) / v)``; the pipeline sends, data-parallel collectives and the
optimizer only add to it. `search_layouts` checks the bound on every layout it times and
times everything if it is ever broken.

Layouts are ranked by seconds per token (the step time over the tokens of its step), which
is the step time where the global batch is fixed, and the cluster's tokens per second where
the planner grows the batch with the replicas (`planner_batch`).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from scaling.errors import DataError
from scaling.model.config import ModelConfig
from scaling.model.memory import (GIB, STEP_ZERO, ZERO_STAGES, MemoryOptions, device_memory,
                                  memory_breakdown, memory_known)
from scaling.model.step import (DEFAULT_BATCH_TOKENS, STEP_RECOMPUTE, TERM_NAMES, StepResult,
                                step_time)

#: Layouts listed beside the best (`SearchResult.ranked`) unless the caller asks for another
#: number.
TOP = 5
#: The search space of the dimensions without a natural bound: ASSUMED ranges, not physics.
#: Micro-batches of 1 to 8 sequences (the range of Megatron-LM's published configurations,
#: Narayanan et al. 2021, Sec. 5). Model chunks per GPU: plain 1F1B or the planner's assumed
#: 2 (Llama 3 ran an interleaved schedule without publishing its chunk count, Sec. 3.3.2).
#: The step model prices no cost of more chunks beyond the pipeline sends, so a wider range
#: would always pick the most chunks that fit memory (8 on Llama 3 405B, 16k H100: 517
#: TFLOP/s against the published 400); widen it when the step model prices them.
MICRO_BATCHES = (1, 2, 4, 8)
INTERLEAVES = (1, 2)
CONTEXT_PARALLEL = (1, 2, 4, 8, 16, 32)
#: Context parallelism is searched for sequences longer than this; at this length and below
#: every layout has CP 1 unless a caller pins it. ASSUMED from the one published practice:
#: Llama 3 trained 405B on 8,192-token sequences without CP and added CP 16 for its 131,072-
#: token stage (arXiv 2407.21783, Sec. 3.3.2 and Table 4). The step model's CP costs are
#: checked on that one long-context row only; at 8,192 tokens with CP it would prefer TP4 CP8
#: PP64 DP8 for Llama 3 405B on 16,384 H100 (486 TFLOP/s against the published layout's
#: 388), its bubble smaller for fewer replicas, a gain no published run shows and that the
#: presets' one GEMM figure at every shape (no penalty for 1,024-token GEMMs) may invent.
CP_MIN_SEQ = 8192
SEARCHED_ZERO = (2, 3)
SEARCH_SOURCE = "layout search (scaling.plan.search): the fastest layout that fits memory"


@dataclass(frozen=True)
class Context:
    """What a dimension's candidates depend on."""

    config: ModelConfig
    gpus: int
    gpus_per_node: int
    seq: int


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small) | {n // d for d in small})


def replicas_for_batch(batch: int, micro_batch: np.ndarray, most: np.ndarray,
                       ep: np.ndarray) -> np.ndarray:
    """For each layout, the most data-parallel replicas, at most ``most`` and a multiple of
    ``ep``, that split ``batch`` sequences into whole micro-batches of ``micro_batch``; 0
    where none does. With a fixed batch the search may leave GPUs idle rather than find no
    layout: at 100,000 GPUs few replica counts divide 2,048 sequences."""
    divisors = np.array(_divisors(int(batch)))
    micro_batch, most, ep = (np.asarray(a, dtype=np.int64) for a in (micro_batch, most, ep))
    whole = batch % micro_batch == 0
    per_mb = np.where(whole, batch // micro_batch, 1)
    ok = ((divisors[None, :] <= most[:, None]) & (per_mb[:, None] % divisors[None, :] == 0)
          & (divisors[None, :] % ep[:, None] == 0) & whole[:, None])
    return np.where(ok, divisors[None, :], 0).max(axis=1)


def _tp_values(ctx: Context) -> tuple:
    """Divisors of the NVLink domain that split the query heads (the step model's rule,
    `ModelConfig.local_heads`)."""
    c = ctx.config
    return tuple(t for t in _divisors(ctx.gpus_per_node)
                 if c.heads_q % t == 0 and not (c.heads_kv >= t and c.heads_kv % t))


def _pp_values(ctx: Context) -> tuple:
    """Stages up to one layer each (the step model balances any count): the divisors of the
    GPU count, and the powers of two (a remainder of GPUs then idles)."""
    twos = {2 ** k for k in range(ctx.config.layers.bit_length())}
    return tuple(sorted(p for p in twos | set(_divisors(ctx.gpus))
                        if p <= min(ctx.config.layers, ctx.gpus)))


def _cp_values(ctx: Context) -> tuple:
    """CP degrees that cut the sequence into 2 x cp equal chunks, for sequences longer than
    `CP_MIN_SEQ` (else 1)."""
    if ctx.seq <= CP_MIN_SEQ:
        return (1,)
    return tuple(c for c in CONTEXT_PARALLEL if ctx.seq % (2 * c) == 0 or c == 1)


def _ep_values(ctx: Context) -> tuple:
    experts = ctx.config.experts if ctx.config.is_moe else 1
    return tuple(_divisors(experts)) if experts > 1 else (1,)


@dataclass(frozen=True)
class Dimension:
    """One dimension of the search: its candidates, whether it multiplies a replica's GPUs,
    whether it changes one micro-batch's time on a whole-model stage (the bound's key), and
    the keyword `step_time` takes it by (None: the step model does not time it, the layouts
    all price it as `scaling.model.memory.STEP_ZERO`)."""

    name: str
    candidates: Callable[[Context], tuple]
    replica: bool = False
    per_microbatch: bool = False
    step_arg: str | None = None


#: Every dimension the search knows, in the order layouts are written. A dimension whose
#: ``step_arg`` `step_time` does not take, or that is in `NOT_SEARCHED`, is left out of
#: `DIMENSIONS`: adding one is one line here.
ALL_DIMENSIONS = (
    Dimension("tp", _tp_values, replica=True, per_microbatch=True, step_arg="tp"),
    Dimension("pp", _pp_values, replica=True, step_arg="pp"),
    Dimension("cp", _cp_values, replica=True, per_microbatch=True, step_arg="cp"),
    Dimension("ep", _ep_values, per_microbatch=True, step_arg="ep"),
    Dimension("micro_batch", lambda ctx: MICRO_BATCHES, per_microbatch=True,
              step_arg="micro_batch"),
    Dimension("interleave", lambda ctx: INTERLEAVES, step_arg="interleave"),
    Dimension("recompute", lambda ctx: STEP_RECOMPUTE, per_microbatch=True,
              step_arg="recompute"),
    # ZeRO 2 and 3 (`scaling.model.memory.ZERO_STAGES`): stage 1 times as stage 2 and holds
    # more, stage 0 is slower and holds more still, so neither can be the fastest that fits
    # and they are not enumerated (a caller may pin them).
    Dimension("zero", lambda ctx: SEARCHED_ZERO, step_arg="zero"),
)
_STEP_ARGS = set(inspect.signature(step_time).parameters)
#: Dimensions the step model times that the search does not range over: a dimension listed
#: here takes its step-model default (1) in every layout unless a caller pins it. None today.
NOT_SEARCHED: tuple[str, ...] = ()
DIMENSIONS = tuple(d for d in ALL_DIMENSIONS
                   if (d.step_arg is None or d.step_arg in _STEP_ARGS)
                   and d.name not in NOT_SEARCHED)
#: Names a caller may pin (`search_layouts` ``pins``): the dimensions and ``dp``.
PINNABLE = tuple(d.name for d in DIMENSIONS) + ("dp",)
#: Step terms paid once per step, or per micro-batch but not split over stages: left out of
#: the bound's whole-model micro-batch time.
_NOT_PER_STAGE = ("pipeline_bubble_s", "dp_comm_s", "optimizer_s", "pp_comm_s",
                  "grad_accumulation_s")


def planner_batch(seq: int) -> int:
    """Sequences of the planner's global batch: Llama 3's 2,048 x 8,192 tokens (Llama 3
    paper, Table 4), as sequences of ``seq``, at least one."""
    return max(1, DEFAULT_BATCH_TOKENS // seq)


@dataclass
class Candidate:
    """One layout and what the search found of it."""

    layout: dict
    memory_bytes: float
    hbm_bytes: float
    step: StepResult | None = None
    reason: str = ""

    @property
    def seconds_per_token(self) -> float:
        return self.step.step_time_s / self.layout["batch_tokens"]

    def to_dict(self) -> dict:
        out = {"layout": dict(self.layout), "memory_gib": self.memory_bytes / GIB,
               "hbm_gib": self.hbm_bytes / GIB, "reason": self.reason}
        if self.step is not None:
            out.update(step_time_s=self.step.step_time_s,
                       tflops_per_gpu=self.step.tflops_per_gpu, mfu=self.step.mfu,
                       tokens_per_s=self.step.tokens_per_s, breakdown=dict(self.step.breakdown))
        return out


@dataclass
class SearchResult:
    best: Candidate
    ranked: list  # the best and the runners-up, fastest first (`Candidate`, timed)
    refused: list  # layouts that would be faster by the bound but do not fit memory
    gpus: int
    counts: dict = field(default_factory=dict)  # searched, divide the batch, fit, timed
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"gpus": self.gpus, "best": self.best.to_dict(),
                "ranked": [c.to_dict() for c in self.ranked],
                "refused": [c.to_dict() for c in self.refused],
                "counts": dict(self.counts), "notes": list(self.notes),
                "dimensions": [d.name for d in DIMENSIONS]}


class _CachedProfile:
    """A hardware profile whose kernel and collective rates are remembered per argument, so
    the many `step_time` calls of one search price each shape once."""

    _CACHED = ("matmul_tflops", "attention_tflops", "busbw_gbps", "link_gbps",
               "grouped_gemm_tflops", "peak", "power_w")

    def __init__(self, profile):
        self._profile, self._memo = profile, {}

    def __getattr__(self, name):
        attr = getattr(self._profile, name)
        if name not in self._CACHED:
            return attr

        def cached(*args, **kwargs):
            key = (name, args, tuple(sorted(kwargs.items())))
            if key not in self._memo:
                try:
                    self._memo[key] = (True, attr(*args, **kwargs))
                except Exception as exc:  # remembered and raised again, as the profile would
                    self._memo[key] = (False, exc)
            ok, value = self._memo[key]
            if not ok:
                raise value
            return value
        return cached


def layout_words(layout: dict) -> str:
    """``TP 8 x PP 16 x DP 128, micro-batch 1, 2 chunks, full recompute``."""
    parts = [f"{name.upper()} {layout[name]}" for name in ("tp", "cp", "pp", "dp")
             if name in layout and (name not in ("cp",) or layout[name] > 1)]
    text = " x ".join(parts)
    extra = [f"micro-batch {layout['micro_batch']}"]
    if layout.get("interleave", 1) > 1:
        extra.append(f"{layout['interleave']} chunks")
    if layout.get("recompute", "none") != "none":
        extra.append(f"{layout['recompute']} recompute")
    if layout.get("ep", 1) > 1:
        extra.append(f"EP {layout['ep']}")
    if layout.get("zero", STEP_ZERO) != STEP_ZERO:
        extra.append(f"ZeRO {layout['zero']}")
    return f"{text}, {', '.join(extra)}"


class LayoutSearch:
    """The search for one model, device, precision and sequence length; the whole-model
    micro-batch times of the bound are kept between calls (`search_layouts` is one call)."""

    def __init__(self, config: ModelConfig, profile, *, precision: str = "bf16",
                 seq: int | None = None, overrides: dict | None = None,
                 seq_label: tuple[str, str] | None = None):
        self.config, self.profile, self.precision = config, profile, precision
        self.seq = seq or config.seq
        # how the sequence length is labelled in the step model's inputs: given by default (the
        # caller passed it), or as the caller says (the planner's Llama 3 default is published)
        self.seq_label = seq_label
        self.overrides = dict(overrides or {})
        self.rates = _CachedProfile(profile)
        self.known = memory_known(profile)
        self._t1: dict = {}
        self.options = MemoryOptions(fp8_gemm_inputs=precision == "fp8")

    # -- enumeration ------------------------------------------------------------------------
    def candidates(self, gpus: int, pins: dict, batch: int | None) -> dict:
        """Arrays, one per dimension plus ``dp``, ``micro_batches`` and ``batch_tokens``, of
        every layout that fills whole replicas and divides the batch."""
        unknown = set(pins) - set(PINNABLE)
        if unknown:
            raise DataError(f"cannot pin {', '.join(sorted(unknown))}: the layout search has "
                            f"{', '.join(PINNABLE)}")
        ctx = Context(self.config, int(gpus), int(self.profile.gpus_per_node), self.seq)
        values = [(pins[d.name],) if pins.get(d.name) is not None else d.candidates(ctx)
                  for d in DIMENSIONS]
        names = [d.name for d in DIMENSIONS]
        if not all(values):
            return {}
        # Every combination, as itertools.product orders them (the last dimension fastest).
        index = np.indices([len(v) for v in values]).reshape(len(values), -1)
        grid = {n: np.asarray(v)[i] for n, v, i in zip(names, values, index)}
        replica = np.ones(len(grid["tp"]), dtype=np.int64)
        for d in DIMENSIONS:
            if d.replica:
                replica = replica * grid[d.name].astype(np.int64)
        pp, v, mb = grid["pp"], grid["interleave"], grid["micro_batch"]
        ep = grid["ep"] if "ep" in grid else np.ones_like(replica)
        if pins.get("dp") is not None:
            dp = np.full_like(replica, pins["dp"])
        elif batch is None:
            dp = gpus // replica
        else:  # a given batch: the most replicas that split it, the other GPUs idle
            dp = replicas_for_batch(batch, mb, gpus // replica, ep)
        keep = (dp >= 1) & (replica * dp <= gpus) & (pp <= self.config.layers)
        keep &= np.where(pp == 1, v == 1, v <= -(-self.config.layers // pp))
        keep &= dp % ep == 0  # the step model's rule: the EP group lies in the DP group
        dp = np.maximum(dp, 1)
        if batch is None:  # the planner's batch: grows to one sequence per stage per replica
            target = planner_batch(self.seq)
            m = np.maximum(pp, -(-target // (dp * mb)))
            # A larger micro-batch may not grow the batch past what micro-batches of one
            # sequence give (a full pipeline of them, pp per replica, must fit in it): a
            # bigger batch is fewer optimizer steps, not a faster layout, and would win
            # every ranking by seconds per token.
            smallest = dp * np.maximum(pp, -(-target // dp))
            keep &= dp * mb * pp <= smallest
        else:
            keep &= batch % (dp * mb) == 0
            m = np.maximum(1, batch // (dp * mb))
        out = {n: a[keep] for n, a in grid.items()}
        out.update(dp=dp[keep], micro_batches=m[keep], seq=np.full(int(keep.sum()), self.seq),
                   batch_tokens=(dp * mb * m * self.seq)[keep])
        return out

    def memory(self, cand: dict):
        """The memory of every candidate (one vectorised call), as `step_memory` prices the
        step model's layouts."""
        kw = {k: cand[k] for k in ("tp", "pp", "dp", "micro_batch", "interleave", "recompute")}
        kw.update({k: cand[k] for k in ("cp", "ep") if k in cand})
        if "ep" in cand:  # each expert split over tensor parallelism, as `step_memory` has it
            kw["etp"] = cand["tp"]
        return memory_breakdown(self.config, self.profile, micro_batches=cand["micro_batches"],
                                zero=cand["zero"], seq=self.seq, options=self.options, **kw)

    # -- timing -----------------------------------------------------------------------------
    def _step_args(self, lay: dict) -> dict:
        args = {d.step_arg: lay[d.name] for d in DIMENSIONS if d.step_arg}
        return dict(args, dp=lay["dp"], seq=self.seq, batch_tokens=lay["batch_tokens"])

    def time(self, lay: dict, chosen: dict) -> StepResult:
        return step_time(self.config, self.rates, precision=self.precision,
                         overrides=self.overrides, chosen=chosen, **self._step_args(lay))

    def whole_model_microbatch_s(self, key: tuple) -> float:
        """``T1``: one micro-batch's stage-split terms with every layer on one stage."""
        if key not in self._t1:
            lay = dict(zip([d.name for d in DIMENSIONS if d.per_microbatch], key))
            # One micro-batch per replica; EP needs as many replicas as its group has ranks.
            lay.update(pp=1, interleave=1, dp=lay.get("ep", 1), zero=STEP_ZERO)
            lay["batch_tokens"] = lay["micro_batch"] * self.seq * lay["dp"]
            step = self.time(lay, {})
            self._t1[key] = sum(v for k, v in step.breakdown.items() if k not in _NOT_PER_STAGE)
        return self._t1[key]

    def bounds(self, cand: dict, rows: np.ndarray | None = None) -> np.ndarray:
        """A lower bound on each candidate's seconds per token (0 where overrides replace
        the modelled terms, so every layout is timed); only for ``rows`` (a mask) where given,
        infinite elsewhere (rows the search never orders by it)."""
        n = len(cand["tp"])
        if self.overrides:
            return np.zeros(n)
        rows = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
        keys = [d.name for d in DIMENSIONS if d.per_microbatch]
        cols = [cand[k][rows].tolist() for k in keys]
        t1 = np.full(n, np.inf)
        t1[rows] = [self.whole_model_microbatch_s(key) for key in zip(*cols)]
        pp, v, m = cand["pp"], cand["interleave"], cand["micro_batches"]
        return t1 / pp * (m + (pp - 1) / v) / cand["batch_tokens"]

    # -- the search -------------------------------------------------------------------------
    def search(self, gpus: int, *, pins: dict | None = None, batch: int | None = None,
               top: int = TOP) -> SearchResult:
        pins = {k: v for k, v in (pins or {}).items() if v is not None}
        gpus = int(gpus)
        if gpus < 1:
            raise DataError(f"the layout search needs at least one GPU, got {gpus}")
        cand = self.candidates(gpus, pins, batch)
        searched = len(cand.get("tp", ()))
        if not searched:
            raise DataError(self._no_layout(gpus, pins, batch))
        notes = []
        if self.known:
            mem = self.memory(cand)
            total, hbm = np.asarray(mem.total_bytes, dtype=float), float(mem.hbm_bytes)
            fit = total <= hbm
        else:
            total, hbm = np.zeros(searched), math.nan
            fit = np.ones(searched, dtype=bool)
            notes.append(f"memory not checked: profile '{self.profile.name}' is not a "
                         "recognised device")
        if not fit.any():
            raise DataError(self._refusal(cand, total, hbm, gpus))
        chosen = self._labels(pins)
        undominated = fit & ~dominated(cand, fit)
        # Bounds where the search uses them: the layouts it may time, and those refused
        # (listed where the bound put them ahead of the best).
        bound = self.bounds(cand, undominated | ~fit)
        timed, broken = self._time_in_order(cand, np.flatnonzero(undominated), bound, chosen,
                                            top, total, hbm)
        if broken:
            notes.append("the step-time bound did not hold; every layout that fits was timed")
        # Equal times (a ZeRO stage that adds no time): the one that holds less memory first.
        timed.sort(key=lambda c: (c.seconds_per_token, c.memory_bytes or 0.0))
        best = timed[0]
        ranked = timed[:top]
        for c in ranked[1:]:
            c.reason = _why_slower(c, best)
        best.reason = "fastest that fits"
        limit = best.seconds_per_token
        faster = np.flatnonzero(~fit & (bound < limit))
        refused = [self._candidate(cand, i, total, hbm) for i in
                   faster[np.argsort(bound[faster], kind="stable")][:top]]
        for c in refused:
            c.reason = (f"refused: needs {c.memory_bytes / GIB:,.1f} GiB per GPU, the device has "
                        f"{c.hbm_bytes / GIB:,.0f}")
        return SearchResult(best=best, ranked=ranked, refused=refused, gpus=gpus,
                            counts={"searched": searched, "fit": int(fit.sum()),
                                    "undominated": int(undominated.sum()),
                                    "timed": len(timed)}, notes=notes)

    def _time_in_order(self, cand, feasible, bound, chosen, top, total, hbm):
        order = feasible[np.argsort(bound[feasible], kind="stable")]
        timed, broken, i = [], False, 0
        while i < len(order):
            j = order[i]
            if len(timed) >= top and not broken:
                kth = sorted(c.seconds_per_token for c in timed)[top - 1]
                if bound[j] > kth:
                    break
            # The vectorised memory of this layout: `step_memory` of its layout, one row of
            # the same call (tests/test_scaling/plan/test_search.py checks they agree).
            c = self._candidate(cand, j, total if self.known else None,
                                hbm if self.known else None)
            c.step = self.time(c.layout, chosen)
            if c.seconds_per_token < bound[j] * (1 - 1e-9):
                broken = True
            timed.append(c)
            i += 1
        return timed, broken

    def _candidate(self, cand, i, total, hbm) -> Candidate:
        lay = {k: (a[i].item() if hasattr(a[i], "item") else a[i]) for k, a in cand.items()}
        lay["gpus_used"] = int(np.prod([lay[d.name] for d in DIMENSIONS if d.replica])
                               * lay["dp"])
        return Candidate(lay, math.nan if total is None else float(total[i]),
                         math.nan if hbm is None else hbm)

    def _labels(self, pins: dict) -> dict:
        """How `step_time` labels the layout: pinned dimensions given, the rest chosen."""
        out = {}
        for name in [d.step_arg for d in DIMENSIONS if d.step_arg] + ["dp", "batch_tokens"]:
            if name in pins:
                out[name] = ("given", f"given: --{name.replace('_', '-')} {pins[name]}")
            else:
                out[name] = ("assumed", SEARCH_SOURCE)
        if self.seq_label is not None:
            out["seq"] = self.seq_label
        return out

    def _refusal(self, cand, total, hbm, gpus) -> str:
        i = int(np.argmin(total))
        smallest = self._candidate(cand, i, total, hbm)
        _, device = device_memory(self.profile)
        return (f"{self.config.name} fits no layout of {gpus:,} GPUs: the smallest of the "
                f"{len(total):,} searched, {layout_words(smallest.layout)}, needs "
                f"{smallest.memory_bytes / GIB:,.1f} GiB per GPU and the {device} has "
                f"{hbm / GIB:,.0f} GiB; give more GPUs or a smaller model")

    def _no_layout(self, gpus, pins, batch) -> str:
        pinned = ", ".join(f"{k} {v}" for k, v in pins.items()) or "nothing pinned"
        what = (f"divides the batch of {batch:,} sequences into whole micro-batches"
                if batch is not None else "fills whole replicas")
        return (f"no layout of {gpus:,} GPUs for {self.config.name} ({pinned}) {what}; "
                "unpin a dimension or change the GPU count")


#: Dimensions along which the step model's time only grows and the memory only shrinks, in
#: the order of their values: more recomputation repeats more of the forward
#: (`scaling.model.step.STEP_RECOMPUTE`), a higher ZeRO stage gathers the weights more often
#: (`scaling.model.memory.ZERO_STAGES`).
MONOTONE = {"recompute": STEP_RECOMPUTE, "zero": ZERO_STAGES}


def dominated(cand: dict, fit: np.ndarray) -> np.ndarray:
    """The candidates a cheaper twin beats: one that is the same layout with less
    recomputation or a lower ZeRO stage (`MONOTONE`, no more of either) and fits memory is at
    least as fast, so the candidate cannot be the fastest that fits and is not timed. Exact,
    not a heuristic: each listed dimension only adds work in the step model."""
    names = [n for n in MONOTONE if n in cand]
    if not names or not len(fit):
        return np.zeros(len(fit), dtype=bool)
    ranks = [np.array([MONOTONE[n].index(v) for v in cand[n].tolist()]) for n in names]
    others = [k for k in ("tp", "pp", "cp", "ep", "micro_batch", "interleave", "dp")
              if k in cand]
    _, group = np.unique(np.stack([np.asarray(cand[k]) for k in others], axis=1), axis=0,
                         return_inverse=True)
    group = group.reshape(-1)
    shape = (int(group.max()) + 1,) + tuple(len(MONOTONE[n]) for n in names)
    fits = np.zeros(shape, dtype=bool)
    np.logical_or.at(fits, (group, *ranks), fit)
    # Any fitting twin at or below each cell, then at or below and not the cell itself.
    below = fits.copy()
    for axis in range(1, len(shape)):
        below = np.logical_or.accumulate(below, axis=axis)
    strictly = np.zeros(shape, dtype=bool)
    for axis in range(1, len(shape)):
        shifted = np.zeros(shape, dtype=bool)
        src = [slice(None)] * len(shape)
        dst = [slice(None)] * len(shape)
        src[axis], dst[axis] = slice(None, -1), slice(1, None)
        shifted[tuple(dst)] = below[tuple(src)]
        strictly |= shifted
    return strictly[(group, *ranks)]


def _why_slower(c: Candidate, best: Candidate) -> str:
    """``4.1% slower: pipeline bubble +3.9% of the best's time per token``."""
    b_tok, c_tok = best.layout["batch_tokens"], c.layout["batch_tokens"]
    base = best.seconds_per_token
    deltas = {k: c.step.breakdown.get(k, 0.0) / c_tok - best.step.breakdown.get(k, 0.0) / b_tok
              for k in set(c.step.breakdown) | set(best.step.breakdown)}
    term, delta = max(deltas.items(), key=lambda kv: kv[1])
    slower = c.seconds_per_token / base - 1
    return (f"{slower:.1%} slower per token, mostly {TERM_NAMES.get(term, term)} "
            f"(+{delta / base:.1%})")


def search_layouts(config: ModelConfig, profile, gpus: int, *, precision: str = "bf16",
                   seq: int | None = None, batch: int | None = None, pins: dict | None = None,
                   overrides: dict | None = None, top: int = TOP) -> SearchResult:
    """The fastest layout of ``config`` on ``gpus`` GPUs of ``profile`` that fits memory, and
    the ranked runners-up. ``batch``: sequences per step (None: `planner_batch`, grown to one
    sequence per stage per replica); ``pins``: dimension -> the one value to use (`PINNABLE`).
    A `DataError` with the GiB needed and held when nothing fits."""
    return LayoutSearch(config, profile, precision=precision, seq=seq,
                        overrides=overrides).search(gpus, pins=pins, batch=batch, top=top)


__all__ = ["ALL_DIMENSIONS", "DIMENSIONS", "PINNABLE", "Candidate", "Dimension", "LayoutSearch",
           "SearchResult", "TOP", "layout_words", "planner_batch", "search_layouts"]
