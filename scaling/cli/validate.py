"""`flopcast validate`: the step model against published training runs.

Every run of `scaling.validate.runs` is modelled with one set of defaults, the planner's,
and no per-run tuning: what the source publishes is used as published; a micro-batch size it
does not give is 1 (`scaling.model.step.LAYOUT_DEFAULTS`); an interleaving it does not give is the
planner's rule, the fastest of `scaling.plan.throughput.SCHEDULES` that fits the device's memory.
The modelled throughput is turned into the FLOPs the source counts (its tokens per second
times that convention's FLOPs per token, `scaling.validate.runs.flops_per_token`), so the
published column is the figure as printed. A run the step model cannot express (context
parallelism, an unpublished layout) is refused with the reason, never given a number; a
report-only run (Llama 4 Behemoth) is modelled under the assumed layout its row states
(`scaling.validate.runs.ValidationRun.assumed_layout`) and, where its source does not say
which FLOPs it counts, compared in flopcast's FLOPs, both said in the row's assumptions.
Each modelled row also carries the one GEMM rate at which the step model would reproduce its
published figure (`scaling.validate.match`), a diagnostic of where a miss would have to sit.
Context parallelism is modelled (`scaling.model.step`'s ``cp``). After the runs, one layer of
the 22B model against Korthikanti et al. 2022's Table 4 (`scaling.validate.layers`), reported
only, and the fit of that table that is the a100-80gb preset's GEMM rate
(`scaling.validate.layers.fit_gemm_tflops`, `scaling.hardware.datasheets.A100_LAYER_FIT`):
on the preset the layer's errors are the fit's residuals, and the Megatron-LM runs, other
models with pipeline and data parallelism, test the fitted rate out of sample.

``--hardware PROFILE`` (a results file or folder, or a saved profile) models the runs that
ran on the device the profile measured, and the layer too where it is that device, on the
measured profile in place of the preset: what a measured GEMM curve, streaming rate and
collective curves do to a row the preset misses. Memory is still checked against the
preset's HBM.
"""

from __future__ import annotations

from scaling.cli.inputs import add_profile_device_argument
from scaling.errors import DataError
from scaling.hardware import datasheets
from scaling.hardware.load import load_profile
from scaling.model.memory import GIB, STEP_ZERO, step_memory
from scaling.output import format_table, print_json
from scaling.model.step import (GRAD_ACCUMULATION_DEFAULT, GRAD_REDUCE_DEFAULT, PRECISIONS,
                                STEP_RECOMPUTE, step_time)
from scaling.plan.throughput import SCHEDULES
from scaling.validate.layers import (KORTHIKANTI_TABLE4, LAYER_HARDWARE, LAYER_LAYOUT_SOURCE,
                                     check_layers, fit_gemm_tflops)
from scaling.validate.match import gemm_rate_to_match
from scaling.validate.runs import (FLOP_CONVENTIONS, VALIDATION_RUNS, ValidationRun,
                                     flops_per_token)

#: Precisions a source names that the step model runs as another at the same dense peak.
SAME_PEAK = {"fp16": ("bf16", "FP16 timed as BF16: the A100's dense FP16 and BF16 Tensor Core "
                              "peaks are both 312 TFLOP/s (NVIDIA A100 datasheet)")}
DEFAULTS = ("micro-batch 1 where unpublished (scaling.model.step.LAYOUT_DEFAULTS); an unpublished "
            "interleave: the fastest of 2 or 1 chunks per GPU that fits the device's memory, "
            "the planner's rule (scaling.plan.throughput.SCHEDULES); everything else as published")


def register(sub):
    p = sub.add_parser(
        "validate", help="the step model against published training runs",
        description="Model every published run flopcast is checked against (Llama 3 Table 4, "
                    "Megatron-LM Table 1, Llama 4 Behemoth) with one set of defaults, and "
                    "print published against modelled per-GPU throughput in the source's own "
                    "FLOP convention, the error, the tolerance and the verdict; runs the step "
                    "model cannot express are refused with the reason. Then one transformer "
                    "layer of Megatron-LM's 22B model, forward and backward, against its "
                    "measured times (Korthikanti et al. 2022, Table 4), reported only, and "
                    "the fit of that table that is the a100-80gb preset's GEMM rate. Exit "
                    "status 0 when every run with a tolerance that was modelled is within "
                    "it, 1 otherwise.")
    p.add_argument("--hardware", metavar="PROFILE",
                   help="a measured profile (results file or folder, or a saved profile "
                        "JSON): the runs on the preset its device is recognised as (an A100 "
                        "SXM4 80GB: a100-80gb; an H100 SXM: h100-sxm), and the one-layer "
                        "check where that is the A100, are modelled on it instead")
    add_profile_device_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p


def run_layout(run: ValidationRun) -> dict:
    """The run's layout: as published, and for a report-only run the values it does not
    publish from its stated assumed layout (`ValidationRun.assumed_layout`)."""
    lay = dict(run.layout)
    if run.tolerance is None:
        lay.update({k: v for k, v in run.assumed_layout.items() if lay.get(k) is None})
    return lay


def comparison_flops(run: ValidationRun) -> str:
    """The FLOP convention a run is compared in: its own, or for a report-only run whose
    source does not say, flopcast's (an assumption `model_run` states)."""
    return "flopcast" if run.flops == "unstated" and run.tolerance is None else run.flops


def refusal(run: ValidationRun) -> str | None:
    """Why the step model cannot express ``run``, or None."""
    lay = run_layout(run)
    if any(lay.get(k) is None for k in ("tp", "pp", "dp", "seq", "global_batch")):
        missing = [k for k in ("tp", "pp", "dp", "seq", "global_batch") if lay.get(k) is None]
        return f"its layout is not published ({', '.join(missing)} unknown)"
    if lay.get("recompute") is not None and lay["recompute"] not in STEP_RECOMPUTE:
        return f"{lay['recompute']} recomputation is not timed by the step model"
    if run.precision not in PRECISIONS and run.precision not in SAME_PEAK:
        return f"precision {run.precision} is not modelled"
    if comparison_flops(run) == "unstated":
        return "the source does not say which FLOPs its throughput counts"
    return None


def _schedules(run: ValidationRun) -> list[tuple[int, str]]:
    """The (interleave, recompute) pairs to try: the published ones, else the planner's."""
    lay, out = run_layout(run), []
    for v, recompute in SCHEDULES:
        v = lay["interleave"] if lay.get("interleave") is not None else (
            v if lay["pp"] > 1 else 1)
        recompute = lay["recompute"] if lay.get("recompute") is not None else recompute
        if (v, recompute) not in out:
            out.append((v, recompute))
    return out


def _profile_fields(run: ValidationRun, profile=None) -> dict:
    """The profile a row is modelled on: ``profile``, or the run's preset (published)."""
    if profile is None:
        return {"profile": run.hardware, "profile_label": "published"}
    return {"profile": profile.name, "profile_label": profile.label}


def model_run(run: ValidationRun, profile=None) -> dict:
    """One row: the run, what was assumed, and published against modelled (or a refusal),
    on ``profile`` (default: the run's hardware preset)."""
    row = {"name": run.name, "group": run.group, "citation": run.citation, "gpus": run.gpus,
           "hardware": run.hardware, **_profile_fields(run, profile),
           "published_tflops": run.published_tflops,
           "flops": run.flops, "flops_label": run.flops_label, "tolerance": run.tolerance,
           "modelled_tflops": None, "error": None, "refusal": refusal(run), "assumed": {},
           "layout": dict(run.layout), "memory": None}
    if row["refusal"] is not None:
        row["verdict"] = "refused"
        return row
    profile = load_profile(run.hardware) if profile is None else profile
    config, lay = run.config(), run_layout(run)
    precision, note = SAME_PEAK.get(run.precision, (run.precision, None))
    if note:
        row["assumed"]["precision"] = note
    if run.assumed_layout and run.tolerance is None:
        row["assumed"]["layout"] = run.assumed_layout_rule
        row["layout"] = dict(lay)
    flops = comparison_flops(run)
    if flops != run.flops:
        row["assumed"]["flops"] = (f"{run.name}: the source does not say which FLOPs it "
                                   f"counts; compared as if it counted flopcast's "
                                   f"({FLOP_CONVENTIONS['flopcast']})")
        row["flops"] = flops
    ep = lay.get("ep") or 1
    micro_batch = lay["micro_batch"] or 1
    if lay["micro_batch"] is None:
        row["assumed"]["micro_batch"] = "1 (not published; scaling.model.step.LAYOUT_DEFAULTS)"
    batch_tokens = lay["global_batch"] * lay["seq"]
    micro_batches = batch_tokens // (lay["seq"] * lay["dp"] * micro_batch)
    tried = []
    for interleave, recompute in _schedules(run):
        shape = {"tp": lay["tp"], "pp": lay["pp"], "dp": lay["dp"], "cp": lay.get("cp") or 1,
                 "seq": lay["seq"],
                 "micro_batch": micro_batch, "micro_batches": micro_batches,
                 "interleave": interleave, "recompute": recompute, "ep": ep,
                 "sequence_parallel": lay.get("sequence_parallel"),
                 "zero": lay["zero"] if lay.get("zero") is not None else STEP_ZERO,
                 "grad_reduce": lay.get("grad_reduce") or GRAD_REDUCE_DEFAULT,
                 "balanced_pipeline": lay.get("balanced_pipeline", True) is not False,
                 "attention": run.attention}
        memory = step_memory(config, run.hardware, shape, precision=precision)
        kwargs = dict(precision=precision, tp=lay["tp"], pp=lay["pp"], dp=lay["dp"],
                      cp=lay.get("cp") or 1, seq=lay["seq"], batch_tokens=batch_tokens,
                      attention=run.attention, micro_batch=micro_batch,
                      interleave=interleave, recompute=recompute, ep=ep,
                      sequence_parallel=lay.get("sequence_parallel"),
                      balanced_pipeline=shape["balanced_pipeline"], zero=shape["zero"],
                      grad_reduce=shape["grad_reduce"],
                      grad_overlap=bool(lay.get("grad_overlap")),
                      grad_accumulation=(lay.get("grad_accumulation")
                                         or GRAD_ACCUMULATION_DEFAULT),
                      tp_backward_overlap=lay.get("tp_backward_overlap") is not False)
        step = step_time(config, profile, **kwargs)
        tried.append((memory.fits, step.tflops_per_gpu, step, memory, kwargs))
    fits = [t for t in tried if t[0]]
    # The fastest schedule that fits; where none does (the memory model disagrees with a run
    # that did run), the published or first schedule, with its memory verdict shown.
    _, _, step, memory, kwargs = max(fits, key=lambda t: t[1]) if fits else tried[0]
    if lay["interleave"] is None:
        row["assumed"]["interleave"] = (f"{step.layout['interleave']} (not published; the "
                                        f"fastest of 2 or 1 that fits the device's memory)")
    tokens_per_s_per_gpu = step.tokens_per_s / run.gpus
    modelled = tokens_per_s_per_gpu * flops_per_token(config, flops) / 1e12
    row.update(modelled_tflops=modelled, modelled_tflops_flopcast=step.tflops_per_gpu,
               published_tflops_flopcast=run.published_tflops * (
                   flops_per_token(config, "flopcast") / flops_per_token(config, flops)),
               mfu_flopcast=step.mfu, error=modelled / run.published_tflops - 1,
               modelled_layout=dict(step.layout),
               memory={"total_bytes": float(memory.total_bytes),
                       "hbm_bytes": float(memory.hbm_bytes), "fits": bool(memory.fits),
                       "stage": memory.stage})
    row["breakdown_s"] = dict(step.breakdown)
    row["gemm_tflops_modelled"] = step.labels["gemm_tflops"]["value"]
    row["gemm_tflops_to_match"] = gemm_rate_to_match(
        lambda rate: step_time(config, profile, overrides={"gemm_tflops": rate},
                               **kwargs).tflops_per_gpu,
        row["published_tflops_flopcast"],
        profile.peak_tflops(PRECISIONS[precision])).to_dict()
    if run.tolerance is None:
        row["verdict"] = "reported"
    else:
        row["verdict"] = "pass" if abs(row["error"]) <= run.tolerance else "fail"
    return row


def validate(runs=VALIDATION_RUNS, profiles: dict | None = None) -> list[dict]:
    """Every run modelled; ``profiles`` (preset name -> profile) replaces a run's preset."""
    rows, profiles = [], profiles or {}
    for r in runs:
        try:
            rows.append(model_run(r, profiles.get(r.hardware)))
        except DataError as exc:  # the step or memory model refuses the published layout
            rows.append({"name": r.name, "group": r.group, "citation": r.citation,
                         "gpus": r.gpus, "hardware": r.hardware,
                         **_profile_fields(r, profiles.get(r.hardware)),
                         "published_tflops": r.published_tflops, "flops": r.flops,
                         "tolerance": r.tolerance, "modelled_tflops": None, "error": None,
                         "refusal": str(exc), "verdict": "refused", "layout": dict(r.layout),
                         "assumed": {}, "memory": None})
    return rows


def measured_profiles(hardware, device: str | None = None) -> dict:
    """{preset: profile} for ``--hardware`` (``device`` picks one from results of several):
    the profile, under the preset its device is recognised as, which must be the hardware of
    some run."""
    profile = load_profile(hardware, device=device)
    preset = (profile.name if profile.name in datasheets.DEVICES
              else datasheets.preset_for_device(profile.device_name))
    ran_on = sorted({r.hardware for r in VALIDATION_RUNS})
    if preset is None:
        raise DataError(f"--hardware {hardware}: its device '{profile.device_name}' is not "
                        f"recognised as any preset, so no run can be modelled on it (the runs "
                        f"ran on {', '.join(ran_on)})")
    if preset not in ran_on:
        raise DataError(f"--hardware {hardware}: a profile of {preset} ('{profile.device_name}'"
                        f"); no published run here ran on it (the runs ran on "
                        f"{', '.join(ran_on)})")
    return {preset: profile}


def run(args) -> int:
    profiles = (measured_profiles(args.hardware, args.device) if args.hardware else {})
    rows = validate(profiles=profiles)
    layers = check_layers(profile=profiles.get(LAYER_HARDWARE))
    fit = fit_gemm_tflops()
    # The preset's curve is flat (one fitted rate), so any shape reads it.
    preset_gemm = load_profile(LAYER_HARDWARE).matmul_tflops(8192, 8192, 8192, "bf16")
    failed = any(r["verdict"] == "fail" for r in rows)
    on = {preset: {"profile": p.name, "label": p.label, "device": p.device_name}
          for preset, p in profiles.items()}
    if args.json:
        print_json({"defaults": DEFAULTS, "conventions": FLOP_CONVENTIONS, "profiles": on,
                    "rows": rows,
                    "passed": sum(r["verdict"] == "pass" for r in rows),
                    "failed": sum(r["verdict"] == "fail" for r in rows),
                    "refused": sum(r["verdict"] == "refused" for r in rows),
                    "layers": {"source": KORTHIKANTI_TABLE4, "layout": LAYER_LAYOUT_SOURCE,
                               "profile": (on[LAYER_HARDWARE]["profile"]
                                           if LAYER_HARDWARE in on else LAYER_HARDWARE),
                               "rows": layers, "fit": _fit_fields(fit, preset_gemm)}})
    else:
        print(describe(rows))
        for preset, p in on.items():
            print(f"hardware: the {preset} runs" + (" and the layer" if preset == LAYER_HARDWARE
                                                    else "")
                  + f" modelled on profile '{p['profile']}' ({p['label']}, {p['device']}) in "
                    f"place of the preset; memory against the preset's HBM")
        print()
        layer_profile = on.get(LAYER_HARDWARE)
        print(describe_layers(layers) if layer_profile is None else
              describe_layers(layers, f"profile '{layer_profile['profile']}' "
                                      f"({layer_profile['label']})"))
        print(describe_fit(fit, preset_gemm, on_preset=layer_profile is None))
    return 1 if failed else 0


def _fit_fields(fit, preset) -> dict:
    return {**fit.to_dict(), "preset_tflops": preset.value, "preset_label": preset.label,
            "preset_source": preset.source}


def describe_fit(fit, preset, on_preset: bool) -> str:
    """Where the a100-80gb preset's GEMM rate (``preset``, its Figure) comes from: the fit of
    the layer table."""
    low, high = min(fit.residuals.values()), max(fit.residuals.values())
    return (f"fit: the {LAYER_HARDWARE} preset's GEMM rate, {preset.value:.1f} "
            f"TFLOP/s ({preset.label}), is the one rate for every GEMM that best "
            f"reproduces these {len(fit.residuals)} passes (least squares in log time, "
            f"scaling.validate.layers.fit_gemm_tflops: {fit.tflops:.1f} TFLOP/s, residuals "
            f"{100 * low:+.1f}% to {100 * high:+.1f}%, rms {100 * fit.rms:.1f}%); "
            + ("on the preset the layer's errors above are the fit's residuals, and the "
               "Megatron-LM runs test the rate out of sample (other models, pipeline and data "
               "parallelism)" if on_preset else
               "the layer above is modelled on the measured profile instead, a check again"))


def describe_layers(layers: list[dict], on: str = f"the {LAYER_HARDWARE} preset") -> str:
    """One layer of the 22B model, published against modelled on ``on`` (reported only)."""
    def trio(ms: dict) -> str:
        return f"{ms['forward']:.1f} / {ms['backward']:.1f} / {ms['combined']:.1f}"

    table = [{"name": r["name"], "published": trio(r["published_ms"]),
              "modelled": trio(r["modelled_ms"]),
              "error": " / ".join(f"{100 * r['error'][k]:+.0f}%"
                                  for k in ("forward", "backward", "combined")),
              "match": " / ".join("none" if r["gemm_tflops_to_match"][k] is None
                                  else f"{r['gemm_tflops_to_match'][k]:.0f}"
                                  for k in ("forward", "backward"))}
             for r in layers]
    columns = [("name", "one layer of the 22B model"),
               ("published", "published ms: fwd / bwd / both"),
               ("modelled", "modelled ms"), ("error", "speed error"),
               ("match", "GEMM TFLOP/s to match: fwd / bwd")]
    return "\n".join([
        format_table(table, columns, align_right={"published", "modelled", "error", "match"}),
        "",
        f"layers: {KORTHIKANTI_TABLE4}; {LAYER_LAYOUT_SOURCE}; modelled with the step model "
        f"on {on}, materialised attention, FP16 timed as BF16 "
        f"(scaling.validate.layers); speed error: published / modelled time - 1, positive "
        f"where the model is faster, as the throughput errors above; GEMM TFLOP/s to "
        f"match: the one rate for every GEMM at which the step model gives the published "
        f"time of the pass, everything else as modelled (scaling.validate.match); reported "
        f"only"])


def _layout_text(row: dict) -> str:
    lay = row.get("modelled_layout") or row["layout"]
    if lay.get("tp") is None:
        return "not published"
    text = f"TP{lay['tp']} PP{lay['pp']} DP{lay['dp']}"
    if (row["layout"].get("cp") or 1) > 1:
        text = text.replace(" PP", f" CP{row['layout']['cp']} PP")
    if (lay.get("ep") or 1) > 1:
        text += f" EP{lay['ep']}"
    if row.get("assumed", {}).get("layout"):
        text += " (assumed)"
    if "interleave" in lay and lay["interleave"]:
        text += f" v{lay['interleave']}"
    if lay.get("micro_batch"):
        text += f" mb{lay['micro_batch']}"
    if lay.get("recompute") in ("full", "selective"):
        text += " recompute" if lay["recompute"] == "full" else " selective"
    if lay.get("sequence_parallel") is False and lay.get("tp", 1) > 1:
        text += " no-SP"
    if lay.get("zero") is not None and lay["zero"] != STEP_ZERO:
        text += f" ZeRO{lay['zero']}"
    if lay.get("balanced_pipeline") is False and lay.get("pp", 1) > 1:
        text += " unbalanced"
    if lay.get("grad_reduce") not in (None, GRAD_REDUCE_DEFAULT):
        text += f" {lay['grad_reduce']}-grads"
    if lay.get("grad_overlap"):
        text += " DDP-overlap"
    if lay.get("grad_accumulation") not in (None, GRAD_ACCUMULATION_DEFAULT):
        text += f" {lay['grad_accumulation']}-acc"
    if lay.get("tp_backward_overlap") is False and lay.get("tp", 1) > 1:
        text += " no-TP-bwd-overlap"
    return text


def _gemm_text(row: dict) -> str:
    match = row.get("gemm_tflops_to_match")
    if match is None:
        return "-"
    to = "none" if match["tflops"] is None else f"{match['tflops']:.0f}"
    return f"{row['gemm_tflops_modelled']:.0f}, {to}"


def describe(rows: list[dict]) -> str:
    table = []
    for r in rows:
        mem = r["memory"]
        table.append({
            "name": r["name"], "gpus": f"{r['gpus']:,}", "layout": _layout_text(r),
            "counts": r["flops"], "published": f"{r['published_tflops']:.0f}",
            "modelled": "-" if r["modelled_tflops"] is None else f"{r['modelled_tflops']:.0f}",
            "error": "-" if r["error"] is None else f"{100 * r['error']:+.1f}%",
            "tolerance": ("reported only" if r["tolerance"] is None
                          else f"±{100 * r['tolerance']:.0f}%"),
            "verdict": r["verdict"], "gemm": _gemm_text(r),
            "memory": "-" if mem is None else (
                f"{mem['total_bytes'] / GIB:.0f}/{mem['hbm_bytes'] / GIB:.0f} GiB"
                + ("" if mem["fits"] else " (does not fit)"))})
    columns = [("name", "run"), ("gpus", "GPUs"), ("layout", "layout"),
               ("counts", "FLOPs counted"), ("published", "published TFLOP/s/GPU"),
               ("modelled", "modelled"), ("error", "error"), ("tolerance", "tolerance"),
               ("verdict", "verdict"), ("gemm", "GEMM TFLOP/s: modelled, to match"),
               ("memory", "memory")]
    passed = sum(r["verdict"] == "pass" for r in rows)
    failed = sum(r["verdict"] == "fail" for r in rows)
    refused = [r for r in rows if r["verdict"] == "refused"]
    lines = [format_table(table, columns,
                          align_right={"gpus", "published", "modelled", "error", "gemm",
                                       "memory"}),
             "", f"{passed} within tolerance, {failed} outside it, {len(refused)} refused, "
                 f"{sum(r['verdict'] == 'reported' for r in rows)} reported only"]
    lines += [f"refused: {r['name']}: {r['refusal']}" for r in refused]
    lines.append(f"defaults: {DEFAULTS}")
    assumed = sorted({f"{k}: {v}" for r in rows for k, v in r["assumed"].items()
                      if k not in ("interleave", "layout")})
    lines += [f"assumed: {a}" for a in assumed]
    lines += [f"assumed: {r['name']}: {r['assumed']['layout']}"
              for r in rows if "layout" in r["assumed"]]
    lines += [f"assumed: {r['name']}: interleave {r['assumed']['interleave']}"
              for r in rows if "interleave" in r["assumed"]]
    lines.append("GEMM TFLOP/s: the time-weighted rate of the row's GEMMs as modelled, and "
                 "the one rate for every GEMM at which the step model reproduces the "
                 "published figure, everything else as modelled (a diagnostic, "
                 "scaling.validate.match; 'none' where no rate up to the datasheet peak "
                 "does)")
    lines += [f"to match: {r['name']}: {r['gemm_tflops_to_match']['reason']}" for r in rows
              if r.get("gemm_tflops_to_match") and r["gemm_tflops_to_match"]["tflops"] is None]
    lines.append("modelled: the step model's tokens/s times the FLOPs per token the source "
                 "counts (" + "; ".join(f"{k}: {FLOP_CONVENTIONS[k]}" for k in
                                         sorted({r["flops"] for r in rows
                                                 if r["modelled_tflops"] is not None}))
                 + ")")
    return "\n".join(lines)
