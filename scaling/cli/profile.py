"""`flopcast profile`: a hardware profile's curves and headline figures."""

from __future__ import annotations

from scaling.cli.inputs import add_results_arguments, load_records, source_name
from scaling.errors import DataError
from scaling.hardware.profile import preset_names, profile_summary
from scaling.hardware.calibration import build_profile
from scaling.hardware.load import load_profile
from scaling.output import fmt_num, format_table, print_json

# Headline sizes: a 4096^3 GEMM and a Llama 3 405B attention call under TP 8 (one 8K sequence,
# 16 q heads, 1 kv head, head dim 128, causal).
GEMM_HEADLINE = (4096, 4096, 4096)
ATTENTION_HEADLINE = dict(batch=1, heads_q=16, heads_kv=1, seq=8192, head_dim=128, causal=True)


def register(sub):
    p = sub.add_parser("profile", help="a hardware profile: throughput curves, power, links",
                       description="Build a measured hardware profile from results (default "
                                   "results/) or show a published preset, and print its curves "
                                   "and headline figures.")
    add_results_arguments(p)
    p.add_argument("--hardware", metavar="PRESET|FILE",
                   help="a published preset (" + ", ".join(preset_names()) + ") or a saved "
                        "profile; with results PATHs, the preset whose datasheet figures to "
                        "attach")
    p.add_argument("--save", metavar="FILE", help="write the profile as JSON to FILE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p


def _profile(args):
    paths_given = args.paths is not getattr(args, "results_default_paths", None)
    from_db = getattr(args, "from_url", None)
    if args.hardware and not (paths_given or from_db):
        return load_profile(args.hardware)
    df = load_records(args)
    if df.empty:
        raise DataError(f"no records found in {source_name(args)}; run "
                        "`python -m pytest --benchmark` first, or show a preset with "
                        "--hardware h100-sxm")
    preset = args.hardware if args.hardware in preset_names() else None
    return build_profile(df, preset=preset)


def _headline(profile, curve):
    try:
        if curve.kernel == "gemm":
            return profile.matmul_tflops(*GEMM_HEADLINE, curve.dtype, impl=curve.impl,
                                         variant=curve.variant).value
        shape = dict(ATTENTION_HEADLINE, causal=curve.mask != "full")
        return profile.attention_tflops(**shape, dtype=curve.dtype, direction=curve.direction,
                                        impl=curve.impl).value
    except DataError:
        return None


def run(args) -> int:
    profile = _profile(args)
    if args.save:
        profile.save(args.save)
    summary = profile_summary(profile)
    for row, curve in zip(summary["curves"], profile.kernel_curves):
        row["headline_tflops"] = _headline(profile, curve)
    if args.json:
        print_json(summary)
        return 0
    print(f"{profile.name}  [{profile.label}]  {profile.device_name}")
    for s in profile.sources:
        print(f"  source: {s}")
    peaks = ", ".join(f"{k} {fmt_num(v)}" for k, v in summary["peak_tflops"].items())
    print(f"datasheet peak TFLOP/s: {peaks or '-'}")
    print(f"TDP W: {fmt_num(summary['tdp_w'])}   memory GB/s: {fmt_num(summary['memory_gbps'])}"
          + (f" ({profile.memory_gbps.label})" if profile.memory_gbps else ""))
    timed = profile.streaming_gbps()
    print(f"memory-bound work timed at GB/s: {fmt_num(timed.value) if timed else '-'}"
          + (f" ({timed.label}: {timed.source})" if timed else " (no bandwidth known)"))
    links = ", ".join(f"{k} {fmt_num(v.value)} ({v.label})" for k, v in profile.links.items())
    print(f"link bus bandwidth GB/s: {links or '- (H100 figures assumed)'}")
    print()
    rows = [dict(r, spread=f"{r['ratio_lo']:.2f}..{r['ratio_hi']:.2f}") for r in summary["curves"]]
    print("Throughput curves: TFLOP/s = plateau x F / (F + F_half), F = FLOPs per call")
    print(format_table(rows, [("key", "curve"), ("plateau_tflops", "plateau"),
                              ("half_flops", "F_half"), ("headline_tflops", "headline"),
                              ("points", "points"), ("spread", "meas/fit"),
                              ("label", "label")]))
    print(f"(headline: GEMM {'x'.join(map(str, GEMM_HEADLINE))}; attention 1 x 8192 tokens, "
          f"16 q / 1 kv heads, head dim 128)")
    if summary["grouped"]:
        rows = [dict(r, spread=f"{r['ratio_lo']:.2f}..{r['ratio_hi']:.2f}",
                     measured=f"{fmt_num(r['tokens_per_expert_min'])}.."
                              f"{fmt_num(r['tokens_per_expert_max'])}")
                for r in summary["grouped"]]
        print("\nGrouped GEMM (MoE experts): TFLOP/s = plateau x T / (T + T_half), "
              "T = tokens per expert")
        print(format_table(rows, [("key", "curve"), ("plateau_tflops", "plateau"),
                                  ("half_tokens_per_expert", "T_half"),
                                  ("measured", "T measured"), ("points", "points"),
                                  ("spread", "meas/fit"), ("label", "label")]))
    if summary["routing"]:
        print("\nMoE dispatch and combine (memory-bound): GB/s = plateau x bytes / "
              "(bytes + half)")
        print(format_table(summary["routing"], [("key", "kernel"),
                                                ("plateau_gbps", "plateau GB/s"),
                                                ("half_bytes", "half bytes"),
                                                ("points", "points"), ("label", "label")]))
    if summary["comm"]:
        print("\nCollective bus bandwidth: GB/s = plateau x bytes / (bytes + half)")
        print(format_table(summary["comm"], [("collective", "collective"),
                                             ("world_size", "ranks"), ("nodes", "nodes"),
                                             ("plateau_busbw_gbps", "plateau GB/s"),
                                             ("half_bytes", "half bytes"), ("points", "points")]))
    power = summary["power"]
    if power:
        print(f"\nPower: {fmt_num(power['idle_w'])} W + "
              f"{fmt_num(power['busy_w'] - power['idle_w'])} W x utilisation "
              f"(utilisation of the {power['basis']}; {power['points']} records)")
    else:
        print(f"\nPower: no curve ({summary['power_missing_reason']})"
              + (f"; TDP {fmt_num(profile.tdp_w)} W assumed" if profile.tdp else ""))
    for key, why in summary["skipped"].items():
        print(f"not fitted: {key}: {why}")
    if args.save:
        print(f"\nsaved {args.save}")
    return 0
