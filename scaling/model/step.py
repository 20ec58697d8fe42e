"""The step model: per-GPU time of one training step, and the throughput it implies.

For a model, a hardware profile, a precision and a parallel layout (tensor ``tp``, pipeline
``pp``, data ``dp``; ``tp * pp * dp`` GPUs), one optimizer step over ``batch_tokens`` tokens
takes, on every GPU,

    step = m * t_mb + bubble + dp_comm + optimizer

where ``m`` is the number of micro-batches each pipeline runs and ``t_mb`` the time of one
micro-batch on one pipeline stage:

* **GEMMs and attention**, forward and backward, at the shapes `scaling.model.config` gives for a
  micro-batch on one tensor-parallel GPU, each timed at the throughput the profile predicts
  for that shape (``layers / pp`` layers per stage, the output projection shared out: a
  balanced pipeline, as Llama 3 balanced its first and last stages; ``balanced_pipeline=
  False``: the last stage runs it on top of its layers and paces the pipeline);
* **MoE expert GEMMs** (a mixture-of-experts layer's routed experts, forward, dX and dW),
  timed with the profile's grouped-GEMM curve, TFLOP/s against tokens per expert
  (`HardwareProfile.grouped_gemm_tflops`), at the tokens per expert of the model's balanced
  routing; a profile without one (every published preset) times them with its dense GEMM
  curve at the experts' shapes, and the labels and notes say which;
* **attention** with FlashAttention-3's curves (the presets'), FlashAttention-2's
  (``attention="flash2"``, `FA2_SLOWDOWN`) or materialised s x s scores (`ATTENTION_IMPLS`);
* **elementwise traffic** (norms, residual adds with dropout where the model has it, rotary
  embedding, the MLP activation, the loss softmax) as bytes over memory bandwidth, 3x the
  forward bytes for forward and backward (4x under full recomputation). Memory bandwidth is
  what a streaming kernel reaches (`HardwareProfile.streaming_gbps`: measured, or published
  for a preset), and the datasheet figure, labelled an upper bound, where there is none;
* **tensor-parallel communication**: with Megatron sequence parallelism (Korthikanti et al.
  2022; the default) two all-gathers and two reduce-scatters of the layer's activations
  forward and again backward, plus the backward's two extra all-gathers of the sequence-
  sharded GEMM inputs (`SP_BACKWARD_ALL_GATHERS`), without it (``sequence_parallel=False``)
  the same bytes as all-reduces, the norms then whole on every rank; the forward's again
  under full recomputation; the backward's column-parallel collectives under the GEMMs
  beside them, only what outlasts those exposed (Megatron-LM's overlap,
  `TP_BACKWARD_OVERLAP_SOURCE`; ``tp_backward_overlap=False``: all exposed); times
  ``1 - tp_overlap``;
* **pipeline point-to-point** sends of activations and gradients, times ``1 - pp_overlap``;
* every collective priced on the network level its group sits on (`_level_busbw`: a measured
  curve of the profile, else the preset's link rate times the measured collective fraction,
  `scaling.hardware.datasheets.network_levels`) plus NCCL's ring latency;
* **expert parallelism** (MoE, ``ep`` ranks inside the data-parallel group, `EP_CONVENTION`):
  the router is a GEMM of the dense term; each MoE layer's token dispatch and combine are
  all-to-alls, two forward and two backward, ``tokens / tp * d_model * 2 B * top_k *
  (ep - 1) / ep`` per GPU each, priced on the NVLink level when the group's ``tp * ep`` GPUs
  fit a node, else its on-node peers over NVLink and the rest over the scale-out fabric
  (`scaling.hardware.datasheets.network_levels`, link rate x measured collective fraction,
  plus one step of latency), times ``1 - ep_overlap``; the local permute and unpermute at the
  profile's measured dispatch/combine GB/s, else memory bandwidth (labelled); the busiest
  expert's tokens over the mean (`EXPERT_IMBALANCE`, override ``expert_imbalance``) scales
  the expert GEMMs and all-to-alls. A model with dense and MoE layers has each kind timed
  and counted by its layers per stage.

The **pipeline bubble** of a 1F1B schedule is ``(pp - 1) * t_mb``, a fraction
``(p - 1) / (m + p - 1)`` of the step; an interleaved schedule with ``v`` model chunks per GPU
divides it by ``v`` (Narayanan et al. 2021, Sec. 2.2). **Data-parallel communication** is that
of the ZeRO stage (`scaling.model.memory.ZERO_STAGES`; by default the FSDP pattern Llama 3
used: gradients reduce-scattered in FP32 and BF16 parameters all-gathered once per step),
times ``1 - dp_overlap``, in the precision ``grad_reduce`` names and, with ``grad_overlap``,
only what outlasts the last micro-batch's backward. **Gradient accumulation** across micro-
batches is free where it is fused into the weight-gradient GEMM (the default) and, with
``grad_accumulation="unfused"``, a separate in-place add per parameter for every micro-batch
after the first (`GRAD_ACCUMULATION`). The **optimizer** (Adam, states sharded over data
parallelism above stage 0) is memory traffic.

MFU is model FLOPs (`ModelConfig.flops_per_token`) per second over the dense datasheet peak
(PaLM's definition; DESIGN.md). Every term is reported separately in ``breakdown`` and any
input or term can be replaced through ``overrides`` (e.g. ``{"mfu": 0.41}``, Llama 3's
published figure); every input's value, label and source is in ``labels``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kernels import flops as kflops  # plain arithmetic, no torch
from scaling.errors import DataError, FlopcastError, UnknownNameError
from scaling.hardware import datasheets
from scaling.hardware.profile import HardwareProfile
from scaling.provenance import Figure
from scaling.labels import MISSING, modelled_from, weakest
from scaling.model.config import ModelConfig, Op
from scaling.model.memory import GRAD_REDUCE_OPTIMIZER, OPTIMIZERS, STEP_ZERO, ZERO_STAGES

# Llama 3 paper, Table 4: "16M" tokens per batch for the 405B run, 2,048 sequences of 8,192
# tokens: 16,777,216 tokens (16Mi).
DEFAULT_BATCH_TOKENS = 2048 * 8192
PRECISIONS = {"bf16": "bf16", "fp8": "fp8_e4m3"}
ACT_BYTES = 2  # BF16 activations and activation gradients
# Adam with FP32 master weights: read weight, gradient, m, v (4 x 4 B), write weight, m, v
# (3 x 4 B) and the BF16 copy (2 B): 30 bytes per parameter per step.
OPTIMIZER_BYTES_PER_PARAM = 30
# FSDP as in Llama 3 (Sec. 3.3.2): BF16 parameter all-gather (the gradients' width is
# ``grad_reduce``'s, `GRAD_REDUCE_BYTES`).
DP_PARAM_BYTES = 2

#: The precision the data-parallel group reduces gradients in (``grad_reduce``), as bytes per
#: gradient: "fp32" (the default: Llama 3 reduce-scatters FP32 gradients, Sec. 3.3.2;
#: Megatron-LM's --accumulate-allreduce-grads-in-fp32) or "half", the 16-bit training dtype
#: (Megatron-LM before that flag, and PyTorch DDP on a half-precision module, reduce the
#: parameters' own .grad). The bytes are those of the gradient buffer the memory model keeps
#: for each (`scaling.model.memory.GRAD_REDUCE_OPTIMIZER`): the buffer reduced is the one held.
GRAD_REDUCE_BYTES = {name: OPTIMIZERS[recipe]["gradients"]
                     for name, recipe in GRAD_REDUCE_OPTIMIZER.items()}
GRAD_REDUCE_DEFAULT = "fp32"
#: How the gradients of successive micro-batches are summed (``grad_accumulation``): "fused"
#: into the weight-gradient GEMM's epilogue (C = A B + C: Megatron-LM's
#: --gradient-accumulation-fusion, Feb 2022, and Megatron-Core's default), no traffic beyond
#: the GEMM; or "unfused", autograd adding each new gradient into ``.grad`` in place, a
#: separate kernel reading the sum and the new 16-bit gradient and writing the sum (2 x the
#: reduction width + 2 bytes per parameter) for every micro-batch after the first, at memory
#: bandwidth.
GRAD_ACCUMULATION = ("fused", "unfused")
GRAD_ACCUMULATION_DEFAULT = "fused"
#: A layer's two blocks and the forward GEMMs that read each block's input in a dense layer,
#: whose backward GEMMs hide the block's backward collectives under ``tp_backward_overlap``
#: (`config._attention_gemms`, `config._mlp_gemms`; MLA attention blocks and MoE blocks
#: without a shared expert have none, see `TP_BACKWARD_OVERLAP_SOURCE`).
TP_ENTRY_GEMMS = {"attention": ("qkv",), "mlp": ("mlp_up", "mlp_gate_up")}
#: Sequence parallelism keeps only each rank's sequence shard of the inputs of a layer's two
#: column-parallel GEMMs (QKV and the first MLP projection) and all-gathers them again in the
#: backward for the weight gradients: Korthikanti et al. 2022 (arXiv 2205.05198), Sec. 4.2.2,
#: 'we store only the Y_i^s part ... and perform an extra all-gather in the backward pass':
#: one per block. They overlap it with the input-gradient GEMM: `TP_BACKWARD_OVERLAP_SOURCE`.
SP_BACKWARD_ALL_GATHERS = len(TP_ENTRY_GEMMS)
#: Megatron-LM's backward overlap of tensor-parallel communication (``tp_backward_overlap``,
#: on by default): in the backward of each column-parallel linear, the GEMM that reads a
#: block's input (QKV; the MLP's first projection), the collective that sums the input
#: gradient over the group (all-reduce, or reduce-scatter with sequence parallelism) runs
#: while the weight-gradient GEMM computes, and with sequence parallelism the extra all-gather
#: of the input (`SP_BACKWARD_ALL_GATHERS`) runs while the input-gradient GEMM computes
#: (NVIDIA/Megatron-LM, megatron/mpu/layers.py, LinearWithGradAccumulationAndAsyncCommunication
#: .backward, merged b462d254, Sep 2021, 'slym/allreduce-overlap', for the all-reduce, and
#: 02bb1f5c, Mar 2022, for sequence parallelism; on unless --no-async-tensor-model-parallel-
#: allreduce; megatron/core/tensor_parallel/layers.py keeps it; Korthikanti et al. 2022, Sec.
#: 4.2.2). Each such collective costs only what outlasts its GEMM. The rest stay exposed: the
#: forward's, the row-parallel layers' backward all-gathers of the output gradient, and blocks
#: whose entry is not a column-parallel GEMM (MLA's replicated down-projections, an MoE layer's
#: router and routed experts; its shared expert's first projection, a column-parallel linear
#: in Megatron-Core, hides the MoE block's). The GEMM running beside NCCL is not slowed
#: (an assumption: NCCL's kernels take some SMs). Megatron-LM of 2021 (the SC21 scripts,
#: de7dc40f, Aug 2021) predates it: ``tp_backward_overlap=False``.
TP_BACKWARD_OVERLAP_SOURCE = (
    "Megatron-LM's backward overlap: a column-parallel linear's input-gradient all-reduce "
    "(reduce-scatter with sequence parallelism) under its weight-gradient GEMM, the sequence-"
    "parallel input all-gather under its input-gradient GEMM (NVIDIA/Megatron-LM, megatron/"
    "mpu/layers.py, LinearWithGradAccumulationAndAsyncCommunication, merged b462d254, Sep "
    "2021, and 02bb1f5c, Mar 2022; Korthikanti et al. 2022, Sec. 4.2.2); only what outlasts "
    "the GEMM is exposed")
#: An entry GEMM's backward op name -> (block, 0 for the input gradient, 1 for the weight's).
_ENTRY_BACKWARD = {f"{name}.{grad}": (block, which)
                   for block, names in TP_ENTRY_GEMMS.items() for name in names
                   for which, grad in enumerate(("dgrad", "wgrad"))}
#: With ``grad_overlap`` the gradient reduction runs in buckets under the last micro-batch's
#: backward (PyTorch DDP, Li et al. 2020, VLDB, arXiv 2006.15704, Sec. 3.2.3; Megatron-LM's
#: --DDP-impl torch, which skips the reduction of every earlier micro-batch with no_sync):
#: only what outlasts that backward is exposed. The backward is the micro-batch's time after
#: its first forward pass (backward, two forward-equivalents, plus the recomputed forward under
#: full recomputation), taken as that share of the micro-batch's modelled time.
GRAD_OVERLAP_SOURCE = ("bucketed gradient reduction under the last micro-batch's backward "
                       "(PyTorch DDP, Li et al. 2020, arXiv 2006.15704, Sec. 3.2.3); only "
                       "what outlasts that backward is exposed")

#: MoE load imbalance, the busiest expert's tokens over the mean, by default. ASSUMED: 1.0,
#: the balanced routing the expert GEMM shapes already assume and that load balancing (an
#: auxiliary loss, Fedus et al. 2022, Switch Transformer, arXiv 2101.03961, Sec. 2.2; DeepSeek-
#: V3's bias terms, arXiv 2412.19437, Sec. 2.1.2) aims at; no dropless run publishes its
#: measured factor. A token-dropping dispatcher with capacity factor C pads every expert to C
#: times the mean (Switch Transformer, Sec. 2.2), so C is the figure to give there.
EXPERT_IMBALANCE = 1.0
EXPERT_IMBALANCE_SOURCE = ("assumed: balanced routing (1.0), what load balancing aims at; no "
                           "dropless run publishes its factor; a token-dropping run pads to "
                           "its capacity factor (Switch Transformer, arXiv 2101.03961, "
                           "Sec. 2.2): give it with --set expert_imbalance=...")
EP_CONVENTION = ("expert parallelism inside the data-parallel group (Megatron-Core, DeepSpeed-"
                 "MoE): each expert-parallel group is ep ranks of ep different data-parallel "
                 "replicas, the experts split over tensor parallelism as the dense layers "
                 "(Megatron-Core's --expert-tensor-parallel-size defaults to "
                 "--tensor-model-parallel-size); ranks in Megatron order, tensor fastest, so "
                 "one group spans tp x ep consecutive GPUs")

# How the step model times the ZeRO stages (`scaling.model.memory.ZERO_STAGES`, ``zero``):
# 0, plain data parallelism, the gradients all-reduced once per step and Adam run on every
# replica's whole copy; 1 and 2, gradients reduce-scattered and weights all-gathered once per
# step, Adam on the shard (ZeRO-2's per-micro-batch reduce-scatters run under the backward,
# as FSDP's and DeepSpeed's overlapped reductions do, and are priced as the one); 3, the
# weights all-gathered again for every micro-batch's forward (twice under full
# recomputation) and backward. The default is `scaling.model.memory.STEP_ZERO`.

ASSUMED_OVERLAP = {
    "tp_overlap": "no overlap: Megatron-LM places tensor-parallel collectives on the critical "
                  "path unless communication overlap is enabled",
    "pp_overlap": "no overlap of pipeline sends (conservative)",
    "dp_overlap": "no overlap of the once-per-step data-parallel collectives (conservative)",
    "ep_overlap": "no overlap of the expert-parallel all-to-alls (Megatron-Core's default "
                  "all-to-all dispatcher runs them on the critical path; DeepSeek-V3's "
                  "DualPipe hides them)",
    "cp_overlap": "no overlap: Llama 3's context parallelism all-gathers K and V before the "
                  "local attention and calls the exposed all-gather small, not hidden "
                  "(arXiv 2407.21783, Sec. 3.3.2)",
}

BREAKDOWN_TERMS = ("gemm_s", "attention_s", "expert_gemm_s", "elementwise_s", "fp8_cast_s",
                   "tp_comm_s", "cp_comm_s", "pp_comm_s", "pipeline_bubble_s", "dp_comm_s",
                   "optimizer_s", "ep_comm_s", "moe_permute_s", "grad_accumulation_s")
#: The terms of a step as people name them (tables, the report).
TERM_NAMES = {
    "gemm_s": "GEMMs", "attention_s": "attention", "expert_gemm_s": "MoE expert GEMMs",
    "elementwise_s": "elementwise (norms, rotary, SwiGLU, softmax)",
    "fp8_cast_s": "FP8 quantisation of GEMM inputs (amax and cast)",
    "tp_comm_s": "tensor-parallel communication",
    "cp_comm_s": "context-parallel key/value exchange", "pp_comm_s": "pipeline sends",
    "pipeline_bubble_s": "pipeline bubble", "dp_comm_s": "data-parallel communication",
    "optimizer_s": "optimizer",
    "grad_accumulation_s": "gradient accumulation (unfused adds)",
    "ep_comm_s": "expert-parallel all-to-all (dispatch, combine)",
    "moe_permute_s": "MoE token permute and unpermute",
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
    "cp": (1, "assumed", "default: no context parallelism"),
    "micro_batch": (1, "assumed", "default: one sequence per micro-batch"),
    "interleave": (1, "assumed", "default: one model chunk per GPU (plain 1F1B)"),
    "ep": (1, "assumed", "default: no expert parallelism (every GPU holds every expert)"),
    "batch_tokens": (DEFAULT_BATCH_TOKENS, "published",
                     "Llama 3 paper, Table 4: 2,048 sequences of 8,192 tokens (16Mi) per batch"),
}
#: Activation recomputation the step model times: none; selective, the attention core's
#: forward again before its backward (Korthikanti et al. 2022, arXiv 2205.05198, Sec. 5:
#: scores, softmax and dropout rebuilt, the GEMMs not); or full (every layer's forward GEMMs,
#: attention, elementwise ops and collectives run again: Megatron-LM's
#: --checkpoint-activations, Narayanan et al. 2021 Sec. 3.5). Model FLOPs and MFU do not
#: count the recomputed forward.
STEP_RECOMPUTE = ("none", "selective", "full")
#: How attention is computed: ``flash``, a fused kernel timed with the profile's attention
#: curves (FlashAttention, Dao et al. 2022, arXiv 2205.14135, and its successors; the presets'
#: curves are FlashAttention-3's), ``flash2``, FlashAttention-2 (`FA2_SLOWDOWN`), or
#: ``materialised``, the pre-FlashAttention way (Megatron-LM of 2021: QK^T as a batched GEMM,
#: a fused scale-mask-softmax, dropout, and a batched GEMM with V), where the s x s scores go
#: through memory (`materialised_attention_kernels`).
ATTENTION_IMPLS = ("flash", "flash2", "materialised")
#: FlashAttention-2 against the FlashAttention-3 curves the presets carry: FA3 is "1.5-2.0x
#: faster than FlashAttention-2 with FP16" (Shah et al. 2024, arXiv 2407.08608, abstract),
#: so ``flash2`` times attention at the curve's rate / 1.75, the interval / 2.0 to / 1.5 (for
#: a run that predates FA3, July 2024, on a profile whose attention curve is not measured).
FA2_SLOWDOWN = (1.75, 1.5, 2.0)  # (value, fast end, slow end)
FA2_SOURCE = ("FlashAttention-2 as the FlashAttention-3 curve / 1.75, range 1.5 to 2.0 (arXiv "
              "2407.08608, abstract, FA3 '1.5-2.0x faster than FlashAttention-2 with FP16')")
OVERRIDES = {
    "mfu": "fraction of the dense peak; replaces the modelled throughput",
    "tflops_per_gpu": "per-GPU model TFLOP/s; replaces the modelled throughput",
    "gemm_tflops": "TFLOP/s of every GEMM (the MoE experts' too, unless expert_gemm_tflops)",
    "expert_gemm_tflops": "TFLOP/s of the MoE routed experts' GEMMs",
    "attention_tflops": "TFLOP/s of every attention call",
    "memory_gbps": "memory bandwidth for elementwise and optimizer traffic",
    "tp_busbw_gbps": "bus bandwidth of tensor-parallel collectives",
    "dp_busbw_gbps": "bus bandwidth of data-parallel collectives",
    "pp_gbps": "bandwidth of pipeline sends",
    "cp_busbw_gbps": "bus bandwidth of the context-parallel key/value exchange",
    "cp_overlap": "fraction of the context-parallel key/value exchange hidden behind attention",
    "tp_overlap": "fraction of tensor-parallel communication hidden behind compute",
    "pp_overlap": "fraction of pipeline sends hidden",
    "dp_overlap": "fraction of data-parallel communication hidden",
    "bubble_fraction": "pipeline bubble as a fraction of the step",
    "expert_imbalance": "MoE load imbalance: the busiest expert's tokens / the mean (>= 1)",
    "ep_busbw_gbps": "bus bandwidth of the expert-parallel all-to-alls",
    "ep_overlap": "fraction of the expert-parallel all-to-alls hidden behind compute",
    **{term: "seconds per step for this term" for term in BREAKDOWN_TERMS},
}
_FRACTIONS = ("mfu", "tp_overlap", "pp_overlap", "dp_overlap", "cp_overlap", "bubble_fraction",
              "ep_overlap")


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
    power_w: Figure | None  # None when the profile has neither power data nor TDP
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
        if key in ("mfu", "tflops_per_gpu", "gemm_tflops", "expert_gemm_tflops",
                   "attention_tflops", "memory_gbps",
                   "tp_busbw_gbps", "dp_busbw_gbps", "pp_gbps", "cp_busbw_gbps") and v == 0:
            raise DataError(f"override {key} must be positive, got {value!r}")
        if key == "expert_imbalance" and v < 1:
            raise DataError(f"override expert_imbalance is the busiest expert's tokens over "
                            f"the mean, at least 1, got {value!r}")
        if key == "ep_busbw_gbps" and v == 0:
            raise DataError(f"override {key} must be positive, got {value!r}")
        if key == "bubble_fraction" and v >= 1:
            raise DataError(f"override bubble_fraction must be below 1, got {value!r}")
        out[key] = v
    return out


def _int(name: str, value) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
        raise DataError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _trio(estimate: Figure) -> np.ndarray:
    """(value, fast, slow) rates from an estimate: the times use 1/value, 1/hi, 1/lo."""
    return np.array([estimate.value, estimate.hi, estimate.lo], dtype=float)


def _label(value, label: str, source: str) -> dict:
    return {"value": value, "label": label, "source": source}


def _as_label(estimate: Figure) -> dict:
    return _label(estimate.value, estimate.label, estimate.source)


def _curves_text(gemm_label: str, attention_label: str) -> str:
    """``published GEMM and attention curves``, ``measured GEMM and published attention
    curves``: what a modelled throughput rests on."""
    if gemm_label == attention_label:
        return f"{gemm_label} GEMM and attention curves"
    return f"{gemm_label} GEMM and {attention_label} attention curves"


def _override(ov: dict, key: str) -> Figure:
    """An override as a figure the user gave."""
    return Figure.point(ov[key], "given", f"given: override {key}={ov[key]:g}")


def elementwise_bytes_per_token(config: ModelConfig, tp: int, layer: str | None = None,
                                sequence_parallel: bool | None = None) -> float:
    """Forward bytes per token of one layer's non-GEMM, non-attention ops on one GPU:
    two norms (read d, write d) and two residual adds (read 2d, write d; with dropout, the
    fused bias-dropout-add also writes a 1-byte mask), split over the tensor-parallel group
    by sequence parallelism and run whole on every rank without it (the replication
    Korthikanti et al. 2022, arXiv 2205.05198, removed by splitting those ops along the
    sequence); rotary on the local q and k heads (read and write;
    none with learned positions); the MLP activation on the local width: SwiGLU's
    gate*silu(up) reads 2 and writes 1, the fused bias-GELU reads 1 and writes 1 (per expert
    and shared expert of an MoE layer). ``layer`` ("dense" or "moe") picks the kind of layer of
    a model with both (default: its one kind); ``sequence_parallel`` defaults to ``tp > 1``."""
    hq, hkv = config.local_heads(tp)
    d = config.d_model
    sp = tp > 1 if sequence_parallel is None else bool(sequence_parallel)
    share = tp if sp else 1
    masks = 2 * d / ACT_BYTES if config.dropout else 0  # two 1-byte masks, in 2-byte units
    norms_residual = (2 * 2 * d + 2 * 3 * d + masks) / share
    rotary = 0 if config.learned_positions else 2 * (hq + hkv) * config.head_dim
    per_width = 3 if config.mlp == "swiglu" else 2
    kind = layer or ("moe" if config.is_moe else "dense")
    if kind == "moe":
        mlp = per_width * (config.d_ffn // tp) * (config.experts_per_token
                                                  + config.shared_experts)
    else:
        mlp = per_width * (config.dense_width // tp)
    return (norms_residual + rotary + mlp) * ACT_BYTES


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


def refuse_above_peak(tflops_per_gpu, mfu, peak, precision: str) -> None:
    """A given per-GPU rate cannot pass the device's dense datasheet peak (physics: MFU counts
    model FLOPs against that peak), nor can MFU pass 1; ``peak`` None: nothing to check."""
    if mfu is not None and not 0 < mfu <= 1:
        raise DataError(f"--mfu {mfu:g} is not a fraction of the peak: give a value in (0, 1], "
                        "e.g. 0.41 (Llama 3)")
    if tflops_per_gpu is not None and peak is not None and tflops_per_gpu > peak.value:
        raise DataError(f"--tflops-per-gpu {tflops_per_gpu:g} is above the device's {precision} "
                        f"dense peak of {peak.value:g} TFLOP/s ({peak.source}); no GPU sustains "
                        "more than its peak")


@dataclass
class _Step:
    """What every term of one step reads: the inputs, the layout, and the labels and notes
    the terms add to."""

    config: ModelConfig
    profile: HardwareProfile
    precision: str
    ov: dict
    lay: dict
    labels: dict
    notes: list
    m: int  # micro-batches per pipeline per step
    gemm_dtype: str
    attn_dtype: str = "bf16"
    recompute: str = "none"  # one of STEP_RECOMPUTE
    sequence_parallel: bool = False  # Megatron sequence parallelism (with tensor parallelism)
    attention: str = "flash"  # one of ATTENTION_IMPLS
    balanced_pipeline: bool = True  # the output layer shared out over the stages (Llama 3)
    zero: int = STEP_ZERO  # one of ZERO_STAGES
    tp_backward_overlap: bool = True  # TP_BACKWARD_OVERLAP_SOURCE
    #: layer kind -> block -> (input-gradient, weight-gradient) GEMM seconds of the block's
    #: entry GEMMs for one micro-batch, from `_kernel_terms` (what the backward overlap hides
    #: behind).
    entry_gemm_s: dict = field(default_factory=dict)

    @property
    def forward_passes(self) -> int:
        """How many times each layer's forward runs: twice under full recomputation."""
        return 2 if self.recompute == "full" else 1

    @property
    def attention_forward_passes(self) -> int:
        """How many times the attention core's forward runs: twice under selective or full
        recomputation."""
        return 2 if self.recompute in ("selective", "full") else 1

    def passes(self, op: Op) -> int:
        """How many times the step runs ``op``: a forward op `forward_passes` times (an
        attention call `attention_forward_passes`), a backward op once."""
        if op.direction != "fwd":
            return 1
        return self.attention_forward_passes if op.kind == "attention" else self.forward_passes

    @property
    def head_share(self) -> float:
        """The share of the output layer and loss the slowest stage runs: ``1 / pp`` in a
        balanced pipeline, all of it where the last stage holds it on top of its layers."""
        return 1.0 / self.lay["pp"] if self.balanced_pipeline else 1.0

    @property
    def seq_local(self) -> int:
        """Tokens of each sequence on one GPU: ``seq / cp`` under context parallelism."""
        return self.lay["seq"] // self.lay["cp"]

    @property
    def tokens_mb(self) -> int:
        """Tokens of one micro-batch on one GPU (its context-parallel share)."""
        return self.lay["micro_batch"] * self.seq_local

    @property
    def layers_per_stage(self) -> float:
        return self.config.layers / self.lay["pp"]

    @property
    def gpus(self) -> int:
        return self.lay["tp"] * self.lay["cp"] * self.lay["pp"] * self.lay["dp"]

    @property
    def dp_group(self) -> int:
        """The GPUs that hold the same weights and reduce their gradients together: the
        data-parallel replicas times the context-parallel ranks (Megatron-Core folds CP into
        the gradient reduction; `scaling.model.memory` shards optimizer state over dp x cp)."""
        return self.lay["dp"] * self.lay["cp"]

    def layers_of(self, kind: str) -> float:
        """Layers of ``kind`` ("dense" or "moe") on one stage of a balanced pipeline."""
        count = self.config.moe_layers if kind == "moe" else self.config.dense_layers
        return count / self.lay["pp"]

    @property
    def imbalance(self) -> float:
        """The busiest expert's tokens over the mean (`EXPERT_IMBALANCE`, or the override)."""
        return self.ov.get("expert_imbalance", EXPERT_IMBALANCE) if self.config.is_moe else 1.0


def step_time(config: ModelConfig, profile: HardwareProfile, *, precision: str = "bf16",
              tp: int | None = None, pp: int | None = None, dp: int | None = None,
              seq: int | None = None, batch_tokens: int | None = None,
              micro_batch: int | None = None, interleave: int | None = None,
              overrides: dict | None = None, chosen: dict | None = None,
              recompute: str = "none", cp: int | None = None,
              attention: str = "flash", ep: int | None = None,
              sequence_parallel: bool | None = None,
              balanced_pipeline: bool = True, zero: int = STEP_ZERO,
              grad_reduce: str = GRAD_REDUCE_DEFAULT, grad_overlap: bool = False,
              grad_accumulation: str = GRAD_ACCUMULATION_DEFAULT,
              tp_backward_overlap: bool = True) -> StepResult:
    """Model one training step; see the module docstring for every term. A layout argument
    left out (None) takes its default (`LAYOUT_DEFAULTS`); one passed is labelled given, or as
    ``chosen`` says (name -> (label, source), for a caller that picked it by a rule).
    ``recompute="full"`` adds each layer's forward GEMMs and attention once more to the
    GEMM, attention and expert terms (`STEP_RECOMPUTE`). ``sequence_parallel`` (default: on
    with tensor parallelism, as Megatron-Core and Llama 3 run) False prices the tensor-
    parallel collectives as all-reduces and runs the norms and residuals whole on every rank,
    as Megatron-LM did before Korthikanti et al. 2022. ``balanced_pipeline`` (default True:
    the output layer's work shared out, as Llama 3 balanced its pipeline by giving the first
    and last stages one layer fewer, arXiv 2407.21783, Sec. 3.3.2) False gives every stage
    ``layers / pp`` layers and the last the output layer and loss on top, the stage that
    paces the pipeline (Megatron-LM of 2021). ``grad_reduce`` is the precision gradients are
    reduced in (`GRAD_REDUCE_BYTES`); ``grad_overlap`` hides the gradient reduction under the
    last micro-batch's backward (`GRAD_OVERLAP_SOURCE`; default off: reduced after it);
    ``grad_accumulation`` "unfused" adds every micro-batch's gradients after the first as a
    separate pass over memory (`GRAD_ACCUMULATION`). ``tp_backward_overlap`` (default on,
    Megatron-LM's since Sep 2021) hides each column-parallel linear's backward collectives
    under its backward GEMMs (`TP_BACKWARD_OVERLAP_SOURCE`); False puts every backward
    collective on the critical path."""
    st = _setup(config, profile, precision, overrides, chosen,
                dict(tp=tp, pp=pp, dp=dp, cp=cp, seq=seq, batch_tokens=batch_tokens,
                     micro_batch=micro_batch, interleave=interleave, ep=ep), recompute)
    st.sequence_parallel = (st.lay["tp"] > 1 if sequence_parallel is None
                            else bool(sequence_parallel) and st.lay["tp"] > 1)
    st.balanced_pipeline = bool(balanced_pipeline)
    if isinstance(zero, bool) or zero not in ZERO_STAGES:
        raise DataError(f"ZeRO stage must be one of {ZERO_STAGES}, got {zero!r}")
    st.zero = int(zero)
    if grad_reduce not in GRAD_REDUCE_BYTES:
        raise UnknownNameError("gradient reduction precision", grad_reduce, GRAD_REDUCE_BYTES)
    st.grad_reduce, st.grad_overlap = grad_reduce, bool(grad_overlap)
    if grad_accumulation not in GRAD_ACCUMULATION:
        raise UnknownNameError("gradient accumulation", grad_accumulation, GRAD_ACCUMULATION)
    st.grad_accumulation = grad_accumulation
    st.tp_backward_overlap = bool(tp_backward_overlap)
    if attention not in ATTENTION_IMPLS:
        raise UnknownNameError("attention implementation", attention, ATTENTION_IMPLS)
    st.attention = attention
    peak = _peak(st)
    kernels = _kernel_terms(st)
    memory = _memory_bandwidth(st)
    if attention == "materialised":
        _materialised_attention_term(st, kernels, memory)
    mb = {"gemm_s": kernels["gemm"], "attention_s": kernels["attention"]}
    if "expert" in kernels:
        mb["expert_gemm_s"] = kernels["expert"]
    mb["elementwise_s"] = _elementwise_term(st, memory)
    overlaps = _overlaps(st)
    if st.gemm_dtype != "bf16":
        mb["fp8_cast_s"] = _fp8_cast_term(st, memory)
    mb["tp_comm_s"] = _tp_comm_term(st, overlaps["tp_overlap"])
    if st.lay["cp"] > 1:
        mb["cp_comm_s"] = _cp_comm_term(st, overlaps["cp_overlap"])
    mb["pp_comm_s"] = _pp_comm_term(st, overlaps["pp_overlap"])
    if st.config.is_moe:
        mb.update(ep_comm_s=_ep_comm_term(st), moe_permute_s=_permute_term(st, memory))
    t_mb = sum(mb.values())
    terms = {k: st.m * v for k, v in mb.items()}
    terms["pipeline_bubble_s"] = _bubble_term(st, t_mb)
    terms["dp_comm_s"] = _dp_comm_term(st, overlaps["dp_overlap"], t_mb)
    terms["optimizer_s"] = _optimizer_term(st, memory)
    if st.grad_accumulation == "unfused":
        terms["grad_accumulation_s"] = _grad_accumulation_term(st, memory)
    else:
        st.labels["grad_accumulation"] = _label(
            "fused", "assumed", "fused into the weight-gradient GEMM's epilogue (Megatron-LM's "
                                "--gradient-accumulation-fusion): no traffic beyond the GEMM "
                                "(scaling.model.step.GRAD_ACCUMULATION)")
    _override_terms(st, terms)
    step = sum(terms.values())
    model_flops = config.flops_per_token(st.lay["seq"]) * st.lay["batch_tokens"] / st.gpus
    tflops, step = _throughput(st, step, model_flops, peak)
    mfu = tflops / peak.value if peak is not None else np.full(3, math.nan)
    hw_util = (float(st.m * kernels["flops"] / (step[0] * 1e12) / peak.value)
               if peak is not None else None)
    power = _power(st, hw_util)
    lay = st.lay
    return StepResult(
        model=config.name, hardware=profile.name, precision=precision,
        layout={"tp": lay["tp"], "cp": lay["cp"], "pp": lay["pp"], "dp": lay["dp"],
                "gpus": st.gpus,
                "seq": lay["seq"], "batch_tokens": lay["batch_tokens"],
                "micro_batch": lay["micro_batch"], "micro_batches": st.m,
                "interleave": lay["interleave"], "recompute": st.recompute, "ep": lay["ep"],
                "expert_imbalance": st.imbalance, "sequence_parallel": st.sequence_parallel,
                "balanced_pipeline": st.balanced_pipeline, "zero": st.zero,
                "grad_reduce": st.grad_reduce, "grad_overlap": st.grad_overlap,
                "grad_accumulation": st.grad_accumulation, "attention": st.attention,
                "tp_backward_overlap": st.tp_backward_overlap},
        step_time_s=float(step[0]), tflops_per_gpu=float(tflops[0]),
        mfu=None if peak is None else float(mfu[0]),
        breakdown={k: float(v[0]) for k, v in terms.items()},
        intervals={"step_time_s": (float(step.min()), float(step.max())),
                   "tflops_per_gpu": (float(tflops.min()), float(tflops.max())),
                   "mfu": ((float(mfu.min()), float(mfu.max())) if peak is not None
                           else (None, None))},
        power_w=power, labels=st.labels, model_flops_per_gpu=float(model_flops),
        hardware_utilisation=hw_util, tokens_per_s=lay["batch_tokens"] / float(step[0]),
        notes=st.notes)


def _setup(config, profile, precision, overrides, chosen, passed, recompute="none") -> _Step:
    """Check the precision, overrides and layout; the micro-batches each pipeline runs."""
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", precision, PRECISIONS)
    if recompute not in STEP_RECOMPUTE:
        raise UnknownNameError("recomputation the step model times", recompute, STEP_RECOMPUTE)
    ov = _check_overrides(overrides)
    lay, labels = _layout(config, passed, chosen)
    seq, dp, micro_batch, pp = lay["seq"], lay["dp"], lay["micro_batch"], lay["pp"]
    per_replica = lay["batch_tokens"] / (seq * dp * micro_batch)
    if per_replica < 1 or not float(per_replica).is_integer():
        raise DataError(f"batch_tokens {lay['batch_tokens']} must be a whole number of "
                        f"micro-batches of {micro_batch} x {seq} tokens on each of {dp} "
                        f"data-parallel replicas (a multiple of {seq * dp * micro_batch})")
    if config.layers < pp or lay["interleave"] > math.ceil(config.layers / pp):
        raise DataError(f"{config.layers} layers cannot fill {pp} pipeline stages x "
                        f"{lay['interleave']} interleaved chunks")
    if seq % lay["cp"] or (lay["cp"] > 1 and seq % (2 * lay["cp"])):
        raise DataError(f"sequence length {seq} must split into 2 x cp = {2 * lay['cp']} equal "
                        f"chunks for context parallelism {lay['cp']} (each rank holds two, "
                        f"Llama 3 Sec. 3.3.2)")
    for key in ("expert_gemm_s", "ep_comm_s", "moe_permute_s", "expert_imbalance",
                "ep_busbw_gbps", "ep_overlap"):
        if key in ov and not config.is_moe:
            raise DataError(f"override {key}: model '{config.name}' has no experts")
    _check_ep(config, lay)
    notes = []
    if precision == "fp8":
        notes.append("FP8 applies to the layers' GEMMs; the output head, router, attention and "
                     "norms run in BF16 (DeepSeek-V3 Sec. 3.3.1; Transformer Engine), and each "
                     f"FP8 GEMM input is quantised ({FP8_RECIPE} scaling, fp8_cast_s)")
    return _Step(config, profile, precision, ov, lay, labels, notes, int(per_replica),
                 PRECISIONS[precision], recompute=recompute)


def _peak(st: _Step) -> Figure | None:
    """The dense datasheet peak of the GEMM dtype, or None (no MFU) for a device without one."""
    try:
        peak = st.profile.peak(st.gemm_dtype)
        st.labels["peak_tflops"] = _as_label(peak)
        return peak
    except DataError as exc:  # an unrecognised measured device: no MFU, no utilisation
        if "mfu" in st.ov:
            raise
        st.labels["peak_tflops"] = _label(None, MISSING, str(exc))
        st.notes.append(f"no MFU: {exc}")
        return None


# -- kernels of one micro-batch ---------------------------------------------------------------

#: GEMMs an FP8 recipe keeps in BF16: the output head and the MoE router (DeepSeek-V3,
#: arXiv 2412.19437, Sec. 3.3.1: "the embedding module, the output head, MoE gating modules,
#: normalization operators, and attention operators" stay in BF16/FP32; Megatron-LM's output
#: layer is not a Transformer Engine FP8 module). Attention and norms are not GEMMs here and
#: run in BF16 already.
BF16_GEMMS_UNDER_FP8 = ("lm_head", "router")
#: Bytes moved per element to quantise one GEMM input for FP8 (BF16 in, FP8 out), by scaling
#: recipe. Both write the FP8 tensor and its transpose in one pass (Transformer Engine's
#: cast-transpose: Hopper FP8 GEMMs take only the TN layout, so the wgrad needs X^T and
#: dY^T): read 2 B, write 1 + 1 B.
#: ``delayed``: the scale comes from the amax history of earlier iterations and the amax is
#: recorded in the same pass (Transformer Engine's DelayedScaling, its default recipe):
#: 4 B per element. ``current``: the amax of this tensor is reduced first, one more read
#: (Transformer Engine's Float8CurrentScaling; DeepSeek-V3's online 1x128 tile scales,
#: Sec. 3.3.2, also read each tile before casting it): 6 B per element.
FP8_CAST_BYTES = {"delayed": 2 + 1 + 1, "current": 2 + 2 + 1 + 1}
FP8_RECIPE = "delayed"


def gemm_dtype(st: "_Step", op: Op) -> str:
    """The dtype ``op`` runs in: the step's GEMM dtype, except the GEMMs an FP8 recipe keeps in
    BF16 (`BF16_GEMMS_UNDER_FP8`)."""
    if st.gemm_dtype != "bf16" and op.name.split(".")[0] in BF16_GEMMS_UNDER_FP8:
        return "bf16"
    return st.gemm_dtype


def fp8_cast_bytes(fwd_gemms: list[Op], micro_batches: int, recipe: str = FP8_RECIPE,
                   input_passes: int = 1) -> float:
    """Bytes of memory traffic per micro-batch to quantise the inputs of the FP8 GEMMs whose
    forwards are ``fwd_gemms`` (Y[m,n] = X[m,k] W[k,n], ``count`` of each): X once per forward
    pass (``input_passes``: 2 under full recomputation), the output gradient dY once in the
    backward, and W once per optimizer step, shared by the ``micro_batches`` micro-batches
    (Transformer Engine caches the FP8 weights between micro-batches: ``is_first_microbatch``
    of ``te.Linear.forward``), each at `FP8_CAST_BYTES` per element."""
    if recipe not in FP8_CAST_BYTES:
        raise UnknownNameError("FP8 scaling recipe", recipe, FP8_CAST_BYTES)
    per = FP8_CAST_BYTES[recipe]
    total = 0.0
    for op in fwd_gemms:
        m, n, k = op.shape["m"], op.shape["n"], op.shape["k"]
        total += op.count * per * (input_passes * m * k + m * n + k * n / micro_batches)
    return total


def _fp8_cast_term(st: "_Step", memory: Figure) -> np.ndarray:
    """Seconds of one micro-batch's FP8 quantisation (amax and cast) of the GEMM inputs on one
    stage: memory-bound traffic at the profile's memory bandwidth."""
    total = 0.0
    for layer in st.config.layer_kinds():  # dense and MoE layers, each counted per stage
        fp8 = [op for op in _layer_ops(st, layer) if op.kind == "gemm" and op.direction == "fwd"
               and gemm_dtype(st, op) != "bf16"]
        total += st.layers_of(layer) * fp8_cast_bytes(
            fp8, st.m, input_passes=2 if st.recompute == "full" else 1)
    st.labels["fp8_cast_bytes_per_microbatch"] = _label(
        total, "assumed", f"{FP8_RECIPE} scaling, {FP8_CAST_BYTES[FP8_RECIPE]} B per element "
                          "of each FP8 GEMM input (X per forward, dY per backward, W per step; "
                          "Transformer Engine cast-transpose)")
    return np.full(3, total / (memory.value * 1e9))


def is_expert_op(op: Op) -> bool:
    """Whether ``op`` is one of a routed expert's GEMMs (`ModelConfig.layer_ops` names them
    ``expert_...``), timed by `_expert_term` rather than as a dense GEMM."""
    return op.kind == "gemm" and op.name.startswith("expert_")


class _Rates:
    """TFLOP/s per distinct kernel call, as (value, fast, slow), and the labels and sources
    of the curves that gave them, per kind of kernel."""

    def __init__(self, st: _Step):
        self.st, self.cache = st, {}
        self.labels = {"gemm": set(), "attention": set()}
        self.sources = {"gemm": set(), "attention": set()}

    def estimate(self, op: Op) -> Figure:
        ov, profile = self.st.ov, self.st.profile
        if op.kind == "gemm" and "gemm_tflops" in ov:
            return _override(ov, "gemm_tflops")
        if op.kind == "attention" and "attention_tflops" in ov:
            return _override(ov, "attention_tflops")
        if op.kind == "gemm":
            s = op.shape
            return profile.matmul_tflops(s["m"], s["n"], s["k"], gemm_dtype(self.st, op))
        est = profile.attention_tflops(dtype=self.st.attn_dtype, direction=op.direction,
                                       **op.shape)
        if self.st.attention != "flash2":
            return est
        if est.label == "measured":
            raise DataError("attention flash2 slows the presets' FlashAttention-3 curves; this "
                            "profile's attention curve is measured: it times the kernel it "
                            "measured (use attention flash)")
        value, fast, slow = FA2_SLOWDOWN
        return Figure(est.value / value, est.lo / slow, est.hi / fast, "assumed",
                      f"{FA2_SOURCE}; {est.source}")

    def time(self, op: Op) -> np.ndarray:
        key = (op.kind, op.direction, tuple(sorted(op.shape.items())))
        if key not in self.cache:
            est = self.estimate(op)
            self.cache[key] = _trio(est)
            self.labels[op.kind].add(est.label)
            self.sources[op.kind].add(est.source.split(": ", 1)[0])
        return op.count * op.flops / (self.cache[key] * 1e12)


def _kernel_terms(st: _Step) -> dict:
    """Seconds of one micro-batch on one stage for the dense GEMMs, attention and (MoE) the
    expert GEMMs, and the kernel FLOPs they execute (``flops``, for utilisation)."""
    config, tp = st.config, st.lay["tp"]
    head_ops = config.head_ops(st.lay["micro_batch"], st.seq_local, tp)
    rates = _Rates(st)
    head_gemm = sum((rates.time(op) for op in head_ops), np.zeros(3))
    hw_flops_head = float(sum(op.count * op.flops for op in head_ops))
    head_share = st.head_share
    out = {"gemm": head_gemm * head_share, "attention": np.zeros(3)}
    flops = {"gemm": hw_flops_head * head_share, "attention": 0.0, "expert": 0.0}
    # A model with dense and MoE layers: each kind timed once and counted per stage.
    for layer in config.layer_kinds():
        n = st.layers_of(layer)
        layer_ops = _layer_ops(st, layer)
        entry = {block: [np.zeros(3), np.zeros(3)] for block in TP_ENTRY_GEMMS}
        for op in layer_ops:
            if not is_expert_op(op):
                # Materialised attention is timed apart (`_materialised_attention_term`, from
                # the GEMM curve and memory bandwidth): no attention curve is asked for.
                share = _cp_share(st, op)
                seconds = (np.zeros(3) if op.kind == "attention" and st.attention ==
                           "materialised" else rates.time(op))
                out[op.kind] = out[op.kind] + n * seconds * st.passes(op) * share
                flops[op.kind] += n * op.count * op.flops * st.passes(op) * share
                if op.kind == "gemm" and op.name in _ENTRY_BACKWARD:
                    block, which = _ENTRY_BACKWARD[op.name]
                    entry[block][which] = entry[block][which] + seconds
        st.entry_gemm_s[layer] = {block: tuple(t) for block, t in entry.items()}
        experts = [op for op in layer_ops if is_expert_op(op)]
        if experts:
            per_layer_expert, flops_expert = _expert_term(st, experts)
            # Every GPU waits for the one holding the busiest expert.
            out["expert"] = n * per_layer_expert * st.imbalance
            flops["expert"] += n * flops_expert
    for kind in ("gemm", "attention") if st.attention != "materialised" else ("gemm",):
        _kind_label(st, rates, kind, flops[kind], out[kind])
    out["flops"] = flops["gemm"] + flops["attention"] + flops["expert"]
    return out


def _layer_ops(st: _Step, layer) -> list[Op]:
    """One layer's kernels (of kind ``layer``, dense or MoE) on one GPU: the GEMMs at the
    micro-batch's local tokens (``seq / cp`` per sequence under context parallelism) and the
    attention calls at the full sequence, of which `_cp_share` gives this GPU its part."""
    config, b, tp, ep = st.config, st.lay["micro_batch"], st.lay["tp"], st.lay["ep"]
    ops = config.layer_ops(b, st.seq_local, tp, layer=layer, ep=ep)
    if st.lay["cp"] == 1:
        return ops
    full = [op for op in config.layer_ops(b, st.lay["seq"], tp, layer=layer, ep=ep)
            if op.kind == "attention"]
    return [op for op in ops if op.kind != "attention"] + full


def _cp_share(st: _Step, op: Op) -> float:
    """This GPU's share of ``op``: ``1 / cp`` of a full-sequence attention call under context
    parallelism, else 1. Each rank computes its ``seq / cp`` queries against every key of the
    sequence; the causal work is balanced because each rank holds two chunks, i and
    2 cp - 1 - i, of the sequence cut into 2 cp (Llama 3 paper, arXiv 2407.21783, Sec. 3.3.2),
    so each does ``1 / cp`` of the causal FLOPs. Timed at the attention curve's rate for the
    full-sequence causal call (an assumption: the local kernel is seq / cp queries by up to
    seq keys, shapes the curves do not hold)."""
    return 1.0 / st.lay["cp"] if op.kind == "attention" else 1.0


def materialised_attention_kernels(batch: int, heads: int, seq: int, head_dim: int,
                                   dropout: bool) -> dict:
    """The kernels of one attention call that writes its ``seq x seq`` scores to memory, as
    (FLOPs, bytes of s x s traffic) per direction, over ``batch x heads`` score matrices of
    FP16/BF16 (2 B) elements, as Megatron-LM of 2021 ran them: the batched GEMMs and dropout
    on the whole matrix, and its fused causal softmax reading only the unmasked lower
    triangle, ``(s + 1) / 2s`` of each matrix, and writing all of it, zeros above the diagonal
    (NVIDIA/Megatron-LM de7dc40f, megatron/fused_kernels/scaled_upper_triang_masked_softmax.h:
    row ``i`` loads ``i + 1`` elements, forward and backward; the kernel serves every causal
    GPT run up to 2,048 keys, megatron/model/fused_softmax.py).

    Forward: QK^T writes the scores (2 B); softmax reads the triangle (2 B each) and writes
    them all (2 B); dropout reads them and writes its output and a 1-byte mask (5 B); the
    product with V reads them (2 B). Backward: dO V^T writes the probabilities' gradient
    (2 B); dV = P^T dO reads P (2 B); dropout's backward reads gradient and mask and writes
    (5 B); softmax's backward reads gradient and output over the triangle (2 x 2 B) and writes
    all (2 B); dQ and dK read the score gradient (2 x 2 B). The stored tensors are Korthikanti
    et al. 2022 (arXiv 2205.05198), Sec. 4.1's ``5 a s^2 b`` bytes per layer (softmax output,
    dropout mask and output). Each batched GEMM does ``2 s^2 d`` FLOPs per matrix."""
    n = batch * heads * seq * seq
    triangle = n * (seq + 1) / (2 * seq)
    gemm = 2 * seq * seq * head_dim * batch * heads
    drop_fwd, drop_bwd = (5, 5) if dropout else (0, 0)
    return {"fwd": {"gemm_flops": 2 * gemm, "gemm_bytes": (2 + 2) * n,
                    "elementwise_bytes": 2 * triangle + (2 + drop_fwd) * n},
            "bwd": {"gemm_flops": 4 * gemm, "gemm_bytes": (2 + 2 + 2 + 2) * n,
                    "elementwise_bytes": (2 + 2) * triangle + (2 + drop_bwd) * n}}


def _materialised_attention_term(st: _Step, kernels: dict, memory: Figure) -> None:
    """Replace the attention term by attention with materialised scores: its batched GEMMs
    each at the slower of the GEMM curve's rate and their s x s traffic over memory
    bandwidth (a roofline per kernel), its softmax and dropout as memory traffic."""
    config, b, seq, tp = st.config, st.lay["micro_batch"], st.lay["seq"], st.lay["tp"]
    if st.lay["cp"] > 1:
        raise DataError("materialised attention is not modelled with context parallelism")
    hq, _ = config.local_heads(tp)
    hd = (config.qk_head_dim + config.v_head_dim) // 2
    k = materialised_attention_kernels(b, hq, seq, hd, config.dropout)
    rate = (_override(st.ov, "gemm_tflops") if "gemm_tflops" in st.ov
            else st.profile.matmul_tflops(seq, seq, hd, "bf16"))
    bw = memory.value * 1e9
    per_layer, flops = np.zeros(3), 0.0
    for direction, passes in (("fwd", st.attention_forward_passes), ("bwd", 1)):
        d = k[direction]
        # Each batched GEMM is split evenly over its FLOPs and bytes (two forward, four back).
        gemm = np.maximum(d["gemm_flops"] / (_trio(rate) * 1e12), d["gemm_bytes"] / bw)
        per_layer = per_layer + passes * (gemm + d["elementwise_bytes"] / bw)
        flops += passes * d["gemm_flops"]
    kernels["attention"] = st.layers_per_stage * per_layer
    st.labels["attention_tflops"] = _label(
        flops / per_layer[0] / 1e12, rate.label,
        "materialised attention (no FlashAttention): batched GEMMs on the GEMM curve or s x s "
        "traffic at memory bandwidth, softmax" + (" and dropout" if config.dropout else "")
        + " as memory traffic (Korthikanti et al. 2022, Sec. 4.1)")
    st.notes.append("attention materialises its s x s scores (pre-FlashAttention); the "
                    "utilisation still counts attention's causal FLOPs, not the full s x s")


def _kind_label(st: _Step, rates: _Rates, kind: str, flops: float, t: np.ndarray) -> None:
    kinds = sorted(rates.labels[kind])
    st.labels[f"{kind}_tflops"] = _label(
        flops / t[0] / 1e12, weakest(*kinds),
        "time-weighted over the step's shapes"
        + (f" ({' and '.join(kinds)} curves)" if len(kinds) > 1 else "") + "; "
        + "; ".join(sorted(rates.sources[kind])))


#: A dense op's name suffix (`scaling.model.config._with_backward`) -> the grouped GEMM's direction.
_GROUPED_DIRECTION = {"": "fwd", ".dgrad": "bwd_dx", ".wgrad": "bwd_dw"}


def _expert_term(st: _Step, experts: list[Op]) -> tuple[np.ndarray, float]:
    """Seconds and FLOPs of one MoE layer's routed-expert GEMMs (each expert's gate/up and
    down projections, forward, dX and dW, ``count`` experts each) on one GPU.

    Timed with the profile's grouped-GEMM curve (`HardwareProfile.grouped_gemm_tflops`) at
    the tokens per expert the layout gives (the model's balanced routing) where the profile
    has one, else with the dense GEMM curve at the same shapes, and labelled which."""
    forward = {op.name: op.shape for op in experts if op.direction == "fwd"}
    total, flops, labels, curves, dense = np.zeros(3), 0.0, set(), set(), {}
    for op in experts:
        base, dot, suffix = op.name.partition(".")
        fwd, direction = forward[base], _GROUPED_DIRECTION[dot + suffix]
        est, curve, why = _expert_rate(st, op, fwd["m"], fwd["n"], fwd["k"], direction)
        if why:
            dense.setdefault(direction, why)
        labels.add(est.label)
        curves.add(curve)
        total = total + st.passes(op) * op.count * op.flops / (_trio(est) * 1e12)
        flops += st.passes(op) * op.count * op.flops
    tokens_per_expert = next(iter(forward.values()))["m"]
    st.labels["expert_gemm_tflops"] = _label(
        flops / total[0] / 1e12, weakest(*labels),
        f"time-weighted over the experts' GEMMs at {tokens_per_expert} tokens per expert; "
        + "; ".join(sorted(curves)))
    if dense:
        which = ", ".join(d for d in _GROUPED_DIRECTION.values() if d in dense)
        whys = "; ".join(dict.fromkeys(dense.values()))
        if not any(c.dtype == st.gemm_dtype for c in st.profile.grouped_curves):
            whys = f"the profile has no grouped-GEMM curve in {st.gemm_dtype}"
        st.notes.append(f"MoE expert GEMMs ({which}) timed with the dense GEMM curve at the "
                        f"experts' shapes: {whys}")
    return total, flops


def _expert_rate(st: _Step, op: Op, tokens_per_expert: int, n: int, k: int,
                 direction: str) -> tuple[Figure, str, str | None]:
    """TFLOP/s of one expert GEMM, which curve gave it (an override, the grouped-GEMM curve,
    or the dense GEMM curve at the op's own shape) and, for the dense one, why."""
    for key in ("expert_gemm_tflops", "gemm_tflops"):
        if key in st.ov:
            return _override(st.ov, key), f"given: override {key}", None
    try:
        est = st.profile.grouped_gemm_tflops(tokens_per_expert, n, k, st.gemm_dtype, direction)
        return est, "grouped-GEMM curve " + est.source.split(": ", 1)[0], None
    except FlopcastError as exc:
        s = op.shape
        dense = st.profile.matmul_tflops(s["m"], s["n"], s["k"], st.gemm_dtype)
        return (dense, "dense GEMM curve at the experts' shapes " + dense.source.split(": ", 1)[0],
                str(exc))


# -- memory traffic and communication ---------------------------------------------------------

def _memory_bandwidth(st: _Step) -> Figure:
    ov, profile = st.ov, st.profile
    memory = _override(ov, "memory_gbps") if "memory_gbps" in ov else profile.streaming_gbps()
    if memory is None:
        raise DataError(f"profile '{profile.name}' has no memory bandwidth; pass "
                        f"overrides={{'memory_gbps': ...}} (--set memory_gbps=...)")
    st.labels["memory_gbps"] = _as_label(memory)
    return memory


def _elementwise_term(st: _Step, memory: Figure) -> np.ndarray:
    """Seconds of one micro-batch's elementwise traffic on one stage: the layers' forward
    bytes (`elementwise_bytes_per_token`) once forward, twice backward, and once more under
    full recomputation; the loss softmax in FP32 forward and backward."""
    config, tp = st.config, st.lay["tp"]
    logits_bytes = 3 * st.tokens_mb * math.ceil(config.vocab / tp) * 4  # FP32 softmax fwd+bwd
    per_token = sum(st.layers_of(k) * elementwise_bytes_per_token(config, tp, k,
                                                                  st.sequence_parallel)
                    for k in config.layer_kinds())
    elem_bytes = (st.forward_passes + 2) * per_token * st.tokens_mb + logits_bytes * st.head_share
    st.labels["elementwise_bytes_per_microbatch"] = _label(
        elem_bytes, "assumed", "norms, residuals (with dropout: fused bias-dropout-add), "
                               "rotary, the MLP activation and the loss softmax read and "
                               "written once each (no fusion beyond that); "
                               + ("split over tensor parallelism by sequence parallelism"
                                  if st.sequence_parallel else
                                  "norms and residuals whole on every tensor-parallel rank "
                                  "(no sequence parallelism)"))
    return np.full(3, elem_bytes / (memory.value * 1e9))


def _overlaps(st: _Step) -> dict:
    overlaps = {}
    for key in ("tp_overlap", "pp_overlap", "dp_overlap", "cp_overlap"):
        overlaps[key] = st.ov.get(key, 0.0)
        st.labels[key] = (_as_label(_override(st.ov, key)) if key in st.ov
                          else _label(overlaps[key], "assumed", ASSUMED_OVERLAP[key]))
    return overlaps


def _group_bw(st: _Step, override: str, collective: str, message_bytes: float, world: int,
              intra: bool) -> tuple[Figure, float]:
    """(bus bandwidth, latency in seconds) of one collective of a parallel group on the level
    it sits on (`_level_busbw`; a ring: ``world - 1`` steps, twice for an all-reduce), or the
    bandwidth the ``override`` key gives, without latency."""
    if override in st.ov:
        return _override(st.ov, override), 0.0
    steps = (world - 1) * (2 if collective == "all_reduce" else 1)
    return _level_busbw(st, collective, message_bytes, world, intra, steps)


def _tp_comm_term(st: _Step, overlap: float) -> np.ndarray:
    """Seconds of one micro-batch's tensor-parallel collectives on one stage.

    Per layer, forward: with sequence parallelism (Korthikanti et al. 2022) two all-gathers
    and two reduce-scatters of the layer's activations, without it two all-reduces (Megatron-
    LM's f and g operators, Shoeybi et al. 2019): the same bytes; backward the same again,
    and with sequence parallelism the two inputs' extra all-gathers
    (`SP_BACKWARD_ALL_GATHERS`); under full recomputation the forward's once more (the
    checkpointed layer's forward runs again whole, its collectives with it). Each priced on
    the level the group sits on (`_level_busbw`: NVLink inside a node), plus its ring
    latency. With ``tp_backward_overlap`` each block's input-gradient reduction costs only
    what outlasts the block's entry weight-gradient GEMM, and its sequence-parallel input
    all-gather what outlasts the entry input-gradient GEMM (`TP_BACKWARD_OVERLAP_SOURCE`).
    The total times ``1 - tp_overlap``."""
    tp, profile = st.lay["tp"], st.profile
    if tp == 1:
        return np.zeros(3)
    msg = st.tokens_mb * st.config.d_model * ACT_BYTES
    intra = tp <= profile.gpus_per_node
    frac = (tp - 1) / tp  # nccl-tests: time = size * (n - 1) / n / busbw (x2 all-reduce)
    # Per block (attention, then MLP): its column-parallel GEMM in, its row-parallel GEMM out.
    none = np.zeros(3)
    if st.sequence_parallel:
        ag, ag_lat = _group_bw(st, "tp_busbw_gbps", "all_gather", msg, tp, intra)
        rs, rs_lat = _group_bw(st, "tp_busbw_gbps", "reduce_scatter", msg, tp, intra)
        gather = msg * frac / (_trio(ag) * 1e9) + ag_lat
        reduce_input = msg * frac / (_trio(rs) * 1e9) + rs_lat
        # Per block: forward, the input all-gathered and the output reduce-scattered;
        # backward, the output gradient all-gathered (exposed), the input gradient
        # reduce-scattered and the input all-gathered again.
        forward_block, exposed_always, regather = gather + reduce_input, gather, gather
    else:
        ag, lat = _group_bw(st, "tp_busbw_gbps", "all_reduce", msg, tp, intra)
        # Per block: the output all-reduced forward (g), the input gradient backward (f).
        reduce_input = 2 * msg * frac / (_trio(ag) * 1e9) + lat
        forward_block, exposed_always, regather = reduce_input, none, none
    backward = exposed_always + reduce_input + regather
    total, hidden = np.zeros(3), np.zeros(3)
    for kind in st.config.layer_kinds():
        for dgrad, wgrad in st.entry_gemm_s[kind].values():
            exposed = (exposed_always + np.maximum(reduce_input - wgrad, 0)
                       + np.maximum(regather - dgrad, 0)) if st.tp_backward_overlap else backward
            hidden = hidden + st.layers_of(kind) * (backward - exposed)
            total = total + st.layers_of(kind) * (st.forward_passes * forward_block + exposed)
    pairs = 2 * st.forward_passes + 2
    st.labels["tp_busbw_gbps"] = _as_label(ag)
    st.labels["tp_collectives_per_layer"] = _label(
        pairs * 2 + SP_BACKWARD_ALL_GATHERS if st.sequence_parallel else pairs, "modelled",
        ("all-gathers and reduce-scatters (sequence parallelism), with the backward's "
         f"{SP_BACKWARD_ALL_GATHERS} extra all-gathers of the sequence-sharded GEMM inputs "
         "(Korthikanti et al. 2022, Sec. 4.2.2)" if st.sequence_parallel
         else "all-reduces (no sequence parallelism)")
        + (", the forward's repeated by full recomputation" if st.recompute == "full" else ""))
    st.labels["tp_backward_overlap"] = _label(
        "yes" if st.tp_backward_overlap else "no",
        "assumed" if st.tp_backward_overlap else "given",
        (TP_BACKWARD_OVERLAP_SOURCE + f"; {float(hidden[0]) * 1e3:.3g} ms of each micro-batch's "
         "collectives hidden" if st.tp_backward_overlap else
         "no: every backward collective on the critical path, as Megatron-LM before Sep 2021"))
    return total * (1 - overlap)


def cp_exchange_bytes(config: ModelConfig, tp: int, cp: int, micro_batch: int,
                      seq: int) -> float:
    """Bytes one GPU receives per layer per micro-batch in context parallelism's key/value
    exchange: the other ``cp - 1`` ranks' K and V blocks (``seq / cp`` tokens each, the local
    key/value heads, BF16), three times: gathered for the forward, gathered again for the
    backward, and the K and V gradients reduce-scattered back. Llama 3's all-gather-based CP
    (arXiv 2407.21783, Sec. 3.3.2) and a ring (Liu et al. 2023, arXiv 2310.01889: cp - 1
    block sends forward, K/V and dK/dV passed round the ring backward) move the same bytes.
    MLA models exchange their up-projected per-head keys and values (Megatron-Core's CP)."""
    kv_heads = config.heads_q if config.mla else config.heads_kv
    kv_local = max(1, kv_heads // tp)
    block = micro_batch * seq / cp * kv_local * (config.qk_head_dim + config.v_head_dim) \
        * ACT_BYTES
    return 3 * (cp - 1) * block


def _cp_comm_term(st: _Step, overlap: float) -> np.ndarray:
    """Seconds of one micro-batch's context-parallel K/V exchange on one stage, on the link
    the CP group sits on: inside the NVLink domain when ``tp * cp`` GPUs fit in it (Megatron
    orders TP innermost, then CP), else across the scale-out fabric."""
    tp, cp, profile = st.lay["tp"], st.lay["cp"], st.profile
    per_layer = cp_exchange_bytes(st.config, tp, cp, st.lay["micro_batch"], st.lay["seq"])
    # The gathered tensor: all cp blocks; nccl-tests time = size * (n - 1) / n / busbw.
    gathered = per_layer / 3 * cp / (cp - 1)
    intra = tp * cp <= profile.gpus_per_node
    bw, latency = _group_bw(st, "cp_busbw_gbps", "all_gather", gathered, cp, intra)
    st.labels["cp_busbw_gbps"] = _as_label(bw)
    st.labels["cp_exchange_bytes_per_layer"] = _label(
        per_layer, "assumed", "K and V of the other cp - 1 ranks, gathered forward and "
                              "backward, their gradients reduce-scattered (BF16)")
    return st.layers_per_stage * (per_layer / (_trio(bw) * 1e9) + 3 * latency) * (1 - overlap)


def _pp_comm_term(st: _Step, overlap: float) -> np.ndarray:
    """Seconds of one micro-batch's pipeline sends on one stage: the activation forward and
    its gradient backward, per model chunk, sequence-parallel shards (Megatron's scatter-
    gather: each tensor-parallel rank sends its share over its own link), on the level the
    neighbouring stages sit on (`_level_busbw`, a send/receive: one step of latency)."""
    tp, pp, profile = st.lay["tp"], st.lay["pp"], st.profile
    if pp == 1:
        return np.zeros(3)
    act = st.tokens_mb * st.config.d_model * ACT_BYTES / tp  # sequence-parallel shard
    intra = tp * pp <= profile.gpus_per_node
    if "pp_gbps" in st.ov:
        link, latency = _override(st.ov, "pp_gbps"), 0.0
    else:
        link, latency = _level_busbw(st, "send_recv", act, 2, intra)
    st.labels["pp_gbps"] = _as_label(link)
    return 2 * st.lay["interleave"] * (act / (_trio(link) * 1e9) + latency) * (1 - overlap)


def _bubble_term(st: _Step, t_mb: np.ndarray) -> np.ndarray:
    """Seconds per step the pipeline idles: (p - 1) / v micro-batch times."""
    busy = st.m * t_mb
    if "bubble_fraction" in st.ov:
        f = st.ov["bubble_fraction"]
        st.labels["bubble_fraction"] = _as_label(_override(st.ov, "bubble_fraction"))
        return busy * f / (1 - f)
    bubble = (st.lay["pp"] - 1) / st.lay["interleave"] * t_mb
    st.labels["bubble_fraction"] = _label(
        float(bubble[0] / (busy[0] + bubble[0])), "assumed",
        "(p - 1) / (v m + p - 1), 1F1B with v interleaved chunks (Narayanan et al. 2021)")
    return bubble


def _params_local(st: _Step) -> float:
    return st.config.params / (st.lay["tp"] * st.lay["pp"])


def _dp_comm_term(st: _Step, overlap: float, t_mb: np.ndarray) -> np.ndarray:
    """Seconds per step of the data-parallel collectives of ZeRO stage ``st.zero``: the
    gradients reduced in ``st.grad_reduce`` (all-reduced at stage 0, reduce-scattered above;
    with ``st.grad_overlap`` only what outlasts the last micro-batch's backward, whose time
    is the share of ``t_mb`` after its first forward) and the BF16 weights
    all-gathered (once per step at stages 1 and 2; for every micro-batch's forward, again
    under full recomputation, and backward at stage 3), each on the level its group sits on
    (`_level_busbw`), plus ring latency. Under expert parallelism the routed experts are
    ``ep`` times fewer per GPU and reduce over the ``dp x cp / ep`` replicas that hold the
    same experts (Megatron-Core's expert-data-parallel group); the rest reduces over the whole
    data-parallel group."""
    dp, profile, ep = st.dp_group, st.profile, st.lay["ep"]
    routed = st.config.routed_expert_params
    shard = st.lay["tp"] * st.lay["pp"]
    groups = [((st.config.params - routed) / shard, dp), (routed / (shard * ep), dp // ep)]
    grad_bytes = GRAD_REDUCE_BYTES[st.grad_reduce]
    if st.zero == 0:
        collectives = [("all_reduce", grad_bytes, 1)]
    else:
        gathers = 1 if st.zero < 3 else st.m * (st.forward_passes + 1)
        collectives = [("reduce_scatter", grad_bytes, 1), ("all_gather", DP_PARAM_BYTES,
                                                           gathers)]
    intra = st.gpus <= profile.gpus_per_node
    reduce_s, gather_s = np.zeros(3), np.zeros(3)
    bw = None
    for params, world in groups:
        if params == 0 or world == 1:
            continue
        for collective, width, times in collectives:
            size = params * width
            bw, latency = _group_bw(st, "dp_busbw_gbps", collective, size, world, intra)
            factor = 2 if collective == "all_reduce" else 1
            seconds = times * (factor * size * (world - 1) / world / (_trio(bw) * 1e9)
                               + latency)
            if collective == "all_gather":
                gather_s = gather_s + seconds
            else:
                reduce_s = reduce_s + seconds
    if st.grad_overlap:
        backward_share = (st.forward_passes + 1) / (st.forward_passes + 2)
        reduce_s = np.maximum(reduce_s - backward_share * t_mb, 0.0)
    if bw is not None:
        st.labels["dp_busbw_gbps"] = _as_label(bw)
    st.labels["zero"] = _label(st.zero, "given" if st.zero != STEP_ZERO else "assumed",
                               "ZeRO stage (scaling.model.memory.ZERO_STAGES)")
    st.labels["grad_reduce"] = _label(
        st.grad_reduce, "given" if st.grad_reduce != GRAD_REDUCE_DEFAULT else "assumed",
        f"gradients reduced in {st.grad_reduce} ({GRAD_REDUCE_BYTES[st.grad_reduce]} B each; "
        f"scaling.model.step.GRAD_REDUCE_BYTES)")
    st.labels["grad_overlap"] = _label(
        st.grad_overlap, "given" if st.grad_overlap else "assumed",
        GRAD_OVERLAP_SOURCE if st.grad_overlap else
        "no overlap: gradients reduced after the backward (conservative)")
    return (reduce_s + gather_s) * (1 - overlap)


def _grad_accumulation_term(st: _Step, memory: Figure) -> np.ndarray:
    """Seconds per step of unfused gradient accumulation: for each micro-batch after the
    first, every local parameter's running sum read and written in the width gradients are
    reduced in (``grad_reduce``: an FP32 buffer, or the half-precision ``.grad`` itself) and
    its new 16-bit gradient read, at memory bandwidth."""
    per_param = 2 * GRAD_REDUCE_BYTES[st.grad_reduce] + ACT_BYTES
    st.labels["grad_accumulation"] = _label(
        st.grad_accumulation, "given",
        f"unfused: {per_param} B per parameter for each of the {st.m - 1} micro-batches after "
        f"the first (scaling.model.step.GRAD_ACCUMULATION)")
    return np.full(3, (st.m - 1) * _params_local(st) * per_param / (memory.value * 1e9))


def _optimizer_term(st: _Step, memory: Figure) -> np.ndarray:
    """Seconds per step of Adam's memory traffic over this GPU's parameter shard (its whole
    copy at ZeRO stage 0)."""
    shard = st.dp_group if st.zero >= 1 else 1
    return np.full(3, _params_local(st) / shard * OPTIMIZER_BYTES_PER_PARAM
                   / (memory.value * 1e9))


# -- mixture of experts: expert parallelism -----------------------------------------------------

def _check_ep(config: ModelConfig, lay: dict) -> None:
    """Expert parallelism ``ep`` shards a model's routed experts over ``ep`` GPUs of the data-
    parallel group (`EP_CONVENTION`): it must divide ``dp`` and the experts."""
    ep = lay["ep"]
    if ep == 1:
        return
    if not config.is_moe:
        raise DataError(f"expert parallelism {ep}: model '{config.name}' has no experts")
    if lay["dp"] % ep:
        raise DataError(f"expert parallelism {ep} must divide data parallelism {lay['dp']}: "
                        f"the expert-parallel group lies inside the data-parallel group")
    if config.experts % ep:
        raise DataError(f"expert parallelism {ep} must divide the {config.experts} experts of "
                        f"model '{config.name}'")


def _levels(profile: HardwareProfile):
    """The (NVLink, scale-out) `datasheets.NetworkLevel` pair of the profile's device, or
    None for a device that is not a preset."""
    name = (profile.name if profile.name in datasheets.DEVICES
            else datasheets.preset_for_device(profile.device_name))
    return None if name is None else datasheets.network_levels(name)


def _level_busbw(st: _Step, collective: str, message_bytes: float, world: int,
                 intra: bool, steps: int = 1) -> tuple[Figure, float]:
    """(bus bandwidth, latency in seconds) of ``collective`` over ``world`` GPUs on the
    NVLink level (``intra``) or the scale-out level: a measured curve of the profile where it
    has one at that level; else the preset's network level, its link rate times the measured
    (or carried, labelled) collective fraction; else the profile's link figure. The latency is
    the level's base latency plus ``steps`` network steps (NCCL's tuning constants,
    `datasheets`; a ring collective takes ``world - 1``, twice for an all-reduce), none for a
    measured curve (its bus bandwidth already includes it)."""
    profile = st.profile
    measured = [c for c in profile.comm_curves
                if c.collective == collective and (c.nodes <= 1) == intra]
    if measured:
        return profile.busbw_gbps(collective, message_bytes, world, intra_node=intra), 0.0
    levels = _levels(profile)
    if levels is None:
        return profile.link_gbps("intra_node" if intra else "inter_node"), 0.0
    level = levels[0] if intra else levels[1]
    gbps, label, source = level.achievable_gbps(collective)
    figure = Figure.point(gbps, modelled_from(level.gbps_label, label),
                          f"{level.name} link {level.gbps:g} GB/s ({level.gbps_source}) x "
                          f"{collective} fraction {gbps / level.gbps:.3g} ({source})")
    return figure, (level.base_latency_us + steps * level.latency_us) * 1e-6


def _ep_comm_term(st: _Step) -> np.ndarray:
    """Seconds of one micro-batch's expert-parallel all-to-alls on one stage.

    Per MoE layer, forward: the dispatch and the combine, each GPU sending its tokens' top-k
    copies (``tokens / tp`` tokens, sequence parallelism's shard) to the ``ep`` ranks of its
    group, ``tokens / tp * d_model * 2 B * top_k * (ep - 1) / ep`` to others; backward: the
    same two again (the combine's and the dispatch's gradients); under full recomputation
    the forward pair once more. The group sits where its GPUs are (`EP_CONVENTION`): inside
    the NVLink domain when ``tp * ep`` GPUs fit a node, else spread over ``tp * ep /
    gpus_per_node`` nodes, the peers on the same node over NVLink and the rest over the
    scale-out fabric, the two at once (time = the slower). The busiest rank receives
    `_Step.imbalance` times the mean."""
    config, ep, tp = st.config, st.lay["ep"], st.lay["tp"]
    if ep == 1:
        return np.zeros(3)
    per_peer = st.tokens_mb / tp * config.d_model * ACT_BYTES * config.experts_per_token / ep
    node = st.profile.gpus_per_node
    local = ep if tp * ep <= node else max(1, node // tp)  # group members per node
    parts = []
    for peers, intra in ((local - 1, True), (ep - local, False)):
        if peers == 0:
            continue
        if "ep_busbw_gbps" in st.ov:
            bw, latency = _override(st.ov, "ep_busbw_gbps"), 0.0
        else:
            bw, latency = _level_busbw(st, "all_to_all", per_peer * ep, ep, intra)
        parts.append(peers * per_peer / (_trio(bw) * 1e9) + latency)
        st.labels["ep_busbw_gbps" if intra or "ep_busbw_gbps" in st.ov
                  else "ep_scale_out_busbw_gbps"] = _as_label(bw)
    one = np.maximum.reduce(parts) * st.imbalance
    calls = 2 * st.forward_passes + 2
    overlap = st.ov.get("ep_overlap", 0.0)
    st.labels["ep_overlap"] = (_as_label(_override(st.ov, "ep_overlap")) if "ep_overlap" in st.ov
                               else _label(overlap, "assumed", ASSUMED_OVERLAP["ep_overlap"]))
    st.labels["ep_bytes_per_all_to_all"] = _label(
        (ep - 1) * per_peer, "modelled",
        f"tokens / tp x d_model x 2 B x top_k x (ep - 1) / ep, balanced routing; "
        f"{local} of the {ep} ranks on one node; {EP_CONVENTION}")
    return st.layers_of("moe") * calls * one * (1 - overlap)


def _permute_term(st: _Step, memory: Figure) -> np.ndarray:
    """Seconds of one micro-batch's local token permute (before the experts: each token's row
    read, written top-k times in expert order) and unpermute (the weighted sum back), bytes as
    `kernels.flops.moe_dispatch_bytes` / `moe_combine_bytes` count them on the GPU's
    ``tokens / tp`` tokens, forward and backward (the gradients move the same bytes the other
    way; full recomputation: the forward once more), at the profile's measured dispatch and
    combine GB/s where it has them, else at memory bandwidth (labelled)."""
    config, tp = st.config, st.lay["tp"]
    tokens = max(1, st.tokens_mb // tp)
    k, d, e = config.experts_per_token, config.d_model, config.experts
    calls = st.forward_passes + 1
    total, labels = np.zeros(3), []
    for kernel, size in (("moe_dispatch", kflops.moe_dispatch_bytes(tokens, d, k, e, "bf16")),
                         ("moe_combine", kflops.moe_combine_bytes(tokens, d, k, "bf16"))):
        try:
            rate = st.profile.routing_gbps(kernel, size)
        except DataError:
            rate = Figure.point(memory.value, "assumed",
                                f"no measured {kernel} curve: at memory bandwidth, "
                                f"{memory.source}")
        labels.append(rate)
        total = total + calls * size / (_trio(rate) * 1e9)
    st.labels["moe_permute_gbps"] = _label(
        labels[0].value, weakest(*(r.label for r in labels)),
        "; ".join(f"{r.source}" for r in labels))
    return st.layers_of("moe") * total


def _override_terms(st: _Step, terms: dict) -> None:
    for term in BREAKDOWN_TERMS:
        if term in st.ov:
            terms[term] = np.full(3, st.ov[term])
            st.labels[term] = _as_label(_override(st.ov, term))


# -- what the step time implies ---------------------------------------------------------------

def _throughput(st: _Step, step: np.ndarray, model_flops: float, peak: Figure | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-GPU model TFLOP/s and the step time, the modelled ones or those an ``mfu`` or
    ``tflops_per_gpu`` override sets."""
    ov, labels = st.ov, st.labels
    tflops = model_flops / step / 1e12
    kernels = [labels["gemm_tflops"]["label"], labels["attention_tflops"]["label"]]
    curves = _curves_text(*kernels)
    if "expert_gemm_tflops" in labels:
        kernels.append(labels["expert_gemm_tflops"]["label"])
        curves += f", {labels['expert_gemm_tflops']['label']} expert GEMM rates"
    labels["tflops_per_gpu"] = _label(float(tflops[0]), modelled_from(*kernels),
                                      f"step model from {curves} on "
                                      f"{st.profile.name} ({st.profile.label} profile)")
    if "mfu" in ov or "tflops_per_gpu" in ov:
        refuse_above_peak(ov.get("tflops_per_gpu"), ov.get("mfu"), peak, st.precision)
        value = ov["tflops_per_gpu"] if "tflops_per_gpu" in ov else ov["mfu"] * peak.value
        key = "tflops_per_gpu" if "tflops_per_gpu" in ov else "mfu"
        labels[key] = _as_label(_override(ov, key))
        if key == "mfu":
            labels["tflops_per_gpu"] = _label(value, "given", labels["mfu"]["source"]
                                              + " x the datasheet peak")
        st.notes.append(f"throughput set by the {key} override; the breakdown is the model's "
                        f"and sums to {step[0]:.4g} s, not to step_time_s")
        tflops = np.full(3, value)
        step = model_flops / (tflops * 1e12)
    return tflops, step


def _power(st: _Step, hw_util: float | None) -> Figure | None:
    try:
        # Without a peak, utilisation is unknown: only a load-independent figure (TDP) fits.
        power = st.profile.power_w(min(hw_util, 1.0) if hw_util is not None else 1.0)
        if hw_util is None and power.label == "measured":
            raise DataError("utilisation unknown without a datasheet peak")
        st.labels["power_w"] = _as_label(power)
        return power
    except DataError as exc:
        st.labels["power_w"] = _label(None, MISSING, str(exc))
        st.notes.append(f"no power figure: {exc}")
        return None
