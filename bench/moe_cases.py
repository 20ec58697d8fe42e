"""Mixture-of-experts benchmark shapes: the grouped GEMMs, dispatch and combine of real MoE
configs, per GPU under expert parallelism.

Configs (one MoE layer each; the dense shared expert is a plain GEMM over all tokens, which the
``gemm`` family measures):

* **Llama 4 Scout** (17B active, 109B total) and **Maverick** (17B active, 400B total):
  d_model 5120, routed experts of width 8192, 16 and 128 of them, top-1, and one shared expert
  of width 8192 that every token also goes through (Hugging Face ``config.json`` of
  meta-llama/Llama-4-Scout-17B-16E and Llama-4-Maverick-17B-128E, ``text_config``:
  hidden_size, intermediate_size, num_local_experts, num_experts_per_tok; Meta, "The Llama 4
  herd", 2025-04-05: "MoE layers use 128 routed experts and a shared expert. Each token is sent
  to the shared expert and also to one of the 128 routed experts"; Llama 4 model card for the
  parameter counts). Maverick alternates dense and MoE layers (interleave_moe_layer_step 2).
* **DeepSeek-V3**, the fine-grained shape: d_model 7168, 256 routed experts of width 2048 and
  1 shared, top-8 (DeepSeek-V3 technical report, arXiv 2412.19437, Sec. 4.2), trained with
  64-way expert parallelism spanning 8 nodes (Sec. 3.2): 4 routed experts per GPU.

Expert parallelism: DeepSeek-V3's is published (64). Llama 4's is not: **assumed** 8, the
experts of a layer spread over one 8-GPU NVLink node (Scout 2 experts per GPU, Maverick 16).

What one GPU runs for a micro-batch of T tokens (T = 4k .. 64k on the full sweep):

* Dispatch and combine: its T tokens over all E experts, top_k each.
* Grouped GEMMs: the T * top_k rows it receives when every GPU receives as many as it sends,
  over its E / EP local experts. Each expert is a SwiGLU MLP: the gate and up projections fused
  (N = 2 * width, K = d_model) and the down projection (N = d_model, K = width), each forward,
  dX and dW, in BF16 and in FP8 (e4m3, row-wise scales).

Routing (the record's ``variant``, `kernels.moe_routing`): ``balanced``, or a Zipf skew with
s = 1.0 over the local experts by popularity, the GPU that holds the most popular experts (for
DeepSeek-V3's 4 local experts the shares are 48/24/16/12%; dispatch draws each token's experts
from the same skew over all E, seeded).

Cases are (kernel, builder keyword arguments, label) triples; `bench.sweeps` turns them into
its cases.
"""

from __future__ import annotations

from kernels.grouped_gemm import DIRECTIONS

MOE_CONFIGS = {
    "llama4-scout": {"d_model": 5120, "expert_ffn": 8192, "experts": 16, "top_k": 1,
                     "shared_experts": 1, "expert_parallel": 8},
    "llama4-maverick": {"d_model": 5120, "expert_ffn": 8192, "experts": 128, "top_k": 1,
                        "shared_experts": 1, "expert_parallel": 8},
    "deepseek-v3": {"d_model": 7168, "expert_ffn": 2048, "experts": 256, "top_k": 8,
                    "shared_experts": 1, "expert_parallel": 64},
}
EXPERT_PARALLEL_SOURCE = {
    "llama4-scout": "assumed: one 8-GPU node (Meta has not published Llama 4's layout)",
    "llama4-maverick": "assumed: one 8-GPU node (Meta has not published Llama 4's layout)",
    "deepseek-v3": "DeepSeek-V3 technical report (arXiv 2412.19437), Sec. 3.2: 64-way EP",
}
ROUTINGS = ("balanced", "zipf1.0")
TOKENS_PER_MICROBATCH = (4096, 16384, 65536)
GEMM_DTYPES = ("bf16", "fp8_e4m3")


def expert_gemms(config: dict) -> list[tuple[str, int, int]]:
    """(name, n, k) of an expert's two GEMMs: fused gate/up and down."""
    d, f = config["d_model"], config["expert_ffn"]
    return [("gate-up", 2 * f, d), ("down", d, f)]


def model_cases(name: str, tokens: int) -> list[tuple]:
    """Every MoE case of one config at ``tokens`` tokens per GPU micro-batch."""
    config = MOE_CONFIGS[name]
    ep, top_k = config["expert_parallel"], config["top_k"]
    local = config["experts"] // ep
    cases = []
    for routing in ROUTINGS:
        for gemm, n, k in expert_gemms(config):
            label = f"{name} {gemm} ep{ep}, {tokens} tokens"
            for dtype in GEMM_DTYPES:
                for direction in DIRECTIONS:
                    cases.append(("grouped_gemm", {"tokens": tokens * top_k, "experts": local,
                                                   "n": n, "k": k, "dtype": dtype,
                                                   "direction": direction, "variant": routing},
                                  label))
        for family in ("moe_dispatch", "moe_combine"):
            cases.append((family, {"tokens": tokens, "d_model": config["d_model"],
                                   "experts": config["experts"], "top_k": top_k,
                                   "dtype": "bf16", "variant": routing}, f"{name}, {tokens} tokens"))
    return cases


def full() -> list[tuple]:
    return [case for name in MOE_CONFIGS for tokens in TOKENS_PER_MICROBATCH
            for case in model_cases(name, tokens)]


#: Quick-sweep token counts of the balanced forward grouped GEMM and of balanced dispatch and
#: combine: three sizes each (32, 128 and 512 tokens per expert over 4 experts), the fewest a
#: throughput curve against tokens per expert is fitted from (`scaling.hardware.curves`).
QUICK_GEMM_TOKENS = (128, 512, 2048)
QUICK_ROUTING_TOKENS = (256, 512, 1024)


def quick(device_type: str = "cpu") -> list[tuple]:
    """Small problems, well under a second each on a 2-core CPU: the grouped GEMM forward
    (balanced at three sizes in BF16 and FP8, and skewed) and both backward GEMMs (skewed; in
    FP8 too off the CPU), dispatch and combine (balanced at three sizes, and skewed)."""
    gemm = {"tokens": 512, "experts": 4, "n": 256, "k": 128}
    runs = [("bf16", "fwd", "zipf1.0"), ("bf16", "bwd_dx", "zipf1.0"),
            ("bf16", "bwd_dw", "zipf1.0"), ("fp8_e4m3", "fwd", "zipf1.0")]
    if device_type != "cpu":
        runs += [("fp8_e4m3", direction, "zipf1.0") for direction in DIRECTIONS[1:]]
    cases = [("grouped_gemm", {**gemm, "tokens": tokens, "dtype": dtype, "direction": "fwd",
                               "variant": "balanced"}, "small")
             for dtype in GEMM_DTYPES for tokens in QUICK_GEMM_TOKENS]
    cases += [("grouped_gemm", {**gemm, "dtype": dtype, "direction": direction,
                                "variant": routing}, "small")
              for dtype, direction, routing in runs]
    routing = {"tokens": 1024, "d_model": 256, "experts": 16, "top_k": 4, "dtype": "bf16"}
    for family in ("moe_dispatch", "moe_combine"):
        cases += [(family, {**routing, "tokens": tokens, "variant": "balanced"}, "small")
                  for tokens in QUICK_ROUTING_TOKENS]
        cases += [(family, {**routing, "variant": r}, "small") for r in ROUTINGS[1:]]
    return cases
