"""A plan in words and human units, for `flopcast plan` and the report alike.

The answer comes first, one sentence per cluster size (``656 days, 258M GPU-hours, 23 MW,
$545M on 16,384 H100``), then the budget in a sentence, then the table. Numbers are written
by `scaling.units` (258M, $545M, 362 GWh, 23 MW), and an interval is shown beside a figure
only where it is wider than the figure's rounding.
"""

from __future__ import annotations

from scaling.model.memory import STEP_ZERO

from scaling.units import (format_count, format_days, format_flops, format_usd,
                           format_watt_hours, format_watts, significant, with_interval)


def percent(fraction) -> str:
    return "-" if fraction is None else f"{significant(100 * fraction)}%"


def hours(value) -> str:
    """Hours, or minutes under one hour: ``3.09 h``, ``30.4 min``."""
    if value is None:
        return "-"
    return f"{significant(value)} h" if value >= 1 else f"{significant(60 * value)} min"


#: The plan table: (field of a `ClusterPlan`, header, how to write it for people).
TABLE = (
    ("gpus", "GPUs", format_count),
    ("tflops_per_gpu", "TFLOP/s/GPU", format_count),
    ("mfu", "MFU", percent),
    ("goodput", "goodput", percent),
    ("days", "days", format_count),
    ("gpu_hours", "GPU-hours", format_count),
    ("energy_mwh", "energy", lambda mwh: format_watt_hours(mwh * 1e6)),
    ("facility_mw", "capacity", lambda mw: format_watts(mw * 1e6)),
    ("avg_power_mw", "avg draw", lambda mw: format_watts(mw * 1e6)),
    ("cost_usd", "cost", format_usd),
    ("interruptions", "failures", format_count),
    ("mtbf_h", "MTBF", hours),
    ("checkpoint_interval_min", "ckpt every", lambda minutes: hours(minutes / 60)),
)


def headline(cluster, gpu_name: str) -> str:
    """One cluster's answer in one sentence: ``656 days, 258M GPU-hours, 23 MW, $545M on
    16,384 H100`` (MW: the facility capacity to provision)."""
    iv = cluster.intervals.get
    return (f"{with_interval(cluster.days, iv('days'), format_days)}, "
            f"{with_interval(cluster.gpu_hours, iv('gpu_hours'))} GPU-hours, "
            f"{format_watts(cluster.facility_mw * 1e6)}, "
            f"{with_interval(cluster.cost_usd, iv('cost_usd'), format_usd)} "
            f"on {cluster.gpus:,} {gpu_name}")


def headlines(plan) -> list[str]:
    """One sentence per cluster size of ``plan``."""
    name = plan.hardware.get("short_name") or plan.hardware.get("name")
    return [headline(p, name) for p in plan.plans]


def summary(plan) -> str:
    """The budget and its split in one sentence."""
    loss = f", predicted loss {plan.loss:.3g}" if plan.loss is not None else ""
    return (f"{format_flops(plan.compute_flops)} FLOPs ({plan.input('compute_flops').label}), "
            f"split by the {plan.law['name']} law ({plan.law['label']}) into "
            f"{with_interval(plan.params, plan.intervals.get('params'))} parameters and "
            f"{with_interval(plan.tokens, plan.intervals.get('tokens'))} tokens "
            f"({significant(plan.tokens_per_param)} per parameter){loss}")


def table_rows(plan) -> list[dict]:
    """The plan table's cells as text, one row per cluster size."""
    return [{key: with_interval(getattr(p, key), p.intervals.get(key), fmt)
             for key, _, fmt in TABLE} for p in plan.plans]


def input_text(item) -> str:
    """An input's value for people: ``3.8e26`` FLOPs, ``2.01T``, ``16,384 100,000``."""
    if isinstance(item.value, str):
        return item.value
    if isinstance(item.value, (list, tuple)):
        return " ".join(format_count(v) for v in item.value)
    return format_flops(item.value) if item.unit == "FLOPs" else format_count(item.value)


def layout_text(layout: dict) -> str:
    """``TP 8 x CP 2 x PP 16 x DP 64 (2 chunks, full recompute, EP 8, ZeRO 3), 16,384 GPUs
    busy``: context parallelism, expert parallelism and a ZeRO stage other than the step
    model's default only where the layout has them."""
    dims = [("TP", layout["tp"])] + ([("CP", layout["cp"])] if layout.get("cp", 1) > 1
                                     else []) + [("PP", layout["pp"]), ("DP", layout["dp"])]
    text = " x ".join(f"{name} {value}" for name, value in dims)
    extra = ([f"{layout['interleave']} chunks"] if layout.get("interleave", 1) > 1 else []) + (
        [f"{layout['recompute']} recompute"] if layout.get("recompute", "none") != "none"
        else [])
    if layout.get("ep", 1) > 1:
        extra.append(f"EP {layout['ep']}")
    if layout.get("zero", STEP_ZERO) != STEP_ZERO:
        extra.append(f"ZeRO {layout['zero']}")
    if extra:
        text += f" ({', '.join(extra)})"
    return text + f", {layout['gpus_used']:,} GPUs busy"


def where_from(plan) -> list[str]:
    """Where the clusters' throughput and watts come from, with their labels: one line each,
    or one per cluster where the clusters differ."""
    lines = []
    for key, name in (("tflops_per_gpu", "throughput"), ("gpu_power_w", "power")):
        differ = len({(p.labels.get(key), p.sources.get(key)) for p in plan.plans}) > 1
        for p in plan.plans if differ else plan.plans[:1]:
            label, source = p.labels.get(key), p.sources.get(key, "")
            watts = f"{format_watts(p.gpu_power_w)} per GPU, " if key == "gpu_power_w" else ""
            lines.append(f"{name}" + (f" on {p.gpus:,} GPUs" if differ else "")
                         + f" ({label}): {watts}{source.removeprefix(f'{label}: ')}")
    return lines
