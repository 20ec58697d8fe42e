"""What a benchmark run shows people: each case's figures on its progress line, and at the end
one short table per kernel family.

Throughput is in TFLOP/s, or GB/s for a family whose cases count no FLOPs. Times are medians
per call, each written in its own unit by `scaling.units.format_seconds` (as `flopcast results`
writes them). The speedup is the family's baseline implementation's time over this one's at
the same problem; the baseline is the one the kernel registry lists first. Watts are the
average over the case's power window.

The tables use `scaling.output`, `scaling.schema` and `scaling.units`, which need nothing beyond the standard
library, so printing them pulls in none of the planning half's dependencies.
"""

from __future__ import annotations

from typing import Callable

from kernels import registry
from kernels.spec import KernelError
from scaling.output import format_table
from scaling.schema import shape_str
from scaling.units import format_seconds

# The columns that tell the problems of one family apart, in the order they are printed.
PROBLEM = (("direction", "pass"), ("dtype", "dtype"), ("variant", "variant"),
           ("layout", "layout"), ("shape", "shape"))


#: FLOPs per byte moved below which a kernel is bound by memory on every accelerator (the
#: H100's balance is 989 TFLOP/s / 3.35 TB/s = 295 FLOP/B, datasheet): its rate is printed in
#: GB/s even where it does some arithmetic (the MoE combine's weighting multiply-adds).
MEMORY_BOUND_FLOPS_PER_BYTE = 1.0


def memory_bound(fields: dict) -> bool:
    """Whether a record's rate is its bytes per second rather than its FLOPs per second."""
    flops, moved = fields.get("flops") or 0, fields.get("bytes") or 0
    return bool(moved) and flops / moved < MEMORY_BOUND_FLOPS_PER_BYTE


def case_figures(fields: dict) -> str:
    """``0.692 TFLOP/s, 48.5 us, 310 W``: what one finished case measured (GB/s for a
    memory-bound kernel, `memory_bound`)."""
    parts = []
    if fields.get("gbps") and memory_bound(fields):
        parts.append(f"{fields['gbps']:.3g} GB/s")
    elif fields.get("tflops") is not None:
        parts.append(f"{fields['tflops']:.3g} TFLOP/s")
    elif fields.get("gbps"):
        parts.append(f"{fields['gbps']:.3g} GB/s")
    if fields.get("time_s") is not None:
        parts.append(format_seconds(fields["time_s"]))
    if fields.get("avg_power_w") is not None:
        parts.append(f"{fields['avg_power_w']:.0f} W")
    return ", ".join(parts) or "done"


def registry_baseline(kernel: str) -> str | None:
    """The family's baseline implementation (the registry lists it first); None for a case
    that is not a registered kernel family (the loss-law fit)."""
    try:
        return registry.impls(kernel)[0]
    except KernelError:
        return None


def _problem(record: dict) -> dict:
    """The fields that say which problem a record measured, as text ("-" where empty)."""
    return {key: shape_str(record["shape"]) if key == "shape" else record.get(key) or "-"
            for key, _ in PROBLEM}


def _same_problem(row: dict) -> tuple:
    return tuple(row[key] for key, _ in PROBLEM)


def family_table(kernel: str, records: list[dict], baseline: str | None) -> str:
    """The records of one kernel family as a titled table: one row per case, problems of one
    kind in order of size, the baseline first at each."""
    rows = [{**_problem(r), "impl": r.get("impl"), "time_s": r.get("time_s"),
             "tflops": r.get("tflops"), "gbps": r.get("gbps"), "power_w": r.get("avg_power_w"),
             "size": r.get("flops") or r.get("bytes") or 0} for r in records]
    base_time = {_same_problem(row): row["time_s"] for row in rows
                 if row["impl"] == baseline and row["time_s"]}
    for row in rows:
        base = base_time.get(_same_problem(row))
        row["speedup"] = base / row["time_s"] if base and row["time_s"] else None
    rows.sort(key=lambda row: (row["direction"] != "fwd", row["direction"], row["dtype"],
                               row["variant"], row["layout"], row["size"], row["shape"],
                               row["impl"] != baseline, row["impl"]))
    columns = [(key, header) for key, header in PROBLEM
               if any(row[key] != "-" for row in rows)]
    columns += [("impl", "impl"), ("time_s", "time", format_seconds)]
    if records and all(memory_bound(r) for r in records) and any(row["gbps"] for row in rows):
        columns.append(("gbps", "GB/s"))
    elif any(row["tflops"] is not None for row in rows):
        columns.append(("tflops", "TFLOP/s"))
    elif any(row["gbps"] for row in rows):
        columns.append(("gbps", "GB/s"))
    title = f"{kernel}: median time per call"
    if any(row["speedup"] is not None and row["impl"] != baseline for row in rows):
        columns.append(("speedup", f"vs {baseline}"))
        title += f"; vs {baseline} = {baseline}'s time / this time on the same problem"
    columns.append(("power_w", "W"))
    return f"{title}\n{format_table(rows, columns)}"


def summary(records: list[dict],
            baseline_of: Callable[[str], str | None] = registry_baseline) -> str:
    """The end-of-run summary: one table per kernel family, the registry's families first
    (in the order they ran), then the other cases (the loss-law fit)."""
    families: dict[str, list[dict]] = {}
    for record in records:
        families.setdefault(record["kernel"], []).append(record)
    baselines = {kernel: baseline_of(kernel) for kernel in families}
    order = sorted(families, key=lambda kernel: baselines[kernel] is None)
    return "\n\n".join(family_table(kernel, families[kernel], baselines[kernel])
                        for kernel in order)
