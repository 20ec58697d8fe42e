"""The transformer cost model: parameters, training FLOPs and the kernel shapes of one layer.

A `ModelConfig` is a decoder-only transformer. By default it is Llama-style (RMSNorm,
grouped-query attention with rotary embeddings, SwiGLU MLP, untied input and output
embeddings, no biases, no dropout); the fields also describe GPT-style models (LayerNorm,
multi-head attention, a 4h GELU MLP, biases, tied embeddings, learned positions, dropout: the
Megatron-LM GPT rows) and DeepSeek's multi-head latent attention (`MLA`).

A mixture-of-experts model has ``experts`` routed experts of width ``d_ffn``, of which
``experts_per_token`` are used per token, plus ``shared_experts`` of the same width that every
token uses. Not every layer need be MoE: layer ``i`` (from 0) is MoE when
``i >= first_dense_layers`` and ``(i + 1) % moe_every == 0`` (DeepSeek-V3's first three dense
layers; Llama 4 Maverick's ``interleave_moe_layer_step`` 2, MoE layers 1, 3, ..., 47, as the
released `transformers` config places them); the dense layers' MLP is ``d_ffn_dense`` wide.
`ModelConfig.params` counts every parameter, `ModelConfig.active_params` those one token uses.

Counting (DESIGN.md, "FLOP counting"): a training step costs 6 FLOPs per active matmul
parameter per token (2 forward, 4 backward; Kaplan et al. 2020, Hoffmann et al. 2022) plus the
attention term, written out in `ModelConfig.attention_flops_per_token`. The input embedding is
a table lookup and costs no FLOPs; the output projection is a matmul and counts. Norms, rotary
embeddings and the SwiGLU product are elementwise and are not counted (they are time, not
model FLOPs: `scaling.model.step` charges them as memory traffic).

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
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3): queries and keys/values go through
    low-rank projections (``q_lora_rank``, ``kv_lora_rank``, each followed by an RMSNorm), each
    head has a ``qk_nope_head_dim`` part and a shared rotary part of ``qk_rope_head_dim`` for
    queries and keys, and values of ``v_head_dim`` (DeepSeek-V3 repository,
    ``inference/model.py`` and ``inference/configs/config_671B.json``)."""

    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


MLP_KINDS = ("swiglu", "gelu")
NORM_KINDS = ("rmsnorm", "layernorm")
LAYER_KINDS = ("dense", "moe")


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer, dense or mixture-of-experts (see the module docstring)."""

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
    d_ffn_dense: int | None = None  # MLP width of an MoE model's dense layers (None: d_ffn)
    moe_every: int = 1  # Llama 4's interleave_moe_layer_step
    first_dense_layers: int = 0  # DeepSeek-V3's n_dense_layers (first_k_dense_replace)
    mlp: str = "swiglu"  # "swiglu" (gate, up, down) | "gelu" (up, down)
    norm: str = "rmsnorm"  # "rmsnorm" (a weight) | "layernorm" (a weight and a bias)
    bias: bool = False  # biases on the attention and MLP projections (GPT, Megatron-LM)
    tied_embeddings: bool = False  # the output projection is the input embedding's table
    learned_positions: bool = False  # a learned seq x d_model position table (GPT)
    dropout: bool = False  # dropout after attention scores, attention and MLP (GPT)
    mla: MLA | None = None  # multi-head latent attention instead of MHA/GQA
    assumptions: tuple[str, ...] = ()  # what an assumed preset assumed, one line each

    def __post_init__(self):
        for key in ("layers", "d_model", "d_ffn", "heads_q", "heads_kv", "vocab", "seq",
                    "experts", "experts_per_token", "moe_every"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DataError(f"model '{self.name}': {key} must be a positive integer, "
                                f"got {value!r}")
        for key in ("shared_experts", "first_dense_layers"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DataError(f"model '{self.name}': {key} must be >= 0, got {value!r}")
        if self.d_ffn_dense is not None and (not isinstance(self.d_ffn_dense, int)
                                             or self.d_ffn_dense < 1):
            raise DataError(f"model '{self.name}': d_ffn_dense must be a positive integer or "
                            f"None, got {self.d_ffn_dense!r}")
        if self.mlp not in MLP_KINDS:
            raise UnknownNameError("MLP kind", self.mlp, MLP_KINDS)
        if self.norm not in NORM_KINDS:
            raise UnknownNameError("norm kind", self.norm, NORM_KINDS)
        if self.mla is not None and self.heads_kv != self.heads_q:
            raise DataError(f"model '{self.name}': with latent attention every query head has "
                            f"its own key and value head (heads_kv = heads_q = {self.heads_q})")
        if self.d_model % self.heads_q:
            raise DataError(f"model '{self.name}': d_model {self.d_model} is not a multiple "
                            f"of heads_q {self.heads_q}")
        if self.heads_q % self.heads_kv:
            raise DataError(f"model '{self.name}': heads_q {self.heads_q} is not a multiple "
                            f"of heads_kv {self.heads_kv}")
        if self.experts_per_token > self.experts:
            raise DataError(f"model '{self.name}': experts_per_token {self.experts_per_token} "
                            f"exceeds experts {self.experts}")

    # -- layers ------------------------------------------------------------------------------

    def moe_layers_between(self, start, stop):
        """How many of layers ``start .. stop - 1`` (from 0) are MoE layers: those with
        ``i >= first_dense_layers`` and ``(i + 1) % moe_every == 0``. Plain integer arithmetic,
        so ``start`` and ``stop`` may be numpy integer arrays (the memory model counts the MoE
        layers of many pipeline stages at once)."""
        if not self.is_moe:
            return stop * 0 - start * 0
        step = self.moe_every
        lo = start + (self.first_dense_layers - start) * (start < self.first_dense_layers)
        hi = stop + (lo - stop) * (stop < lo)  # an empty range counts none
        return (hi // step) - (lo // step)

    @property
    def moe_layers(self) -> int:
        return int(self.moe_layers_between(0, self.layers))

    @property
    def dense_layers(self) -> int:
        return self.layers - self.moe_layers

    def layer_kinds(self) -> tuple[str, ...]:
        """The kinds of layer the model has: ``("dense",)``, ``("moe",)`` or both."""
        return tuple(k for k, n in (("dense", self.dense_layers), ("moe", self.moe_layers))
                     if n)

    # -- parameters -------------------------------------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads_q

    @property
    def qk_head_dim(self) -> int:
        """Width of one head's query and key (MLA: the no-rotary and rotary parts)."""
        return self.mla.qk_head_dim if self.mla else self.head_dim

    @property
    def v_head_dim(self) -> int:
        return self.mla.v_head_dim if self.mla else self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def dense_width(self) -> int:
        """MLP width of the dense layers (``d_ffn`` unless ``d_ffn_dense`` says otherwise)."""
        return self.d_ffn if self.d_ffn_dense is None else self.d_ffn_dense

    @property
    def norm_params(self) -> int:
        return self.d_model * (2 if self.norm == "layernorm" else 1)

    @property
    def attention_matmul_params(self) -> int:
        """The projection weights of one attention block: Wq, Wk, Wv, Wo (MHA/GQA), or MLA's
        down- and up-projections and Wo."""
        d, hq = self.d_model, self.heads_q
        if self.mla is None:
            hd = self.head_dim
            return 2 * d * hq * hd + 2 * d * self.heads_kv * hd
        replicated, split = self.mla_params_split()
        return replicated - self.mla.q_lora_rank - self.mla.kv_lora_rank + split

    def mla_params_split(self) -> tuple[int, int]:
        """(replicated, head-split) parameters of one latent-attention block: the down-
        projections and their RMSNorms stay whole on every tensor-parallel GPU (Megatron-Core
        keeps them unsplit); the up-projections and Wo are split by heads."""
        m, d, hq = self.mla, self.d_model, self.heads_q
        replicated = (d * m.q_lora_rank + d * (m.kv_lora_rank + m.qk_rope_head_dim)
                      + m.q_lora_rank + m.kv_lora_rank)
        split = (m.q_lora_rank * hq * m.qk_head_dim
                 + m.kv_lora_rank * hq * (m.qk_nope_head_dim + m.v_head_dim)
                 + hq * m.v_head_dim * d)
        return replicated, split

    @property
    def attention_params(self) -> int:
        """One attention block: its projections, their biases (GPT) and MLA's two RMSNorms."""
        extra = 0
        if self.bias:
            extra += (self.heads_q + 2 * self.heads_kv) * self.head_dim + self.d_model
        if self.mla is not None:
            extra += self.mla.q_lora_rank + self.mla.kv_lora_rank
        return self.attention_matmul_params + extra

    def mlp_matmul_params(self, width: int) -> int:
        """The weights of one MLP of hidden ``width``: SwiGLU gate, up and down (3 d w), or
        GELU up and down (2 d w)."""
        return (3 if self.mlp == "swiglu" else 2) * self.d_model * width

    def mlp_params(self, width: int) -> int:
        """One MLP of hidden ``width`` with its biases (GPT: first layer w (2w for SwiGLU),
        second d)."""
        bias = ((2 if self.mlp == "swiglu" else 1) * width + self.d_model) if self.bias else 0
        return self.mlp_matmul_params(width) + bias

    @property
    def expert_params(self) -> int:
        """One routed or shared expert (or the MLP of a dense model): an MLP of ``d_ffn``."""
        return self.mlp_params(self.d_ffn)

    @property
    def routed_expert_params(self) -> int:
        """Parameters of every routed expert of every MoE layer (0 for a dense model): what
        expert parallelism shards."""
        return self.moe_layers * self.experts * self.expert_params if self.is_moe else 0

    @property
    def router_params(self) -> int:
        return self.d_model * self.experts if self.is_moe else 0

    def layer_params(self, kind: str, active: bool = False) -> int:
        """Parameters of one layer of ``kind`` ("dense" or "moe"): attention, two norms and
        the MLP; an MoE layer's MLP is its routed experts (only ``experts_per_token`` of
        them when ``active``), its shared experts and the router."""
        if kind not in LAYER_KINDS:
            raise UnknownNameError("layer kind", kind, LAYER_KINDS)
        base = self.attention_params + 2 * self.norm_params
        if kind == "dense":
            return base + self.mlp_params(self.dense_width)
        routed = self.experts_per_token if active else self.experts
        return base + (routed + self.shared_experts) * self.expert_params + self.router_params

    @property
    def embedding_params(self) -> int:
        """The input embedding table, and the learned position table where there is one."""
        return self.vocab * self.d_model + (self.seq * self.d_model
                                            if self.learned_positions else 0)

    @property
    def head_params(self) -> int:
        """The output projection (none of its own when it is tied to the input embedding)
        and the final norm."""
        return (0 if self.tied_embeddings else self.vocab * self.d_model) + self.norm_params

    def _model_params(self, active: bool) -> int:
        return (self.dense_layers * self.layer_params("dense", active)
                + self.moe_layers * self.layer_params("moe", active)
                + self.embedding_params + self.head_params)

    @property
    def params(self) -> int:
        """Total parameters, embeddings included (the count papers quote: 8B, 70B, 405B)."""
        return self._model_params(active=False)

    @property
    def active_params(self) -> int:
        """Parameters one token uses: equal to `params` for a dense model."""
        return self._model_params(active=True)

    @property
    def matmul_params(self) -> int:
        """Active parameters that take part in a matmul: the projections of attention and of
        the MLPs one token uses, the router and the output projection (tied or not); not the
        input embedding and position tables (lookups), norms or biases (elementwise)."""
        dense = self.attention_matmul_params + self.mlp_matmul_params(self.dense_width)
        moe = (self.attention_matmul_params
               + (self.experts_per_token + self.shared_experts)
               * self.mlp_matmul_params(self.d_ffn) + self.router_params)
        return (self.dense_layers * dense + self.moe_layers * moe
                + self.vocab * self.d_model)

    # -- FLOPs ------------------------------------------------------------------------------

    def attention_flops_per_token(self, seq: int | None = None, causal: bool = True) -> float:
        """Training FLOPs per token of the attention scores and their use, beyond 6N.

        Per layer and token the forward computes q.k for ``seq`` keys and the weighted sum of
        ``seq`` values, 2 FLOPs per multiply-add each: ``4 * seq * heads_q * head_dim``
        (PaLM, Chowdhery et al. 2022, App. B; Kaplan et al. 2020, Table 1); with latent
        attention the two products have the query/key and the value head widths,
        ``2 * seq * heads_q * (qk_head_dim + v_head_dim)``. A causal mask halves it (a token
        sees on average half the sequence). The backward costs twice the forward (model
        FLOPs, no recomputation), so training costs 3x:
        ``layers * 3 * 4 * seq * heads_q * head_dim / (2 if causal else 1)``.
        """
        seq = self.seq if seq is None else _positive_int("seq", seq)
        # one sequence's forward (kernels.flops, the one statement of the convention) per
        # token: half the count at the q.k width plus half at the value width
        args = (1, self.heads_q, seq, seq)
        forward = (kflops.attention_fwd_flops(*args, self.qk_head_dim, causal)
                   + kflops.attention_fwd_flops(*args, self.v_head_dim, causal)) / (2 * seq)
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

    def _layer_kind(self, layer: str | None) -> str:
        kinds = self.layer_kinds()
        if layer is None:
            if len(kinds) > 1:
                raise DataError(f"model '{self.name}' has {self.dense_layers} dense and "
                                f"{self.moe_layers} MoE layers, and the step model times one "
                                f"kind of layer: ask for the kernels of one "
                                f"(layer='dense' or layer='moe')")
            return kinds[0]
        if layer not in kinds:
            raise UnknownNameError(f"layer kind of model '{self.name}'", layer, kinds)
        return layer

    def _attention_gemms(self, tokens: int, tp: int) -> list[Op]:
        """Forward GEMMs of one attention block on one tensor-parallel GPU. MLA's down-
        projections are replicated on every GPU of the group (Megatron-Core keeps them
        unsplit); its up-projections and Wo are split by heads like Wq, Wk, Wv, Wo."""
        hq, hkv = self.local_heads(tp)
        d = self.d_model
        if self.mla is None:
            hd = self.head_dim
            return [_gemm("qkv", "fwd", tokens, (hq + 2 * hkv) * hd, d),
                    _gemm("attn_out", "fwd", tokens, d, hq * hd)]
        m = self.mla
        return [_gemm("q_down", "fwd", tokens, m.q_lora_rank, d),
                _gemm("q_up", "fwd", tokens, hq * m.qk_head_dim, m.q_lora_rank),
                _gemm("kv_down", "fwd", tokens, m.kv_lora_rank + m.qk_rope_head_dim, d),
                _gemm("kv_up", "fwd", tokens, hq * (m.qk_nope_head_dim + m.v_head_dim),
                      m.kv_lora_rank),
                _gemm("attn_out", "fwd", tokens, d, hq * m.v_head_dim)]

    def _mlp_gemms(self, prefix: str, tokens: int, width: int, count: int = 1) -> list[Op]:
        up = 2 * width if self.mlp == "swiglu" else width
        return [_gemm(f"{prefix}_gate_up" if self.mlp == "swiglu" else f"{prefix}_up", "fwd",
                      tokens, up, self.d_model, count),
                _gemm(f"{prefix}_down", "fwd", tokens, self.d_model, width, count)]

    def layer_ops(self, micro_batch: int, seq: int | None = None, tp: int = 1,
                  layer: str | None = None, ep: int = 1) -> list[Op]:
        """The GEMMs and attention calls of one transformer layer, forward and backward, for
        ``micro_batch`` sequences of ``seq`` tokens on one GPU of a tensor-parallel group.
        A model with both dense and MoE layers needs ``layer`` ("dense" or "moe").

        With expert parallelism ``ep`` each GPU holds ``experts / ep`` of an MoE layer's
        routed experts (``ep`` must divide ``experts``) and, after the all-to-all dispatch,
        computes them on the tokens routed to them from the ``ep`` replicas of its expert-
        parallel group: ``ep`` times the tokens per expert, the same FLOPs per GPU."""
        b = _positive_int("micro_batch", micro_batch)
        ep = _positive_int("ep", ep)
        seq = self.seq if seq is None else _positive_int("seq", seq)
        kind = self._layer_kind(layer)
        hq, hkv = self.local_heads(tp)
        width = self.d_ffn if kind == "moe" else self.dense_width
        if width % tp:
            raise DataError(f"model '{self.name}': MLP width {width} is not divisible by "
                            f"tensor parallelism {tp}")
        ffn, tokens = width // tp, b * seq
        fwd = self._attention_gemms(tokens, tp)
        if kind == "moe":
            if self.experts % ep:
                raise DataError(f"model '{self.name}': expert parallelism {ep} does not divide "
                                f"its {self.experts} experts")
            # Balanced routing: each expert sees tokens * k / E tokens of each of the ep
            # replicas that send to it.
            per_expert = max(1, math.ceil(ep * tokens * self.experts_per_token / self.experts))
            fwd.append(_gemm("router", "fwd", tokens, self.experts, self.d_model))
            fwd += self._mlp_gemms("expert", per_expert, ffn, self.experts // ep)
            if self.shared_experts:
                fwd += self._mlp_gemms("mlp", tokens, ffn, self.shared_experts)
        else:
            fwd += self._mlp_gemms("mlp", tokens, ffn)
        ops = _with_backward(fwd)
        # The attention kernel's FLOPs go as heads x (q.k width + value width) / 2: MLA's
        # 192-wide queries and keys and 128-wide values count as 160 (exact for the FLOPs).
        head_dim = (self.qk_head_dim + self.v_head_dim) // 2
        shape = {"batch": b, "heads_q": hq, "heads_kv": hkv, "seq": seq, "head_dim": head_dim,
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
        out["assumptions"] = list(self.assumptions)
        out.update(head_dim=self.head_dim, params=self.params, active_params=self.active_params,
                   matmul_params=self.matmul_params, dense_layers=self.dense_layers,
                   moe_layers=self.moe_layers)
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

LLAMA4_VOCAB = 202048
LLAMA4_SOURCE = ("Llama 4 released config: huggingface/transformers "
                 "models/llama4/configuration_llama4.py (Llama4TextConfig defaults, the "
                 "Llama-4-Scout-17B-16E checkpoint) and NVIDIA/TensorRT-LLM "
                 "test_modeling_llama_min_latency.py (Maverick: 128 experts, "
                 "interleave_moe_layer_step 2, 48 layers); text model only, no vision tower")
LLAMA4_SEQ_ASSUMED = ("pre-training sequence length not published: 8,192 assumed (Llama 3's "
                      "pre-training context and the released config's attention_chunk_size)")
NARAYANAN_SOURCE = ("Narayanan et al. 2021 (SC'21, arXiv 2104.04473), Table 1 and Sec. 5.1: "
                    "GPT, vocabulary 51,200, sequence 2,048; layer layout of Megatron-LM's GPT "
                    "(LayerNorm, biases, GELU 4h MLP, tied embeddings, learned positions, "
                    "dropout)")
DEEPSEEK_V3_SOURCE = ("DeepSeek-V3 repository (deepseek-ai/DeepSeek-V3), "
                      "inference/configs/config_671B.json and inference/model.py; main model "
                      "only (not the 14B multi-token-prediction module)")


KORTHIKANTI_SOURCE = ("Korthikanti et al. 2022 (arXiv 2205.05198), Table 3: {shape}; Sec. 6: "
                      "vocabulary 51,200, sequence 2,048; Megatron-LM's GPT layer")


def _megatron_gpt(name: str, heads: int, hidden: int, layers: int,
                  source: str = NARAYANAN_SOURCE) -> ModelConfig:
    """A Megatron-LM GPT (a row of Narayanan et al. 2021, Table 1, unless ``source`` says
    otherwise) with ``heads`` heads, ``hidden`` width and ``layers`` layers; the parameter
    count is Narayanan's Eq. (2) plus the final LayerNorm."""
    return ModelConfig(name, layers=layers, d_model=hidden, d_ffn=4 * hidden, heads_q=heads,
                       heads_kv=heads, vocab=51200, seq=2048, mlp="gelu", norm="layernorm",
                       bias=True, tied_embeddings=True, learned_positions=True, dropout=True,
                       source=source)


_PRESETS = {
    # Llama 3 paper, Table 3.
    "llama3-8b": ModelConfig("llama3-8b", layers=32, d_model=4096, d_ffn=14336, heads_q=32,
                             heads_kv=8, vocab=LLAMA3_VOCAB, source=LLAMA3_SOURCE),
    "llama3-70b": ModelConfig("llama3-70b", layers=80, d_model=8192, d_ffn=28672, heads_q=64,
                              heads_kv=8, vocab=LLAMA3_VOCAB, source=LLAMA3_SOURCE),
    "llama3-405b": ModelConfig("llama3-405b", layers=126, d_model=16384, d_ffn=53248,
                               heads_q=128, heads_kv=8, vocab=LLAMA3_VOCAB,
                               source=LLAMA3_SOURCE),
    # Routed experts and the shared expert are intermediate_size 8192 wide, the dense layers'
    # MLP intermediate_size_mlp 16384; one routed expert per token (num_experts_per_tok 1).
    "llama4-scout": ModelConfig(
        "llama4-scout", layers=48, d_model=5120, d_ffn=8192, heads_q=40, heads_kv=8,
        vocab=LLAMA4_VOCAB, experts=16, experts_per_token=1, shared_experts=1,
        d_ffn_dense=16384, moe_every=1, source=LLAMA4_SOURCE,
        assumptions=(LLAMA4_SEQ_ASSUMED,)),
    "llama4-maverick": ModelConfig(
        "llama4-maverick", layers=48, d_model=5120, d_ffn=8192, heads_q=40, heads_kv=8,
        vocab=LLAMA4_VOCAB, experts=128, experts_per_token=1, shared_experts=1,
        d_ffn_dense=16384, moe_every=2, source=LLAMA4_SOURCE,
        assumptions=(LLAMA4_SEQ_ASSUMED,)),
    # Behemoth's architecture is not published: Meta's post, as quoted, gives 288B active
    # parameters, 16 experts and "nearly 2T" total. Everything else is assumed, as listed.
    "llama4-behemoth": ModelConfig(
        "llama4-behemoth", layers=96, d_model=16384, d_ffn=24064, heads_q=128, heads_kv=8,
        vocab=LLAMA4_VOCAB, experts=16, experts_per_token=1, shared_experts=1, moe_every=1,
        source="ASSUMED architecture: only '288B active parameters, 16 experts, nearly 2T "
               "total' is published (Meta's Llama 4 announcement, as quoted by third parties)",
        assumptions=(
            "Scout's layout scaled up: every layer MoE, 16 routed experts, top-1, one shared "
            "expert of the routed width (Scout is the published 16-expert Llama 4)",
            "attention of Llama 3 405B: d_model 16,384, 128 query and 8 key/value heads of 128",
            "Llama 4's 202,048-token vocabulary and untied embeddings",
            "96 layers and expert width 24,064 (a multiple of 256) solved so that active "
            "parameters are 288B and the total is near 2T",
            LLAMA4_SEQ_ASSUMED)),
    "deepseek-v3": ModelConfig(
        "deepseek-v3", layers=61, d_model=7168, d_ffn=2048, heads_q=128, heads_kv=128,
        vocab=129280, seq=4096, experts=256, experts_per_token=8, shared_experts=1,
        d_ffn_dense=18432, first_dense_layers=3,
        mla=MLA(q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                qk_rope_head_dim=64, v_head_dim=128),
        source=DEEPSEEK_V3_SOURCE,
        assumptions=("pre-training sequence length 4,096 from secondary summaries of the "
                     "DeepSeek-V3 paper (Sec. 4.2 of the paper copies gives the batch ramp, "
                     "not the length)",
                     "the router's 256 load-balancing bias terms per layer are not counted "
                     "(they are not trained by gradient)")),
    # Narayanan et al. 2021, Table 1 (heads, hidden size, layers of each row).
    **{name: _megatron_gpt(name, heads, hidden, layers) for name, heads, hidden, layers in (
        ("megatron-gpt-1.7b", 24, 2304, 24), ("megatron-gpt-3.6b", 32, 3072, 30),
        ("megatron-gpt-7.5b", 32, 4096, 36), ("megatron-gpt-18.4b", 48, 6144, 40),
        ("megatron-gpt-39.1b", 64, 8192, 48), ("megatron-gpt-76.1b", 80, 10240, 60),
        ("megatron-gpt-145.6b", 96, 12288, 80), ("megatron-gpt-310.1b", 128, 16384, 96),
        ("megatron-gpt-529.6b", 128, 20480, 105), ("megatron-gpt-1t", 160, 25600, 128))},
    # The two models of Korthikanti et al. 2022 that Narayanan's Table 1 lacks (its 530B and 1T
    # have the shapes of Table 1's 529.6B and 1T rows).
    "megatron-gpt-22b": _megatron_gpt(
        "megatron-gpt-22b", 64, 6144, 48,
        KORTHIKANTI_SOURCE.format(shape="48 layers, hidden 6,144, 64 heads")),
    "megatron-gpt-175b": _megatron_gpt(
        "megatron-gpt-175b", 96, 12288, 96,
        KORTHIKANTI_SOURCE.format(shape="GPT-3 175B's 96 layers, hidden 12,288, 96 heads "
                                        "(Brown et al. 2020, arXiv 2005.14165, Table 2.1)")),
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


def _llama_layer_params(d: int, heads_kv: int) -> int:
    """One layer of the Llama-like config of width ``d`` (what `ModelConfig.layer_params`
    gives for it): Wq, Wo (d x d), Wk, Wv (d x kv heads x 128), SwiGLU, two RMSNorms."""
    kv = min(heads_kv, d // HEAD_DIM)
    return 2 * d * d + 2 * d * kv * HEAD_DIM + 3 * d * llama_ffn(d) + 2 * d


def config_for_params(n_params: float, *, seq: int = LLAMA3_SEQ, vocab: int = LLAMA3_VOCAB,
                      heads_kv: int = 8, name: str | None = None) -> ModelConfig:
    """A Llama-like dense config with about ``n_params`` total parameters.

    For each width (a multiple of the 128-wide head with whole groups of query heads per
    kv head) the depth that gives ``n_params`` is solved for; the width whose depth is
    closest (in ratio) to d_model / 128 wins, and the depth is rounded to whole layers. The
    result is within one layer's parameters of the target; ``params`` says exactly how many
    it has.

    The aspect d / depth grows with the width (a wider layer needs fewer of them), so the
    score ``|log(aspect / 128)|`` falls and then rises: the widths around the crossing
    ``aspect = 128``, found by bisection over multiples of 128, are the only candidates.
    That takes a few dozen probes at any size (1e22 and 1e30 parameters included), where
    trying every width took minutes.
    """
    try:
        target = float(n_params)
    except (TypeError, ValueError):
        raise DataError(f"parameter count must be a number, got {n_params!r}") from None
    if not math.isfinite(target) or target <= 0:
        raise DataError(f"parameter count must be positive and finite, got {n_params!r}")

    def layers_real(d: int) -> float:
        return (target - (2 * vocab * d + d)) / _llama_layer_params(d, heads_kv)

    def aspect_at(k: int) -> float:
        """d / depth at width 128 k (+inf where the embeddings alone pass the target)."""
        n = layers_real(k * HEAD_DIM)
        return k * HEAD_DIM / n if n >= 0.5 else math.inf

    # Bisection for the first multiple k with aspect >= 128 (aspect is increasing in k).
    lo, hi = 1, 2
    while aspect_at(hi) < ASPECT:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if aspect_at(mid) < ASPECT else (lo, mid)
    best = None
    for k in range(max(1, lo - 16), hi + 17):  # the valid widths on both sides
        d = k * HEAD_DIM
        kv = min(heads_kv, k)
        n = layers_real(d)
        if k % kv or n < 0.5:  # whole query groups per kv head (and widths TP can split)
            continue
        score = abs(math.log((d / n) / ASPECT))
        if best is None or score < best[0]:
            best = (score, d, kv, max(1, round(n)))
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


__all__ = ["ModelConfig", "MLA", "Op", "model_preset", "model_presets", "config_for_params",
           "resolve_model", "llama_ffn"]
