"""One transformer layer against its measured time: the step model's forward and backward of
one layer of Megatron-LM's 22B GPT on one DGX A100 node (Korthikanti et al. 2022, arXiv
2205.05198, Table 4).

A whole run's miss mixes everything a step holds (pipeline bubble, data parallelism, the
output layer, the optimizer). Table 4 times the forward and the backward of a single
transformer layer, TP 8 inside one node, no pipeline and no data parallelism, for five ways
of running it: with and without sequence parallelism, with no, selective and full
recomputation. Set beside the step model's time of the same layer, it says how much of a miss
is already there inside one layer on one node, and in which pass.

The step model's time of one layer is the difference of its step times for the model with
two layers and with one, optimizer excluded (everything else it models grows by one layer's
work: GEMMs, attention, elementwise traffic, tensor-parallel collectives); its forward is
the difference between full and no recomputation, which adds exactly one forward of every
layer (`scaling.model.step`, ``recompute="full"``); the backward is the rest (with
recomputation, the recomputed forward is part of the backward, as Table 4 counts it).

Each pass also gets the GEMM rate that reproduces its published time, everything else as
modelled (`scaling.validate.match`, the same diagnostic as the whole-run table's): where the
forward and the backward of every row ask for about the same rate, the miss is the GEMMs'
speed, not a mechanism of one pass.

The a100-80gb preset's GEMM rate is the fit of this table (`fit_gemm_tflops`): the one rate
for every GEMM at which the step model best reproduces all ten published passes. No A100
figure of the GEMMs at training shapes, with training data, under Megatron-LM's software of
2021-22 is published; this layer is the nearest thing, measured on the hardware and stack
the A100 runs of `flopcast validate` ran on. The rate is effective, not a GEMM measurement:
it carries whatever the layer loses below the step model's other rooflines too (softmax and
dropout below streaming bandwidth, all-reduces of 100 MB messages). The Megatron-LM runs
(other models, 1.7B to 1T, with pipeline and data parallelism) test it out of sample; on the
preset the layer's errors are the fit's residuals. A measured A100 profile (`flopcast
validate --hardware`) replaces the fitted rate, and the layer is then a check again.

Reported only: no tolerance, no verdict. The rows are the paper's, the layout Table 3's.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

from scaling.errors import FitError
from scaling.hardware.load import load_profile
from scaling.model.config import model_preset
from scaling.model.step import step_time
from scaling.validate.match import (LOWEST_FRACTION_OF_PEAK, RATE_TOLERANCE_TFLOPS,
                                    gemm_rate_to_match)

KORTHIKANTI_TABLE4 = ("Korthikanti et al. 2022 (arXiv 2205.05198), Table 4: 'Time to complete "
                      "the forward and backward pass of a single transformer layer of the 22B "
                      "model'")
LAYER_LAYOUT_SOURCE = ("Korthikanti et al. 2022, Table 3: the 22B model on TP 8, PP 1, 8 GPUs, "
                       "micro-batch 4 (global batch 4), sequence 2,048; Table 4's layer read as "
                       "run in that configuration (the table does not repeat it)")
#: What the step model takes as given for the layer: the A100 preset, FP16 timed as BF16 (the
#: same dense peak), materialised attention as Megatron-LM ran it in 2022, and its backward
#: overlap of the tensor-parallel collectives (`scaling.validate.runs.KORTHIKANTI_OVERLAP`).
LAYER_MODEL = "megatron-gpt-22b"
LAYER_HARDWARE = "a100-80gb"
LAYER_TP = 8
LAYER_MICRO_BATCH = 4
LAYER_SEQ = 2048


@dataclass(frozen=True)
class LayerExperiment:
    """One row of Table 4: how the layer ran and its published forward and backward (ms)."""

    name: str
    recompute: str
    sequence_parallel: bool
    forward_ms: float
    backward_ms: float

    @property
    def combined_ms(self) -> float:
        return self.forward_ms + self.backward_ms


#: Korthikanti et al. 2022, Table 4 (forward ms, backward ms; the table's combined column is
#: their sum).
TABLE4 = (
    LayerExperiment("baseline, no recomputation", "none", False, 7.7, 11.9),
    LayerExperiment("sequence parallelism", "none", True, 7.2, 11.8),
    LayerExperiment("baseline with full recomputation", "full", False, 7.7, 19.5),
    LayerExperiment("selective recomputation", "selective", False, 7.7, 13.2),
    LayerExperiment("selective recomputation + sequence parallelism", "selective", True,
                    7.2, 13.1),
)


def _step_terms(config, profile, layers: int, recompute: str, sequence_parallel: bool,
                gemm_tflops: float | None) -> dict:
    one = replace(config, layers=layers)
    result = step_time(one, profile, precision="bf16", tp=LAYER_TP, pp=1, dp=1, seq=LAYER_SEQ,
                       batch_tokens=LAYER_MICRO_BATCH * LAYER_SEQ,
                       micro_batch=LAYER_MICRO_BATCH, recompute=recompute,
                       attention="materialised", sequence_parallel=sequence_parallel,
                       zero=0, grad_reduce="half", tp_backward_overlap=True,
                       overrides=None if gemm_tflops is None else {"gemm_tflops": gemm_tflops})
    terms = dict(result.breakdown)
    terms.pop("optimizer_s")
    return terms


class LayerModel:
    """The step model's time of one 22B layer on ``profile`` (default: the a100-80gb preset,
    `LAYER_HARDWARE`; a measured A100 profile for `flopcast validate --hardware`). Each
    (recomputation, sequence parallelism, GEMM rate) is timed once: a Table 4 row needs its
    own pair and the full and no-recomputation pairs for its forward, which rows share, and
    the rate search asks for each pair many times."""

    def __init__(self, profile=None):
        self.profile = load_profile(LAYER_HARDWARE) if profile is None else profile
        self.config = model_preset(LAYER_MODEL)
        self._cache: dict = {}

    def terms(self, recompute: str, sequence_parallel: bool,
              gemm_tflops: float | None = None) -> dict:
        """Seconds of one layer's forward and backward, by term, with the profile's GEMM
        curve or every GEMM at ``gemm_tflops``."""
        key = (recompute, bool(sequence_parallel), gemm_tflops)
        if key not in self._cache:
            two = _step_terms(self.config, self.profile, 2, *key)
            one = _step_terms(self.config, self.profile, 1, *key)
            self._cache[key] = {k: two[k] - one[k] for k in two}
        return dict(self._cache[key])

    def modelled(self, experiment: LayerExperiment, gemm_tflops: float | None = None) -> dict:
        """The forward, backward and combined seconds for one Table 4 row."""
        sp = experiment.sequence_parallel
        combined = self.terms(experiment.recompute, sp, gemm_tflops)
        with_full = self.terms("full", sp, gemm_tflops)
        without = self.terms("none", sp, gemm_tflops)
        forward = {k: with_full[k] - without[k] for k in without}
        total, fwd = sum(combined.values()), sum(forward.values())
        return {"forward_s": fwd, "backward_s": total - fwd, "combined_s": total,
                "forward_terms_s": forward, "combined_terms_s": combined}

    def gemm_rates_to_match(self, experiment: LayerExperiment) -> dict:
        """Per pass ("forward", "backward"), the rate of every GEMM at which the step model
        gives the published time, everything else as modelled (`scaling.validate.match`;
        None where no rate up to the datasheet peak does)."""
        peak = self.profile.peak("bf16").value
        published = {"forward": experiment.forward_ms, "backward": experiment.backward_ms}
        out = {}
        for part, ms in published.items():
            def speed(rate: float, part=part) -> float:  # 1 / seconds: rises with the rate
                return 1.0 / self.modelled(experiment, rate)[f"{part}_s"]
            out[part] = gemm_rate_to_match(speed, 1e3 / ms, peak).tflops
        return out


PASSES = ("forward", "backward")


@dataclass(frozen=True)
class LayerGemmFit:
    """The GEMM rate fitted to Table 4 and how well it reproduces each pass: ``residuals``
    maps (row name, pass) to published / modelled time - 1 at that rate; ``rms`` is the root
    mean square of the log residuals the fit minimised."""

    tflops: float
    rms: float
    residuals: dict
    source: str

    def to_dict(self) -> dict:
        out = asdict(self)
        out["residuals"] = [{"name": name, "pass": part, "error": err}
                            for (name, part), err in self.residuals.items()]
        return out


def fit_gemm_tflops(rows=TABLE4, model: LayerModel | None = None) -> LayerGemmFit:
    """The one rate for every GEMM (the batched GEMMs of materialised attention included; the
    ``gemm_tflops`` override of `scaling.model.step`) at which the step model best reproduces
    the forward and the backward times of ``rows``: least squares of log(published /
    modelled) over the ``2 x len(rows)`` passes, so a miss of a given ratio weighs the same in
    either direction; bounded and resolved as the per-pass search is (`scaling.validate.match`:
    from `LOWEST_FRACTION_OF_PEAK` of the datasheet peak to the peak, to
    `RATE_TOLERANCE_TFLOPS`). On the a100-80gb preset by default; the preset's own GEMM rate
    plays no part, every GEMM runs at the rate tried."""
    from scipy.optimize import minimize_scalar  # here: `flopcast --help` stays fast

    model = _preset_model() if model is None else model
    rows = tuple(rows)
    if not rows:
        raise FitError("no Table 4 rows to fit the GEMM rate to")
    published = {(r.name, p): getattr(r, f"{p}_ms") / 1e3 for r in rows for p in PASSES}

    def log_errors(rate: float) -> dict:
        out = {}
        for r in rows:
            m = model.modelled(r, rate)
            for p in PASSES:
                out[(r.name, p)] = math.log(published[(r.name, p)] / m[f"{p}_s"])
        return out

    peak = model.profile.peak("bf16").value
    best = minimize_scalar(lambda rate: sum(e * e for e in log_errors(rate).values()),
                           bounds=(LOWEST_FRACTION_OF_PEAK * peak, peak), method="bounded",
                           options={"xatol": RATE_TOLERANCE_TFLOPS})
    rate = float(best.x)
    if not best.success or rate > 0.999 * peak:
        raise FitError(f"no GEMM rate up to the {peak:.0f} TFLOP/s peak reproduces Table 4 "
                       f"(best {rate:.1f})")
    errors = log_errors(rate)
    return LayerGemmFit(
        tflops=rate, rms=math.sqrt(sum(e * e for e in errors.values()) / len(errors)),
        residuals={k: math.exp(e) - 1 for k, e in errors.items()},
        source=f"{KORTHIKANTI_TABLE4}: the one rate for every GEMM at which the step model "
               f"best reproduces the {len(errors)} forward and backward times (least squares "
               f"in log time, scaling.validate.layers.fit_gemm_tflops), on {model.profile.name}")


@functools.lru_cache(maxsize=1)
def _preset_model() -> LayerModel:
    return LayerModel()


def layer_terms(recompute: str, sequence_parallel: bool,
                gemm_tflops: float | None = None) -> dict:
    """`LayerModel.terms` on the a100-80gb preset."""
    return _preset_model().terms(recompute, sequence_parallel, gemm_tflops)


def modelled_layer(experiment: LayerExperiment, gemm_tflops: float | None = None) -> dict:
    """`LayerModel.modelled` on the a100-80gb preset."""
    return _preset_model().modelled(experiment, gemm_tflops)


def check_layers(rows=TABLE4, profile=None) -> list[dict]:
    """Each Table 4 row, published against modelled (on ``profile``, by default the
    a100-80gb preset), with the errors of the forward, the backward and their sum as speed
    errors, published / modelled time - 1: positive where the step model is faster than the
    measurement, as `flopcast validate`'s throughput errors."""
    model = _preset_model() if profile is None else LayerModel(profile)
    out = []
    for row in rows:
        m = model.modelled(row)
        out.append({
            "name": row.name, "recompute": row.recompute,
            "sequence_parallel": row.sequence_parallel,
            "published_ms": {"forward": row.forward_ms, "backward": row.backward_ms,
                             "combined": row.combined_ms},
            "modelled_ms": {"forward": 1e3 * m["forward_s"], "backward": 1e3 * m["backward_s"],
                            "combined": 1e3 * m["combined_s"]},
            "error": {"forward": row.forward_ms / (1e3 * m["forward_s"]) - 1,
                      "backward": row.backward_ms / (1e3 * m["backward_s"]) - 1,
                      "combined": row.combined_ms / (1e3 * m["combined_s"]) - 1},
            "modelled_terms_ms": {k: 1e3 * v for k, v in m["combined_terms_s"].items() if v},
            "gemm_tflops_to_match": model.gemm_rates_to_match(row),
        })
    return out


__all__ = ["TABLE4", "LayerExperiment", "LayerModel", "LayerGemmFit", "fit_gemm_tflops",
           "KORTHIKANTI_TABLE4",
           "LAYER_LAYOUT_SOURCE", "LAYER_HARDWARE", "layer_terms", "modelled_layer",
           "check_layers"]
