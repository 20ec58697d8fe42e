"""`flopcast results`: what was measured, best figure per kernel, dtype and device."""

from __future__ import annotations

from scaling.cli.inputs import add_results_arguments, load_records, runs_table, source_name
from scaling.errors import DataError
from scaling.output import format_table, print_json
from scaling.units import format_seconds

JSON_FIELDS = ["kernel", "impl", "baseline", "backend", "gqa_method", "dtype", "direction",
               "variant", "layout", "device", "device_name", "shape", "flops", "bytes", "time_s",
               "tflops", "gbps", "speedup_vs_baseline", "baseline_impl", "avg_power_w",
               "energy_j", "tflops_per_w", "throttled", "telemetry_backend", "run_id", "file",
               "created_utc"]

TABLE = [("device_name", "device"), ("kernel", "kernel"), ("direction", "pass"),
         ("dtype", "dtype"), ("variant", "variant"), ("impl", "impl"), ("shape", "best shape"),
         ("time_s", "time", format_seconds), ("tflops", "TFLOP/s"), ("gbps", "GB/s"),
         ("speedup_vs_baseline", "vs base"), ("baseline_impl", "fastest base"),
         ("avg_power_w", "W"), ("tflops_per_w", "TFLOP/J")]


def register(sub):
    p = sub.add_parser("results", help="table of measured results (best per kernel, dtype, device)",
                       description="Load results files and print the best measured figure per "
                                   "kernel, implementation, dtype and device.")
    add_results_arguments(p)
    p.add_argument("--all", action="store_true", help="every record, not only the best per kernel")
    p.add_argument("--json", action="store_true", help="print JSON: a list of record objects")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from scaling.records.load import best_by_kernel

    df = load_records(args)
    if df.empty:
        raise DataError(f"no records found in {source_name(args)}; "
                        "run `python -m pytest --benchmark` first")
    rows = df if args.all else best_by_kernel(df)
    rows = rows.sort_values(["device_name", "kernel", "direction", "dtype", "variant", "impl",
                             "flops"]).reset_index(drop=True)
    if args.json:
        print_json([{k: _value(r.get(k)) for k in JSON_FIELDS} | {"shape_dims": _dims(r)}
                    for r in rows.to_dict("records")])
        return 0
    if args.from_url:
        print(runs_table(args, df) + "\n")
    records = rows.to_dict("records")
    for r in records:
        r["variant"] = r.get("variant") or "-"
        r["baseline_impl"] = r.get("baseline_impl") or "-"
        r["device_name"] = f"{r['device_name']} ({r['device']})"
    print(format_table(records, TABLE))
    runs = df["run_id"].nunique()
    devices = ", ".join(sorted(df["device_name"].unique()))
    print(f"\n{len(df)} records from {runs} run{'s' if runs != 1 else ''} on {devices}"
          + ("" if args.all else "; best case per row (--all lists every record)"))
    print("vs base: the fastest baseline's time for the same problem and run / this time "
          "(fastest base: which baseline that was).")
    cpu = df["device"].eq("cpu").any()
    if cpu:
        print("CPU rows are real CPU timings, not GPU figures.")
    return 0


def _value(value):
    if value is None:
        return None
    try:
        if value != value:  # NaN
            return None
    except (TypeError, ValueError):
        pass
    return value


def _dims(row: dict) -> dict:
    return {k[len("shape_"):]: _value(v) for k, v in row.items()
            if k.startswith("shape_") and _value(v) is not None}
