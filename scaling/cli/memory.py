"""`flopcast memory`: the bytes one GPU holds for a layout, by term, against its HBM."""

from __future__ import annotations

from functools import partial

from scaling.model.activations import RECOMPUTE
from scaling.cli.inputs import add_profile_device_argument, parse_batch_tokens
from scaling.cli.step import LAYOUT_FLAGS, add_held_bytes_flags
from scaling.errors import DataError
from scaling.hardware.profile import preset_names
from scaling.hardware.load import load_profile
from scaling.model.memory import (GIB, STEP_ZERO, STEP_ZERO_SOURCE, TERMS, ZERO_STAGES,
                                  memory_breakdown, step_memory_options)
from scaling.cli.inputs import add_model_arguments
from scaling.model.config import resolve_model
from scaling.output import format_table, print_json
from scaling.model.step import DEFAULT_BATCH_TOKENS, GRAD_REDUCE_DEFAULT, PRECISIONS
from scaling.units import parse_whole

#: The parallel dimensions `flopcast step` does not time but the memory model shards by:
#: (flag, memory_breakdown argument, help).
MEMORY_FLAGS = (
    # --cp and --ep come with the step command's layout flags (LAYOUT_FLAGS).
    ("--etp", "etp", "tensor parallelism inside each expert (default: --tp, as `flopcast "
                     "step` splits the experts and Megatron-Core's "
                     "--expert-tensor-parallel-size defaults)"),
)


#: Layout keys that are memory options (`step_memory_options`), not `memory_breakdown`
#: arguments.
OPTION_KEYS = ("batch_tokens", "attention", "balanced_pipeline", "grad_reduce")


def register(sub):
    p = sub.add_parser(
        "memory", help="per-GPU memory of a layout, by term, against the device's HBM",
        description="The bytes one GPU holds at the peak of a training step (the worst "
                    "pipeline stage): weights, gradients and optimizer state with ZeRO "
                    "sharding, expert shards, activations (Korthikanti et al. 2022), the "
                    "micro-batches the pipeline schedule keeps in flight, logits, buffers and "
                    "fragmentation, against the device's memory. Exit status 0 when the "
                    "layout fits, 1 when it does not.")
    add_model_arguments(p)
    p.add_argument("--hardware", default="h100-sxm", metavar="PRESET|FILE",
                   help="preset (" + ", ".join(preset_names()) + ") or saved profile of a "
                        "recognised device, or results file/folder to build one from "
                        "(default: h100-sxm)")
    add_profile_device_argument(p)
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="bf16",
                   help="GEMM precision; fp8 keeps the GEMMs' saved inputs in FP8 "
                        "(default bf16)")
    for flag, _, text in LAYOUT_FLAGS + MEMORY_FLAGS:
        p.add_argument(flag, type=partial(parse_whole, what=flag), help=text)
    p.add_argument("--batch-tokens", metavar="B",
                   help="tokens per optimizer step, as for `flopcast step` (sets the "
                        "micro-batches per step; default 2048x8192 = 16Mi, Llama 3)")
    p.add_argument("--recompute", choices=RECOMPUTE, default="none",
                   help="activation recomputation (default none)")
    p.add_argument("--zero", type=int, choices=ZERO_STAGES, default=STEP_ZERO,
                   help="ZeRO stage over data (and context) parallelism: 1 shards the "
                        "optimizer state, 2 also the gradients, 3 (FSDP) also the weights "
                        f"(default {STEP_ZERO}, as `flopcast step` prices it)")
    p.add_argument("--no-sequence-parallel", action="store_true",
                   help="tensor parallelism without sequence parallelism: the norms' and "
                        "dropouts' activations whole on every rank (as `flopcast step "
                        "--no-sequence-parallel`)")
    add_held_bytes_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p


def layout_from_args(args, config) -> dict:
    """The layout as `memory_breakdown` takes it, with the defaults of `flopcast step`."""
    lay = {name: getattr(args, name) or 1 for _, name, _ in LAYOUT_FLAGS + MEMORY_FLAGS
           if name != "seq"}
    lay["etp"] = args.etp or lay["tp"]  # as `flopcast step` splits the experts
    seq = args.seq or config.seq
    tokens = (parse_batch_tokens(args.batch_tokens, seq) if args.batch_tokens is not None
              else DEFAULT_BATCH_TOKENS)
    per_replica = tokens / (seq * lay["dp"] * lay["micro_batch"])
    if per_replica < 1 or not float(per_replica).is_integer():
        raise DataError(f"--batch-tokens {tokens:,} must be a whole number of micro-batches "
                        f"of {lay['micro_batch']} x {seq:,} tokens on each of {lay['dp']} "
                        f"data-parallel replicas (a multiple of "
                        f"{seq * lay['dp'] * lay['micro_batch']:,})")
    return lay | {"seq": seq, "micro_batches": int(per_replica), "batch_tokens": tokens,
                  "recompute": args.recompute, "zero": args.zero,
                  "sequence_parallel": False if args.no_sequence_parallel else None,
                  "attention": args.attention, "balanced_pipeline": not args.unbalanced_pipeline,
                  "grad_reduce": args.grad_reduce}


def run(args) -> int:
    config = resolve_model(args.name, args.params, args.seq)
    profile = load_profile(args.hardware, device=args.device)
    lay = layout_from_args(args, config)
    options = step_memory_options(lay, args.precision)
    mem = memory_breakdown(config, profile, options=options,
                           **{k: v for k, v in lay.items() if k not in OPTION_KEYS})
    if args.json:
        print_json({"model": config.name, "hardware": profile.name,
                    "precision": args.precision, "layout": lay,
                    "gpus": gpus(lay), "units": "bytes per GPU", "memory": mem.to_dict(),
                    "zero_source": STEP_ZERO_SOURCE if args.zero == STEP_ZERO else "given"})
    else:
        print(describe(config, profile, args.precision, lay, mem))
    return 0 if mem.fits else 1


def gpus(lay: dict) -> int:
    return lay["tp"] * lay["pp"] * lay["dp"] * lay["cp"]


def describe(config, profile, precision, lay, mem) -> str:
    """The breakdown for people: the layout, a table of terms in GiB, total against HBM,
    the verdict, and where the allowances come from."""
    head = (f"{config.name} on {profile.name} ({mem.device}), {precision}: TP {lay['tp']} x "
            f"PP {lay['pp']} x DP {lay['dp']} x CP {lay['cp']} = {gpus(lay):,} "
            f"GPU{'s' if gpus(lay) != 1 else ''}"
            + (f", EP {lay['ep']}" if lay["ep"] > 1 else "")
            + f"; {lay['micro_batches']} micro-batch{'es' if lay['micro_batches'] != 1 else ''}"
              f" of {lay['micro_batch']} x "
              f"{lay['seq']:,} tokens, interleave {lay['interleave']}, recompute "
              f"{lay['recompute']}, ZeRO {lay['zero']}"
            + (f", {lay['grad_reduce']} gradients" if lay["grad_reduce"] != GRAD_REDUCE_DEFAULT
               else "")
            + (", unbalanced pipeline" if not lay["balanced_pipeline"] else "")
            + (", materialised attention" if lay["attention"] == "materialised" else ""))
    total = float(mem.total_bytes)
    rows = [{"term": name, "gib": f"{float(getattr(mem, key)) / GIB:,.2f}",
             "share": f"{100 * float(getattr(mem, key)) / total:.1f}%"}
            for key, name in TERMS.items()]
    rows += [{"term": "total", "gib": f"{total / GIB:,.2f}", "share": "100.0%"},
             {"term": f"HBM ({mem.device})", "gib": f"{mem.hbm_bytes / GIB:,.2f}",
              "share": ""}]
    spare = (mem.hbm_bytes - total) / GIB
    verdict = (f"fits: {spare:,.1f} GiB spare" if mem.fits else
               f"does not fit: needs {total / GIB:,.1f} GiB per GPU, the {mem.device} has "
               f"{mem.hbm_bytes / GIB:,.0f} GiB")
    peak = ("at the optimizer step (its FP32 gradient copies outweigh the activations the "
            "backward freed)" if mem.at_optimizer_step
            else "during the forward and backward passes")
    lines = [head, f"worst pipeline stage: {mem.stage} (per GPU), {peak}",
             format_table(rows, [("term", "term"), ("gib", "GiB"), ("share", "share")],
                          align_right={"gib", "share"}),
             "", f"verdict: {verdict}"]
    if lay["zero"] == STEP_ZERO:
        lines.append(f"note: ZeRO: {STEP_ZERO_SOURCE}")
    lines += [f"note: {n}" for n in mem.notes]
    return "\n".join(lines)
