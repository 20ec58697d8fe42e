"""The transformer cost model: parameters, training FLOPs and the kernel shapes of one layer.

A `ModelConfig` is a Llama-style decoder (RMSNorm, grouped-query attention with rotary
embeddings, SwiGLU MLP, untied input and output embeddings), optionally with a
mixture-of-experts MLP (``experts`` routed experts of which ``experts_per_token`` are used per
token, plus ``shared_experts`` that every token uses).

Counting (DESIGN.md, "FLOP counting"): a training step costs 6 FLOPs per active matmul
parameter per token (2 forward, 4 backward; Kaplan et al. 2020, Hoffmann et al. 2022) plus the
attention term, written out in `ModelConfig.attention_flops_per_token`. The input embedding is
a table lookup and costs no FLOPs; the output projection is a matmul and counts. Norms, rotary
embeddings and the SwiGLU product are elementwise and are not counted (they are time, not
model FLOPs: `scaling.step` charges them as memory traffic).

`ModelConfig.layer_ops` gives the GEMM and attention shapes of one layer's forward and
backward for a micro-batch under Megatron-style tensor parallelism (Shoeybi et al. 2019): the
QKV and gate/up projections are split by output columns, the output and down projections by
input rows, so each GPU holds ``1/tp`` of the heads and of the MLP width.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from kernels import flops as kflops  # plain arithmetic, no torch
from scaling.errors import DataError, UnknownNameError
from scaling.units import format_count

# Llama 3 paper (Dubey et al. 2024, arXiv 2407.21783), Table 3: vocabulary 128,000 tokens,
# 8 key/value heads for all three sizes, SwiGLU, RoPE; context 8K during pre-training.
LLAMA3_VOCAB = 128_000
LLAMA3_SEQ = 8192
LLAMA3_SOURCE = "Llama 3 paper (arXiv 2407.21783), Table 3"


@dataclass(frozen=True)
class Op:
    """One kernel call of a training step: a GEMM ``{m, n, k}`` or an attention call
    ``{batch, heads_q, heads_kv, seq, head_dim, causal}``, run ``count`` times."""

    kind: str  # "gemm" | "attention"
    name: str  # e.g. "qkv", "qkv.dgrad", "attention"
    direction: str  # "fwd" | "bwd"
    shape: dict
    count: int = 1

    @property
    def flops(self) -> int:
        """FLOPs of one call, by the conventions of `kernels.flops`."""
        s, f = self.shape, kflops
        if self.kind == "gemm":
            return f.gemm_flops(s["m"], s["n"], s["k"])
        fn = f.attention_fwd_flops if self.direction == "fwd" else f.attention_bwd_flops
        return fn(s["batch"], s["heads_q"], s["seq"], s["seq"], s["head_dim"], s["causal"])


def _gemm(name: str, direction: str, m: int, n: int, k: int, count: int = 1) -> Op:
    return Op("gemm", name, direction, {"m": int(m), "n": int(n), "k": int(k)}, count)


def _with_backward(fwd: list[Op]) -> list[Op]:
    """Each forward GEMM Y[m,n] = X[m,k] W[k,n] has two backward GEMMs:
    dX[m,k] = dY[m,n] W^T (``dgrad``) and dW[k,n] = X^T dY (``wgrad``, contracting over m)."""
    out = list(fwd)
    for op in fwd:
        m, n, k = op.shape["m"], op.shape["n"], op.shape["k"]
        out.append(_gemm(op.name + ".dgrad", "bwd", m, k, n, op.count))
        out.append(_gemm(op.name + ".wgrad", "bwd", k, n, m, op.count))
    return out


@dataclass(frozen=True)
class ModelConfig:
    """A Llama-style (dense or mixture-of-experts) decoder-only transformer."""

    name: str
    layers: int
    d_model: int
    d_ffn: int  # MLP hidden width (of each expert, for MoE)
    heads_q: int
    heads_kv: int
    vocab: int
    seq: int = LLAMA3_SEQ  # default training context
    experts: int = 1  # routed experts per MLP (1: dense)
    experts_per_token: int = 1
    shared_experts: int = 0
    source: str = ""

    def __post_init__(self):
        for key in ("layers", "d_model", "d_ffn", "heads_q", "heads_kv", "vocab", "seq",
                    "experts", "experts_per_token"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DataError(f"model '{self.name}': {key} must be a positive integer, "
                                f"got {value!r}")
        if not isinstance(self.shared_experts, int) or self.shared_experts < 0:
            raise DataError(f"model '{self.name}': shared_experts must be >= 0, "
                            f"got {self.shared_experts!r}")
        if self.d_model % self.heads_q:
            raise DataError(f"model '{self.name}': d_model {self.d_model} is not a multiple "
                            f"of heads_q {self.heads_q}")
        if self.heads_q % self.heads_kv:
            raise DataError(f"model '{self.name}': heads_q {self.heads_q} is not a multiple "
                            f"of heads_kv {self.heads_kv}")
        if self.experts_per_token > self.experts:
            raise DataError(f"model '{self.name}': experts_per_token {self.experts_per_token} "
                            f"exceeds experts {self.experts}")

    # -- parameters -------------------------------------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads_q

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def attention_params(self) -> int:
        """Wq, Wk, Wv, Wo of one layer (no biases, as in Llama)."""
        d, hd = self.d_model, self.head_dim
        return 2 * d * self.heads_q * hd + 2 * d * self.heads_kv * hd

    @property
    def expert_params(self) -> int:
        """One SwiGLU MLP: gate and up (d x d_ffn each), down (d_ffn x d)."""
        return 3 * self.d_model * self.d_ffn

    @property
    def router_params(self) -> int:
        return self.d_model * self.experts if self.is_moe else 0

    def _layer_params(self, mlps: int) -> int:
        norms = 2 * self.d_model  # RMSNorm weights before attention and before the MLP
        return self.attention_params + mlps * self.expert_params + self.router_params + norms

    def _model_params(self, mlps: int) -> int:
        """All layers with ``mlps`` MLPs each, the input and output embeddings, the final norm."""
        return (self.layers * self._layer_params(mlps) + 2 * self.vocab * self.d_model
                + self.d_model)

    @property
    def params(self) -> int:
        """Total parameters, embeddings included (the count papers quote: 8B, 70B, 405B)."""
        return self._model_params(self.experts + self.shared_experts)

    @property
    def active_params(self) -> int:
        """Parameters one token uses: equal to `params` for a dense model."""
        return self._model_params(self.experts_per_token + self.shared_experts)

    @property
    def matmul_params(self) -> int:
        """Active parameters that take part in a matmul: all but the input embedding table
        (a lookup) and the norm weights (elementwise)."""
        mlps = self.experts_per_token + self.shared_experts
        per_layer = self.attention_params + mlps * self.expert_params + self.router_params
        return self.layers * per_layer + self.vocab * self.d_model

    # -- FLOPs ------------------------------------------------------------------------------

    def attention_flops_per_token(self, seq: int | None = None, causal: bool = True) -> float:
        """Training FLOPs per token of the attention scores and their use, beyond 6N.

        Per layer and token the forward computes q.k for ``seq`` keys and the weighted sum of
        ``seq`` values, 2 FLOPs per multiply-add each: ``4 * seq * heads_q * head_dim``
        (PaLM, Chowdhery et al. 2022, App. B; Kaplan et al. 2020, Table 1). A causal mask
        halves it (a token sees on average half the sequence). The backward costs twice the
        forward (model FLOPs, no recomputation), so training costs 3x:
        ``layers * 3 * 4 * seq * heads_q * head_dim / (2 if causal else 1)``.
        """
        seq = self.seq if seq is None else _positive_int("seq", seq)
        # one sequence's forward (kernels.flops, the one statement of the convention) per token
        forward = kflops.attention_fwd_flops(1, self.heads_q, seq, seq, self.head_dim, causal) / seq
        return float(self.layers * 3 * forward)

    def flops_per_token(self, seq: int | None = None, causal: bool = True) -> float:
        """Training FLOPs per token: ``6 * matmul_params`` plus the attention term."""
        return 6.0 * self.matmul_params + self.attention_flops_per_token(seq, causal)

    def training_flops(self, tokens: float, seq: int | None = None) -> float:
        return self.flops_per_token(seq) * float(tokens)

    # -- kernel shapes ----------------------------------------------------------------------

    def local_heads(self, tp: int) -> tuple[int, int]:
        """(q heads, kv heads) per GPU under tensor parallelism ``tp``. With fewer kv heads
        than GPUs each GPU keeps one (replicated) kv head, as Megatron does for GQA."""
        tp = _positive_int("tp", tp)
        if self.heads_q % tp:
            raise DataError(f"model '{self.name}': heads_q {self.heads_q} is not divisible by "
                            f"tensor parallelism {tp}; choose tp dividing it")
        if self.heads_kv >= tp and self.heads_kv % tp:
            raise DataError(f"model '{self.name}': heads_kv {self.heads_kv} is not divisible "
                            f"by tensor parallelism {tp}")
        return self.heads_q // tp, max(1, self.heads_kv // tp)

    def layer_ops(self, micro_batch: int, seq: int | None = None, tp: int = 1) -> list[Op]:
        """The GEMMs and attention calls of one transformer layer, forward and backward, for
        ``micro_batch`` sequences of ``seq`` tokens on one GPU of a tensor-parallel group."""
        b = _positive_int("micro_batch", micro_batch)
        seq = self.seq if seq is None else _positive_int("seq", seq)
        hq, hkv = self.local_heads(tp)
        if self.d_ffn % tp:
            raise DataError(f"model '{self.name}': d_ffn {self.d_ffn} is not divisible by "
                            f"tensor parallelism {tp}")
        d, hd, ffn, tokens = self.d_model, self.head_dim, self.d_ffn // tp, b * seq
        fwd = [_gemm("qkv", "fwd", tokens, (hq + 2 * hkv) * hd, d),
               _gemm("attn_out", "fwd", tokens, d, hq * hd)]
        if self.is_moe:
            # Balanced routing: each expert sees tokens * k / E tokens (no expert parallelism).
            per_expert = max(1, math.ceil(tokens * self.experts_per_token / self.experts))
            fwd.append(_gemm("router", "fwd", tokens, self.experts, d))
            fwd.append(_gemm("expert_gate_up", "fwd", per_expert, 2 * ffn, d, self.experts))
            fwd.append(_gemm("expert_down", "fwd", per_expert, d, ffn, self.experts))
        if not self.is_moe or self.shared_experts:
            count = max(1, self.shared_experts)
            fwd.append(_gemm("mlp_gate_up", "fwd", tokens, 2 * ffn, d, count))
            fwd.append(_gemm("mlp_down", "fwd", tokens, d, ffn, count))
        ops = _with_backward(fwd)
        shape = {"batch": b, "heads_q": hq, "heads_kv": hkv, "seq": seq, "head_dim": hd,
                 "causal": True}
        ops.append(Op("attention", "attention", "fwd", dict(shape)))
        ops.append(Op("attention", "attention", "bwd", dict(shape)))
        return ops

    def head_ops(self, micro_batch: int, seq: int | None = None, tp: int = 1) -> list[Op]:
        """The output projection (vocabulary-parallel over ``tp``), forward and backward."""
        b = _positive_int("micro_batch", micro_batch)
        seq = self.seq if seq is None else _positive_int("seq", seq)
        tp = _positive_int("tp", tp)
        return _with_backward([_gemm("lm_head", "fwd", b * seq, math.ceil(self.vocab / tp),
                                     self.d_model)])

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(head_dim=self.head_dim, params=self.params, active_params=self.active_params,
                   matmul_params=self.matmul_params)
        return out


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            as_int = None
        if as_int is None or as_int != value or as_int < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
        value = as_int
    return value


# -- presets ---------------------------------------------------------------------------------

_PRESETS = {
    # Llama 3 paper, Table 3.
    "llama3-8b": ModelConfig("llama3-8b", layers=32, d_model=4096, d_ffn=14336, heads_q=32,
                             heads_kv=8, vocab=LLAMA3_VOCAB, source=LLAMA3_SOURCE),
    "llama3-70b": ModelConfig("llama3-70b", layers=80, d_model=8192, d_ffn=28672, heads_q=64,
                              heads_kv=8, vocab=LLAMA3_VOCAB, source=LLAMA3_SOURCE),
    "llama3-405b": ModelConfig("llama3-405b", layers=126, d_model=16384, d_ffn=53248,
                               heads_q=128, heads_kv=8, vocab=LLAMA3_VOCAB,
                               source=LLAMA3_SOURCE),
}


def model_presets() -> dict[str, ModelConfig]:
    return dict(_PRESETS)


def model_preset(name: str) -> ModelConfig:
    try:
        return _PRESETS[name]
    except KeyError:
        raise UnknownNameError("model", name, _PRESETS) from None


# -- a concrete model for a parameter count --------------------------------------------------

# Shape rules, from Llama 3's three sizes (Table 3): head dimension 128; 8 kv heads;
# d_model / layers near 128 (8B: 4096/32 = 128, 70B: 102, 405B: 130); SwiGLU width from the
# Llama reference code, int(multiplier * int(8 d / 3)) rounded up to a multiple
# (ffn_dim_multiplier 1.3, multiple_of 1024 in the 8B and 70B params.json, which reproduces
# 14336 and 28672; 256 below d_model 4096 so small models keep a ~3.5x MLP).
HEAD_DIM = 128
ASPECT = 128  # d_model per layer
FFN_MULTIPLIER = 1.3


def llama_ffn(d_model: int) -> int:
    multiple = 1024 if d_model >= 4096 else 256
    hidden = int(FFN_MULTIPLIER * int(8 * d_model / 3))
    return -(-hidden // multiple) * multiple


def config_for_params(n_params: float, *, seq: int = LLAMA3_SEQ, vocab: int = LLAMA3_VOCAB,
                      heads_kv: int = 8, name: str | None = None) -> ModelConfig:
    """A Llama-like dense config with about ``n_params`` total parameters.

    For each width (a multiple of the 128-wide head with whole groups of query heads per
    kv head) the depth that gives ``n_params`` is
    solved for; the width whose depth is closest (in ratio) to d_model / 128 wins, and the
    depth is rounded to whole layers. The result is within one layer's parameters of the
    target; ``params`` says exactly how many it has.
    """
    try:
        target = float(n_params)
    except (TypeError, ValueError):
        raise DataError(f"parameter count must be a number, got {n_params!r}") from None
    if not math.isfinite(target) or target <= 0:
        raise DataError(f"parameter count must be positive and finite, got {n_params!r}")
    best = None
    d = HEAD_DIM
    while True:
        heads = d // HEAD_DIM
        kv = min(heads_kv, heads)
        if heads % kv:  # keep whole query groups (and widths tensor parallelism can split)
            d += HEAD_DIM
            continue
        probe = ModelConfig("probe", 1, d, llama_ffn(d), heads, kv, vocab, seq)
        fixed = 2 * vocab * d + d
        per_layer = probe.params - fixed
        layers_real = (target - fixed) / per_layer
        if layers_real < 0.5:
            break
        score = abs(math.log((d / layers_real) / ASPECT))
        if best is None or score < best[0]:
            best = (score, d, kv, max(1, round(layers_real)))
        d += HEAD_DIM
    if best is None:
        smallest = 2 * vocab * HEAD_DIM
        raise DataError(f"{format_count(target)} parameters is too few for a Llama-like model "
                        f"with a {vocab:,}-token vocabulary (the embeddings alone need "
                        f"{format_count(smallest)}); use a larger count")
    _, d, kv, layers = best
    label = name or f"llama-like-{format_count(target).lower()}"
    return ModelConfig(label, layers, d, llama_ffn(d), d // HEAD_DIM, kv, vocab, seq,
                       source="config_for_params: Llama 3 shape rules (head_dim 128, 8 kv "
                              "heads, d_model/layers ~ 128, SwiGLU 1.3 x 8d/3)")


def resolve_model(name: str | None = None, params: float | None = None,
                  seq: int | None = None) -> ModelConfig:
    """A preset by name, or `config_for_params`; ``seq`` replaces the default context."""
    if (name is None) == (params is None):
        raise DataError("give a model preset name or a parameter count (not both)")
    config = model_preset(name) if name is not None else config_for_params(params)
    if seq is not None:
        config = replace(config, seq=_positive_int("seq", seq))
    return config


__all__ = ["ModelConfig", "Op", "model_preset", "model_presets", "config_for_params",
           "resolve_model", "llama_ffn"]
