"""`flopcast plan`: what a training run of a given budget takes, per cluster size."""

from __future__ import annotations

import argparse

from scaling import energy, reliability
from scaling.commands._inputs import add_results_arguments, load_records, source_name
from scaling.commands.model import parse_count
from scaling.errors import DataError
from scaling.output import fmt_num, format_table, print_json
from scaling.plan import (DEFAULT_COMPUTE, DEFAULT_GPUS, DEFAULT_HARDWARE, DEFAULT_LAW,
                          PRECISIONS, Knobs, make_plan)

TABLE = [("gpus", "GPUs"), ("tflops_per_gpu", "TFLOP/s/GPU"), ("mfu", "MFU"),
         ("goodput", "goodput"), ("days", "days"), ("gpu_hours", "GPU-hours"),
         ("energy_mwh", "MWh"), ("facility_mw", "capacity MW"), ("avg_power_mw", "avg MW"),
         ("cost_usd", "cost $"), ("interruptions", "failures"), ("mtbf_h", "MTBF h"),
         ("checkpoint_interval_min", "ckpt min")]


def _number(text: str) -> float:
    try:
        return float(str(text).replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _count(text: str) -> float:
    """A parameter or token count (`parse_count`: ``405e9``, ``405B``, ``15.6T``) for argparse."""
    try:
        return parse_count(text)
    except DataError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (e.g. 405e9, 405B, 15.6T)") from None


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    """The flags `plan` and `report` share."""
    g = p.add_argument_group("budget")
    g.add_argument("--compute", default=DEFAULT_COMPUTE,
                   help="training FLOPs, or llama3 (3.8e25) or 10x-llama3 (3.8e26, default)")
    g.add_argument("--params", type=_count,
                   help="model parameters, e.g. 405B (instead of the law's N_opt)")
    g.add_argument("--tokens", type=_count,
                   help="training tokens, e.g. 15.6T (with --params: C = 6 N D)")
    g.add_argument("--law", default=DEFAULT_LAW,
                   help="loss law preset (epoch-2024, chinchilla-2022, llama3-2024) or a JSON "
                        "file from `flopcast fit --save` (default epoch-2024)")
    h = p.add_argument_group("hardware")
    h.add_argument("--hardware", default=DEFAULT_HARDWARE,
                   help="hardware preset (h100-sxm, h200, b200, mi300x) or a profile JSON file")
    h.add_argument("--precision", default="bf16", choices=PRECISIONS,
                   help="GEMM precision (attention stays bf16); default bf16")
    h.add_argument("--tflops-per-gpu", type=_number,
                   help="sustained TFLOP/s per GPU, instead of the step model (Llama 3: 400)")
    h.add_argument("--mfu", type=_number, help="model FLOPs utilisation, instead of the step model")
    h.add_argument("--seq", type=int, default=None, help="training sequence length (default 8192)")
    c = p.add_argument_group("cluster")
    c.add_argument("--gpus", default=",".join(str(g) for g in DEFAULT_GPUS),
                   help="GPU counts, comma-separated (default 16384,100000)")
    c.add_argument("--days", type=_number, help="solve for the GPUs that finish in this many days")
    c.add_argument("--pue", type=_number, default=energy.PUE,
                   help=f"power usage effectiveness (default {energy.PUE}, Meta)")
    c.add_argument("--host-w-per-gpu", type=_number, default=energy.HOST_W_PER_GPU,
                   help="host watts per GPU: CPUs, memory, NICs (default 575, DGX H100)")
    c.add_argument("--usd-per-gpu-hour", type=_number, default=energy.USD_PER_GPU_HOUR,
                   help=f"price per GPU-hour, excluding power (default {energy.USD_PER_GPU_HOUR})")
    c.add_argument("--usd-per-kwh", type=_number, default=energy.USD_PER_KWH,
                   help=f"electricity price (default {energy.USD_PER_KWH})")
    r = p.add_argument_group("reliability")
    r.add_argument("--failures-per-gpu-hour", type=_number,
                   default=reliability.LLAMA3_FAILURES_PER_GPU_HOUR,
                   help="unexpected interruptions per GPU-hour (default: Llama 3, 419 in 54 "
                        "days on 16,384 GPUs)")
    r.add_argument("--storage-gbps", type=_number, default=reliability.STORAGE_GBPS,
                   help="checkpoint storage bandwidth, GB/s (default 2000, Llama 3)")
    r.add_argument("--restart-min", type=_number, default=reliability.RESTART_S / 60,
                   help="minutes to restart after a failure, besides reloading (default 10)")


def parse_gpus(text: str) -> list[str]:
    return [part.strip() for part in str(text).split(",") if part.strip()]


def knobs_from_args(args) -> Knobs:
    return Knobs(pue=args.pue, host_w_per_gpu=args.host_w_per_gpu,
                 usd_per_gpu_hour=args.usd_per_gpu_hour, usd_per_kwh=args.usd_per_kwh,
                 failures_per_gpu_hour=args.failures_per_gpu_hour,
                 storage_gbps=args.storage_gbps, restart_s=args.restart_min * 60.0)


def plan_from_args(args, *, hardware=None, results=None):
    """`make_plan` with the shared flags; ``hardware``/``results`` override the flags."""
    return make_plan(compute=args.compute, params=args.params, tokens=args.tokens, law=args.law,
                     hardware=hardware if hardware is not None else args.hardware,
                     results=results, precision=args.precision, gpus=parse_gpus(args.gpus),
                     days=args.days, tflops_per_gpu=args.tflops_per_gpu, mfu=args.mfu,
                     knobs=knobs_from_args(args), seq=args.seq)


def register(sub):
    p = sub.add_parser(
        "plan", help="days, GPU-hours, MWh, MW and dollars of a training run",
        description="Plan a training run: split the compute budget with a loss law, turn the "
                    "model into per-GPU throughput with the step model, and give days, "
                    "GPU-hours, energy, power and cost per cluster size, every input labelled "
                    "measured, published, fitted or assumed.")
    add_plan_arguments(p)
    p.add_argument("--results", nargs="+", metavar="PATH",
                   help="results files or folders: build a measured hardware profile from them "
                        "instead of --hardware")
    add_results_arguments(p, positional=False)
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
    if args.json:
        print_json(plan.to_dict())
        return 0
    print(describe(plan))
    return 0


def _iv(value, interval) -> str:
    if not interval:
        return fmt_num(value)
    return f"{fmt_num(value)} [{fmt_num(interval[0])}..{fmt_num(interval[1])}]"


def _layout(layout: dict) -> str:
    text = f"TP {layout['tp']} x PP {layout['pp']} x DP {layout['dp']}"
    if layout.get("interleave", 1) > 1:
        text += f" ({layout['interleave']} interleaved chunks)"
    return text + f", {layout['gpus_used']:,} GPUs busy"


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def describe(plan) -> str:
    """The plan as text for people: the budget, the model, the table, the labelled inputs."""
    lab = {i.name: i.label for i in plan.inputs}
    lines = [
        f"budget   {plan.compute_flops:.3g} FLOPs ({lab['compute_flops']})",
        f"law      {plan.law['name']} ({plan.law['label']})",
        f"model    N = {_iv(plan.params, plan.intervals.get('params'))} params, "
        f"D = {_iv(plan.tokens, plan.intervals.get('tokens'))} tokens, "
        f"{fmt_num(plan.tokens_per_param)} tokens/param, "
        "loss " + (_iv(plan.loss, plan.intervals.get("loss")) if plan.loss is not None
                   else "- (the law has none)"),
    ]
    if plan.model:
        cfg = plan.model
        lines.append(f"config   {cfg['name']}: " + ", ".join(
            f"{k} {fmt_num(v)}" for k, v in cfg.items() if k not in ("name", "source")))
    lines.append(f"hardware {plan.hardware.get('name')} ({plan.hardware.get('label')}), "
                 f"{plan.precision}")
    lines.append("")
    lines.append(format_table([p.to_dict() for p in plan.plans], TABLE))
    for p in plan.plans:
        lines.append(f"{p.gpus:>9,} GPUs: throughput {p.labels.get('tflops_per_gpu')}, power "
                     f"{p.labels.get('gpu_power_w')} ({fmt_num(p.gpu_power_w)} W per GPU)"
                     + (f", layout {_layout(p.layout)}" if p.layout else ""))
        if p.breakdown:
            total = sum(p.breakdown.values()) or 1.0
            lines.append(" " * 16 + "step time: " + ", ".join(
                f"{k.removesuffix('_s').replace('_', ' ')} {v / total:.0%}"
                for k, v in sorted(p.breakdown.items(), key=lambda kv: -kv[1]) if v > 0))
        if p.intervals:
            lines.append(" " * 16 + "intervals: " + "; ".join(
                f"{k} {fmt_num(lo)}..{fmt_num(hi)}" for k, (lo, hi) in p.intervals.items()
                if k in ("days", "gpu_hours", "energy_mwh", "avg_power_mw")))
    lines.append("")
    lines.append(format_table([i.to_dict() | {"value": fmt_num(i.value)
                                              if not isinstance(i.value, str) else i.value,
                                              "source": _short(i.source)}
                               for i in plan.inputs],
                              [("name", "input"), ("value", "value"), ("unit", "unit"),
                               ("label", "label"), ("source", "source")]))
    return "\n".join(lines)
