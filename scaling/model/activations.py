"""Saved activations: the bytes a transformer layer keeps for its backward pass, on one GPU.

Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models",
arXiv 2205.05198, Sec. 4.1 and Table 2) count, for a GPT layer (multi-head attention, a 4h
GELU MLP, dropout, attention scores materialised), ``sbh(34 + 5as/h)`` bytes per layer:
16-bit tensors, 1-byte dropout masks, LayerNorm statistics left out. Here the same count is
made tensor by tensor from the layer's structure, so it also holds for the layers flopcast
plans: grouped-query and latent attention, SwiGLU, RMSNorm, rotary embeddings, FlashAttention,
no dropout, mixture-of-experts MLPs. For the GPT layer it gives Korthikanti's formulas
exactly (the tests check it).

Every tensor is counted per token of a micro-batch's local sequence chunk (``seq / cp``
tokens of each of ``micro_batch`` sequences) on one GPU, in one of three regions:

* **sequence** (norm inputs, the inputs of the first projections, dropout masks, router
  scores, routed tokens): split over the tensor-parallel group by sequence parallelism
  (Korthikanti Sec. 4.2.2: with it only a 1/t shard of the norm output is kept and
  re-gathered in the backward), whole on every GPU without it;
* **tensor** (queries, keys, values, attention output, MLP hidden): the local heads and MLP
  columns, 1/t of them (GQA keeps one key/value head per GPU when there are fewer kv heads
  than GPUs, as Megatron-LM does);
* **replicated**: MLA's low-rank query and key/value projections, which Megatron-Core keeps
  unsplit on every GPU of the group.

What each tensor is for decides what recomputation keeps (``kind``):

* ``input``: the layer's input, the only tensor full recomputation keeps (Korthikanti Sec. 5;
  sequence-parallel layers pass it on sequence-sharded, so it is split too);
* ``core``: the attention core's internals (scores, softmax, its dropout; FlashAttention's
  logsumexp), which selective recomputation rebuilds (Korthikanti Sec. 5);
* ``gemm_input``: a tensor a weight-gradient GEMM needs, stored in FP8 where an FP8 recipe
  keeps its quantised GEMM inputs (``fp8_gemm_inputs``: Transformer Engine's Linear saves the
  FP8 copy it multiplied; an assumption for other recipes);
* ``other``: kept unless the whole layer is recomputed.

Standard library and numpy only; every function takes numpy arrays of layouts (tp, cp,
micro-batch, recomputation, sequence parallelism broadcast together) as well as scalars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaling.errors import DataError, UnknownNameError
from scaling.model.config import ModelConfig

#: Recomputation strategies, by code (arrays of layouts carry the codes).
RECOMPUTE = ("none", "selective", "full")
BF16, FP8, FP32, MASK, TOKEN_ID = 2, 1, 4, 1, 8  # bytes per element
KINDS_KEPT = {0: ("input", "core", "gemm_input", "other"),  # what each recomputation keeps
              1: ("input", "gemm_input", "other"),
              2: ("input",)}


def recompute_codes(value) -> np.ndarray:
    """Codes (0 none, 1 selective, 2 full) from a name, names, or codes."""
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() >= len(RECOMPUTE)):
            raise DataError(f"recomputation codes are 0..{len(RECOMPUTE) - 1} "
                            f"({', '.join(RECOMPUTE)}), got {value!r}")
        return arr.astype(np.int64)
    flat = []
    for name in arr.reshape(-1).tolist():
        if name not in RECOMPUTE:
            raise UnknownNameError("activation recomputation", name, RECOMPUTE)
        flat.append(RECOMPUTE.index(name))
    return np.asarray(flat, dtype=np.int64).reshape(arr.shape)


@dataclass(frozen=True)
class SavedTensor:
    """One tensor a layer keeps for its backward: ``bytes_per_token`` on one GPU (an array
    when the layout is), per token of the micro-batch's local sequence chunk."""

    name: str
    bytes_per_token: object  # float or np.ndarray
    kind: str  # "input" | "core" | "gemm_input" | "other"


def _sharding(config: ModelConfig, tp, sequence_parallel):
    tp = np.asarray(tp)
    sp_share = np.where(np.asarray(sequence_parallel, dtype=bool), tp, 1)
    hq_local = config.heads_q / tp
    hkv_local = np.maximum(1, config.heads_kv // tp)
    return tp, sp_share, hq_local, hkv_local


def _attention_tensors(config, tp, sp_share, hq, hkv, seq, flash, gemm_bytes) -> list:
    """Norm, projections and attention core of one layer (see the module docstring)."""
    h = config.d_model
    out = [SavedTensor("norm1_input", BF16 * h / sp_share, "input"),
           SavedTensor("attention_input", gemm_bytes * h / sp_share, "gemm_input")]
    if config.mla is not None:
        m = config.mla
        out += [SavedTensor("q_norm_input", BF16 * m.q_lora_rank, "other"),
                SavedTensor("q_up_input", gemm_bytes * m.q_lora_rank, "gemm_input"),
                SavedTensor("kv_norm_input", BF16 * m.kv_lora_rank, "other"),
                SavedTensor("kv_up_input", gemm_bytes * m.kv_lora_rank, "gemm_input")]
        kv_heads = hq  # latent attention expands keys and values to every head
    else:
        kv_heads = hkv
    # Rotary embeddings rotate q and k in place of their projections' outputs and need
    # nothing saved for their backward (the rotation's inverse): no tensor of their own.
    out += [SavedTensor("q", BF16 * hq * config.qk_head_dim, "other"),
            SavedTensor("k", BF16 * kv_heads * config.qk_head_dim, "other"),
            SavedTensor("v", BF16 * kv_heads * config.v_head_dim, "other")]
    if flash:
        # FlashAttention keeps its output (the output projection's input, below) and the
        # FP32 logsumexp per head and query; no seq x seq scores. Under FP8 the projection
        # keeps its own FP8 copy, so FlashAttention's BF16 output is a tensor of its own.
        out.append(SavedTensor("attention_logsumexp", FP32 * hq, "core"))
        if gemm_bytes != BF16:
            out.append(SavedTensor("attention_output_bf16", BF16 * hq * config.v_head_dim,
                                   "core"))
    else:
        # Scores materialised: the softmax output per head and key (all ``seq`` keys, also
        # under context parallelism), and with dropout its mask and output.
        out.append(SavedTensor("softmax_output", BF16 * hq * seq, "core"))
        if config.dropout:
            out += [SavedTensor("softmax_dropout_mask", MASK * hq * seq, "core"),
                    SavedTensor("softmax_dropout_output", BF16 * hq * seq, "core")]
    out.append(SavedTensor("attention_output", gemm_bytes * hq * config.v_head_dim,
                           "gemm_input"))
    if config.dropout:
        out.append(SavedTensor("attention_dropout_mask", MASK * h / sp_share, "other"))
    out += [SavedTensor("norm2_input", BF16 * h / sp_share, "other"),
            SavedTensor("mlp_input", gemm_bytes * h / sp_share, "gemm_input")]
    return out


def _mlp_tensors(config, prefix: str, width_local, gemm_bytes, factor=1.0) -> list:
    """An MLP's hidden tensors: the first projection's output (SwiGLU: gate and up, both
    needed by its backward; GELU: the GELU input) and the second projection's input."""
    up = 2 if config.mlp == "swiglu" else 1
    return [SavedTensor(f"{prefix}_hidden", BF16 * up * width_local * factor, "other"),
            SavedTensor(f"{prefix}_down_input", gemm_bytes * width_local * factor,
                        "gemm_input")]


def _moe_tensors(config, tp, sp_share, etp, gemm_bytes, routed_token_factor) -> list:
    """An MoE MLP: router scores, the routed tokens at the experts and the shared experts.

    Each token goes to ``experts_per_token`` experts. With sequence parallelism each GPU
    dispatches its own 1/t of the tokens; the tokens its experts receive are, with balanced
    routing, as many as it sent (times ``routed_token_factor`` for imbalance or a capacity
    factor). With expert tensor parallelism ``etp`` the tokens are gathered over the etp group
    and each GPU holds 1/etp of every expert's width, so the hidden tensors are the same size
    and the inputs ``etp`` times larger. The combine keeps the experts' outputs (the routing
    weights' gradient needs them); the dispatch's send buffer is transient (`scaling.model.memory`).
    """
    h, k = config.d_model, config.experts_per_token
    routed = k * routed_token_factor / sp_share
    up = 2 if config.mlp == "swiglu" else 1
    out = [SavedTensor("router_scores", FP32 * config.experts / sp_share, "other"),
           SavedTensor("expert_input", gemm_bytes * h * routed * etp, "gemm_input"),
           SavedTensor("expert_hidden", BF16 * up * config.d_ffn * routed, "other"),
           SavedTensor("expert_down_input", gemm_bytes * config.d_ffn * routed, "gemm_input"),
           SavedTensor("expert_output", BF16 * h * routed, "other")]
    if config.shared_experts:
        out += _mlp_tensors(config, "shared_expert",
                            config.shared_experts * config.d_ffn / tp, gemm_bytes)
    return out


def layer_tensors(config: ModelConfig, kind: str, *, tp=1, seq=None, sequence_parallel=None,
                  etp=1, flash_attention: bool = True, fp8_gemm_inputs: bool = False,
                  routed_token_factor: float = 1.0) -> list[SavedTensor]:
    """The tensors one layer of ``kind`` ("dense" or "moe") keeps without recomputation."""
    seq = config.seq if seq is None else seq
    if sequence_parallel is None:
        sequence_parallel = np.asarray(tp) > 1
    tp, sp_share, hq, hkv = _sharding(config, tp, sequence_parallel)
    gemm_bytes = FP8 if fp8_gemm_inputs else BF16
    out = _attention_tensors(config, tp, sp_share, hq, hkv, np.asarray(seq), flash_attention,
                             gemm_bytes)
    if kind == "moe":
        out += _moe_tensors(config, tp, sp_share, np.asarray(etp), gemm_bytes,
                            routed_token_factor)
    elif kind == "dense":
        out += _mlp_tensors(config, "mlp", config.dense_width / tp, gemm_bytes)
    else:
        raise UnknownNameError("layer kind", kind, ("dense", "moe"))
    if config.dropout:
        out.append(SavedTensor("mlp_dropout_mask", MASK * config.d_model / sp_share, "other"))
    return out


def _local_tokens(seq, micro_batch, cp):
    return np.asarray(seq) * np.asarray(micro_batch) / np.asarray(cp)


def layer_bytes(config: ModelConfig, kind: str, *, tp=1, cp=1, seq=None, micro_batch=1,
                recompute="none", sequence_parallel=None, etp=1, flash_attention=True,
                fp8_gemm_inputs=False, routed_token_factor=1.0):
    """(kept, working) bytes of one layer of ``kind`` for one micro-batch on one GPU: what it
    keeps for the backward under ``recompute``, and what its backward rebuilds on top of that
    while it runs (one layer at a time: the recomputed tensors)."""
    seq = config.seq if seq is None else seq
    codes = recompute_codes(recompute)
    tensors = layer_tensors(config, kind, tp=tp, seq=seq, sequence_parallel=sequence_parallel,
                            etp=etp, flash_attention=flash_attention,
                            fp8_gemm_inputs=fp8_gemm_inputs,
                            routed_token_factor=routed_token_factor)
    tokens = _local_tokens(seq, micro_batch, cp)
    total = sum(t.bytes_per_token for t in tensors)
    kept = 0
    for code, kinds in KINDS_KEPT.items():
        part = sum((t.bytes_per_token for t in tensors if t.kind in kinds), 0)
        kept = kept + np.where(codes == code, part, 0)
    return tokens * kept, tokens * (total - kept)


def embedding_bytes(config: ModelConfig, *, tp=1, cp=1, seq=None, micro_batch=1,
                    sequence_parallel=None):
    """What the first stage keeps per micro-batch outside the layers: the token ids (int64,
    on every GPU of the tensor-parallel group) and, with dropout, the embedding's dropout
    mask (Korthikanti Sec. 4.3: ``sbhp/t`` for p micro-batches). Kept under any
    recomputation."""
    seq = config.seq if seq is None else seq
    if sequence_parallel is None:
        sequence_parallel = np.asarray(tp) > 1
    _, sp_share, _, _ = _sharding(config, tp, sequence_parallel)
    mask = MASK * config.d_model / sp_share if config.dropout else 0
    return _local_tokens(seq, micro_batch, cp) * (TOKEN_ID + mask)


def head_bytes(config: ModelConfig, *, tp=1, cp=1, seq=None, micro_batch=1,
               sequence_parallel=None):
    """What the last stage keeps per micro-batch for the final norm and the output
    projection: their inputs, ``2sbh/t`` each with sequence parallelism (Korthikanti
    Sec. 4.3). The logits are `logits_bytes`."""
    seq = config.seq if seq is None else seq
    if sequence_parallel is None:
        sequence_parallel = np.asarray(tp) > 1
    _, sp_share, _, _ = _sharding(config, tp, sequence_parallel)
    return _local_tokens(seq, micro_batch, cp) * 2 * BF16 * config.d_model / sp_share


#: Bytes per logit on the last stage: the FP32 logits the cross-entropy keeps (Korthikanti
#: Sec. 4.3, ``4sbv/t``; Megatron-LM's vocabulary-parallel cross-entropy turns them into the
#: softmax in place and keeps that for the backward) plus the BF16 logits the output
#: projection wrote, alive while the FP32 copy is made (and again as the gradient is cast
#: back for the projection's backward).
LOGIT_BYTES = FP32 + BF16


def logits_bytes(config: ModelConfig, *, tp=1, cp=1, seq=None, micro_batch=1):
    """The loss's logits for one micro-batch on one GPU: ``(4 + 2) s b V / (t cp)``, the
    vocabulary split over the tensor-parallel group and the sequence over context
    parallelism."""
    seq = config.seq if seq is None else seq
    return _local_tokens(seq, micro_batch, cp) * LOGIT_BYTES * config.vocab / np.asarray(tp)


__all__ = ["RECOMPUTE", "SavedTensor", "recompute_codes", "layer_tensors", "layer_bytes",
           "embedding_bytes", "head_bytes", "logits_bytes", "LOGIT_BYTES"]
