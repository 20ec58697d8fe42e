"""`flopcast plan`: what a training run of a given budget takes, per cluster size."""

from __future__ import annotations

import sys
from functools import partial

from scaling.plan import energy
from scaling.cli.inputs import (add_results_arguments, load_records, parse_batch_tokens,
                                source_name)
from scaling.errors import DataError
from scaling.hardware.profile import preset_names
from scaling.output import format_table, print_json
from scaling.plan.planner import (DEFAULT_GPUS, DEFAULT_HARDWARE, DEFAULT_LAW, PRECISIONS, Knobs,
                                  make_plan)
from scaling.plan.text import (TABLE, headlines, input_text, layout_text, summary, table_rows,
                               where_from)
from scaling.model.config import LLAMA3_SEQ
from scaling.model.step import describe_breakdown
from scaling.plan.search import layout_words
from scaling.units import format_count, parse_count, parse_duration, parse_number, parse_whole


def _days(text) -> float:
    return parse_duration(text, "--days", unit="d") / 86400.0


def _restart_min(text) -> float:
    return parse_duration(text, "--restart-min", unit="m") / 60.0


def _seq(text) -> int:
    """``--seq``: a whole, positive number of tokens (0 would silently mean the default)."""
    seq = parse_whole(text, "--seq")
    if seq < 1:
        raise DataError(f"--seq must be at least 1 token, not {seq}")
    return seq


def _number(flag: str):
    return partial(parse_number, what=flag)


#: The cost and reliability flags: (flag, Knobs field, how to read it, help).
POWER_AND_COST = (
    ("--pue", "pue", _number("--pue"),
     f"power usage effectiveness (default {energy.PUE}, Meta)"),
    ("--host-w-per-gpu", "host_w_per_gpu", _number("--host-w-per-gpu"),
     "host watts per GPU: CPUs, memory, NICs (default 575, DGX H100)"),
    ("--usd-per-gpu-hour", "usd_per_gpu_hour", _number("--usd-per-gpu-hour"),
     f"price per GPU-hour, excluding power (default {energy.USD_PER_GPU_HOUR})"),
    ("--usd-per-kwh", "usd_per_kwh", _number("--usd-per-kwh"),
     f"electricity price (default {energy.USD_PER_KWH})"),
)
RELIABILITY = (
    ("--failures-per-gpu-hour", "failures_per_gpu_hour", _number("--failures-per-gpu-hour"),
     "unexpected interruptions per GPU-hour (default: Llama 3, 419 in 54 days on 16,384 GPUs)"),
    ("--storage-gbps", "storage_gbps", _number("--storage-gbps"),
     "checkpoint storage bandwidth, GB/s (default 2000, Llama 3)"),
    ("--restart-min", "restart_s", _restart_min,
     "time to restart after a failure, besides reloading: minutes, or 90s, 0.2h "
     "(default 10)"),
)


def add_plan_arguments(p) -> None:
    """The flags `plan` and `report` share. Every number is read by `scaling.units`; a flag
    left out is None, so the plan can tell a default from a value the user gave."""
    g = p.add_argument_group("budget")
    g.add_argument("--compute",
                   help="training FLOPs (3.8e26), or llama3 (3.8e25) or 10x-llama3 (3.8e26, "
                        "default)")
    g.add_argument("--params", type=partial(parse_count, what="--params"),
                   help="model parameters, e.g. 405B or 405e9 (instead of the law's N_opt)")
    g.add_argument("--tokens", type=partial(parse_count, what="--tokens"),
                   help="training tokens, e.g. 15.6T (with --params: C = 6 N D)")
    g.add_argument("--law", default=DEFAULT_LAW,
                   help="loss law preset (epoch-2024, chinchilla-2022, llama3-2024) or a JSON "
                        "file from `flopcast fit --save` (default epoch-2024)")
    h = p.add_argument_group("hardware")
    h.add_argument("--hardware", default=DEFAULT_HARDWARE,
                   help=f"hardware preset ({', '.join(preset_names())}) or a profile JSON file")
    h.add_argument("--precision", choices=PRECISIONS,
                   help="GEMM precision (attention stays bf16); default bf16")
    h.add_argument("--tflops-per-gpu", type=_number("--tflops-per-gpu"),
                   help="sustained TFLOP/s per GPU, instead of the step model (Llama 3: 400)")
    h.add_argument("--mfu", type=_number("--mfu"),
                   help="model FLOPs utilisation, instead of the step model")
    h.add_argument("--seq", type=_seq,
                   help="training sequence length, e.g. 8192 or 8Ki (default 8192)")
    h.add_argument("--batch-tokens", metavar="B",
                   help="a fixed global batch, tokens per step: 2048x8192 (sequences x length) "
                        "or 16Mi; GPUs idle where no layout splits it over them all (default: "
                        "Llama 3's 16Mi, grown to one sequence per pipeline stage per replica)")
    c = p.add_argument_group("cluster")
    c.add_argument("--gpus", nargs="+", action="extend", metavar="N",
                   type=partial(parse_count, what="--gpus", several=True),
                   help="GPU counts, separated by spaces or by repeating the flag "
                        "(default: " + " ".join(str(n) for n in DEFAULT_GPUS) + ")")
    c.add_argument("--days", type=_days,
                   help="solve for the fewest GPUs that finish within this time: days, or "
                        "with a unit (26w, 4000h)")
    for title, flags in (("power and cost", POWER_AND_COST), ("reliability", RELIABILITY)):
        group = p.add_argument_group(title)
        for flag, _, read, text in flags:
            group.add_argument(flag, type=read, help=text)


def knobs_from_args(args) -> Knobs:
    """The cost and reliability knobs: the defaults, with what the user typed (named in
    ``given``)."""
    typed = {field: getattr(args, flag[2:].replace("-", "_"))
             for flag, field, _, _ in POWER_AND_COST + RELIABILITY}
    typed = {k: v for k, v in typed.items() if v is not None}
    if "restart_s" in typed:
        typed["restart_s"] *= 60.0
    return Knobs(**typed, given=frozenset(typed))


def plan_from_args(args, *, hardware=None, results=None):
    """`make_plan` with the shared flags; ``hardware``/``results`` override the flags."""
    return make_plan(compute=args.compute, params=args.params, tokens=args.tokens, law=args.law,
                     hardware=hardware if hardware is not None else args.hardware,
                     results=results, precision=args.precision, gpus=args.gpus,
                     days=args.days, tflops_per_gpu=args.tflops_per_gpu, mfu=args.mfu,
                     knobs=knobs_from_args(args), seq=args.seq,
                     batch_tokens=None if args.batch_tokens is None else
                     parse_batch_tokens(args.batch_tokens, args.seq or LLAMA3_SEQ))


def warn_about_law(plan) -> None:
    """The loss law's own caveat (`LossLaw.warning`), as a warning on stderr."""
    if plan.law.get("warning"):
        print(f"flopcast: warning: {plan.law['warning']}", file=sys.stderr)


def register(sub):
    p = sub.add_parser(
        "plan", help="days, GPU-hours, MWh, MW and dollars of a training run",
        description="Plan a training run: split the compute budget with a loss law, turn the "
                    "model into per-GPU throughput with the step model, and give days, "
                    "GPU-hours, energy, power and cost per cluster size, every figure labelled "
                    "measured, published, fitted, modelled, given or assumed.")
    add_plan_arguments(p)
    p.add_argument("--results", nargs="+", metavar="PATH",
                   help="results files or folders: build a measured hardware profile from them "
                        "instead of --hardware")
    add_results_arguments(p, positional=False)
    p.add_argument("--explain", action="store_true",
                   help="show the layout search's runners-up per cluster and why each loses")
    p.add_argument("--json", action="store_true", help="print every number with unit and label")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    results = None
    if args.results or args.from_url:  # files, or the results database (--from URL)
        results = load_records(args, paths=args.results)
        if results.empty:
            where = source_name(args) or ", ".join(args.results)
            raise DataError(f"no records found in {where}; "
                            "run `python -m pytest --benchmark` first or drop --results")
    plan = plan_from_args(args, results=results)
    warn_about_law(plan)
    if args.json:
        print_json(plan.to_dict())
        return 0
    print(describe(plan))
    if getattr(args, "explain", False):
        for p in plan.plans:
            if p.search:
                print(f"\n{p.gpus:,} GPUs:\n" + explain(p.search))
    return 0


def explain(search: dict) -> str:
    """The layout search's ranked layouts and the refused faster ones, one line each."""
    counts = search["counts"]
    beaten = counts["fit"] - counts.get("undominated", counts["fit"])
    lines = [f"layout search: {counts['searched']:,} layouts, {counts['fit']:,} fit memory"
             + (f" ({beaten:,} beaten by the same layout with less recomputation or a lower "
                f"ZeRO stage)" if beaten else "")
             + f", {counts['timed']:,} timed"]
    for i, c in enumerate(search["ranked"] + search["refused"][:3], 1):
        tflops = (f"{c['tflops_per_gpu']:,.0f} TFLOP/s/GPU" if c.get("tflops_per_gpu")
                  else "-")
        lines.append(f"  {i}. {layout_words(c['layout'])}: {tflops}, "
                     f"{c['memory_gib']:,.1f} GiB; {c['reason']}")
    lines += [f"  note: {n}" for n in search["notes"]]
    return "\n".join(lines)


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def describe(plan) -> str:
    """The plan as text for people: the answer first, one sentence per cluster, then the
    budget, the model, the table and the labelled inputs."""
    lines = headlines(plan) + ["", summary(plan) + "."]
    if plan.model:
        cfg = plan.model
        lines.append(f"model: {cfg['name']}, {format_count(cfg['params'])} parameters, "
                     f"{cfg['layers']} layers, d_model {cfg['d_model']:,}, d_ffn "
                     f"{cfg['d_ffn']:,}, {cfg['heads_q']} query / {cfg['heads_kv']} key-value "
                     f"heads, vocabulary {cfg['vocab']:,}, sequences of {cfg['seq']:,}")
    lines.append(f"hardware: {plan.hardware.get('name')} ({plan.hardware.get('label')}), "
                 f"{plan.precision} ({plan.input('precision').label})")
    lines.append("")
    lines.append(format_table(table_rows(plan), [(k, h) for k, h, _ in TABLE],
                              align_right={k for k, _, _ in TABLE}))
    lines += where_from(plan)
    for p in plan.plans:
        if p.layout:
            lines.append(f"{p.gpus:,} GPUs: layout {layout_text(p.layout)}")
        if p.memory:
            lines.append(f"  memory: {p.memory['total_bytes'] / 2 ** 30:,.1f} of "
                         f"{p.memory['hbm_bytes'] / 2 ** 30:,.0f} GiB per GPU")
        if p.breakdown:
            lines.append("  step time: " + describe_breakdown(p.breakdown))
    lines.append("")
    lines.append(format_table([i.to_dict() | {"value": input_text(i), "source": _short(i.source)}
                               for i in plan.inputs],
                              [("name", "input"), ("value", "value"), ("unit", "unit"),
                               ("label", "label"), ("source", "source")]))
    return "\n".join(lines)
