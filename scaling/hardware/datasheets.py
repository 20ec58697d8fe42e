"""Published figures behind the hardware presets, each with its source.

Three kinds of numbers, kept apart:

* **datasheet** figures (dense peak TFLOP/s without sparsity, TDP, HBM bandwidth, link
  bandwidth): what the vendor specifies; the MFU denominator and the power budget;
* **published achievable** figures: the best GEMM throughput found by brute-force shape search
  (the "MAMF finder" table of Stas Bekman's *Machine Learning Engineering*,
  github.com/stas00/ml-engineering, compute/accelerator/README.md, "Maximum Achievable Matmul
  FLOPS comparison table") and FlashAttention-3's attention sweeps on H100 (Shah et al. 2024,
  arXiv 2407.08608, Figs. 5-6), and the HBM bandwidth a streaming kernel reaches (``stream``,
  below; a device without a published measurement has none, and the step model says it used
  the datasheet figure instead);
* **fitted** figures: the A100's GEMM rate, fitted to Megatron-LM's published layer times
  (`A100_LAYER_FIT`), where no measurement of the GEMMs that stack ran is published;
* **assumptions**, labelled ``assumed`` wherever they are used: a figure carried from one
  device to another, or a default where a device has no published number.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass

from kernels import flops as kflops
from scaling.errors import UnknownNameError
from scaling.provenance import Figure

MAMF = ("ml-engineering MAMF table (github.com/stas00/ml-engineering, "
        "compute/accelerator/README.md)")
GPU_BENCHES = ("gpu-benches (Dominik Ernst, FAU Erlangen; github.com/te42kyfo/gpu-benches), "
               "gpu-stream: 1 GiB arrays of doubles, far past the L2 cache")
LLAMA3_NETWORK = ("Llama 3 paper (arXiv 2407.21783), Sec. 3.3.1: 400 Gbps interconnects "
                  "between GPUs (RoCE for the 405B run) = 50 GB/s per GPU")


#: The a100-80gb preset's GEMM rate, TFLOP/s: `scaling.validate.layers.fit_gemm_tflops` on
#: Korthikanti et al. 2022, Table 4 (a test keeps the two equal to the printed digit).
A100_LAYER_FIT_TFLOPS = 201.4
A100_LAYER_FIT = (
    "fitted: the one rate for every GEMM at which flopcast's step model best reproduces the "
    "ten forward and backward times of one 22B GPT layer on a DGX A100 under Megatron-LM "
    "(TP 8, micro-batch 4, sequence 2,048; Korthikanti et al. 2022, arXiv 2205.05198, Table "
    "4), least squares in log time (scaling.validate.layers.fit_gemm_tflops; `flopcast "
    "validate` prints the residuals); an effective rate of Megatron-LM's FP16 software of "
    "2021-22, carrying what that layer loses below the step model's other rooflines; " + MAMF
    + ": 271.2 at the best shape, 1024x10240x5120, with PyTorch 2.6 and CUDA 12.6")


def _inter_node(label: str) -> dict:
    note = "" if label == "published" else "assumed the same 400 Gb/s per GPU NICs as: "
    return {"gbps": 50.0, "label": label, "source": note + LLAMA3_NETWORK}


# -- network levels ----------------------------------------------------------------------------
#
# Two levels per preset: the NVLink (scale-up) domain of ``gpus_per_node`` GPUs at the
# ``intra_node`` link rate, and the scale-out fabric at the ``inter_node`` rate per GPU (both
# per direction, above). Here: latency, whether the fabric is rail-optimised, and the fraction
# of the link rate that collectives reach (nccl-tests bus bandwidth / per-direction link
# rate), measured where a measurement is published and labelled assumed where it is carried
# from another device.

NCCL_TUNING = ("NCCL's tuning model, NVIDIA/nccl src/graph/tuning.cc (model constants, not "
               "measurements)")
ML_ENG_NETWORK = ("ml-engineering network/README.md (github.com/stas00/ml-engineering, commit "
                  "744d01e1), nccl-tests")
LLAMA3_LATENCY = ("Llama 3 paper, Sec. 3.3.3: PP and DP traffic crosses a multi-hop network "
                  "'with latency up to tens of microseconds'")


def _fraction(value: float, label: str, source: str) -> dict:
    return {"fraction": value, "label": label, "source": source}


def _nvlink(achievable: dict) -> dict:
    return {"latency_us": 3.4, "base_latency_us": 8.4, "rail_optimised": None,
            "latency_source": NCCL_TUNING + ": 8.4 us base and 3.4 us per NVLink step, ring, "
                                            "Simple protocol",
            "achievable": achievable}


_H200_RING = ML_ENG_NETWORK + ", 8x H200 (NVLink 4, NVSwitch) at 16 GiB"
NVLINK4_H200 = _nvlink({
    "all_reduce": _fraction(367.61 / 450, "published",
                            _H200_RING + ", ring all-reduce (NCCL_NVLS_ENABLE=0) 367.61 GB/s; "
                                         "482.26 GB/s with NVLS (SHARP in the switch)"),
    "all_gather": _fraction(361.4 / 450, "published", _H200_RING + ", all-gather 361.4 GB/s"),
    "reduce_scatter": _fraction(362.9 / 450, "published",
                                _H200_RING + ", reduce-scatter 362.9 GB/s")})
NVLINK4 = _nvlink({  # the H100: the same NVLink 4 fabric; its own all-reduce figure
    "all_reduce": _fraction(370 / 450, "published",
                            ML_ENG_NETWORK + ", 8x H100 all-reduce: 370 GB/s without NVLS "
                                             "(NVIDIA GTC25 slide; 480 GB/s with NVLS SHARP)"),
    **{c: _fraction(v["fraction"], "assumed", "measured on H200, same NVLink 4 fabric: "
                    + v["source"])
       for c, v in NVLINK4_H200["achievable"].items() if c != "all_reduce"}})
NVLINK3 = _nvlink({
    c: _fraction(234.89 / 300, "published" if c == "all_reduce" else "assumed",
                 ("" if c == "all_reduce" else "all-reduce fraction carried over: ")
                 + ML_ENG_NETWORK + ", 8x A100 (NVLink 3) all-reduce 234.89 GB/s at 16 GiB")
    for c in ("all_reduce", "all_gather", "reduce_scatter")})
NVLINK5 = _nvlink({
    "all_reduce": _fraction(845.67 / 900, "published",
                            ML_ENG_NETWORK + ", 1 node x 8 B200 all-reduce 845.67 GB/s at "
                                             "16 GiB"),
    **{c: _fraction(NVLINK4_H200["achievable"][c]["fraction"], "assumed",
                    "NVLink 4 (8x H200) fraction carried over: "
                    + NVLINK4_H200["achievable"][c]["source"])
       for c in ("all_gather", "reduce_scatter")}})
NVLINK_H800 = _nvlink({
    c: _fraction(160 / 200, "published" if c == "all_to_all" else "assumed",
                 ("" if c == "all_to_all" else "the all-to-all figure carried over: ")
                 + "DeepSeek-V3 (arXiv 2412.19437), Sec. 3.2.2: 'NVLink offers a bandwidth "
                   "of 160 GB/s' on H800 (200 GB/s per direction)")
    for c in ("all_to_all", "all_reduce", "all_gather", "reduce_scatter")})
INFINITY_FABRIC = dict(_nvlink({
    c: _fraction(v["fraction"], "assumed",
                 "no published RCCL measurement; NVLink 4 fraction carried over: " + v["source"])
    for c, v in NVLINK4_H200["achievable"].items()}),
    latency_source="no AMD figure; " + NCCL_TUNING + " NVLink constants carried over")

_B200_EFA = (ML_ENG_NETWORK + ", 4 nodes x 8 B200 on EFA v4 (8 x 50 GB/s per node): all-reduce "
                              "per-GPU NIC rate 36.52 GB/s at 4 GiB")


def _scale_out(fraction_label: str, rail, rail_source: str) -> dict:
    source = ("" if fraction_label == "published" else "measured on B200 + EFA, carried over: ")
    return {"latency_us": 14.0, "base_latency_us": 8.4, "rail_optimised": rail,
            "rail_source": rail_source,
            "latency_source": NCCL_TUNING + ": 14 us per network step, ring, Simple protocol; "
                              + LLAMA3_LATENCY,
            "achievable": {c: _fraction(36.52 / 50, fraction_label, source + _B200_EFA)
                           for c in ("all_reduce", "all_gather", "reduce_scatter")}}


DGX_RAILS = ("NVIDIA DGX SuperPOD reference architecture (DGX H100, RA-11333-001): NDR "
             "InfiniBand compute fabric, one 400 Gb/s NIC per GPU, rail-optimised leaves "
             "(third-party summaries of the document)")
SCALE_OUT_400G = _scale_out("assumed", True, DGX_RAILS)
SCALE_OUT_B200 = _scale_out("published", True, DGX_RAILS + "; DGX B200 User Guide: 8 x "
                                                           "ConnectX-7 400 Gb/s")
SCALE_OUT_HDR = _scale_out("assumed", None, "Narayanan et al. 2021, Sec. 5: a three-level "
                                            "fat tree; the rail layout is not stated")
SCALE_OUT_H800 = _scale_out("assumed", None, "DeepSeek-V3 Sec. 3.1: InfiniBand between nodes; "
                                             "the rail layout is not stated")


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
        "hbm_gb": 80, "hbm_source": "NVIDIA H100 datasheet: 80 GB HBM3 (SXM5)",
        "network": {"nvlink": NVLINK4, "scale_out": SCALE_OUT_400G},
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
        # As for the A100 below: the scale kernel; triad reaches 3,534, read-only 2,756.
        "stream": {"gbps": 3165.0, "label": "published",
                   "source": GPU_BENCHES + ", gpu-stream/h200.txt (commit 1c36d50), scale "
                                           "kernel at 100% occupancy: 3,165 GB/s"},
        "links": {
            "intra_node": {"gbps": 450.0, "label": "published",
                           "source": "NVIDIA H200 datasheet: NVLink 900 GB/s bidirectional "
                                     "(450 GB/s per direction; a link peak)"},
            "inter_node": _inter_node("assumed"),
        },
        "gpus_per_node": 8,
        "hbm_gb": 141, "hbm_source": "NVIDIA H200 datasheet: 141 GB HBM3e",
        "network": {"nvlink": NVLINK4_H200, "scale_out": SCALE_OUT_400G},
        "sources": ["NVIDIA H200 datasheet", MAMF, "FlashAttention-3 (arXiv 2407.08608)",
                    GPU_BENCHES],
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
        # The chip carries 192 GB (8 stacks); HGX/DGX B200 systems expose 180 per GPU.
        "hbm_gb": 180, "hbm_source": "NVIDIA DGX B200 User Guide: '8 x NVIDIA B200 GPUs that "
                                     "provide 1,440 GB total GPU memory' (180 GB per GPU; the "
                                     "192 GB often quoted is the chip's physical capacity)",
        "network": {"nvlink": NVLINK5, "scale_out": SCALE_OUT_B200},
        "sources": ["NVIDIA HGX B200 datasheet", "NVIDIA DGX B200 User Guide", MAMF],
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
        "hbm_gb": 192, "hbm_source": "AMD Instinct MI300X datasheet: 192 GB HBM3",
        "network": {"nvlink": INFINITY_FABRIC, "scale_out": SCALE_OUT_400G},
        "sources": ["AMD Instinct MI300X datasheet", MAMF],
    },
    "a100-80gb": {
        "device_name": "NVIDIA A100 SXM4 80GB",
        # No FP8 on Ampere: FP8 plans on this preset are an error, not a guess.
        "peak_tflops": {"bf16": 312.0, "fp16": 312.0},
        "tdp_w": 400.0,
        "memory_gbps": 2039.0,
        "peak_source": ("NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB, dense; 400 W TDP for "
                        "the standard configuration); Narayanan et al. 2021, Sec. 5: 'peak "
                        "device throughput of an A100 GPU with 16-bit precision is 312 "
                        "teraFLOP/s'"),
        # The A100 runs flopcast is checked against ran Megatron-LM's software of 2021-22;
        # their GEMMs at training shapes are unmeasured, so the rate is fitted to that stack's
        # published layer times (`A100_LAYER_FIT`). MAMF's best-shape microbenchmark (PyTorch
        # 2.6, CUDA 12.6) is 271.2 (`--set gemm_tflops=271.2`).
        "matmul": {
            "bf16": {"tflops": A100_LAYER_FIT_TFLOPS, "impl": "torch", "label": "fitted",
                     "source": A100_LAYER_FIT},
        },
        # The scale kernel (one read stream, one write stream, as most elementwise kernels
        # of training) at full occupancy; triad reaches 1,759 and read-only 1,769. The file
        # is a100_80.txt; the repository's plot script gives it a 2,039 GB/s peak, the SXM4
        # 80GB datasheet figure (the PCIe card has 1,935).
        "stream": {"gbps": 1732.0, "label": "published",
                   "source": GPU_BENCHES + ", gpu-stream/a100_80.txt (commit 1c36d50), scale "
                                           "kernel at 100% occupancy: 1,732 GB/s"},
        "links": {
            "intra_node": {"gbps": 300.0, "label": "published",
                           "source": "NVIDIA A100 datasheet: NVLink 600 GB/s bidirectional "
                                     "(300 GB/s per direction, NVLink 3, 12 links; a link "
                                     "peak)"},
            "inter_node": {"gbps": 25.0, "label": "published",
                           "source": "Narayanan et al. 2021 (arXiv 2104.04473), Sec. 5: "
                                     "eight 200 Gb/s HDR InfiniBand HCAs per 8-GPU node for "
                                     "application traffic = 25 GB/s per GPU"},
        },
        "gpus_per_node": 8,  # DGX A100 (Selene): 8 GPUs per node on NVSwitch
        "hbm_gb": 80, "hbm_source": "NVIDIA A100 datasheet: 80 GB HBM2e (SXM 80GB)",
        "network": {"nvlink": NVLINK3, "scale_out": SCALE_OUT_HDR},
        "sources": ["NVIDIA A100 datasheet", "Narayanan et al. 2021 (arXiv 2104.04473)",
                    "Korthikanti et al. 2022 (arXiv 2205.05198), Table 4: the fitted GEMM rate",
                    MAMF, GPU_BENCHES],
    },
    "h800": {
        "device_name": "NVIDIA H800 SXM5 80GB",
        "peak_tflops": {"bf16": 989.0, "fp16": 989.0, "fp8_e4m3": 1979.0, "fp8_e5m2": 1979.0},
        "tdp_w": 700.0,
        "memory_gbps": 3350.0,
        "peak_source": ("H800 SXM: the H100 SXM's compute, memory and TDP with NVLink cut to "
                        "400 GB/s (NVIDIA H800 product brief as cited in flopcast's reference "
                        "figures; the copies found are third-party: philisun.com, aiwiki.ai)"),
        "matmul": {
            # The MAMF table has no H800 row; the same silicon as the H100, so its figures.
            "bf16": {"tflops": 794.5, "impl": "torch", "label": "assumed",
                     "source": MAMF + ", H100 SXM BF16 row carried over (same silicon, no H800 "
                                      "row)"},
            "fp8_e4m3": {"tflops": 1402.6, "impl": "torch", "label": "assumed",
                         "source": MAMF + ", H100 SXM FP8 e4m3 row carried over (same "
                                          "silicon, no H800 row)"},
        },
        "links": {
            "intra_node": {"gbps": 200.0, "label": "published",
                           "source": "H800 NVLink 400 GB/s total bidirectional (200 GB/s per "
                                     "direction; third-party copies of NVIDIA's brief)"},
            "inter_node": {"gbps": 50.0, "label": "published",
                           "source": "DeepSeek-V3 (arXiv 2412.19437), Sec. 3.2.2: 'IB (50 "
                                     "GB/s)' per GPU on their H800 cluster"},
        },
        "gpus_per_node": 8,  # DeepSeek-V3 Sec. 3.1: 8 GPUs per node on NVLink and NVSwitch
        "hbm_gb": 80, "hbm_source": "H800 SXM: 80 GB HBM3, as the H100 SXM (third-party copies)",
        "network": {"nvlink": NVLINK_H800, "scale_out": SCALE_OUT_H800},
        "sources": ["H800 product brief (third-party copies)", "DeepSeek-V3 (arXiv 2412.19437)",
                    MAMF],
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
    if scope not in ("intra_node", "inter_node"):
        raise ValueError(f"link scope must be intra_node or inter_node, got {scope!r}")
    fig = DEVICES["h100-sxm"]["links"][scope]
    return Figure.point(fig["gbps"], "assumed",
                          "device has no link figures; H100 value assumed: " + fig["source"])


def preset_for_device(device_name: str) -> str | None:
    """The preset whose datasheet describes a measured device, from its name, or None."""
    name = str(device_name).lower()
    if "a100" in name and "80gb" in name.replace(" ", "") and "pcie" not in name:
        return "a100-80gb"
    if "h800" in name:
        return "h800"
    if "mi300x" in name:
        return "mi300x"
    if "b200" in name and "gb200" not in name:
        return "b200"
    if "h200" in name and "gh200" not in name:
        return "h200"
    if "h100" in name and ("sxm" in name or "hbm3" in name):
        return "h100-sxm"
    return None


@dataclass(frozen=True)
class NetworkLevel:
    """One level of a preset's network: ``nvlink`` (the scale-up domain of ``gpus`` GPUs) or
    ``scale_out`` (the fabric between domains; ``gpus`` None: the whole cluster).
    ``gbps`` is per GPU and per direction (the link peak); ``achievable`` maps a collective to
    ``{"fraction", "label", "source"}``, the share of ``gbps`` its nccl-tests bus bandwidth
    reaches; latencies are in microseconds."""

    name: str
    gpus: int | None
    gbps: float
    gbps_label: str
    gbps_source: str
    latency_us: float
    base_latency_us: float
    latency_source: str
    rail_optimised: bool | None
    rail_source: str
    achievable: dict

    def achievable_gbps(self, collective: str) -> tuple[float, str, str]:
        """(bus bandwidth GB/s, label, source) a ``collective`` reaches on this level; a
        collective without a figure of its own takes the all-reduce fraction, labelled
        assumed."""
        fig = self.achievable.get(collective)
        if fig is not None:
            return self.gbps * fig["fraction"], fig["label"], fig["source"]
        fig = self.achievable.get("all_reduce") or next(iter(self.achievable.values()))
        return (self.gbps * fig["fraction"], "assumed",
                f"no {collective} figure; another collective's fraction: " + fig["source"])


@functools.lru_cache(maxsize=None)
def network_levels(name: str) -> tuple[NetworkLevel, NetworkLevel]:
    """The (NVLink domain, scale-out fabric) levels of preset ``name``."""
    d = _device(name)
    out = []
    for level, scope, gpus in (("nvlink", "intra_node", d["gpus_per_node"]),
                               ("scale_out", "inter_node", None)):
        net, link = d["network"][level], d["links"][scope]
        out.append(NetworkLevel(
            name=level, gpus=gpus, gbps=link["gbps"], gbps_label=link["label"],
            gbps_source=link["source"], latency_us=net["latency_us"],
            base_latency_us=net["base_latency_us"], latency_source=net["latency_source"],
            rail_optimised=net["rail_optimised"],
            rail_source=net.get("rail_source", "a single switched domain"),
            achievable=dict(net["achievable"])))
    return out[0], out[1]


def hbm_gib(name: str) -> tuple[float, str]:
    """(memory per GPU, source) of preset ``name``. Vendors' memory "GB" are binary (an
    "80 GB" H100 holds 80 GiB; ml-engineering compute/accelerator/README.md), so this is
    GiB."""
    d = _device(name)
    return float(d["hbm_gb"]), d["hbm_source"]


def _device(name: str) -> dict:
    if name not in DEVICES:
        raise UnknownNameError("hardware preset", name, DEVICES)
    return DEVICES[name]
