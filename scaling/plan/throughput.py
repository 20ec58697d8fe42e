"""Per-GPU throughput and watts of a training run on a cluster: the planner's view of the
hardware and step models.

A plan needs, for a model of N parameters on G GPUs, what one GPU sustains (TFLOP/s, with the
spread the hardware profile gives) and the board watts at that load. `ThroughputSource`
answers it in one of two ways:

* **the step model** (`scaling.model.step`): N becomes a concrete model (`scaling.model.config`; a Llama 3
  preset when N is within 1% of one), laid out by the layout search (`scaling.plan.search`:
  the fastest layout of the cluster's GPUs that fits the device's memory, as the step model
  times it), and the step model's figure for that layout is the answer;
* **a given figure** (``--tflops-per-gpu`` or ``--mfu``), labelled given; only the watts
  then come from the profile.

The step model's figure is labelled modelled (`scaling.labels`), and its source says what the
model rests on ("step model from published GEMM and attention curves on h100-sxm").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from scaling import references
from scaling.errors import DataError
from scaling.model.memory import memory_known, step_memory
from scaling.model.config import LLAMA3_SEQ, config_for_params, model_presets
from scaling.model.step import PRECISIONS, refuse_above_peak
from scaling.plan.search import LayoutSearch
from scaling.provenance import Figure

DEFAULT_PRECISION = "bf16"


@dataclass(frozen=True)
class Throughput:
    """What one GPU sustains on a cluster: TFLOP/s and board watts, each a `Figure` with its
    spread, label and source."""

    tflops: Figure
    power_w: Figure
    mfu: float | None = None
    layout: dict | None = None
    breakdown: dict | None = None
    #: the FLOPs per token ``tflops`` counts (the step model's, `ModelConfig.flops_per_token`);
    #: None where no concrete model is known (a plan then takes the budget's 6 N per token)
    flops_per_token: float | None = None
    memory: dict | None = None  # the layout's memory on the device (`MemoryBreakdown`)
    #: the layout search that chose ``layout`` (`scaling.plan.search.SearchResult.to_dict`)
    search: dict | None = None


ThroughputFn = Callable[[float, float], Throughput]  # (gpus, params) -> Throughput

#: Llama 3 405B's layout (Llama 3 paper, Table 4): tensor parallelism 8 inside a node,
#: pipeline stages as the model needs, 8,192-token sequences (`scaling.model.config.LLAMA3_SEQ`), a
#: batch of 2,048 x 8,192 = 16Mi tokens (`scaling.model.step.DEFAULT_BATCH_TOKENS`; the paper's
#: "16M"), and per data-parallel replica one sequence per pipeline stage per step
#: (128 x 16 x 8,192 = 16Mi).
TENSOR_PARALLEL = int(references.LLAMA3_TENSOR_PARALLEL.value)
#: Weights and gradients (bf16, 4 bytes per parameter) per GPU kept under 16 GB, a fifth of
#: an 80 GB H100, which gives Llama 3 405B's 16 pipeline stages (405e9 * 4 / 8 / 16 = 12.7 GB).
STAGE_BYTES = 16e9
STAGE_BYTES_PER_PARAM = 4
#: Llama 3 405B has 126 layers on 16 stages, about 8 per stage; stages are kept to at least 4
#: layers (2 per interleaved chunk), even where that leaves more than `STAGE_BYTES` per GPU
#: (Llama 3 also shards weights and gradients over data parallelism, FSDP-style).
MIN_LAYERS_PER_STAGE = 4
#: Llama 3 ran an interleaved 1F1B pipeline schedule (Llama 3 paper, Sec. 3.3.2; Narayanan et
#: al. 2021) but does not publish its number of model chunks per GPU; 2 is assumed (it cuts the
#: pipeline bubble of 16 micro-batches on 16 stages from 48% to 32%).
INTERLEAVE = 2
#: How the planner's layout is labelled in the step model's inputs.
LAYOUT_SOURCE = ("Llama 3-like layout (scaling.plan.throughput.llama3_layout): tensor parallelism "
                 "up to 8, pipeline stages until a GPU holds <= 16 GB of weights and "
                 "gradients, the rest data parallelism (after Llama 3 paper, Table 4)")
BATCH_SOURCE = ("one sequence per pipeline stage per replica, and at least Llama 3's batch of "
                "2,048 x 8,192 tokens (Llama 3 paper, Table 4)")
INTERLEAVE_SOURCE = ("Llama 3 ran an interleaved schedule but does not publish its chunk count "
                     "(Sec. 3.3.2); 2 chunks per GPU assumed")
#: What the planner tries on the Llama 3-like layout, in this order, keeping the fastest that
#: fits the device's memory: the assumed interleaving, plain 1F1B (fewer micro-batches in
#: flight), and each again with full activation recomputation (Narayanan et al. 2021,
#: Sec. 3.5: the layer inputs only, one more forward per layer).
SCHEDULES = ((INTERLEAVE, "none"), (1, "none"), (INTERLEAVE, "full"), (1, "full"))
RECOMPUTE_SOURCE = ("the fastest of interleave 2 or 1, without or with full recomputation, "
                    "that fits the device's memory (scaling.plan.throughput.SCHEDULES)")


def llama3_layout(params: float, layers: int, gpus: float,
                  max_tp: int = TENSOR_PARALLEL) -> dict:
    """A Llama 3-like parallel layout for a ``params``-parameter, ``layers``-layer model on
    ``gpus`` GPUs.

    Tensor parallelism grows in powers of two up to ``max_tp`` (one node) and then pipeline
    stages double, until the bf16 weights and gradients of a GPU's share fit `STAGE_BYTES`
    or a stage would have fewer than `MIN_LAYERS_PER_STAGE` layers; the rest is data
    parallelism: ``gpus_used = tp * pp * dp <= gpus`` (at least one replica; the remainder
    idles). Llama 3 405B on 16,384 GPUs gets its published TP 8, PP 16, DP 128.
    """
    tp, pp = 1, 1
    while params * STAGE_BYTES_PER_PARAM / (tp * pp) > STAGE_BYTES:
        if tp < max_tp:
            tp *= 2
        elif layers >= 2 * pp * MIN_LAYERS_PER_STAGE:
            pp *= 2
        else:
            break
    dp = max(1, int(gpus // (tp * pp)))
    return {"tp": tp, "pp": pp, "dp": dp, "gpus_used": min(tp * pp * dp, gpus),
            "interleave": INTERLEAVE if pp > 1 else 1}


class ThroughputSource:
    """Per-GPU throughput and watts for a plan: from a hardware profile through the step
    model, or from a given TFLOP/s or MFU (then only the watts come from the profile)."""

    def __init__(self, profile, *, precision: str | None, seq: int | None,
                 tflops_per_gpu: float | None = None, mfu: float | None = None,
                 batch_tokens: int | None = None):
        self.profile = profile
        self.precision_given = precision is not None
        self.precision = precision or DEFAULT_PRECISION
        self.seq_given = seq is not None
        self.seq = seq or LLAMA3_SEQ
        self.dtype = PRECISIONS[self.precision]
        self.tflops_per_gpu = tflops_per_gpu
        self.mfu = mfu
        if batch_tokens is not None and (batch_tokens < self.seq or batch_tokens % self.seq):
            raise DataError(f"--batch-tokens {batch_tokens:,} is not a whole number of "
                            f"{self.seq:,}-token sequences")
        #: A fixed global batch (tokens), or None: the planner's batch (`BATCH_SOURCE`).
        self.batch_tokens = batch_tokens
        try:
            self.peak = profile.peak(self.dtype)
        except DataError:
            if mfu is not None:
                raise  # --mfu needs a datasheet peak
            self.peak = None
        refuse_above_peak(tflops_per_gpu, mfu, self.peak, self.precision)
        self.tdp = profile.tdp
        if self.tdp is None:
            raise DataError(f"hardware profile '{profile.name}' has no TDP, so no facility "
                            f"power; use a published preset (--hardware h100-sxm, ...) or a "
                            f"profile of a recognised GPU")
        self._configs: dict[float, Any] = {}
        self._steps: dict[tuple, Any] = {}
        self._searchers: dict[float, LayoutSearch] = {}

    @classmethod
    def build(cls, hardware, *, results=None, precision: str | None = None,
              seq: int | None = None,
              tflops_per_gpu: float | None = None, mfu: float | None = None,
              batch_tokens: int | None = None):
        from scaling.hardware.profile import HardwareProfile
        from scaling.hardware.load import load_profile

        if isinstance(hardware, HardwareProfile):
            profile = hardware
        elif results is not None:
            profile = load_profile(None, results=results)
        else:
            profile = load_profile(hardware)
        return cls(profile, precision=precision, seq=seq, tflops_per_gpu=tflops_per_gpu,
                   mfu=mfu, batch_tokens=batch_tokens)

    @property
    def peak_tflops(self) -> float | None:
        return None if self.peak is None else self.peak.value

    @property
    def tdp_w(self) -> float:
        return self.tdp.value

    def config(self, params: float):
        """The concrete model: a Llama 3 preset when ``params`` is within 1% of its size
        (so 405e9 plans the published 405B architecture), else `config_for_params`."""
        if params not in self._configs:
            near = [c for name, c in model_presets().items()
                    if name.startswith("llama3-") and abs(c.params / params - 1) < 0.01]
            self._configs[params] = (replace(near[0], seq=self.seq) if near
                                     else config_for_params(params, seq=self.seq))
        return self._configs[params]

    def _power(self, tflops: float) -> Any:
        util = tflops / self.peak.value if self.peak is not None else 1.0
        return self.profile.power_w(min(util, 1.0))

    def __call__(self, gpus: float, params: float) -> Throughput:
        if self.tflops_per_gpu is not None or self.mfu is not None:
            if self.tflops_per_gpu is not None:
                t, src = self.tflops_per_gpu, f"given: --tflops-per-gpu {self.tflops_per_gpu:g}"
            else:
                t = self.mfu * self.peak.value
                src = f"given: --mfu {self.mfu:g} x datasheet peak"
            w = self._power(t)
            return Throughput(Figure.point(t, "given", src, "TFLOP/s"), w,
                              mfu=t / self.peak.value if self.peak is not None else None,
                              flops_per_token=self._flops_per_token(params))
        config = self.config(params)
        found = self.search(params, gpus)
        step, layout = found.best.step, dict(found.best.layout)
        busy = layout["gpus_used"] / gpus  # whole replicas only: the remainder idles
        t = step.tflops_per_gpu * busy
        w = step.power_w  # at the step's hardware utilisation
        if w is None:
            raise DataError(f"hardware profile '{self.profile.name}' gives no watts at this load "
                            "(no datasheet peak to place it on its power curve, and no TDP); "
                            "use a profile of a recognised GPU or a published preset")
        memory = (step_memory(config, self.profile, step.layout, precision=self.precision)
                  if memory_known(self.profile) else None)
        modelled = step.labels["tflops_per_gpu"]
        return Throughput(Figure(t, step.tflops_per_gpu_lo * busy, step.tflops_per_gpu_hi * busy,
                                 modelled["label"], modelled["source"], "TFLOP/s"), w,
                          mfu=t / self.peak.value if self.peak is not None else None,
                          layout=layout, breakdown=dict(step.breakdown),
                          flops_per_token=config.flops_per_token(self.seq),
                          memory=None if memory is None else memory.to_dict(),
                          search=found.to_dict())

    def search(self, params: float, gpus: float):
        """The layout search's answer for a model of ``params`` on ``gpus`` GPUs (the
        planner's batch: Llama 3's 2,048 x 8,192 tokens, grown to one sequence per pipeline
        stage per replica; or the fixed ``batch_tokens``, GPUs idling where no layout splits
        it over them all), kept for the next call."""
        key = (params, int(gpus))
        if key not in self._steps:
            if params not in self._searchers:
                self._searchers[params] = LayoutSearch(self.config(params), self.profile,
                                                       precision=self.precision, seq=self.seq,
                                                       seq_label=self._chosen()["seq"])
            batch = None if self.batch_tokens is None else self.batch_tokens // self.seq
            self._steps[key] = self._searchers[params].search(int(gpus), batch=batch)
        return self._steps[key]

    def _flops_per_token(self, params: float) -> float | None:
        """The step model's FLOPs per token of the model a plan of ``params`` trains (None
        where no concrete model can be made of it)."""
        try:
            return self.config(params).flops_per_token(self.seq)
        except DataError:
            return None

    def _chosen(self) -> dict:
        """The labels of the layout the planner picks for the step model."""
        seq = (("given", f"given: --seq {self.seq}") if self.seq_given else
               ("published", f"Llama 3 405B's {LLAMA3_SEQ:,}-token sequences "
                             "(Llama 3 paper, Table 4)"))
        batch = (("assumed", BATCH_SOURCE) if self.batch_tokens is None else
                 ("given", f"given: --batch-tokens {self.batch_tokens:,}"))
        return {"tp": ("assumed", LAYOUT_SOURCE), "pp": ("assumed", LAYOUT_SOURCE),
                "dp": ("assumed", LAYOUT_SOURCE), "batch_tokens": batch,
                "interleave": ("assumed", INTERLEAVE_SOURCE), "seq": seq}

    def replica_gpus(self, params: float) -> int:
        """GPUs of one model replica (tp * pp) under the step model's layout; 1 when a given
        throughput replaces the step model (no layout)."""
        if self.tflops_per_gpu is not None or self.mfu is not None:
            return 1
        layout = llama3_layout(params, self.config(params).layers, 1)
        return layout["tp"] * layout["pp"]

    def inputs(self) -> list[tuple]:
        """(name, value, unit, label, source) of the hardware inputs a plan uses."""
        p = self.profile
        precision = (("given", f"given: --precision {self.precision}") if self.precision_given
                     else ("assumed", "default: BF16 GEMMs, the precision of Llama 3 405B's "
                                      "published throughput (Llama 3 paper, Table 4)"))
        out = [("hardware", p.name, "profile", p.label, "; ".join(p.sources) or p.name),
               ("precision", self.precision, "", *precision),
               ("tdp_w", self.tdp.value, "W per GPU", self.tdp.label, self.tdp.source)]
        if self.peak is not None:
            out.append(("peak_tflops", self.peak.value, "TFLOP/s per GPU (dense)",
                        self.peak.label, self.peak.source))
        if self.tflops_per_gpu is None and self.mfu is None:  # the step model's sequences
            out.append(("seq", self.seq, "tokens per sequence", *self._chosen()["seq"]))
        return out

    def describe(self) -> dict:
        p = self.profile
        return {"name": p.name, "label": p.label, "device_name": p.device_name,
                "short_name": p.short_name,
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
