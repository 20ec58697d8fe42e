"""The published figures flopcast compares itself with, each once, with its citation.

The planner's defaults (the Llama 3 failure rate, the named compute budgets, the H100's board
power) and the report's claims table both read these, so a figure and its source are written
in one place. Each is a `scaling.provenance.Figure` labelled ``published``; ``REFERENCES``
lists them all by name for the report and for `flopcast plan --explain`.
"""

from __future__ import annotations

from scaling.provenance import Figure

LLAMA3_PAPER = "Llama Team 2024, The Llama 3 Herd of Models (arXiv 2407.21783)"


def _published(value: float, unit: str, source: str) -> Figure:
    return Figure.point(value, "published", source, unit)


LLAMA3_COMPUTE_FLOPS = _published(
    3.8e25, "FLOPs", f"Llama 3 405B pre-training compute, 3.8e25 FLOPs ({LLAMA3_PAPER}, Sec. 3.2.1)")
LLAMA4_COMPUTE_FLOPS = _published(
    3.8e26, "FLOPs", "ten times Llama 3 405B's 3.8e25 FLOPs: the compute Meta said Llama 4 would "
    "need (Meta Q2 2024 earnings call)")
LLAMA3_PARAMS = _published(405e9, "parameters", f"{LLAMA3_PAPER}, Table 3")
LLAMA3_TOKENS = _published(15.6e12, "tokens", f"{LLAMA3_PAPER}, Sec. 3.2.1: 15.6T tokens")
LLAMA3_GPU_HOURS = _published(30.84e6, "GPU-hours", "Llama 3.1 model card, 405B: 30.84M GPU-hours")
LLAMA3_GPUS = _published(16_384, "GPUs", f"{LLAMA3_PAPER}, Sec. 3.3.1 and Table 4")
LLAMA3_TFLOPS_PER_GPU = _published(
    400.0, "TFLOP/s", f"{LLAMA3_PAPER}, Table 4: 400 TFLOP/s per GPU at 16,384 GPUs (41% MFU)")
LLAMA3_TENSOR_PARALLEL = _published(8, "GPUs", f"{LLAMA3_PAPER}, Table 4: TP 8")
LLAMA3_EFFECTIVE_TIME = _published(
    0.90, "fraction", f"{LLAMA3_PAPER}, Sec. 3.3.4: >90% effective training time")
LLAMA3_UNEXPECTED_INTERRUPTIONS = _published(
    419, "interruptions", f"{LLAMA3_PAPER}, Sec. 3.3.4 and Table 5: 419 unexpected "
    "interruptions (466 with the 47 planned ones)")
LLAMA3_SNAPSHOT_DAYS = _published(54, "days", f"{LLAMA3_PAPER}, Sec. 3.3.4: a 54-day snapshot")
LLAMA4_GPUS = _published(100_000, "GPUs", "Meta earnings calls: a cluster of >100,000 H100")
H100_TDP_W = _published(700.0, "W", "NVIDIA H100 SXM datasheet: 700 W max TDP")
CLUSTER_100K_MW = _published(150.0, "MW", "SemiAnalysis 2024 press estimate for a 100k-H100 "
                             "cluster")
EL_CAPITAN_MW = _published(30.0, "MW", "SemiAnalysis 2024, for comparison")

REFERENCES: dict[str, Figure] = {
    name: value for name, value in dict(globals()).items()
    if isinstance(value, Figure) and name.isupper()
}
