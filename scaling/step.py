"""The step model: per-GPU time of one training step, and the throughput it implies.

For a model, a hardware profile, a precision and a parallel layout (tensor ``tp``, pipeline
``pp``, data ``dp``; ``tp * pp * dp`` GPUs), one optimizer step over ``batch_tokens`` tokens
takes, on every GPU,

    step = m * t_mb + bubble + dp_comm + optimizer

where ``m`` is the number of micro-batches each pipeline runs and ``t_mb`` the time of one
micro-batch on one pipeline stage:

* **GEMMs and attention**, forward and backward, at the shapes `scaling.model` gives for a
  micro-batch on one tensor-parallel GPU, each timed at the throughput the profile predicts
  for that shape (``layers / pp`` layers per stage, the output projection shared out: a
  balanced pipeline, as Llama 3 balanced its first and last stages);
* **elementwise traffic** (RMSNorm, residual adds, rotary embedding, SwiGLU, the loss
  softmax) as bytes over memory bandwidth, 3x the forward bytes for forward and backward;
* **tensor-parallel communication**: Megatron sequence parallelism (Korthikanti et al. 2022),
  two all-gathers and two reduce-scatters of the layer's activations forward and again
  backward, at the profile's bus bandwidth, times ``1 - tp_overlap``;
* **pipeline point-to-point** sends of activations and gradients, times ``1 - pp_overlap``.

The **pipeline bubble** of a 1F1B schedule is ``(pp - 1) * t_mb``, a fraction
``(p - 1) / (m + p - 1)`` of the step; an interleaved schedule with ``v`` model chunks per GPU
divides it by ``v`` (Narayanan et al. 2021, Sec. 2.2). **Data-parallel communication** is the
FSDP/ZeRO pattern Llama 3 used: gradients reduce-scattered in FP32 and BF16 parameters
all-gathered once per step, times ``1 - dp_overlap``. The **optimizer** (Adam, states sharded
over data parallelism) is memory traffic.

MFU is model FLOPs (`ModelConfig.flops_per_token`) per second over the dense datasheet peak
(PaLM's definition; DESIGN.md). Every term is reported separately in ``breakdown`` and any
input or term can be replaced through ``overrides`` (e.g. ``{"mfu": 0.41}``, Llama 3's
published figure); every input's value, label and source is in ``labels``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scaling.errors import DataError, UnknownNameError
from scaling.hardware import Estimate, HardwareProfile
from scaling.labels import MISSING, modelled_from, weakest
from scaling.model import ModelConfig, Op

# Llama 3 paper, Table 4: "16M" tokens per batch for the 405B run, 2,048 sequences of 8,192
# tokens: 16,777,216 tokens (16Mi).
DEFAULT_BATCH_TOKENS = 2048 * 8192
PRECISIONS = {"bf16": "bf16", "fp8": "fp8_e4m3"}
ACT_BYTES = 2  # BF16 activations and activation gradients
# Adam with FP32 master weights: read weight, gradient, m, v (4 x 4 B), write weight, m, v
# (3 x 4 B) and the BF16 copy (2 B): 30 bytes per parameter per step.
OPTIMIZER_BYTES_PER_PARAM = 30
# FSDP as in Llama 3 (Sec. 3.3.2): FP32 gradient reduce-scatter, BF16 parameter all-gather.
DP_GRAD_BYTES, DP_PARAM_BYTES = 4, 2

ASSUMED_OVERLAP = {
    "tp_overlap": "no overlap: Megatron-LM places tensor-parallel collectives on the critical "
                  "path unless communication overlap is enabled",
    "pp_overlap": "no overlap of pipeline sends (conservative)",
    "dp_overlap": "no overlap of the once-per-step data-parallel collectives (conservative)",
}

BREAKDOWN_TERMS = ("gemm_s", "attention_s", "elementwise_s", "tp_comm_s", "pp_comm_s",
                   "pipeline_bubble_s", "dp_comm_s", "optimizer_s")
#: The terms of a step as people name them (tables, the report).
TERM_NAMES = {
    "gemm_s": "GEMMs", "attention_s": "attention",
    "elementwise_s": "elementwise (norms, rotary, SwiGLU, softmax)",
    "tp_comm_s": "tensor-parallel communication", "pp_comm_s": "pipeline sends",
    "pipeline_bubble_s": "pipeline bubble", "dp_comm_s": "data-parallel communication",
    "optimizer_s": "optimizer",
}


def describe_breakdown(breakdown: dict) -> str:
    """Where a step's time goes, largest first, named in words: ``GEMMs 56%, pipeline bubble
    32%, ...`` (terms under half a percent left out)."""
    total = sum(breakdown.values()) or 1.0
    return ", ".join(f"{TERM_NAMES.get(k, k)} {v / total:.0%}"
                     for k, v in sorted(breakdown.items(), key=lambda kv: -kv[1])
                     if v / total >= 0.005)


#: What a layout argument left out of `step_time` is, and its label and source.
LAYOUT_DEFAULTS = {
    "tp": (1, "assumed", "default: no tensor parallelism"),
    "pp": (1, "assumed", "default: no pipeline parallelism"),
    "dp": (1, "assumed", "default: one data-parallel replica"),
    "micro_batch": (1, "assumed", "default: one sequence per micro-batch"),
    "interleave": (1, "assumed", "default: one model chunk per GPU (plain 1F1B)"),
    "batch_tokens": (DEFAULT_BATCH_TOKENS, "published",
                     "Llama 3 paper, Table 4: 2,048 sequences of 8,192 tokens (16Mi) per batch"),
}
#: Activation recomputation the step model times: none, or full (every layer's forward GEMMs
#: and attention run again before its backward: Megatron-LM's --checkpoint-activations,
#: Narayanan et al. 2021 Sec. 3.5). Model FLOPs and MFU do not count the recomputed forward.
STEP_RECOMPUTE = ("none", "full")
OVERRIDES = {
    "mfu": "fraction of the dense peak; replaces the modelled throughput",
    "tflops_per_gpu": "per-GPU model TFLOP/s; replaces the modelled throughput",
    "gemm_tflops": "TFLOP/s of every GEMM",
    "attention_tflops": "TFLOP/s of every attention call",
    "memory_gbps": "memory bandwidth for elementwise and optimizer traffic",
    "tp_busbw_gbps": "bus bandwidth of tensor-parallel collectives",
    "dp_busbw_gbps": "bus bandwidth of data-parallel collectives",
    "pp_gbps": "bandwidth of pipeline sends",
    "tp_overlap": "fraction of tensor-parallel communication hidden behind compute",
    "pp_overlap": "fraction of pipeline sends hidden",
    "dp_overlap": "fraction of data-parallel communication hidden",
    "bubble_fraction": "pipeline bubble as a fraction of the step",
    **{term: "seconds per step for this term" for term in BREAKDOWN_TERMS},
}
_FRACTIONS = ("mfu", "tp_overlap", "pp_overlap", "dp_overlap", "bubble_fraction")


@dataclass(frozen=True)
class StepResult:
    model: str
    hardware: str
    precision: str
    layout: dict
    step_time_s: float
    tflops_per_gpu: float
    mfu: float | None  # None without a datasheet peak (an unrecognised measured device)
    breakdown: dict  # term -> seconds per step (sums to the modelled step time)
    intervals: dict  # "step_time_s" | "tflops_per_gpu" | "mfu" -> (lo, hi)
    power_w: Estimate | None  # None when the profile has neither power data nor TDP
    labels: dict  # input -> {"value", "label", "source"}; "tflops_per_gpu": the result's own
    model_flops_per_gpu: float  # model FLOPs of one step on one GPU
    hardware_utilisation: float | None  # executed kernel FLOPs / step / peak (drives power)
    tokens_per_s: float  # whole cluster
    notes: list = field(default_factory=list)

    @property
    def tflops_per_gpu_lo(self) -> float:
        return self.intervals["tflops_per_gpu"][0]

    @property
    def tflops_per_gpu_hi(self) -> float:
        return self.intervals["tflops_per_gpu"][1]

    def to_dict(self) -> dict:
        return {
            "model": self.model, "hardware": self.hardware, "precision": self.precision,
            "layout": dict(self.layout), "step_time_s": self.step_time_s,
            "tflops_per_gpu": self.tflops_per_gpu, "mfu": self.mfu,
            "breakdown": dict(self.breakdown),
            "breakdown_fraction": {k: v / sum(self.breakdown.values())
                                   for k, v in self.breakdown.items()},
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "power_w": None if self.power_w is None else self.power_w.to_dict(),
            "labels": dict(self.labels),
            "model_flops_per_gpu": self.model_flops_per_gpu,
            "hardware_utilisation": self.hardware_utilisation,
            "tokens_per_s": self.tokens_per_s, "notes": list(self.notes),
        }


def _check_overrides(overrides: dict | None) -> dict:
    out = {}
    for key, value in (overrides or {}).items():
        if key not in OVERRIDES:
            raise UnknownNameError("step-model override", key, OVERRIDES)
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise DataError(f"override {key} must be a number, got {value!r}") from None
        if not math.isfinite(v) or v < 0:
            raise DataError(f"override {key} must be finite and >= 0, got {value!r}")
        if key in _FRACTIONS and not v <= 1:
            raise DataError(f"override {key} is a fraction in [0, 1], got {value!r}")
        if key in ("mfu", "tflops_per_gpu", "gemm_tflops", "attention_tflops", "memory_gbps",
                   "tp_busbw_gbps", "dp_busbw_gbps", "pp_gbps") and v == 0:
            raise DataError(f"override {key} must be positive, got {value!r}")
        if key == "bubble_fraction" and v >= 1:
            raise DataError(f"override bubble_fraction must be below 1, got {value!r}")
        out[key] = v
    return out


def _int(name: str, value) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
        raise DataError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _trio(estimate: Estimate) -> np.ndarray:
    """(value, fast, slow) rates from an estimate: the times use 1/value, 1/hi, 1/lo."""
    return np.array([estimate.value, estimate.hi, estimate.lo], dtype=float)


def _label(value, label: str, source: str) -> dict:
    return {"value": value, "label": label, "source": source}


def _as_label(estimate: Estimate) -> dict:
    return _label(estimate.value, estimate.label, estimate.source)


def _curves_text(gemm_label: str, attention_label: str) -> str:
    """``published GEMM and attention curves``, ``measured GEMM and published attention
    curves``: what a modelled throughput rests on."""
    if gemm_label == attention_label:
        return f"{gemm_label} GEMM and attention curves"
    return f"{gemm_label} GEMM and {attention_label} attention curves"


def _override(ov: dict, key: str) -> Estimate:
    """An override as a figure the user gave."""
    return Estimate.point(ov[key], "given", f"given: override {key}={ov[key]:g}")


def elementwise_bytes_per_token(config: ModelConfig, tp: int) -> float:
    """Forward bytes per token of one layer's non-GEMM, non-attention ops on one GPU:
    two RMSNorms (read d, write d) and two residual adds (read 2d, write d), split over the
    tensor-parallel group by sequence parallelism; rotary on the local q and k heads (read and
    write); SwiGLU's gate*silu(up) on the local MLP width (read 2, write 1)."""
    hq, hkv = config.local_heads(tp)
    d = config.d_model
    norms_residual = (2 * 2 * d + 2 * 3 * d) / tp
    rotary = 2 * (hq + hkv) * config.head_dim
    mlps = (config.experts_per_token + config.shared_experts) if config.is_moe else 1
    swiglu = 3 * (config.d_ffn // tp) * mlps
    return (norms_residual + rotary + swiglu) * ACT_BYTES


def _layout(config: ModelConfig, passed: dict, chosen: dict | None) -> tuple[dict, dict]:
    """The layout arguments as whole numbers, and their labels: a value the caller passed is
    given unless ``chosen`` says what it is (name -> (label, source)); one left out takes its
    `LAYOUT_DEFAULTS` entry (the sequence length: the model's own)."""
    chosen = chosen or {}
    defaults = dict(LAYOUT_DEFAULTS, seq=(config.seq, "published" if config.source else "assumed",
                                          "the model's sequence length "
                                          f"({config.source or config.name})"))
    values, labels = {}, {}
    for name, (default, label, source) in defaults.items():
        given = passed.get(name)
        values[name] = _int(name, default if given is None else given)
        if given is not None:
            label, source = chosen.get(name, ("given", "given"))
        labels[name] = _label(values[name], label, source)
    return values, labels


def step_time(config: ModelConfig, profile: HardwareProfile, *, precision: str = "bf16",
              tp: int | None = None, pp: int | None = None, dp: int | None = None,
              seq: int | None = None, batch_tokens: int | None = None,
              micro_batch: int | None = None, interleave: int | None = None,
              overrides: dict | None = None, chosen: dict | None = None,
              recompute: str = "none") -> StepResult:
    """Model one training step; see the module docstring for every term. A layout argument
    left out (None) takes its default (`LAYOUT_DEFAULTS`); one passed is labelled given, or as
    ``chosen`` says (name -> (label, source), for a caller that picked it by a rule).
    ``recompute="full"`` adds each layer's forward GEMMs and attention once more to the
    GEMM and attention terms (`STEP_RECOMPUTE`)."""
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", precision, PRECISIONS)
    if recompute not in STEP_RECOMPUTE:
        raise UnknownNameError("recomputation the step model times", recompute,
                               STEP_RECOMPUTE)
    ov = _check_overrides(overrides)
    lay, labels = _layout(config, dict(tp=tp, pp=pp, dp=dp, seq=seq, batch_tokens=batch_tokens,
                                       micro_batch=micro_batch, interleave=interleave), chosen)
    tp, pp, dp, seq = lay["tp"], lay["pp"], lay["dp"], lay["seq"]
    batch_tokens, micro_batch = lay["batch_tokens"], lay["micro_batch"]
    interleave = lay["interleave"]
    gpus = tp * pp * dp
    per_replica = batch_tokens / (seq * dp * micro_batch)
    if per_replica < 1 or not float(per_replica).is_integer():
        raise DataError(f"batch_tokens {batch_tokens} must be a whole number of micro-batches "
                        f"of {micro_batch} x {seq} tokens on each of {dp} data-parallel "
                        f"replicas (a multiple of {seq * dp * micro_batch})")
    m = int(per_replica)
    if config.layers < pp or interleave > math.ceil(config.layers / pp):
        raise DataError(f"{config.layers} layers cannot fill {pp} pipeline stages x "
                        f"{interleave} interleaved chunks")
    gemm_dtype, attn_dtype = PRECISIONS[precision], "bf16"
    notes = []
    try:
        peak = profile.peak(gemm_dtype)
        peak_label = _as_label(peak)
    except DataError as exc:  # an unrecognised measured device: no MFU, no utilisation
        if "mfu" in ov:
            raise
        peak, peak_label = None, _label(None, MISSING, str(exc))
        notes.append(f"no MFU: {exc}")
    labels["peak_tflops"] = peak_label
    if precision == "fp8":
        notes.append("FP8 applies to the GEMMs; attention runs in BF16 (as in FP8 training "
                     "recipes such as Transformer Engine's)")

    # -- kernels of one micro-batch -------------------------------------------------------
    rates: dict[tuple, np.ndarray] = {}
    kinds_labels: dict[str, set] = {"gemm": set(), "attention": set()}
    kinds_sources: dict[str, set] = {"gemm": set(), "attention": set()}

    def op_time(op: Op) -> np.ndarray:
        key = (op.kind, op.direction, tuple(sorted(op.shape.items())))
        if key not in rates:
            if op.kind == "gemm" and "gemm_tflops" in ov:
                est = _override(ov, "gemm_tflops")
            elif op.kind == "attention" and "attention_tflops" in ov:
                est = _override(ov, "attention_tflops")
            elif op.kind == "gemm":
                s = op.shape
                est = profile.matmul_tflops(s["m"], s["n"], s["k"], gemm_dtype)
            else:
                est = profile.attention_tflops(dtype=attn_dtype, direction=op.direction,
                                               **op.shape)
            rates[key] = _trio(est)
            kinds_labels[op.kind].add(est.label)
            kinds_sources[op.kind].add(est.source.split(": ", 1)[0])
        return op.count * op.flops / (rates[key] * 1e12)

    layer_ops = config.layer_ops(micro_batch, seq, tp)
    head_ops = config.head_ops(micro_batch, seq, tp)
    per_layer = {"gemm": np.zeros(3), "attention": np.zeros(3)}
    flops_layer = {"gemm": 0.0, "attention": 0.0}
    rerun = 1 if recompute == "full" else 0  # forward passes recomputed per layer
    for op in layer_ops:
        again = rerun if op.direction == "fwd" else 0
        per_layer[op.kind] += op_time(op) * (1 + again)
        flops_layer[op.kind] += op.count * op.flops * (1 + again)
    head_gemm = sum((op_time(op) for op in head_ops), np.zeros(3))
    hw_flops_head = float(sum(op.count * op.flops for op in head_ops))
    layers_per_stage = config.layers / pp
    mb_gemm = (config.layers * per_layer["gemm"] + head_gemm) / pp
    mb_attn = layers_per_stage * per_layer["attention"]
    hw_flops_mb = (config.layers * sum(flops_layer.values()) + hw_flops_head) / pp
    for kind in ("gemm", "attention"):
        flops = (config.layers * flops_layer[kind] + (hw_flops_head if kind == "gemm" else 0)) / pp
        t = mb_gemm if kind == "gemm" else mb_attn
        kinds = sorted(kinds_labels[kind])
        labels[f"{kind}_tflops"] = _label(
            flops / t[0] / 1e12, weakest(*kinds),
            "time-weighted over the step's shapes"
            + (f" ({' and '.join(kinds)} curves)" if len(kinds) > 1 else "") + "; "
            + "; ".join(sorted(kinds_sources[kind])))

    # -- elementwise traffic ----------------------------------------------------------------
    if "memory_gbps" in ov:
        memory = _override(ov, "memory_gbps")
    elif profile.memory_gbps is not None:
        memory = profile.memory_gbps
    else:
        raise DataError(f"profile '{profile.name}' has no memory bandwidth; pass "
                        f"overrides={{'memory_gbps': ...}} (--set memory_gbps=...)")
    labels["memory_gbps"] = _as_label(memory)
    tokens_mb = micro_batch * seq
    logits_bytes = 3 * tokens_mb * math.ceil(config.vocab / tp) * 4  # FP32 softmax fwd+bwd
    elem_bytes = (3 * layers_per_stage * elementwise_bytes_per_token(config, tp) * tokens_mb
                  + logits_bytes / pp)
    mb_elem = np.full(3, elem_bytes / (memory.value * 1e9))
    labels["elementwise_bytes_per_microbatch"] = _label(
        elem_bytes, "assumed", "norms, residuals, rotary, SwiGLU and loss softmax read and "
                               "written once each (no fusion beyond that)")

    # -- tensor-parallel communication ------------------------------------------------------
    overlaps = {}
    for key in ("tp_overlap", "pp_overlap", "dp_overlap"):
        overlaps[key] = ov.get(key, 0.0)
        labels[key] = (_as_label(_override(ov, key)) if key in ov
                       else _label(overlaps[key], "assumed", ASSUMED_OVERLAP[key]))
    mb_tp = np.zeros(3)
    if tp > 1:
        msg = tokens_mb * config.d_model * ACT_BYTES
        intra = tp <= profile.gpus_per_node
        if "tp_busbw_gbps" in ov:
            ag = rs = _override(ov, "tp_busbw_gbps")
        else:
            ag = profile.busbw_gbps("all_gather", msg, tp, intra_node=intra)
            rs = profile.busbw_gbps("reduce_scatter", msg, tp, intra_node=intra)
        frac = (tp - 1) / tp  # nccl-tests: time = size * (n - 1) / n / busbw
        per_layer_tp = 4 * (msg * frac / (_trio(ag) * 1e9) + msg * frac / (_trio(rs) * 1e9))
        mb_tp = layers_per_stage * per_layer_tp * (1 - overlaps["tp_overlap"])
        labels["tp_busbw_gbps"] = _as_label(ag)

    # -- pipeline sends ---------------------------------------------------------------------
    mb_pp = np.zeros(3)
    if pp > 1:
        act = tokens_mb * config.d_model * ACT_BYTES / tp  # sequence-parallel shard
        link = (_override(ov, "pp_gbps") if "pp_gbps" in ov
                else profile.link_gbps("inter_node" if tp * pp > profile.gpus_per_node
                                       else "intra_node"))
        mb_pp = 2 * interleave * act / (_trio(link) * 1e9) * (1 - overlaps["pp_overlap"])
        labels["pp_gbps"] = _as_label(link)

    t_mb = mb_gemm + mb_attn + mb_elem + mb_tp + mb_pp

    # -- pipeline bubble --------------------------------------------------------------------
    busy = m * t_mb
    if "bubble_fraction" in ov:
        f = ov["bubble_fraction"]
        bubble = busy * f / (1 - f)
        labels["bubble_fraction"] = _as_label(_override(ov, "bubble_fraction"))
    else:
        bubble = (pp - 1) / interleave * t_mb
        labels["bubble_fraction"] = _label(
            float(bubble[0] / (busy[0] + bubble[0])), "assumed",
            "(p - 1) / (v m + p - 1), 1F1B with v interleaved chunks (Narayanan et al. 2021)")

    # -- data parallelism and the optimizer -------------------------------------------------
    params_local = config.params / (tp * pp)
    dp_comm = np.zeros(3)
    if dp > 1:
        intra = gpus <= profile.gpus_per_node
        sizes = (("reduce_scatter", DP_GRAD_BYTES), ("all_gather", DP_PARAM_BYTES))
        for collective, width in sizes:
            size = params_local * width
            bw = (_override(ov, "dp_busbw_gbps")
                  if "dp_busbw_gbps" in ov
                  else profile.busbw_gbps(collective, size, dp, intra_node=intra))
            dp_comm = dp_comm + size * (dp - 1) / dp / (_trio(bw) * 1e9)
        dp_comm = dp_comm * (1 - overlaps["dp_overlap"])
        labels["dp_busbw_gbps"] = _as_label(bw)
    optimizer = np.full(3, params_local / dp * OPTIMIZER_BYTES_PER_PARAM / (memory.value * 1e9))

    terms = {"gemm_s": m * mb_gemm, "attention_s": m * mb_attn, "elementwise_s": m * mb_elem,
             "tp_comm_s": m * mb_tp, "pp_comm_s": m * mb_pp, "pipeline_bubble_s": bubble,
             "dp_comm_s": dp_comm, "optimizer_s": optimizer}
    for term in BREAKDOWN_TERMS:
        if term in ov:
            terms[term] = np.full(3, ov[term])
            labels[term] = _as_label(_override(ov, term))
    step = sum(terms.values())

    model_flops = config.flops_per_token(seq) * batch_tokens / gpus
    tflops = model_flops / step / 1e12
    kernels = (labels["gemm_tflops"]["label"], labels["attention_tflops"]["label"])
    labels["tflops_per_gpu"] = _label(float(tflops[0]), modelled_from(*kernels),
                                      f"step model from {_curves_text(*kernels)} on "
                                      f"{profile.name} ({profile.label} profile)")
    if "mfu" in ov or "tflops_per_gpu" in ov:
        value = ov["tflops_per_gpu"] if "tflops_per_gpu" in ov else ov["mfu"] * peak.value
        key = "tflops_per_gpu" if "tflops_per_gpu" in ov else "mfu"
        labels[key] = _as_label(_override(ov, key))
        if key == "mfu":
            labels["tflops_per_gpu"] = _label(value, "given", labels["mfu"]["source"]
                                              + " x the datasheet peak")
        notes.append(f"throughput set by the {key} override; the breakdown is the model's "
                     f"and sums to {step[0]:.4g} s, not to step_time_s")
        tflops = np.full(3, value)
        step = model_flops / (tflops * 1e12)
    mfu = tflops / peak.value if peak is not None else np.full(3, math.nan)
    hw_util = (float(m * hw_flops_mb / (step[0] * 1e12) / peak.value) if peak is not None
               else None)
    try:
        # Without a peak, utilisation is unknown: only a load-independent figure (TDP) fits.
        power = profile.power_w(min(hw_util, 1.0) if hw_util is not None else 1.0)
        if hw_util is None and power.label == "measured":
            raise DataError("utilisation unknown without a datasheet peak")
        labels["power_w"] = _as_label(power)
    except DataError as exc:
        power = None
        labels["power_w"] = _label(None, MISSING, str(exc))
        notes.append(f"no power figure: {exc}")

    return StepResult(
        model=config.name, hardware=profile.name, precision=precision,
        layout={"tp": tp, "pp": pp, "dp": dp, "gpus": gpus, "seq": seq,
                "batch_tokens": batch_tokens, "micro_batch": micro_batch,
                "micro_batches": m, "interleave": interleave, "recompute": recompute},
        step_time_s=float(step[0]), tflops_per_gpu=float(tflops[0]),
        mfu=None if peak is None else float(mfu[0]),
        breakdown={k: float(v[0]) for k, v in terms.items()},
        intervals={"step_time_s": (float(step.min()), float(step.max())),
                   "tflops_per_gpu": (float(tflops.min()), float(tflops.max())),
                   "mfu": ((float(mfu.min()), float(mfu.max())) if peak is not None
                           else (None, None))},
        power_w=power, labels=labels, model_flops_per_gpu=float(model_flops),
        hardware_utilisation=hw_util, tokens_per_s=batch_tokens / float(step[0]), notes=notes)
