"""`flopcast model`: a transformer config, its parameters and its training FLOPs per token."""

from __future__ import annotations

from scaling.errors import DataError
from scaling.model import model_presets, resolve_model
from scaling.output import fmt_num, format_table, print_json

SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(text: str) -> float:
    """A parameter count: ``405e9``, ``405B``, ``8b``, ``1.2T``."""
    raw = str(text).strip().replace("_", "").replace(",", "")
    scale = SUFFIXES.get(raw[-1:].lower(), None)
    number = raw[:-1] if scale else raw
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise DataError(f"--params: '{text}' is not a count (e.g. 405e9, 405B, 1.2T)") from None
    return value


def register(sub):
    p = sub.add_parser("model", help="a transformer config: parameters and FLOPs per token",
                       description="Print a Llama-style config (a preset, or one picked for a "
                                   "parameter count), its total and active parameters and its "
                                   "training FLOPs per token (6N plus the attention term).")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="preset: " + ", ".join(sorted(model_presets())))
    p.add_argument("--params", metavar="N", help="pick a Llama-like config for N parameters "
                                                 "(405e9, 405B, 1.2T)")
    p.add_argument("--seq", type=int, metavar="S", help="sequence length (default: the model's)")
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
    params = parse_count(args.params) if args.params is not None else None
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
    print(f"parameters         {fmt_num(config.params)}  (active {fmt_num(config.active_params)})")
    print(f"FLOPs per token    {fmt_num(info['flops_per_token'])}  = 6 x "
          f"{fmt_num(config.matmul_params)} matmul params + attention "
          f"{fmt_num(info['attention_flops_per_token'])} "
          f"(3 x 4 x seq x heads x head_dim x layers / 2, causal)")
    if params is not None:
        print(f"requested          {fmt_num(params)} parameters "
              f"({(config.params / params - 1) * 100:+.1f}%)")
    return 0
