"""`flopcast report`: the measurements, the fits and the plan as one offline HTML file."""

from __future__ import annotations

import sys

from scaling.cli.inputs import add_results_arguments, load_records, source_name
from scaling.cli.plan import add_plan_arguments, plan_from_args, warn_about_law
from scaling.errors import FlopcastError
from scaling.output import print_json

DEFAULT_OUT = "flopcast-report"
CLAIMS_HARDWARE = "h100-sxm"


def register(sub):
    p = sub.add_parser(
        "report", help="self-contained HTML report: throughput, power, law, plan, claims",
        description="Write an HTML report (plots embedded, opens offline) with measured "
                    "throughput and power, the loss law, the plan for each cluster size on the "
                    "measured profile of the results and on the published --hardware preset "
                    "side by side, and a table of the plan against published figures.")
    add_results_arguments(p)
    p.add_argument("--results", nargs="+", metavar="PATH",
                   help="results files or folders (the same as the positional PATHs)")
    add_plan_arguments(p)
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"folder for report.html (default {DEFAULT_OUT}/)")
    p.add_argument("--json", action="store_true",
                   help="print the report's path and the plans as JSON")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from scaling.hardware.load import load_profile
    from scaling.laws.forms import load_law
    from scaling.report.page import SECTIONS, build_report, claims_rows

    paths = args.results or args.paths
    records = load_records(args, paths=paths)
    where = source_name(args) if args.from_url else ", ".join(map(str, paths))
    notes, titled, profiles = [], [], []
    if records.empty:
        notes.append(f"No results in {where}: the plots show no measured points; run "
                     "`python -m pytest --benchmark --sweep quick` first.")
    else:
        try:
            measured = load_profile(None, results=records)
            profiles.append(measured)
        except FlopcastError as exc:
            notes.append(f"No hardware profile from the results in {where}: {exc}")
        else:
            try:
                plan = plan_from_args(args, hardware=measured)
                titled.append((f"{measured.device_name} (measured)", plan))
            except FlopcastError as exc:
                notes.append(f"No plan on this machine's measured profile "
                             f"({measured.device_name}): {exc}")
    published = plan_from_args(args)
    warn_about_law(published)
    titled.append((f"{published.hardware['name']} ({published.hardware['label']})", published))
    profiles.append(published.profile)
    # The published figures are about H100 clusters: compare H100 plans with them.
    h100 = (published if published.hardware["name"] == CLAIMS_HARDWARE
            else plan_from_args(args, hardware=CLAIMS_HARDWARE))
    claims = claims_rows(default_plan=h100, hardware=h100.profile)
    path = build_report(args.out, titled_plans=titled, law=load_law(args.law), claims=claims,
                        records=None if records.empty else records, profiles=profiles,
                        notes=notes)
    if args.json:
        print_json({"report": str(path), "sections": list(SECTIONS), "notes": notes,
                    "plans": [{"title": t} | p.to_dict() for t, p in titled]})
    else:
        for note in notes:
            print(f"flopcast report: note: {note}", file=sys.stderr)
        print(path)
    return 0
