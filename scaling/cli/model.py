"""`flopcast model`: a transformer config, its parameters and its training FLOPs per token."""

from __future__ import annotations

from functools import partial

from scaling.cli.inputs import add_model_arguments
from scaling.model.config import resolve_model
from scaling.output import format_table, print_json
from scaling.units import format_count, format_flops, parse_whole


def register(sub):
    p = sub.add_parser("model", help="a transformer config: parameters and FLOPs per token",
                       description="Print a Llama-style config (a preset, or one picked for a "
                                   "parameter count), its total and active parameters and its "
                                   "training FLOPs per token (6N plus the attention term).")
    add_model_arguments(p)
    p.add_argument("--seq", type=partial(parse_whole, what="--seq"), metavar="S",
                   help="sequence length, e.g. 8192 or 8Ki (default: the model's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p


def model_summary(config) -> dict:
    """The config's fields and counts, and its training FLOPs per token at its own context."""
    out = config.to_dict()
    out["flops_per_token"] = config.flops_per_token()
    out["attention_flops_per_token"] = config.attention_flops_per_token()
    out["six_n_flops_per_token"] = 6.0 * config.matmul_params
    return out


def run(args) -> int:
    params = args.params
    config = resolve_model(args.name, params, args.seq)
    info = model_summary(config)
    if params is not None:
        info["requested_params"] = params
    if args.json:
        print_json(info)
        return 0
    rows = [{"field": k, "value": info[k]} for k in (
        "layers", "d_model", "d_ffn", "heads_q", "heads_kv", "head_dim", "vocab", "seq")]
    if config.is_moe:
        rows += [{"field": k, "value": info[k]}
                 for k in ("experts", "experts_per_token", "shared_experts")]
    print(f"{config.name}  ({config.source or 'given'})")
    print(format_table(rows, [("field", "field"), ("value", "value")]))
    print()
    print(f"parameters         {format_count(config.params, 4)}  "
          f"(active {format_count(config.active_params, 4)})")
    print(f"FLOPs per token    {format_flops(info['flops_per_token'])}  = 6 x "
          f"{format_count(config.matmul_params, 4)} matmul params + attention "
          f"{format_flops(info['attention_flops_per_token'])} "
          f"(3 x 4 x seq x heads x head_dim x layers / 2, causal)")
    if params is not None:
        print(f"requested          {format_count(params, 4)} parameters "
              f"({(config.params / params - 1) * 100:+.1f}%)")
    return 0
