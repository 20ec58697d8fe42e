"""Published training runs the planner is checked against, as data, with their citations.

Four groups, each with the tolerance a prediction must meet:

* ``llama3-table4``: Llama 3 405B on H100 (Dubey et al. 2024, arXiv 2407.21783, Table 4),
  within 10%;
* ``megatron-table1``: the GPT rows of Megatron-LM on A100 (Narayanan et al. 2021, SC'21,
  arXiv 2104.04473, Table 1; micro-batch sizes and interleaving from the authors'
  ``examples/sc21/run_table_1.sh``), within 15%;
* ``megatron-2022``: Megatron-LM's measured iterations on A100 of Korthikanti et al. 2022
  (arXiv 2205.05198, Table 5, with the configurations of its Table 3), full recomputation and
  sequence parallelism with selective recomputation, reported only;
* ``llama4-behemoth``: Llama 4 Behemoth, FP8 on 32K GPUs at 390 TFLOP/s per GPU (Meta's
  Llama 4 announcement, as quoted); its layout is not published, so it is reported only.

A run's layout is as published: a value the source does not give is None, with the reason
in ``layout_sources``; a derived one (DP = GPUs / (TP x PP)) says so. Each run says which
FLOPs its throughput counts (`FLOP_CONVENTIONS`), and `convert_tflops` turns it into another
convention, flopcast's by default: **6 FLOPs per active matmul parameter per token plus the
attention term with causal halving** (`scaling.model.config.ModelConfig.flops_per_token`, DESIGN.md
"FLOP counting"). The conversion scales by the ratio of FLOPs per token of the two
conventions for the run's model and sequence length; the work done in a second is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from scaling.errors import DataError, UnknownNameError
from scaling.model.config import ModelConfig, model_preset

NARAYANAN = "Narayanan et al. 2021 (SC'21, arXiv 2104.04473)"
SC21_SCRIPT = ("NVIDIA/Megatron-LM examples/sc21/run_table_1.sh and CONFIG.sh (the authors' "
               "reproduction script)")
MEGATRON_2021_ATTENTION = (
    "materialised s x s scores: the 2021 Megatron-LM computed attention as a batched GEMM "
    "(baddbmm), its fused causal scale-mask-softmax CUDA kernel (reading the lower triangle, "
    "writing the whole matrix: megatron/fused_kernels/scaled_upper_triang_masked_softmax.h), "
    "attention dropout and a batched GEMM (megatron/model/transformer.py, ParallelAttention); "
    "FlashAttention came later (Dao et "
    "al. 2022, arXiv 2205.14135); Korthikanti et al. 2022 (arXiv 2205.05198), Sec. 4.1, "
    "counts the 5 a s^2 b bytes of scores Megatron stored per layer")
LLAMA3 = "Llama 3 paper (Dubey et al. 2024, arXiv 2407.21783)"
LLAMA3_ATTENTION = (
    "ASSUMED FlashAttention-2-class attention: the paper does not name its attention kernel; "
    "the 405B model was pre-trained before FlashAttention-3 was released (Shah et al., arXiv "
    "2407.08608, July 2024, the paper's own month), and FlashAttention-2 was the released "
    "fused kernel for H100 then")

#: The FLOP conventions published throughputs use, and what each counts per token.
FLOP_CONVENTIONS = {
    "flopcast": "6 x active matmul parameters + attention with causal halving "
                "(3 x 4 x seq x heads x head_dim x layers / 2); ModelConfig.flops_per_token",
    "model-full-attention": "6 x matmul parameters + attention without causal halving, "
                            "12 x layers x heads x head_dim x seq (PaLM, Chowdhery et al. "
                            "2022, App. B, '6N + 12LHQT'; Korthikanti et al. 2022, Eq. (7))",
    "megatron-hardware": "Narayanan et al. 2021, Eq. (3): 96 B s l h^2 (1 + s/6h + V/16lh) per "
                         "iteration, four forward passes per layer (forward, backward x2, the "
                         "recomputed forward) and three for the logit layer; attention without "
                         "causal halving",
    "6n": "6 x total parameters, no attention term",
    "unstated": "the source does not say which FLOPs it counts",
}

#: Tolerance of each group: a prediction within this fraction of the published figure passes;
#: None: reported only.
GROUP_TOLERANCE = {"llama3-table4": 0.10, "megatron-table1": 0.15, "megatron-2022": None,
                   "llama4-behemoth": None}
LAYOUT_KEYS = ("tp", "pp", "dp", "cp", "ep", "micro_batch", "interleave", "seq",
               "global_batch", "recompute", "sequence_parallel", "balanced_pipeline", "zero",
               "grad_reduce", "grad_overlap", "grad_accumulation", "tp_backward_overlap")


@dataclass(frozen=True)
class ValidationRun:
    """One published run: what ran, on what, laid out how, and the throughput it reported.
    ``global_batch`` is in sequences; ``published_tflops`` is per GPU in the ``flops``
    convention; ``flops_label`` says whether that convention is stated by the source
    (published) or flopcast's reading of it (assumed)."""

    name: str
    group: str
    citation: str
    model: str
    hardware: str
    gpus: int
    layout: dict
    layout_sources: dict
    precision: str
    published_tflops: float
    flops: str
    flops_label: str
    flops_source: str
    published_params: float | None = None
    hardware_source: str = ""
    notes: tuple = field(default_factory=tuple)
    #: For a report-only run whose layout is not published: the layout flopcast assumes
    #: (keys of ``layout``) and the rule that chose it; never used where a value is published.
    assumed_layout: dict = field(default_factory=dict)
    assumed_layout_rule: str = ""
    #: How the run computed attention (`scaling.model.step.ATTENTION_IMPLS`) and the source.
    attention: str = "flash"
    attention_source: str = "FlashAttention-class fused attention (the step model's default)"

    @property
    def tolerance(self) -> float | None:
        return GROUP_TOLERANCE[self.group]

    def config(self) -> ModelConfig:
        """The run's model at the run's sequence length."""
        config = model_preset(self.model)
        seq = self.layout.get("seq")
        return config if seq is None else replace(config, seq=seq)

    def to_dict(self) -> dict:
        return {"name": self.name, "group": self.group, "citation": self.citation,
                "model": self.model, "hardware": self.hardware, "gpus": self.gpus,
                "layout": dict(self.layout), "layout_sources": dict(self.layout_sources),
                "precision": self.precision, "published_tflops": self.published_tflops,
                "flops": self.flops, "flops_label": self.flops_label,
                "flops_source": self.flops_source, "published_params": self.published_params,
                "tolerance": self.tolerance, "hardware_source": self.hardware_source,
                "attention": self.attention, "attention_source": self.attention_source,
                "notes": list(self.notes), "assumed_layout": dict(self.assumed_layout),
                "assumed_layout_rule": self.assumed_layout_rule}


# -- FLOPs per token by convention ----------------------------------------------------------

def flops_per_token(config: ModelConfig, convention: str, seq: int | None = None) -> float:
    """Training FLOPs per token of ``config`` at ``seq`` as ``convention`` counts them."""
    if convention not in FLOP_CONVENTIONS:
        raise UnknownNameError("FLOP convention", convention, FLOP_CONVENTIONS)
    if convention == "unstated":
        raise DataError("the source does not say which FLOPs it counts, so its throughput "
                        "cannot be converted; report it as published")
    if convention == "flopcast":
        return config.flops_per_token(seq)
    if convention == "6n":
        return 6.0 * config.params
    full_attention = config.attention_flops_per_token(seq, causal=False)
    if convention == "model-full-attention":
        return 6.0 * config.matmul_params + full_attention
    # megatron-hardware: the layers' matmuls and attention four times a forward (2 FLOPs per
    # weight, 4 s h per layer forward), the logit layer three times (6 V h).
    head = config.vocab * config.d_model
    return 8.0 * (config.matmul_params - head) + 6.0 * head + full_attention * 4 / 3


def convert_tflops(run: ValidationRun, convention: str = "flopcast") -> float:
    """The run's per-GPU throughput counted in ``convention`` (flopcast's by default)."""
    config = run.config()
    return run.published_tflops * (flops_per_token(config, convention)
                                   / flops_per_token(config, run.flops))


def tokens_per_s_per_gpu(run: ValidationRun) -> float:
    """Tokens per second per GPU the published throughput implies."""
    return run.published_tflops * 1e12 / flops_per_token(run.config(), run.flops)


def iteration_time_s(run: ValidationRun) -> float:
    """Seconds per optimizer step the published throughput implies (Narayanan Eq. (4)'s
    arithmetic: FLOPs per iteration over GPUs x per-GPU rate)."""
    batch, seq = run.layout["global_batch"], run.layout["seq"]
    if batch is None or seq is None:
        raise DataError(f"run '{run.name}' has no published batch and sequence length")
    return batch * seq / (run.gpus * tokens_per_s_per_gpu(run))


# -- the runs ---------------------------------------------------------------------------------

SC21_COMMIT = "NVIDIA/Megatron-LM commit de7dc40f (Aug 2021, 'scripts for sc21')"


def _megatron(params_b: float, tp: int, pp: int, gpus: int, batch: int, tflops: float,
              mbs: int, layers_per_chunk: int | None, ddp: str, name: str) -> ValidationRun:
    model = model_preset(name)
    dp = gpus // (tp * pp)
    v = 1 if layers_per_chunk is None else model.layers // (pp * layers_per_chunk)
    row = f"{NARAYANAN}, Table 1, row {params_b:g}B"
    interleave_source = (
        f"derived from {SC21_SCRIPT}: --num-layers-per-virtual-pipeline-stage "
        f"{layers_per_chunk}, v = layers / (PP x layers per chunk)" if layers_per_chunk else
        f"{SC21_SCRIPT} sets no virtual stages for this row (the paper's Sec. 5.1 says the "
        f"interleaved schedule was used for Table 1)")
    return ValidationRun(
        name=f"megatron-table1-{name.removeprefix('megatron-gpt-')}", group="megatron-table1",
        citation=row, model=name, hardware="a100-80gb", gpus=gpus,
        layout={"tp": tp, "pp": pp, "dp": dp, "cp": 1, "ep": 1, "micro_batch": mbs,
                "interleave": v, "seq": 2048, "global_batch": batch, "recompute": "full",
                "sequence_parallel": False, "balanced_pipeline": False, "zero": 0,
                "grad_reduce": "half", "grad_overlap": ddp == "torch",
                "grad_accumulation": "unfused", "tp_backward_overlap": False},
        layout_sources={
            "tp": row, "pp": row, "dp": "derived: GPUs / (TP x PP)", "cp": "none used",
            "ep": "dense model", "micro_batch": f"{SC21_SCRIPT}: MBS={mbs}",
            "interleave": interleave_source,
            "seq": f"{NARAYANAN}, Sec. 5.1: sequence length 2048", "global_batch": row,
            "recompute": f"{SC21_SCRIPT}: --checkpoint-activations (full recomputation); "
                         f"Eq. (3) counts the recomputed forward",
            "sequence_parallel": "none: Megatron-LM's sequence parallelism came a year later "
                                 "(Korthikanti et al. 2022, arXiv 2205.05198); the 2021 "
                                 "tensor parallelism all-reduces (Narayanan et al. 2021, "
                                 "Sec. 2.3) and runs LayerNorm and dropout on every rank",
            "zero": f"0: {NARAYANAN}, Sec. 2.1 and 5.2: data parallelism all-reduces the "
                    f"gradients, each replica keeps its whole optimizer state (ZeRO appears "
                    f"only as the compared alternative; Megatron-LM's distributed optimizer "
                    f"came later)",
            "balanced_pipeline": "no: Megatron-LM of 2021 gives every stage num_layers / PP "
                                 "layers, the embedding to the first and the output layer and "
                                 "loss to the last (megatron/model/transformer.py, "
                                 "ParallelTransformer; megatron/model/gpt_model.py), the "
                                 "imbalance Llama 3 later removed (arXiv 2407.21783, Sec. "
                                 "3.3.2)",
            "grad_reduce": f"half: {SC21_SCRIPT} set --fp16 and not "
                           f"--accumulate-allreduce-grads-in-fp32, so the FP16 parameters' own "
                           f"gradients are all-reduced ({SC21_COMMIT}, "
                           f"megatron/model/distributed.py, allreduce_gradients)",
            "grad_accumulation": f"unfused: {SC21_COMMIT} sums micro-batches' gradients "
                                 f"with autograd into each FP16 parameter's .grad (megatron/"
                                 f"mpu/layers.py has no fused weight-gradient accumulation; "
                                 f"--gradient-accumulation-fusion came in Feb 2022, commit "
                                 f"83b1e42f)",
            "tp_backward_overlap": (
                f"no: {SC21_COMMIT} runs every tensor-parallel collective on the critical "
                f"path (megatron/mpu/layers.py, ColumnParallelLinear: the input gradient's "
                f"all-reduce is copy_to_tensor_model_parallel_region's backward, after the "
                f"layer's backward GEMMs; the overlap came with the merge b462d254, Sep 2021)"
                if tp > 1 else "no tensor parallelism"),
            "grad_overlap": (
                f"yes: {SC21_SCRIPT} sets DDP=torch for this row: PyTorch DDP reduces "
                f"gradient buckets during the backward, Megatron-LM skipping every micro-batch "
                f"but the last with no_sync ({SC21_COMMIT}, megatron/schedules.py)"
                if ddp == "torch" else
                f"no: {SC21_SCRIPT} sets DDP=local for this row: Megatron-LM's own data "
                f"parallelism all-reduces after the whole backward ({SC21_COMMIT}, "
                f"megatron/training.py, train_step)")},
        precision="fp16", published_tflops=tflops, flops="megatron-hardware",
        flops_label="published",
        flops_source=f"{NARAYANAN}, Sec. 5.1 and Eq. (3): hardware FLOPs including the "
                     f"recomputed forward pass",
        published_params=params_b * 1e9,
        hardware_source=f"{NARAYANAN}, Sec. 5: Selene, 8 x 80 GB A100 per node on NVSwitch, "
                        f"8 x 200 Gb/s HDR InfiniBand per node",
        notes=(f"{SC21_SCRIPT}: --fp16 (A100 FP16 and BF16 dense peaks are both 312 TFLOP/s)",
               "throughput end to end: data loading, optimizer, communication and logging "
               "included (Sec. 5.1)"),
        attention="materialised", attention_source=MEGATRON_2021_ATTENTION)


#: Narayanan et al. 2021, Table 1 (params, TP, PP, GPUs, batch, TFLOP/s per GPU), with the
#: micro-batch size, layers per virtual stage and data-parallel implementation (DDP) of the
#: authors' script.
_MEGATRON_ROWS = (
    (1.7, 1, 1, 32, 512, 137, 16, None, "torch", "megatron-gpt-1.7b"),
    (3.6, 2, 1, 64, 512, 138, 16, None, "torch", "megatron-gpt-3.6b"),
    (7.5, 4, 1, 128, 512, 142, 16, None, "torch", "megatron-gpt-7.5b"),
    (18.4, 8, 1, 256, 1024, 135, 8, None, "torch", "megatron-gpt-18.4b"),
    (39.1, 8, 2, 512, 1536, 138, 4, None, "local", "megatron-gpt-39.1b"),
    (76.1, 8, 4, 1024, 1792, 140, 2, 5, "local", "megatron-gpt-76.1b"),
    (145.6, 8, 8, 1536, 2304, 148, 2, 5, "local", "megatron-gpt-145.6b"),
    (310.1, 8, 16, 1920, 2160, 155, 1, 3, "local", "megatron-gpt-310.1b"),
    (529.6, 8, 35, 2520, 2520, 163, 1, 1, "local", "megatron-gpt-529.6b"),
    (1008.0, 8, 64, 3072, 3072, 163, 1, None, "local", "megatron-gpt-1t"),
)

_LLAMA3_TABLE = f"{LLAMA3}, Table 4"
_LLAMA3_FLOPS = (f"{LLAMA3}, Sec. 3.3.2: 'BF16 Model FLOPs Utilization (MFU; Chowdhery et al. "
                 f"(2023))'; the paper prints no formula, so PaLM's (App. B: 6N + 12LHQT, "
                 f"attention without causal halving) is assumed")


def _llama3(name: str, gpus: int, cp: int, dp: int, seq: int, per_dp: int, tflops: float,
            recompute: str | None) -> ValidationRun:
    row = f"{_LLAMA3_TABLE}, row {gpus:,} GPUs" + (f", {seq:,}-token sequences" if cp > 1
                                                    else "")
    return ValidationRun(
        name=name, group="llama3-table4", citation=row, model="llama3-405b",
        hardware="h100-sxm", gpus=gpus,
        layout={"tp": 8, "pp": 16, "dp": dp, "cp": cp, "ep": 1, "micro_batch": None,
                "interleave": None, "seq": seq, "global_batch": dp * per_dp,
                "recompute": recompute, "sequence_parallel": None,
                "balanced_pipeline": True, "zero": 2, "grad_reduce": "fp32",
                "grad_overlap": None, "grad_accumulation": None,
                "tp_backward_overlap": None},
        layout_sources={
            "tp": row, "pp": row, "cp": row, "ep": "dense model", "seq": row,
            "dp": row + (" (DP 8 as in the v3 PDF; a v1 conversion prints 4, which would give "
                         "8,192 GPUs)" if cp > 1 else ""),
            "micro_batch": "not published",
            "balanced_pipeline": f"{LLAMA3}, Sec. 3.3.2: one Transformer layer fewer on the "
                                 f"first and last stages to balance the embedding and the "
                                 f"output layer",
            "zero": f"2: {LLAMA3}, Sec. 3.3.2: FSDP shards the optimizer state and the "
                    f"gradients and does not reshard the weights after the forward",
            "grad_reduce": f"fp32: {LLAMA3}, Sec. 3.3.2 (numerical stability): gradients "
                           f"accumulated and reduce-scattered in FP32",
            "grad_overlap": "not published: the step model's default (reduced after the "
                            "backward), assumed",
            "grad_accumulation": f"not published: {LLAMA3}, Sec. 3.3.2 accumulates in FP32 "
                                 f"without saying how; the step model's default (fused into "
                                 f"the weight-gradient GEMM), assumed",
            "sequence_parallel": "not published: Megatron-style tensor parallelism with "
                                 "sequence parallelism, the step model's default, assumed",
            "tp_backward_overlap": "not published: the step model's default (Megatron-LM's "
                                   "backward overlap of the column-parallel collectives), "
                                   "assumed",
            "interleave": f"not published: {LLAMA3}, Sec. 3.3.2 uses an interleaved schedule "
                          f"with V stages per rank and a tunable number N of contiguous "
                          f"micro-batches, values not given",
            "global_batch": f"{row}: DP x batch size per DP ({per_dp}) sequences = 16M tokens",
            "recompute": (f"{LLAMA3}, Sec. 3.3.2: 'we could pre-train Llama 3 on sequences of "
                          f"8K tokens without activation checkpointing'") if recompute else
                         "not published for the long-context stage"},
        precision="bf16", published_tflops=tflops, flops="model-full-attention",
        flops_label="assumed", flops_source=_LLAMA3_FLOPS, published_params=405e9,
        hardware_source=f"{LLAMA3}, Sec. 3.3.1: H100 80GB HBM3 at 700 W, 8 GPUs per server "
                        f"on NVLink, 400 Gb/s RoCE between GPUs",
        notes=("data parallelism is FSDP: optimizer state and gradients sharded, weights "
               "not resharded after the forward (Sec. 3.3.2)",),
        attention="flash2", attention_source=LLAMA3_ATTENTION)


KORTHIKANTI = "Korthikanti et al. 2022 (arXiv 2205.05198)"
KORTHIKANTI_CONFIGS = (f"{KORTHIKANTI}, Table 3 (model configurations: heads, hidden size, "
                       f"layers, TP, PP, GPUs, global and micro-batch size)")
KORTHIKANTI_INTERLEAVE = (f"{KORTHIKANTI}, Sec. 6: 'We use the interleaving schedule with three "
                          f"interleaving stages (m = 3) for the 175B and 530B models'")

KORTHIKANTI_OVERLAP = (f"yes: {KORTHIKANTI}, Sec. 4.2.2 overlaps the sequence-parallel "
                       f"backward's all-gather and reduce-scatter with the GEMMs; without "
                       f"sequence parallelism, Megatron-LM of 2022 overlaps the input "
                       f"gradient's all-reduce with the weight-gradient GEMM unless "
                       f"--no-async-tensor-model-parallel-allreduce (NVIDIA/Megatron-LM "
                       f"7fccd6a1, Jun 2022, megatron/arguments.py and megatron/mpu/layers.py)")


def _korthikanti(size: str, model: str, tp: int, pp: int, gpus: int, batch: int, mbs: int,
                 interleave: int, mode: str, seconds: float) -> ValidationRun:
    """A measured Megatron-LM iteration of 2022 on A100 (Korthikanti et al. 2022, Table 5),
    reported only."""
    config = model_preset(model)
    full = mode == "full"
    flops = "model-full-attention"
    tflops = batch * 2048 * flops_per_token(config, flops) / (seconds * gpus) / 1e12
    schedule = ("full recomputation" if full
                else "sequence parallelism with selective recomputation")
    where = f"{KORTHIKANTI}, Table 5, {size} model, {schedule}"
    return ValidationRun(
        name=f"megatron-2022-{size.lower()}-{mode}", group="megatron-2022", citation=where,
        model=model, hardware="a100-80gb", gpus=gpus,
        layout={"tp": tp, "pp": pp, "dp": gpus // (tp * pp), "cp": 1, "ep": 1,
                "micro_batch": mbs, "interleave": interleave, "seq": 2048,
                "global_batch": batch, "recompute": "full" if full else "selective",
                "sequence_parallel": not full, "balanced_pipeline": False, "zero": 0,
                "grad_reduce": "half", "grad_overlap": None, "grad_accumulation": None,
                "tp_backward_overlap": True},
        layout_sources={
            **{k: KORTHIKANTI_CONFIGS for k in ("tp", "pp", "global_batch", "micro_batch")},
            **{k: where for k in ("recompute", "sequence_parallel")},
            "dp": f"derived: GPUs / (TP x PP) = 1; {KORTHIKANTI_CONFIGS}: 'no data "
                  f"parallelism is used in our evaluations'",
            "cp": "none used", "ep": "dense model",
            "seq": f"{KORTHIKANTI}, Sec. 6: sequence length 2048, vocabulary 51200",
            "interleave": (KORTHIKANTI_INTERLEAVE if interleave > 1 else
                           f"1: {KORTHIKANTI_INTERLEAVE}, so not for this one"
                           + (" (one stage)" if pp == 1 else "")),
            "balanced_pipeline": "no: Megatron-LM's layers / PP per stage, the output layer "
                                 "and loss on the last",
            "zero": "0: one data-parallel replica, nothing to shard",
            "grad_reduce": ("half, assumed: the 2022 runs' flags are not published; "
                            "Megatron-LM's default under --fp16 keeps FP16 gradients "
                            "(megatron/arguments.py forces --accumulate-allreduce-grads-in-"
                            "fp32 for --bf16 only). With one data-parallel replica nothing is "
                            "reduced: it sets the gradients' bytes in memory"),
            "grad_overlap": "no data parallelism",
            "tp_backward_overlap": KORTHIKANTI_OVERLAP,
            "grad_accumulation": "not published: the step model's default (fused; Megatron-"
                                 "LM's --gradient-accumulation-fusion, Feb 2022), assumed"},
        precision="fp16", published_tflops=tflops, flops=flops, flops_label="assumed",
        flops_source=(f"{where}: a measured iteration of {seconds:g} s, written as model "
                      f"FLOPs per GPU per second; any one convention gives the same error, "
                      f"the ratio of iteration times"),
        published_params=config.params,
        hardware_source=(f"{KORTHIKANTI}, Sec. 6: Selene, 8 NVIDIA 80GB A100 GPUs per node on "
                         f"NVLink and NVSwitch, eight 200 Gb/s HDR InfiniBand HCAs per node; "
                         f"'mixed precision' read as FP16, the 2022 Megatron-LM's --fp16"),
        notes=(f"published: {seconds:g} s per iteration of {batch} sequences of 2,048",
               "calculon-ai/calculon, calculon/megatron/validation.py, transcribes the same "
               "eight times"),
        attention="materialised", attention_source=MEGATRON_2021_ATTENTION)


#: Korthikanti et al. 2022: Table 3's configurations (size, model, TP, PP, GPUs, global batch,
#: micro-batch), Sec. 6's interleaving, and Table 5's measured seconds per iteration with
#: full recomputation and with sequence parallelism and selective recomputation.
_KORTHIKANTI_ROWS = (
    ("22B", "megatron-gpt-22b", 8, 1, 8, 4, 4, 1, 1.42, 1.10),
    ("175B", "megatron-gpt-175b", 8, 8, 64, 64, 1, 3, 18.13, 13.75),
    ("530B", "megatron-gpt-529.6b", 8, 35, 280, 280, 1, 3, 49.05, 37.83),
    ("1T", "megatron-gpt-1t", 8, 64, 512, 512, 1, 1, 94.42, 71.49),
)


VALIDATION_RUNS: tuple[ValidationRun, ...] = (
    _llama3("llama3-table4-8k-gpus", 8192, 1, 64, 8192, 32, 430, "none"),
    _llama3("llama3-table4-16k-gpus", 16384, 1, 128, 8192, 16, 400, "none"),
    _llama3("llama3-table4-16k-gpus-131k", 16384, 16, 8, 131072, 16, 380, None),
    *(_megatron(*row) for row in _MEGATRON_ROWS),
    *(_korthikanti(size, model, tp, pp, gpus, batch, mbs, v, mode, seconds)
      for size, model, tp, pp, gpus, batch, mbs, v, full_s, seqsel_s in _KORTHIKANTI_ROWS
      for mode, seconds in (("full", full_s), ("seqsel", seqsel_s))),
    ValidationRun(
        name="llama4-behemoth", group="llama4-behemoth",
        citation="Meta, 'The Llama 4 herd' (ai.meta.com/blog/llama-4-multimodal-intelligence, "
                 "2025-04-05), as quoted on lesswrong.com: 'while pre-training our Llama 4 "
                 "Behemoth model using FP8 and 32K GPUs, we achieved 390 TFLOPs/GPU'",
        model="llama4-behemoth", hardware="h100-sxm", gpus=32768,
        layout={k: None for k in LAYOUT_KEYS},
        layout_sources={k: "not published" for k in LAYOUT_KEYS},
        precision="fp8", published_tflops=390, flops="unstated", flops_label="published",
        flops_source="the post does not say which FLOPs '390 TFLOPs/GPU' counts",
        hardware_source="ASSUMED H100: the quoted sentence names no GPU (commentators infer "
                        "H100; Meta's earnings calls describe Llama 4 training on H100 "
                        "clusters); '32K GPUs' read as 32,768",
        notes=("the model is the assumed llama4-behemoth preset (only 288B active, 16 experts "
               "and ~2T total are published)",
               "390 is 19.7% of the H100's FP8 dense peak, 39.4% of its BF16 peak"),
        assumed_layout={"tp": 8, "pp": 16, "dp": 256, "cp": 1, "ep": 16, "seq": 8192,
                        "global_batch": 4096},
        assumed_layout_rule=(
            "ASSUMED layout (none is published): Llama 3 405B's 16,384-GPU layout of Table 4 "
            "carried to 32,768 GPUs, TP 8 (one NVLink domain), PP 16, 16 sequences of 8,192 "
            "per data-parallel replica, so DP 256 and a global batch of 4,096 sequences "
            "(32Mi tokens); EP 16, one routed expert per expert-parallel rank, inside the "
            "data-parallel group (so each EP group spans 16 nodes); micro-batch, interleave "
            "and recomputation by validate's defaults")),
)


def validation_runs(group: str | None = None) -> tuple[ValidationRun, ...]:
    """Every run, or those of one ``group``."""
    if group is None:
        return VALIDATION_RUNS
    if group not in GROUP_TOLERANCE:
        raise UnknownNameError("validation group", group, GROUP_TOLERANCE)
    return tuple(r for r in VALIDATION_RUNS if r.group == group)


def validation_run(name: str) -> ValidationRun:
    for run in VALIDATION_RUNS:
        if run.name == name:
            return run
    raise UnknownNameError("validation run", name, [r.name for r in VALIDATION_RUNS])


__all__ = ["ValidationRun", "VALIDATION_RUNS", "FLOP_CONVENTIONS", "GROUP_TOLERANCE",
           "validation_runs", "validation_run", "flops_per_token", "convert_tflops",
           "tokens_per_s_per_gpu", "iteration_time_s"]
