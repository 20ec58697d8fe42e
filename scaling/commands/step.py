"""`flopcast step`: the step model's per-GPU throughput, MFU and time breakdown."""

from __future__ import annotations

from scaling.commands.model import parse_count
from scaling.errors import DataError
from scaling.hardware import load_profile, preset_names
from scaling.model import model_presets, resolve_model
from scaling.output import fmt_num, format_table, print_json
from scaling.step import OVERRIDES, PRECISIONS, step_time


def register(sub):
    p = sub.add_parser("step", help="per-GPU training throughput and its breakdown",
                       description="Model one training step of a transformer on a hardware "
                                   "profile and parallel layout: GEMMs and attention from the "
                                   "profile, pipeline bubble, communication, the rest.")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="model preset: " + ", ".join(sorted(model_presets())))
    p.add_argument("--params", metavar="N", help="a Llama-like model of N parameters instead")
    p.add_argument("--hardware", default="h100-sxm", metavar="PRESET|FILE",
                   help="preset (" + ", ".join(preset_names()) + "), saved profile, or "
                        "results file/folder to build one from (default: h100-sxm)")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="bf16")
    p.add_argument("--tp", type=int, default=1, help="tensor parallelism (default 1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline stages (default 1)")
    p.add_argument("--dp", type=int, default=1, help="data-parallel replicas (default 1)")
    p.add_argument("--seq", type=int, help="sequence length (default: the model's)")
    p.add_argument("--batch-tokens", metavar="B",
                   help="tokens per optimizer step, e.g. 2048x8192 (sequences x length; the "
                        "default, Llama 3's 16M tokens, Table 4)")
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per micro-batch")
    p.add_argument("--interleave", type=int, default=1,
                   help="interleaved pipeline chunks per GPU (default 1: plain 1F1B)")
    p.add_argument("--mfu", type=float, help="override: MFU (e.g. 0.41, Llama 3's figure)")
    p.add_argument("--tflops-per-gpu", type=float, help="override: per-GPU model TFLOP/s")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any input or term: " + ", ".join(OVERRIDES))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p


def parse_tokens(text: str) -> int:
    """Tokens per step: ``16777216``, ``2048x8192`` (sequences x length) or ``16.8M``."""
    parts = str(text).lower().split("x")
    value = 1.0
    for part in parts:
        value *= parse_count(part)
    if not value.is_integer():
        raise DataError(f"--batch-tokens: '{text}' is not a whole number of tokens")
    return int(value)


def _overrides(args) -> dict:
    out = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise DataError(f"--set expects KEY=VALUE, got '{item}'")
        out[key.strip()] = value.strip()
    if args.mfu is not None:
        out["mfu"] = args.mfu
    if args.tflops_per_gpu is not None:
        out["tflops_per_gpu"] = args.tflops_per_gpu
    return out


def run(args) -> int:
    params = parse_count(args.params) if args.params is not None else None
    config = resolve_model(args.name, params, args.seq)
    profile = load_profile(args.hardware)
    batch = None if args.batch_tokens is None else parse_tokens(args.batch_tokens)
    result = step_time(config, profile, precision=args.precision, tp=args.tp, pp=args.pp,
                       dp=args.dp, seq=args.seq, batch_tokens=batch,
                       micro_batch=args.micro_batch, interleave=args.interleave,
                       overrides=_overrides(args))
    if args.json:
        print_json(result.to_dict())
        return 0
    lay = result.layout
    print(f"{result.model} on {result.hardware} ({profile.label}), {result.precision}: "
          f"TP {lay['tp']} x PP {lay['pp']} x DP {lay['dp']} = {fmt_num(lay['gpus'])} GPUs, "
          f"seq {lay['seq']}, {fmt_num(lay['batch_tokens'])} tokens per step, "
          f"{lay['micro_batches']} micro-batches of {lay['micro_batch']}, "
          f"interleave {lay['interleave']}")
    total = sum(result.breakdown.values())
    rows = [{"term": k, "seconds": v, "share": f"{100 * v / total:.1f}%"}
            for k, v in result.breakdown.items()]
    print(format_table(rows, [("term", "term"), ("seconds", "s per step"), ("share", "share")]))
    lo, hi = result.intervals["tflops_per_gpu"]
    print(f"\nstep time        {fmt_num(result.step_time_s)} s")
    print(f"per-GPU          {fmt_num(result.tflops_per_gpu)} TFLOP/s "
          f"({fmt_num(lo)}..{fmt_num(hi)})")
    if result.mfu is not None:
        print(f"MFU              {100 * result.mfu:.1f}% of the dense {result.precision} "
              f"peak {fmt_num(profile.peak_tflops(PRECISIONS[result.precision]))}")
    else:
        print("MFU              - (no datasheet peak for this device)")
    if result.power_w is not None:
        print(f"power            {fmt_num(result.power_w.value)} W per GPU "
              f"({result.power_w.label})")
    print(f"cluster          {fmt_num(result.tokens_per_s)} tokens/s")
    print("\nInputs")
    label_rows = [{"input": k, "value": v["value"], "label": v["label"], "source": v["source"]}
                  for k, v in result.labels.items() if k != "tflops_per_gpu_source"]
    print(format_table(label_rows, [("input", "input"), ("value", "value"), ("label", "label"),
                                    ("source", "source")]))
    for note in result.notes:
        print(f"note: {note}")
    return 0
