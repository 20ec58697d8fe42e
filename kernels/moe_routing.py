"""Routing distributions for the mixture-of-experts benchmarks: how many tokens each expert gets.

A distribution is named by a string, which every MoE record carries as its ``variant``:

* ``"balanced"``: every expert equally likely, the load a balancing loss (or DeepSeek-V3's
  auxiliary-loss-free bias) aims for.
* ``"zipf<s>"``, e.g. ``"zipf1.0"``: expert e (0-based, most popular first) has probability
  proportional to 1 / (e + 1)^s, a skew that shows what imbalance costs. With s = 1 over 4
  experts the shares are 48%, 24%, 16% and 12%.

It is realised in two ways, both deterministic:

* `expert_rows`: the expected load of each expert, for the grouped GEMM. The rows are split in
  proportion to the probabilities and rounded by largest remainder (Hamilton's method), so they
  sum to the total exactly; FLOPs and bytes are then known when the spec is built.
* `sample_topk`: each token's top-k distinct experts drawn without replacement from the
  distribution, for dispatch and combine, by the Gumbel-top-k trick (Kool, van Hoof and Welling,
  ICML 2019: the k largest of log p + Gumbel noise are a sample without replacement). The draw
  uses `ROUTING_SEED`, independent of the seed of the data, so the check and the timed run see
  the same routing and the record's load statistics describe both.
"""

from __future__ import annotations

import functools
import math
import re

import torch

from kernels.spec import KernelError

BALANCED = "balanced"
ROUTING_SEED = 0
_ZIPF = re.compile(r"zipf(\d+(?:\.\d+)?)")


def routing_probs(routing: str, experts: int) -> list[float]:
    """Probability of each expert under the named distribution."""
    if not isinstance(experts, int) or isinstance(experts, bool) or experts < 1:
        raise KernelError(f"experts must be a positive integer, got {experts!r}")
    if routing == BALANCED:
        return [1.0 / experts] * experts
    match = _ZIPF.fullmatch(routing) if isinstance(routing, str) else None
    if match is None or not float(match.group(1)) > 0:
        raise KernelError(f"unknown routing '{routing}'; known: balanced, zipf<s> with s > 0 "
                          f"(e.g. zipf1.0)")
    s = float(match.group(1))
    weights = [(e + 1) ** -s for e in range(experts)]
    total = math.fsum(weights)
    return [w / total for w in weights]


def expert_rows(rows: int, experts: int, routing: str) -> tuple[int, ...]:
    """``rows`` routed rows split over ``experts`` by their expected share (largest remainder)."""
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
        raise KernelError(f"rows must be a positive integer, got {rows!r}")
    quotas = [rows * p for p in routing_probs(routing, experts)]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(experts), key=lambda e: (counts[e] - quotas[e], e))
    for e in by_remainder[:rows - sum(counts)]:
        counts[e] += 1
    return tuple(counts)


@functools.lru_cache(maxsize=64)
def _sample(tokens: int, experts: int, top_k: int, routing: str) -> torch.Tensor:
    log_p = torch.tensor(routing_probs(routing, experts), dtype=torch.float64).log()
    gen = torch.Generator().manual_seed(ROUTING_SEED)
    uniform = torch.rand(tokens, experts, generator=gen, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-300)))
    return torch.topk(log_p + gumbel, top_k, dim=1).indices.to(torch.int32)


def sample_topk(tokens: int, experts: int, top_k: int, routing: str) -> torch.Tensor:
    """(tokens, top_k) int32 expert ids, distinct within each token, on the CPU."""
    for name, value in (("tokens", tokens), ("top_k", top_k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise KernelError(f"{name} must be a positive integer, got {value!r}")
    if top_k > experts:
        raise KernelError(f"top_k {top_k} exceeds the {experts} experts")
    return _sample(tokens, experts, top_k, routing).clone()


def load_stats(rows_per_expert) -> dict:
    """Tokens per expert, for a record's shape: mean (rounded to a whole token; the shape's
    tokens / experts gives it exactly) and max."""
    counts = [int(c) for c in rows_per_expert]
    return {"tokens_per_expert_mean": round(sum(counts) / len(counts)),
            "tokens_per_expert_max": max(counts)}
