"""`flopcast step`: the step model's per-GPU throughput, MFU and time breakdown."""

from __future__ import annotations

import inspect
from functools import partial

from scaling.errors import DataError
from scaling.hardware.profile import preset_names
from scaling.hardware.load import load_profile
from scaling.model.memory import (GIB, STEP_ZERO, ZERO_STAGES, memory_known, require_fit,
                                  step_memory)
from scaling.cli.inputs import add_model_arguments, add_profile_device_argument, parse_batch_tokens
from scaling.model.config import resolve_model
from scaling.output import fmt_num, format_table, print_json
from scaling.model.step import (ATTENTION_IMPLS, DEFAULT_BATCH_TOKENS, GRAD_ACCUMULATION,
                                GRAD_ACCUMULATION_DEFAULT, GRAD_REDUCE_BYTES,
                                GRAD_REDUCE_DEFAULT, OVERRIDES, PRECISIONS,
                                STEP_RECOMPUTE, TERM_NAMES, step_time)
from scaling.plan.search import search_layouts
from scaling.cli.plan import explain
from scaling.units import (format_count, format_seconds, format_watts,
                           parse_number, parse_whole, with_interval)

#: The layout flags: (flag, step_time argument, help).
LAYOUT_FLAGS = (
    ("--tp", "tp", "tensor parallelism (default 1)"),
    ("--pp", "pp", "pipeline stages (default 1)"),
    ("--dp", "dp", "data-parallel replicas (default 1)"),
    ("--cp", "cp", "context parallelism: each sequence split over CP GPUs, ring/all-gather "
                   "attention (default 1)"),
    ("--seq", "seq", "sequence length, e.g. 8192 or 8Ki (default: the model's)"),
    ("--micro-batch", "micro_batch", "sequences per micro-batch (default 1)"),
    ("--interleave", "interleave", "interleaved pipeline chunks per GPU (default 1: plain 1F1B)"),
    ("--ep", "ep", "expert parallelism: MoE experts sharded over this many GPUs of the "
                   "data-parallel group (default 1)"),
)


def register(sub):
    p = sub.add_parser("step", help="per-GPU training throughput and its breakdown",
                       description="Model one training step of a transformer on a hardware "
                                   "profile and parallel layout: GEMMs and attention from the "
                                   "profile, pipeline bubble, communication, the rest.")
    add_model_arguments(p)
    p.add_argument("--hardware", default="h100-sxm", metavar="PRESET|FILE",
                   help="preset (" + ", ".join(preset_names()) + "), saved profile, or "
                        "results file/folder to build one from (default: h100-sxm)")
    add_profile_device_argument(p)
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="bf16")
    for flag, _, text in LAYOUT_FLAGS:
        p.add_argument(flag, type=partial(parse_whole, what=flag), help=text)
    p.add_argument("--recompute", choices=STEP_RECOMPUTE,
                   help="activation recomputation: none, selective (the attention core's "
                        "forward again) or full (every layer's forward again before its "
                        "backward); default none, searched with --gpus")
    p.add_argument("--zero", type=int, choices=ZERO_STAGES,
                   help="ZeRO stage of the data-parallel group: 0 all-reduce, 1-2 reduce-"
                        "scatter and all-gather once per step, 3 weights gathered every micro-"
                        f"batch (default {STEP_ZERO}, Llama 3's FSDP; searched with --gpus)")
    add_held_bytes_flags(p)
    p.add_argument("--no-sequence-parallel", action="store_true",
                   help="tensor parallelism without sequence parallelism: all-reduces, and "
                        "norms and residuals whole on every rank (Megatron-LM before 2022)")
    p.add_argument("--grad-overlap", action="store_true",
                   help="reduce gradients in buckets under the last micro-batch's backward "
                        "(PyTorch DDP) instead of after it")
    p.add_argument("--grad-accumulation", choices=GRAD_ACCUMULATION,
                   default=GRAD_ACCUMULATION_DEFAULT,
                   help="summing micro-batches' gradients: fused into the weight-gradient "
                        "GEMM (default) or unfused, an in-place add per parameter for every "
                        "micro-batch after the first (PyTorch autograd)")
    p.add_argument("--gpus", type=partial(parse_whole, what="--gpus"),
                   help="search the fastest layout of this many GPUs that fits memory (the "
                        "layout flags given pin their dimensions)")
    p.add_argument("--explain", action="store_true",
                   help="with --gpus: show the layout search's runners-up and why each loses")
    p.add_argument("--batch-tokens", metavar="B",
                   help="tokens per optimizer step: 2048x8192 (sequences x length), 16Mi or "
                        "16777216 (default: Llama 3's 2,048 x 8,192 = 16Mi, Table 4)")
    p.add_argument("--mfu", type=partial(parse_number, what="--mfu"),
                   help="override: MFU (e.g. 0.41, Llama 3's figure)")
    p.add_argument("--tflops-per-gpu", type=partial(parse_number, what="--tflops-per-gpu"),
                   help="override: per-GPU model TFLOP/s")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any input or term: " + ", ".join(OVERRIDES))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p


def add_held_bytes_flags(p) -> None:
    """The step model's options that also decide the bytes a GPU holds, so `flopcast memory`
    takes them as `flopcast step` does: the attention kernel (materialised scores are kept),
    the pipeline's balance (where the layers sit) and the gradients' precision (the buffer
    reduced is the buffer kept)."""
    p.add_argument("--attention", choices=ATTENTION_IMPLS, default="flash",
                   help="attention kernel: flash (the profile's curves; the presets' are "
                        "FlashAttention-3), flash2 (FlashAttention-2: the FA3 curve / 1.75, "
                        "arXiv 2407.08608) or materialised (s x s scores through memory, "
                        "pre-FlashAttention); default flash")
    p.add_argument("--unbalanced-pipeline", action="store_true",
                   help="every stage layers / PP layers and the last the output layer on top "
                        "(default: balanced, as Llama 3)")
    p.add_argument("--no-tp-backward-overlap", action="store_true",
                   help="every backward tensor-parallel collective on the critical path "
                        "(Megatron-LM before Sep 2021); default: a column-parallel linear's "
                        "input-gradient reduction under its weight-gradient GEMM and the "
                        "sequence-parallel input all-gather under its input-gradient GEMM, "
                        "Megatron-LM's overlap")
    p.add_argument("--grad-reduce", choices=sorted(GRAD_REDUCE_BYTES),
                   default=GRAD_REDUCE_DEFAULT,
                   help="precision the data-parallel group reduces gradients in, and keeps "
                        "them in: fp32 (Llama 3, Megatron-LM's --accumulate-allreduce-grads-in-"
                        "fp32) or half, the 16-bit training dtype, with FP32 copies made at "
                        "the optimizer step (default fp32)")


#: The step model's options a flag sets for a given layout, and the flag: the layout search
#: times every layout at `step_time`'s defaults, so it refuses any of these set otherwise.
KERNEL_OPTION_FLAGS = {"attention": "--attention", "sequence_parallel": "--no-sequence-parallel",
                       "balanced_pipeline": "--unbalanced-pipeline",
                       "grad_reduce": "--grad-reduce", "grad_overlap": "--grad-overlap",
                       "grad_accumulation": "--grad-accumulation",
                       "tp_backward_overlap": "--no-tp-backward-overlap"}


def _overrides(args) -> dict:
    out = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise DataError(f"--set expects KEY=VALUE, got '{item}'")
        out[key.strip()] = parse_number(value.strip(), f"--set {key.strip()}")
    if args.mfu is not None:
        out["mfu"] = args.mfu
    if args.tflops_per_gpu is not None:
        out["tflops_per_gpu"] = args.tflops_per_gpu
    return out


def run(args) -> int:
    config = resolve_model(args.name, args.params, args.seq)
    profile = load_profile(args.hardware, device=args.device)
    layout = {name: getattr(args, name) for _, name, _ in LAYOUT_FLAGS}
    seq = layout["seq"] or config.seq
    if args.batch_tokens is not None:
        layout["batch_tokens"] = parse_batch_tokens(args.batch_tokens, seq)
    typed = {name: ("given", f"given: --{name.replace('_', '-')} "
                             f"{args.batch_tokens if name == 'batch_tokens' else value}")
             for name, value in layout.items() if value is not None}
    found = None
    searching = args.gpus is not None and not all(layout[k] is not None
                                                  for k in ("tp", "pp", "dp"))
    kernel_options = dict(attention=args.attention,
                          sequence_parallel=False if args.no_sequence_parallel else None,
                          balanced_pipeline=not args.unbalanced_pipeline,
                          grad_reduce=args.grad_reduce, grad_overlap=args.grad_overlap,
                          grad_accumulation=args.grad_accumulation,
                          tp_backward_overlap=not args.no_tp_backward_overlap)
    defaults = inspect.signature(step_time).parameters
    changed = [flag for key, flag in KERNEL_OPTION_FLAGS.items()
               if kernel_options[key] != defaults[key].default]
    if searching and changed:
        raise DataError(f"{', '.join(changed)} {'time' if len(changed) > 1 else 'times'} a "
                        f"given layout; the layout search (--gpus "
                        f"without --tp --pp --dp) assumes the step model's defaults")
    if searching:
        pins = {k: layout[k] for k in ("tp", "pp", "dp", "cp", "ep", "micro_batch",
                                       "interleave")}
        pins["recompute"] = args.recompute
        pins["zero"] = args.zero
        found = search_layouts(config, profile, args.gpus, precision=args.precision, seq=seq,
                               batch=layout.get("batch_tokens", DEFAULT_BATCH_TOKENS) // seq,
                               pins=pins, overrides=_overrides(args))
        result = found.best.step
    else:
        if args.gpus is not None and layout["tp"] * layout["pp"] * layout["dp"] > args.gpus:
            raise DataError(f"TP {layout['tp']} x PP {layout['pp']} x DP {layout['dp']} needs "
                            f"more than the {args.gpus:,} GPUs of --gpus")
        result = step_time(config, profile, precision=args.precision, **layout,
                           overrides=_overrides(args), chosen=typed,
                           recompute=args.recompute or "none",
                           zero=STEP_ZERO if args.zero is None else args.zero, **kernel_options)
    memory = checked_memory(config, profile, result)
    if args.json:
        out = result.to_dict() | {"memory": None if memory is None else memory.to_dict()}
        if found is not None:
            out["layout_search"] = found.to_dict()
        print_json(out)
        return 0
    print(describe(result, profile, memory))
    if args.explain:
        print("\n" + (explain(found.to_dict()) if found is not None else
                      "layout search: none (the layout was given in full, or no --gpus)"))
    return 0


def checked_memory(config, profile, result):
    """The memory of the step's layout on the profile's device; a layout that does not fit
    is refused (`scaling.model.memory.require_fit`: a `DataError` with the GiB needed and held).
    None, with a note on the result, when the device's memory is unknown."""
    if not memory_known(profile):
        result.notes.append(f"memory not checked: profile '{profile.name}' "
                            f"({profile.device_name}) is not a recognised device")
        return None
    return require_fit(step_memory(config, profile, result.layout,
                                   precision=result.precision))


def describe(result, profile, memory=None) -> str:
    """The step for people: the answer, the terms in words, the labelled inputs."""
    lay = result.layout
    lines = [f"{result.model} on {result.hardware} ({profile.label}), {result.precision}: "
             f"TP {lay['tp']} x "
             + (f"CP {lay['cp']} x " if lay.get("cp", 1) > 1 else "")
             + f"PP {lay['pp']} x DP {lay['dp']} = {lay['gpus']:,} GPUs"
             + (f" (EP {lay['ep']} inside DP)" if lay.get("ep", 1) > 1 else "") + ", "
             f"sequences of {lay['seq']:,}, {lay['batch_tokens']:,} tokens per step "
             f"({lay['batch_tokens'] // lay['seq']:,} sequences), {lay['micro_batches']} "
             f"micro-batches of {lay['micro_batch']}, interleave {lay['interleave']}"
             + ("" if lay.get("recompute", "none") == "none"
                else f", {lay['recompute']} recomputation")]
    total = sum(result.breakdown.values())
    unit = ("s", 1.0)
    rows = [{"term": TERM_NAMES.get(k, k), "time": format_seconds(v, unit),
             "share": f"{100 * v / total:.1f}%"} for k, v in result.breakdown.items()]
    lines.append(format_table(rows, [("term", "term"), ("time", "per step"), ("share", "share")],
                              align_right={"time", "share"}))
    tflops = result.labels["tflops_per_gpu"]
    lines += ["",
              f"step time        {format_seconds(result.step_time_s)}",
              "per-GPU          " + with_interval(result.tflops_per_gpu,
                                                   result.intervals["tflops_per_gpu"])
              + f" TFLOP/s ({tflops['label']}: {tflops['source'].removeprefix('given: ')})"]
    if result.mfu is not None:
        lines.append(f"MFU              {100 * result.mfu:.1f}% of the dense {result.precision} "
                     f"peak {fmt_num(profile.peak_tflops(PRECISIONS[result.precision]))} TFLOP/s")
    else:
        lines.append("MFU              - (no datasheet peak for this device)")
    if result.power_w is not None:
        lines.append(f"power            {format_watts(result.power_w.value)} per GPU "
                     f"({result.power_w.label})")
    lines.append(f"cluster          {format_count(result.tokens_per_s)} tokens/s")
    if memory is not None:
        lines.append(f"memory           {memory.total_bytes / GIB:,.1f} of "
                     f"{memory.hbm_bytes / GIB:,.0f} GiB per GPU (pipeline stage "
                     f"{memory.stage}; `flopcast memory` has the breakdown)")
    lines.append("\nInputs")
    rows = [{"input": k, "value": _input_value(v["value"]),
             "label": v["label"], "source": v["source"]}
            for k, v in result.labels.items() if k != "tflops_per_gpu"]
    lines.append(format_table(rows, [("input", "input"), ("value", "value"), ("label", "label"),
                                     ("source", "source")], align_right={"value"}))
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def _input_value(value) -> str:
    """An input's value for the table: numbers in human units, choices and switches as words."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value if isinstance(value, str) else format_count(value)
