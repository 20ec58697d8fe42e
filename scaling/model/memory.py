"""The memory model: the bytes one GPU holds at the peak of a training step, by term.

For a model, a device and a layout (tensor ``tp``, pipeline ``pp``, data ``dp``, context
``cp``, expert ``ep`` and expert-tensor ``etp`` parallelism; micro-batch size, micro-batches
per step, interleaved chunks ``interleave``; recomputation; ZeRO stage), `memory_breakdown`
returns a `MemoryBreakdown` of the worst pipeline stage:

* **weights, gradients, optimizer state** of the stage's non-expert parameters (attention,
  norms, dense MLPs, shared experts, routers, embeddings), split over tensor parallelism as
  Megatron-LM splits them (norms, routers and the position table replicated) and sharded over
  the data-parallel group ``dp * cp`` by the ZeRO stage (Rajbhandari et al. 2019, Sec. 5:
  stage 1 shards the optimizer state, 2 also the gradients, 3 (FSDP) also the weights;
  Megatron-Core's distributed optimizer shards over data and context parallelism together);
* **expert shards**: the stage's routed experts, ``ceil(experts / ep)`` per GPU and ``1/etp``
  of each, their three states sharded over the expert data-parallel group
  ``dp * cp * tp / (ep * etp)`` (Megatron-Core's expert data parallelism);
* **activations** of one micro-batch on the stage (`scaling.model.activations`, after Korthikanti
  et al. 2022), plus what recomputation rebuilds for the one layer in its backward;
* **in-flight micro-batches**: the other micro-batches the schedule keeps stashed. 1F1B:
  stage ``r`` of ``p`` holds ``min(p - r, m)`` (Narayanan et al. 2021, Sec. 2.2;
  Korthikanti Sec. 4.2.3); interleaved with ``v`` chunks: ``2 (p - r - 1) + (v - 1) N + 1``
  chunk-micro-batches, at most ``m v``, with ``N`` micro-batches per chunk group
  (Megatron-LM's ``microbatch_group_size_per_vp_stage``, default ``p``; Llama 3's "N"), which
  on the first stage is Korthikanti's factor ``1 + (p - 1) / (p v)``;
* **FP32 gradient copies** the optimizer step makes where the recipe keeps 16-bit gradients
  (Megatron-LM's FP16 optimizer), after the backward has freed the activations: a stage's
  peak is the larger of its backward and its optimizer step (``at_optimizer_step``);
* **logits** of the loss on the last stage (`scaling.model.activations.logits_bytes`);
* **buffers**: a fixed reserve (CUDA context, NCCL, memory the allocator never sees) and the
  step's transient buffers (ZeRO's gradient reduce-scatter bucket and FSDP's gathered
  weights, the MoE dispatch send buffer, context parallelism's gathered keys and values);
* **fragmentation**: an allowance, a fraction of the tensors' bytes (assumed; overridable).

The stages compared are the first (embedding, most micro-batches in flight), the second (the
busiest middle stage: with Llama 3's balance it has one layer more than the first) and the
last (output projection and logits). Every input may be a numpy array: thousands of layouts
are evaluated in one call, and a scalar call is the same code (its fields come back as
floats). `fits` says which layouts fit; `require_fit` refuses one that does not, with the
gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from scaling.model import activations as act
from scaling.hardware import datasheets
from scaling.errors import DataError, UnknownNameError
from scaling.model.config import ModelConfig

GIB = 2 ** 30

#: Bytes per parameter of each optimizer recipe: the weights the GEMMs read, the gradients,
#: the optimizer state (FP32 master weights and Adam's two moments), and ``step_copy``, the
#: FP32 copies of the gradients the optimizer step makes of each parameter it updates (after
#: the backward, when no activations are held: `memory_breakdown` takes the larger of the two
#: moments).
OPTIMIZERS = {
    "adam": {"weights": 2, "gradients": 2, "optimizer": 12, "step_copy": 0,
             "source": "Rajbhandari et al. 2019 (ZeRO, arXiv 1910.02054), Sec. 3.1: BF16/FP16 "
                       "weights and gradients (2 + 2 bytes), FP32 master weights, momentum and "
                       "variance (K = 12): 16 bytes per parameter"},
    "adam-fp32-grads": {"weights": 2, "gradients": 4, "optimizer": 12, "step_copy": 0,
                        "source": "Megatron-LM megatron/training/theoretical_memory_usage.py: "
                                  "BF16 weights, FP32 main gradients, FP32 main weights and "
                                  "Adam states, 18 bytes per parameter; Llama 3 (arXiv "
                                  "2407.21783) Sec. 3.3.2 accumulates and reduce-scatters "
                                  "gradients in FP32"},
    "adam-half-grads": {"weights": 2, "gradients": 2, "optimizer": 12, "step_copy": 4,
                        "source": "Megatron-LM's FP16 optimizer without "
                                  "--accumulate-allreduce-grads-in-fp32 (its default for "
                                  "--fp16; megatron/arguments.py forces the flag for --bf16 "
                                  "only): 16-bit weights and gradient buffer, FP32 main weights "
                                  "and Adam states, 16 bytes per parameter through the "
                                  "backward; the step then makes an FP32 copy of each gradient "
                                  "(megatron/optimizer/optimizer.py, "
                                  "_copy_model_grads_to_main_grads: grad.float(), from commit "
                                  "de7dc40f of Aug 2021 on), 4 "
                                  "bytes more per parameter, when the activations are freed"},
}
DEFAULT_OPTIMIZER = "adam-fp32-grads"
#: The optimizer recipe of each precision the step model reduces gradients in
#: (`scaling.model.step.GRAD_REDUCE_BYTES` is read from it): the buffer reduced is the buffer
#: kept.
GRAD_REDUCE_OPTIMIZER = {"fp32": "adam-fp32-grads", "half": "adam-half-grads"}

#: The fixed reserve, GiB per GPU, by what holds it.
RESERVED_GIB = {
    "cuda_context": (0.92, "ml-engineering training/performance/README.md (commit 744d01e1), "
                           "'Preloaded CUDA kernels memory usage': 0.92 GiB with eager module "
                           "loading, PyTorch 2.1.1 (0.47 GiB lazy)"),
    "nccl": (1.5, "ml-engineering, same page, 'torch.distributed memory usage': the first "
                  "collective added 1.5 GiB (0.55 to 2.00 GiB) on 2 GPUs; assumed the same per "
                  "process at scale ('the more GPUs the higher')"),
    "not_visible": (0.85, "ml-engineering, same page: torch.cuda.mem_get_info reports 79.15 "
                          "GiB total on an 80 GB GPU; the same 0.85 GiB assumed on every "
                          "device"),
}
#: Allocator fragmentation, as a fraction of the bytes in tensors. ASSUMED: no published
#: default exists; the ZeRO paper (Sec. 3.2) saw out-of-memory errors "with over 30% of
#: memory still available in some extreme cases", and PyTorch's expandable segments reduce
#: it; 5% is flopcast's assumption for a tuned production run.
FRAGMENTATION = 0.05
FRAGMENTATION_SOURCE = ("assumed: 5% of the tensors' bytes (no published default; ZeRO, "
                        "arXiv 1910.02054, Sec. 3.2 reports >30% lost in extreme cases)")
BALANCES = ("llama3", "uniform")


@dataclass(frozen=True)
class MemoryOptions:
    """What the layout does not say: the optimizer recipe, the attention kernel, FP8
    activations, how layers are placed on pipeline stages (``llama3``: the embedding and the
    output projection each take one layer's place on the first and last stage, Llama 3
    Sec. 3.3.2; ``uniform``: Megatron-LM's equal layer counts, the embedding on the first
    stage and the output projection on the last), the routed-token factor (1: balanced
    routing), and the allowances."""

    optimizer: str = DEFAULT_OPTIMIZER
    flash_attention: bool = True
    fp8_gemm_inputs: bool = False
    balance: str = "llama3"
    routed_token_factor: float = 1.0
    fragmentation: float = FRAGMENTATION
    reserved_gib: float = sum(v for v, _ in RESERVED_GIB.values())

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError("optimizer recipe", self.optimizer, OPTIMIZERS)
        if self.balance not in BALANCES:
            raise UnknownNameError("pipeline balance", self.balance, BALANCES)
        for key in ("routed_token_factor", "fragmentation", "reserved_gib"):
            value = getattr(self, key)
            if not np.isfinite(value) or value < 0:
                raise DataError(f"memory option {key} must be finite and >= 0, got {value!r}")


#: The terms of a breakdown, in the order they are printed, and their names for people.
TERMS = {"weights_bytes": "weights", "gradients_bytes": "gradients",
         "optimizer_bytes": "optimizer", "expert_bytes": "expert shards",
         "step_copy_bytes": "FP32 gradient copies (optimizer step)",
         "activations_bytes": "activations", "in_flight_bytes": "in-flight micro-batches",
         "logits_bytes": "logits", "buffers_bytes": "buffers",
         "fragmentation_bytes": "fragmentation"}


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per GPU on the worst pipeline stage, by term (floats for one layout, numpy
    arrays for many), at that stage's peak: during the forward and backward, or at the
    optimizer step (``at_optimizer_step``) where the recipe's FP32 gradient copies outweigh
    the activations the backward has freed, and the activation terms are then 0. ``stage``
    is that stage's pipeline rank; ``total_bytes`` sums the terms; ``hbm_bytes`` is the
    device's memory."""

    weights_bytes: object
    gradients_bytes: object
    optimizer_bytes: object
    expert_bytes: object
    step_copy_bytes: object
    activations_bytes: object
    in_flight_bytes: object
    logits_bytes: object
    buffers_bytes: object
    fragmentation_bytes: object
    total_bytes: object
    hbm_bytes: float
    stage: object
    at_optimizer_step: object
    device: str
    model: str
    notes: tuple = ()

    @property
    def fits(self):
        return self.total_bytes <= self.hbm_bytes

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
        out["notes"] = list(self.notes)
        out["fits"] = self.fits.tolist() if isinstance(self.fits, np.ndarray) else self.fits
        return out

    def describe(self) -> str:
        """``needs 1,149 GiB per GPU (weights 95, ...) but the H100 has 80 GiB`` (one
        layout)."""
        if np.ndim(self.total_bytes):
            raise DataError("describe() is for one layout; index the arrays first")
        terms = ", ".join(f"{name} {_gib(getattr(self, key))}" for key, name in TERMS.items()
                          if getattr(self, key) >= 0.05 * GIB)
        verb = "fits" if self.fits else "does not fit"
        return (f"{self.model} {verb}: needs {_gib(self.total_bytes)} GiB per GPU ({terms}) "
                f"and the {self.device} has {_gib(self.hbm_bytes)} GiB")


def _gib(value) -> str:
    gib = float(value) / GIB
    return f"{gib:,.0f}" if gib >= 10 else f"{gib:.1f}"


def fits(breakdown: MemoryBreakdown):
    """True (or a boolean array) where the layout fits the device's memory."""
    return breakdown.fits


def require_fit(breakdown: MemoryBreakdown) -> MemoryBreakdown:
    """The breakdown if its (one) layout fits; else a `DataError` saying what it needs."""
    if not breakdown.fits:
        raise DataError(breakdown.describe().replace(" does not fit: needs", ": needs")
                        .replace(" and the ", " but the ")
                        + "; shard more (tensor or pipeline parallelism, a higher ZeRO "
                          "stage) or recompute activations")
    return breakdown


# -- the step model's layouts -----------------------------------------------------------------

#: The ZeRO stage of the layouts `scaling.model.step` times: Llama 3's FSDP (Sec. 3.3.2) shards the
#: optimizer state and gradients over data parallelism and does not reshard the weights after
#: the forward, which holds memory as ZeRO stage 2 does; it is the pattern the step model's
#: data-parallel term prices (FP32 gradient reduce-scatter, BF16 weight all-gather).
STEP_ZERO = 2
#: The ZeRO stages (Rajbhandari et al. 2019, arXiv 1910.02054): 0 nothing sharded over data
#: parallelism, 1 the optimizer state, 2 also the gradients, 3 also the weights.
ZERO_STAGES = (0, 1, 2, 3)
STEP_ZERO_SOURCE = ("ZeRO stage 2 as Llama 3's FSDP (Llama 3 paper, Sec. 3.3.2: optimizer "
                    "state and gradients sharded, weights not resharded after the forward), "
                    "the data-parallel pattern the step model prices")


def step_memory(config: ModelConfig, hardware, layout: dict, *, precision: str = "bf16",
                options: MemoryOptions | None = None) -> MemoryBreakdown:
    """The memory of a layout as `scaling.model.step.step_time` runs it (``layout``: its keys
    ``tp, pp, dp, seq, micro_batch, micro_batches, interleave`` and optionally
    ``recompute``, ``cp``, ``ep``, ``expert_imbalance``, ``sequence_parallel`` and ``zero``;
    `StepResult.layout` has them): sequence parallelism with tensor parallelism unless
    ``sequence_parallel`` is False (as the step model's communication term does), the ZeRO
    stage ``zero`` (default `STEP_ZERO`), FP8 GEMM inputs kept in FP8 when the GEMMs run in
    FP8 (Transformer Engine saves the FP8 casts), and the step model's expert parallelism:
    ``ep`` ranks of the data-parallel group, each expert split over tensor parallelism
    (``etp = tp``, Megatron-Core's default) and the busiest rank's routed tokens
    ``expert_imbalance`` times the mean. The step model's options that decide bytes held are
    read from the layout too: ``grad_reduce`` picks the optimizer recipe whose gradient buffer
    is reduced (`GRAD_REDUCE_OPTIMIZER`), ``balanced_pipeline`` False places layers as
    Megatron-LM does (``uniform``), and ``attention="materialised"`` keeps the s x s scores."""
    if options is None:
        options = step_memory_options(layout, precision)
    return memory_breakdown(
        config, hardware, tp=layout["tp"], pp=layout["pp"], dp=layout["dp"],
        ep=layout.get("ep", 1), etp=layout["tp"], cp=layout.get("cp", 1),
        micro_batch=layout["micro_batch"], micro_batches=layout["micro_batches"],
        interleave=layout["interleave"], recompute=layout.get("recompute", "none"),
        zero=layout.get("zero", STEP_ZERO), seq=layout["seq"], options=options,
        sequence_parallel=layout.get("sequence_parallel"))


def step_memory_options(layout: dict, precision: str = "bf16") -> MemoryOptions:
    """The memory options of a layout as the step model runs it (see `step_memory`)."""
    grad_reduce = layout.get("grad_reduce")
    if grad_reduce is not None and grad_reduce not in GRAD_REDUCE_OPTIMIZER:
        raise UnknownNameError("gradient reduction precision", grad_reduce,
                               GRAD_REDUCE_OPTIMIZER)
    return MemoryOptions(
        optimizer=GRAD_REDUCE_OPTIMIZER[grad_reduce] if grad_reduce else DEFAULT_OPTIMIZER,
        flash_attention=layout.get("attention", "flash") != "materialised",
        fp8_gemm_inputs=precision == "fp8",
        balance="llama3" if layout.get("balanced_pipeline", True) else "uniform",
        routed_token_factor=layout.get("expert_imbalance", 1.0))


def memory_known(hardware) -> bool:
    """Whether the device's memory is known (a preset, a profile of a recognised device or a
    number of GiB), so a layout can be checked against it."""
    try:
        device_memory(hardware)
    except DataError:
        return False
    return True


# -- the device ---------------------------------------------------------------------------------

def device_memory(hardware) -> tuple[float, str]:
    """(bytes, short name) of the device: a preset name, a `HardwareProfile` of a recognised
    device, or a number of GiB."""
    if isinstance(hardware, (int, float)) and not isinstance(hardware, bool):
        if not hardware > 0:
            raise DataError(f"device memory must be a positive number of GiB, got {hardware!r}")
        return float(hardware) * GIB, f"{hardware:g} GiB device"
    if isinstance(hardware, str):
        name, device = hardware, datasheets.DEVICES.get(hardware, {}).get("device_name", "")
    else:  # a HardwareProfile
        device = hardware.device_name
        name = hardware.name if hardware.name in datasheets.DEVICES else \
            datasheets.preset_for_device(device)
        if name is None:
            raise DataError(f"profile '{hardware.name}' ({device}) is not a recognised device, "
                            f"so its memory is unknown; pass the memory in GiB or a preset")
    gib, _ = datasheets.hbm_gib(name)
    words = [w for w in device.split() if w.upper() not in ("NVIDIA", "AMD", "INSTINCT")]
    return gib * GIB, (words[0] if words else name)


# -- pipeline stages ---------------------------------------------------------------------------

def _stage_layers(config: ModelConfig, pp, v, rank, balance: str):
    """(layers, MoE layers) on pipeline rank ``rank``: its ``v`` chunks are virtual stages
    ``c p + rank``; each virtual stage has ``q`` slots filled in order (``llama3``: slot 0 is
    the embedding, slot L + 1 the output projection; ``uniform``: layers only)."""
    L = config.layers
    extra = 2 if balance == "llama3" else 0
    slots = np.where(pp > 1, L + extra, L)
    q = -(-slots // (pp * v))  # ceil
    offset = np.where((pp > 1) & (extra > 0), 1, 0)  # slot of layer 0
    layers = np.zeros(np.broadcast(pp, v, rank).shape, dtype=np.int64)
    moe = np.zeros_like(layers)
    for c in range(int(np.max(v))):
        j = c * pp + rank
        lo = np.clip(j * q - offset, 0, L)
        hi = np.clip((j + 1) * q - offset, 0, L)
        inside = c < v
        layers = layers + np.where(inside, hi - lo, 0)
        moe = moe + np.where(inside, config.moe_layers_between(lo, hi), 0)
    return layers, moe


def _in_flight(pp, v, rank, micro_batches, group):
    """Micro-batch equivalents of activations pipeline rank ``rank`` holds at its peak."""
    m = np.inf if micro_batches is None else np.asarray(micro_batches, dtype=float)
    n = pp if group is None else np.asarray(group)
    plain = np.minimum(pp - rank, m)
    interleaved = np.minimum(2 * (pp - rank - 1) + (v - 1) * n + 1, m * v) / v
    return np.where(pp == 1, 1.0, np.where(v > 1, interleaved, plain))


# -- parameters on one GPU ---------------------------------------------------------------------

def _attention_local(config: ModelConfig, tp):
    """One attention block's parameters on one GPU of a tensor-parallel group of ``tp``."""
    if config.mla is not None:
        replicated, split = config.mla_params_split()
        return replicated + split / tp
    d, hq = config.d_model, config.heads_q
    hd, hkv = config.head_dim, np.maximum(1, config.heads_kv // tp)
    weights = 2 * d * (hq / tp) * hd + 2 * d * hkv * hd
    bias = ((hq / tp + 2 * hkv) * hd + d) if config.bias else 0
    return weights + bias


def _mlp_local(config: ModelConfig, width, tp):
    bias = ((2 if config.mlp == "swiglu" else 1) * width / tp + config.d_model
            ) if config.bias else 0
    return config.mlp_matmul_params(width) / tp + bias


def _stage_params(config: ModelConfig, tp, ep, etp, layers, moe, first, last, pp):
    """(non-expert, routed-expert, largest layer) parameters of a stage on one GPU."""
    norms = 2 * config.norm_params
    dense_layer = _attention_local(config, tp) + norms + _mlp_local(config, config.dense_width,
                                                                    tp)
    moe_layer = (_attention_local(config, tp) + norms + config.router_params
                 + config.shared_experts * _mlp_local(config, config.d_ffn, tp))
    experts_layer = -(-config.experts // ep) * config.expert_params / etp if config.is_moe \
        else 0 * ep
    table = config.vocab * config.d_model / tp
    positions = config.seq * config.d_model if config.learned_positions else 0
    # A tied output projection needs the embedding table on the last stage too (Megatron-LM
    # keeps a copy there and all-reduces their gradients); with one stage it is the same.
    head = np.where(config.tied_embeddings & (pp == 1), 0, table) + config.norm_params
    dense = ((layers - moe) * dense_layer + moe * moe_layer
             + np.where(first, table + positions, 0) + np.where(last, head, 0))
    largest = np.maximum(np.where(layers > moe, dense_layer, 0),
                         np.where(moe > 0, moe_layer + experts_layer, 0))
    return dense, moe * experts_layer, largest


# -- the breakdown -----------------------------------------------------------------------------

def model_state_bytes(params, zero, shard, optimizer: str = DEFAULT_OPTIMIZER):
    """(weights, gradients, optimizer state) bytes per GPU of ``params`` parameters under
    ZeRO stage ``zero`` over ``shard`` data-parallel ranks (Rajbhandari et al. 2019, Sec. 5:
    stage 1 partitions the optimizer state, 2 the gradients too, 3 the weights too; FSDP is
    stage 3). With ``optimizer="adam"``, 7.5B parameters on 64 ranks give their worked
    example: 120, 31.4, 16.6 and 1.9 GB for stages 0 to 3."""
    if optimizer not in OPTIMIZERS:
        raise UnknownNameError("optimizer recipe", optimizer, OPTIMIZERS)
    per, zero = OPTIMIZERS[optimizer], np.asarray(zero)
    return (params * per["weights"] / np.where(zero >= 3, shard, 1),
            params * per["gradients"] / np.where(zero >= 2, shard, 1),
            params * per["optimizer"] / np.where(zero >= 1, shard, 1))


def _ints(**values):
    out = {}
    for key, value in values.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "iu" or (arr.size and arr.min() < 1):
            if arr.dtype.kind == "f" and np.all(arr == np.round(arr)) and arr.min() >= 1:
                arr = arr.astype(np.int64)
            else:
                raise DataError(f"{key} must be a whole number >= 1, got {value!r}")
        out[key] = arr.astype(np.int64)
    return out


def memory_breakdown(config: ModelConfig, hardware, *, tp=1, pp=1, dp=1, cp=1, ep=1, etp=1,
                     micro_batch=1, micro_batches=None, interleave=1, microbatch_group=None,
                     recompute="none", zero=0, sequence_parallel=None, seq=None,
                     options: MemoryOptions = MemoryOptions()) -> MemoryBreakdown:
    """Bytes per GPU of a training layout (see the module docstring). Every layout argument
    may be a numpy array; they broadcast together. ``micro_batches`` is per pipeline and step
    (None: at least as many as the schedule holds); ``sequence_parallel`` defaults to
    ``tp > 1``; ``seq`` to the model's."""
    scalar = all(np.ndim(x) == 0 for x in (tp, pp, dp, cp, ep, etp, micro_batch,
                                            micro_batches, interleave, recompute, zero,
                                            sequence_parallel, seq))
    n = _ints(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, etp=etp, micro_batch=micro_batch,
              interleave=interleave, seq=config.seq if seq is None else seq)
    tp, pp, dp, cp, ep, etp = (n[k] for k in ("tp", "pp", "dp", "cp", "ep", "etp"))
    v, seq, b = np.where(pp > 1, n["interleave"], 1), n["seq"], n["micro_batch"]
    zero = np.asarray(zero)
    if zero.size and (zero.min() < min(ZERO_STAGES) or zero.max() > max(ZERO_STAGES)):
        raise DataError(f"ZeRO stage must be one of {ZERO_STAGES}, got {zero!r}")
    codes = act.recompute_codes(recompute)
    sp = tp > 1 if sequence_parallel is None else np.asarray(sequence_parallel, dtype=bool)
    hbm, device = device_memory(hardware)
    o = options
    per = OPTIMIZERS[o.optimizer]
    kw = dict(tp=tp, cp=cp, seq=seq, micro_batch=b, sequence_parallel=sp)
    layer_kw = dict(kw, recompute=codes, etp=etp, flash_attention=o.flash_attention,
                    fp8_gemm_inputs=o.fp8_gemm_inputs,
                    routed_token_factor=o.routed_token_factor)
    kept, working = {}, {}
    for kind in config.layer_kinds():
        kept[kind], working[kind] = act.layer_bytes(config, kind, **layer_kw)
    zero_kept = 0 * tp
    embed, head = act.embedding_bytes(config, **kw), act.head_bytes(config, **kw)
    logits = act.logits_bytes(config, tp=tp, cp=cp, seq=seq, micro_batch=b)

    shard = dp * cp  # the data-parallel group of non-expert parameters
    expert_shard = np.maximum(1, dp * cp * tp / (ep * etp))
    frag, reserved = o.fragmentation, o.reserved_gib * GIB
    best = None
    for rank in (0 * pp, np.minimum(1, pp - 1), pp - 1):
        layers, moe = _stage_layers(config, pp, v, rank, o.balance)
        first, last = rank == 0, rank == pp - 1
        dense_p, expert_p, largest = _stage_params(config, tp, ep, etp, layers, moe, first,
                                                   last, pp)
        weights, grads, optim = model_state_bytes(dense_p, zero, shard, o.optimizer)
        expert_states = model_state_bytes(expert_p, zero, expert_shard, o.optimizer)
        experts = sum(expert_states)
        # The step's FP32 gradient copies: one per parameter this rank's optimizer updates,
        # sharded as the optimizer state is.
        step_copy = (optim + expert_states[2]) * per["step_copy"] / per["optimizer"]
        per_mb = (sum(kept.get(k, zero_kept) * c for k, c in
                      (("dense", layers - moe), ("moe", moe)))
                  + np.where(first, embed, 0) + np.where(last, head, 0))
        rebuilt = np.maximum(np.where(layers > moe, working.get("dense", zero_kept), 0),
                             np.where(moe > 0, working.get("moe", zero_kept), 0))
        held = _in_flight(pp, v, rank, micro_batches, microbatch_group)
        stage_logits = np.where(last, logits, 0)
        transient = _transient_bytes(config, per, zero, largest, moe, kw, o)
        states = weights + grads + optim + experts
        tensors = states + held * per_mb + rebuilt + stage_logits + transient
        at_step = states + step_copy > tensors
        tensors = np.where(at_step, states + step_copy, tensors)
        total = tensors * (1 + frag) + reserved
        during = np.logical_not(at_step)
        stage = dict(weights_bytes=weights, gradients_bytes=grads, optimizer_bytes=optim,
                     expert_bytes=experts, step_copy_bytes=np.where(at_step, step_copy, 0),
                     activations_bytes=np.where(during, per_mb + rebuilt, 0),
                     in_flight_bytes=np.where(during, (held - 1) * per_mb, 0),
                     logits_bytes=np.where(during, stage_logits, 0),
                     buffers_bytes=np.where(during, transient, 0) + reserved,
                     fragmentation_bytes=tensors * frag, total_bytes=total,
                     stage=rank + 0 * total, at_optimizer_step=at_step)
        if best is None:
            best = stage
        else:
            worse = total > best["total_bytes"]
            best = {k: np.where(worse, stage[k], best[k]) for k in best}
    if scalar:
        best = {k: (int(v) if k == "stage" else bool(v) if k == "at_optimizer_step"
                    else float(v)) for k, v in best.items()}
    notes = tuple(f"{name}: {source}" for name, (_, source) in RESERVED_GIB.items()) + (
        f"fragmentation: {FRAGMENTATION_SOURCE}" if o.fragmentation == FRAGMENTATION
        else f"fragmentation: given {o.fragmentation:g} of the tensors' bytes",
        f"optimizer: {per['source']}")
    return MemoryBreakdown(**best, hbm_bytes=hbm, device=device, model=config.name,
                           notes=notes)


def _transient_bytes(config, per, zero, largest_layer, moe, kw, o):
    """Buffers one layer at a time needs during the step: ZeRO-2/3's unsharded gradients of
    the layer being reduce-scattered; ZeRO-3's gathered weights of the layer computing and the
    next one (PyTorch FSDP notes, "FSDP Prefetch Nuances": the next all-gather overlaps this
    layer's compute); the MoE dispatch's send buffer (top-k copies of the local tokens);
    context parallelism's all-gathered keys and values of one layer (Llama 3 Sec. 3.3.2)."""
    tp, cp, seq, b, sp = (kw[k] for k in ("tp", "cp", "seq", "micro_batch",
                                          "sequence_parallel"))
    grads = np.where(zero >= 2, largest_layer * per["gradients"], 0)
    gathered = np.where(zero >= 3, 2 * largest_layer * per["weights"], 0)
    tokens = seq * b / cp / np.where(sp, tp, 1)
    dispatch = np.where(moe > 0, tokens * config.experts_per_token * o.routed_token_factor
                        * config.d_model * act.BF16, 0)
    kv_heads = config.heads_q if config.mla else config.heads_kv
    kv_local = np.maximum(1, kv_heads // tp)
    kv = np.where(cp > 1, seq * b * kv_local * (config.qk_head_dim + config.v_head_dim)
                  * act.BF16, 0)
    return grads + gathered + dispatch + kv


__all__ = ["MemoryBreakdown", "MemoryOptions", "memory_breakdown", "model_state_bytes",
           "GRAD_REDUCE_OPTIMIZER", "step_memory_options",
           "step_memory", "memory_known", "STEP_ZERO", "STEP_ZERO_SOURCE", "ZERO_STAGES",
           "fits", "require_fit",
           "device_memory", "OPTIMIZERS", "RESERVED_GIB", "FRAGMENTATION", "TERMS", "GIB"]
