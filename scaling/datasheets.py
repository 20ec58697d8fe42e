"""Published figures behind the hardware presets, each with its source.

Three kinds of numbers, kept apart:

* **datasheet** figures (dense peak TFLOP/s without sparsity, TDP, HBM bandwidth, link
  bandwidth): what the vendor specifies; the MFU denominator and the power budget;
* **published achievable** figures: the best GEMM throughput found by brute-force shape search
  (the "MAMF finder" table of Stas Bekman's *Machine Learning Engineering*,
  github.com/stas00/ml-engineering, compute/accelerator/README.md, "Maximum Achievable Matmul
  FLOPS comparison table") and FlashAttention-3's attention sweeps on H100 (Shah et al. 2024,
  arXiv 2407.08608, Figs. 5-6);
* **assumptions**, labelled ``assumed`` wherever they are used: a figure carried from one
  device to another, or a default where a device has no published number.
"""

from __future__ import annotations

from kernels import flops as kflops

MAMF = ("ml-engineering MAMF table (github.com/stas00/ml-engineering, "
        "compute/accelerator/README.md)")
LLAMA3_NETWORK = ("Llama 3 paper (arXiv 2407.21783), Sec. 3.3.1: 400 Gbps interconnects "
                  "between GPUs (RoCE for the 405B run) = 50 GB/s per GPU")


def _inter_node(label: str) -> dict:
    note = "" if label == "published" else "assumed the same 400 Gb/s per GPU NICs as: "
    return {"gbps": 50.0, "label": label, "source": note + LLAMA3_NETWORK}


DEVICES = {
    "h100-sxm": {
        "device_name": "NVIDIA H100 SXM5 80GB",
        # NVIDIA H100 Tensor Core GPU datasheet, SXM5 column, dense (sparsity halved).
        "peak_tflops": {"bf16": 989.0, "fp16": 989.0, "fp8_e4m3": 1979.0, "fp8_e5m2": 1979.0},
        "tdp_w": 700.0,
        "memory_gbps": 3350.0,
        "peak_source": "NVIDIA H100 Tensor Core GPU datasheet (SXM5, dense)",
        "matmul": {
            "bf16": {"tflops": 794.5, "impl": "torch", "label": "published",
                     "source": MAMF + ", H100 SXM BF16 best shape 2048x2048x13312"},
            "fp8_e4m3": {"tflops": 1402.6, "impl": "torch", "label": "published",
                         "source": MAMF + ", H100 SXM FP8 e4m3 best shape 1024x9216x14336"},
        },
        "links": {
            # NVLink 4: 900 GB/s total per GPU, 450 GB/s each way: the bus-bandwidth ceiling.
            "intra_node": {"gbps": 450.0, "label": "published",
                           "source": "NVIDIA H100 datasheet: NVLink 900 GB/s bidirectional "
                                     "(450 GB/s per direction; a link peak, collectives "
                                     "achieve less)"},
            "inter_node": _inter_node("published"),
        },
        "gpus_per_node": 8,  # HGX/DGX H100 (and Llama 3's Grand Teton servers): 8 GPUs
        "sources": ["NVIDIA H100 datasheet", MAMF, "FlashAttention-3 (arXiv 2407.08608)",
                    "Llama 3 paper (arXiv 2407.21783)"],
    },
    "h200": {
        "device_name": "NVIDIA H200 SXM 141GB",
        "peak_tflops": {"bf16": 989.0, "fp16": 989.0, "fp8_e4m3": 1979.0, "fp8_e5m2": 1979.0},
        "tdp_w": 700.0,
        "memory_gbps": 4800.0,
        "peak_source": "NVIDIA H200 Tensor Core GPU datasheet (SXM, dense)",
        "matmul": {
            "bf16": {"tflops": 794.5, "impl": "torch", "label": "published",
                     "source": MAMF + ", H100 SXM BF16 row, noted 'H200 is the same'"},
            "fp8_e4m3": {"tflops": 1453.4, "impl": "torch", "label": "published",
                         "source": MAMF + ", H200 SXM FP8 e4m3 best shape 1280x4096x12032"},
        },
        "links": {
            "intra_node": {"gbps": 450.0, "label": "published",
                           "source": "NVIDIA H200 datasheet: NVLink 900 GB/s bidirectional "
                                     "(450 GB/s per direction; a link peak)"},
            "inter_node": _inter_node("assumed"),
        },
        "gpus_per_node": 8,
        "sources": ["NVIDIA H200 datasheet", MAMF, "FlashAttention-3 (arXiv 2407.08608)"],
    },
    "b200": {
        "device_name": "NVIDIA B200",
        "peak_tflops": {"bf16": 2250.0, "fp16": 2250.0, "fp8_e4m3": 4500.0,
                        "fp8_e5m2": 4500.0},
        "tdp_w": 1000.0,
        "memory_gbps": 8000.0,
        "peak_source": "NVIDIA HGX B200 datasheet (per GPU, dense)",
        "matmul": {
            "bf16": {"tflops": 1745.0, "impl": "torch", "label": "published",
                     "source": MAMF + ", B200 SXM BF16 best shape 1792x16128x3072"},
            "fp8_e4m3": {"tflops": 3432.5, "impl": "torch", "label": "published",
                         "source": MAMF + ", B200 SXM FP8 e4m3 best shape 15360x4096x3072"},
        },
        "links": {
            "intra_node": {"gbps": 900.0, "label": "published",
                           "source": "NVIDIA HGX B200 datasheet: NVLink 5 1.8 TB/s per GPU "
                                     "(900 GB/s per direction; a link peak)"},
            "inter_node": _inter_node("assumed"),
        },
        "gpus_per_node": 8,
        "sources": ["NVIDIA HGX B200 datasheet", MAMF],
    },
    "mi300x": {
        "device_name": "AMD Instinct MI300X",
        "peak_tflops": {"bf16": 1307.0, "fp16": 1307.0, "fp8_e4m3": 2615.0,
                        "fp8_e5m2": 2615.0},
        "tdp_w": 750.0,
        "memory_gbps": 5300.0,
        "peak_source": "AMD Instinct MI300X datasheet (dense)",
        "matmul": {
            # The table has no MI300X FP8 figure: FP8 GEMMs on this preset are an error.
            "bf16": {"tflops": 668.4, "impl": "torch", "label": "published",
                     "source": MAMF + ", MI300X BF16 (ROCm 6.3, TunableOp) best shape "
                                      "10240x15360x8192"},
        },
        "links": {
            "intra_node": {"gbps": 448.0, "label": "published",
                           "source": "AMD MI300X datasheet: 7 Infinity Fabric links, 896 GB/s "
                                     "aggregate peak (448 GB/s per direction; a link peak)"},
            "inter_node": _inter_node("assumed"),
        },
        "gpus_per_node": 8,
        "sources": ["AMD Instinct MI300X datasheet", MAMF],
    },
}

# FlashAttention-3 (Shah et al. 2024, arXiv 2407.08608), H100 80GB SXM5, FP16/BF16, head
# dimension 128, hidden 2048 (16 heads), batch x sequence = 16k tokens. TFLOP/s by sequence
# length, read off the bar labels of Fig. 5 (forward, causal=False and causal=True panels)
# and Fig. 6 (backward, causal=False; the paper shows no causal backward panel, so causal
# backward calls use the full-mask curve).
FA3_H100 = {
    "source": "FlashAttention-3 (arXiv 2407.08608) H100 SXM5 BF16 head dim 128 sweeps, "
              "Figs. 5-6, fitted with the saturating curve",
    "tokens": 16384,
    "heads": 16,
    "head_dim": 128,
    "points": {
        ("fwd", "full"): [(512, 467), (1024, 565), (2048, 625), (4096, 638), (8192, 646),
                          (16384, 648)],
        ("fwd", "causal"): [(512, 292), (1024, 423), (2048, 521), (4096, 579), (8192, 602),
                            (16384, 616)],
        ("bwd", "full"): [(512, 316), (1024, 424), (2048, 501), (4096, 542), (8192, 559),
                          (16384, 561)],
    },
}


def fa3_flops(seq: int, direction: str, mask: str) -> int:
    """FLOPs of one call of the FlashAttention-3 benchmark at sequence length ``seq``."""
    fa = FA3_H100
    args = (fa["tokens"] // seq, fa["heads"], seq, seq, fa["head_dim"], mask == "causal")
    if direction == "fwd":
        return kflops.attention_fwd_flops(*args)
    return kflops.attention_bwd_flops(*args)


def attention_carry(name: str) -> tuple[float, str, str]:
    """(scale, label, note) for using the H100 FlashAttention-3 curve on device ``name``.

    Attention is matmul-bound at training sizes, so where a device has no published
    attention sweep the H100 curve is scaled by the ratio of the devices' achievable BF16
    matmul (MAMF) figures, and labelled assumed.
    """
    if name == "h100-sxm":
        return 1.0, "published", ""
    ratio = DEVICES[name]["matmul"]["bf16"]["tflops"] / DEVICES["h100-sxm"]["matmul"]["bf16"][
        "tflops"]
    return ratio, "assumed", (f"no published attention sweep for {name}: H100 curve x "
                              f"{ratio:.3g} (ratio of MAMF BF16 matmul figures); ")


def default_link(scope: str):
    """Link bandwidth for a device with no figures of its own (an unrecognised measured
    device): the H100 figures, labelled assumed."""
    from scaling.hardware import Estimate

    if scope not in ("intra_node", "inter_node"):
        raise ValueError(f"link scope must be intra_node or inter_node, got {scope!r}")
    fig = DEVICES["h100-sxm"]["links"][scope]
    return Estimate.point(fig["gbps"], "assumed",
                          "device has no link figures; H100 value assumed: " + fig["source"])


def preset_for_device(device_name: str) -> str | None:
    """The preset whose datasheet describes a measured device, from its name, or None."""
    name = str(device_name).lower()
    if "mi300x" in name:
        return "mi300x"
    if "b200" in name and "gb200" not in name:
        return "b200"
    if "h200" in name and "gh200" not in name:
        return "h200"
    if "h100" in name and ("sxm" in name or "hbm3" in name):
        return "h100-sxm"
    return None
