"""The ``python -m pytest --benchmark`` plugin (registered through the ``pytest11`` entry point,
so the option exists wherever flopcast is installed).

Without ``--benchmark``, the cases in ``bench/bench_*.py`` are skipped and a plain
``python -m pytest`` runs the unit tests. With it, only the benchmark cases run, on the best
device present (CUDA, else the CPU), through pytest-benchmark with a device-synchronising
timer; each finished case prints one progress line; at the end one results file is written
into ``--results-dir`` (schema: `scaling.schema`, tabled in results/README.md), and uploaded
with ``--upload URL``; and the run ends with a summary table per kernel family and the results
file's path.

Nothing measured is lost: the results folder is checked writable before the first case (the
run's journal is created in it), each finished case's record is appended to the journal
(fsynced), and the results file is built from the journal. An interrupted run (Ctrl-C) still
writes the cases that finished; a final write that fails (a full disk) leaves them in the
journal and says where. The plugin's state for a run is one `PluginState` in
``config.stash``.
"""

from __future__ import annotations

import argparse
import math
import time
import uuid
import warnings
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest

from bench.records import (append_journal, flopcast_section, read_journal, start_journal,
                           write_section)
from scaling.schema import SchemaError, remake_record

BENCH_PREFIX = "bench_"
SOURCE = "pytest --benchmark"  # a results file's ``source``: what wrote it
NOT_BENCHMARKING = "flopcast benchmark case: run with `python -m pytest --benchmark`"
BENCH_DIR = Path(__file__).resolve().parent
# pytest-benchmark's table under --benchmark, unless the command line (or addopts) chooses
# otherwise: flopcast prints its own summary in TFLOP/s, so the table keeps the timing
# statistics behind it (one table per group: the cases set ``benchmark.group``).
BENCHMARK_TABLE = {"--benchmark-columns": "median,iqr,rounds"}
# bench.timing.CPU_PERF_COUNTER, spelled here so that loading the plugin does not import torch.
CPU_PERF_COUNTER = "cpu-perf-counter"
# Benchmark cases outside bench/ carry this marker: the loss-law fit's and the layout search's,
# in the source tree's tests/ (they measure the planning half's code, which bench does not
# import), added to a ``--benchmark`` run without test paths when they are there.
MARKER = "flopcast_benchmark"
EXTRA_CASES = tuple(BENCH_DIR.parent / "tests" / "test_scaling" / room / name for room, name in
                    (("laws", "test_fit_benchmark.py"), ("plan", "test_search_benchmark.py")))


def window_seconds(text: str) -> float:
    """``--power-window``'s value: a finite number of seconds, zero or more (0 disables power
    measurement); anything else is refused when the options are parsed, in one line."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a finite, non-negative number of seconds (0 disables power "
            "measurement)")
    return value


def pytest_addoption(parser):
    group = parser.getgroup("flopcast", "flopcast benchmarks")
    group.addoption("--benchmark", action="store_true", default=False, dest="flopcast_benchmark",
                    help="run flopcast's benchmark cases (bench/bench_*.py) on the best device present "
                         "and write a results file; without it they are skipped")
    group.addoption("--sweep", choices=("quick", "full"), default="quick", dest="flopcast_sweep",
                    help="shapes to measure: quick (a few sizes, minutes on a CPU) or full "
                         "(GPU sizes: GEMM 1024..16384 and Llama 3 shapes, attention 1k..16k)")
    group.addoption("--results-dir", default="results", dest="flopcast_results_dir",
                    help="folder for the run's results file (default: results/)")
    group.addoption("--power-window", type=window_seconds, default=None,
                    dest="flopcast_power_window",
                    metavar="SECONDS",
                    help="length of each case's steady power window (default 5 on GPU, 0.5 on CPU; "
                         "0 disables power measurement)")
    group.addoption("--cooldown", type=float, default=0.0, dest="flopcast_cooldown",
                    metavar="SECONDS", help="pause between cases so the device cools (default 0)")
    group.addoption("--device", default=None, dest="flopcast_device",
                    help="run on this torch device instead of the best one present (e.g. cpu, "
                         "cuda:1); one that is not here stops the run before it starts")
    group.addoption("--upload", default=None, dest="flopcast_upload", metavar="URL",
                    help="after writing the results file, upload it to this results database "
                         "(sqlite:///PATH or postgresql://USER@HOST:PORT/DB)")


def _is_bench_item(item) -> bool:
    return (Path(str(item.fspath)).name.startswith(BENCH_PREFIX)
            or item.get_closest_marker(MARKER) is not None)


# -- collection, wherever pytest was started --------------------------------------------------
#
# pytest picks its rootdir and ini file before it loads this plugin, so in
# ``--results-dir /some/dir`` it does not yet know the option takes a value and treats the folder
# as a test path: an existing folder outside the repository becomes the rootdir, and
# pyproject.toml's pytest settings are not read. Nothing below depends on them: the benchmark
# cases are found through this package's own location, collected by this plugin (not through
# the ini's ``python_files``), and imported as modules of the ``bench`` package.


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """Complete the command line (edited in place, before pytest's final parse): under
    ``--benchmark`` with no test paths, run the benchmark cases; default to a narrow
    pytest-benchmark table unless the user chose one."""
    namespace = early_config.known_args_namespace
    if not getattr(namespace, "flopcast_benchmark", False):
        return
    if not namespace.file_or_dir:
        args.append(str(BENCH_DIR))
        args += [str(path) for path in EXTRA_CASES if path.is_file()]
    if early_config.pluginmanager.hasplugin("benchmark"):
        given = {arg.split("=", 1)[0] for arg in args if arg.startswith("--benchmark-")}
        args[:0] = [f"{option}={value}" for option, value in BENCHMARK_TABLE.items()
                    if option not in given]


def pytest_collect_file(file_path, parent):
    """The benchmark cases (``bench/bench_*.py`` of this package), whatever the ini says."""
    if (file_path.parent != BENCH_DIR or not file_path.name.startswith(BENCH_PREFIX)
            or file_path.suffix != ".py"):
        return None
    patterns = parent.config.getini("python_files")
    if parent.session.isinitpath(file_path) or any(fnmatch(file_path.name, p) for p in patterns):
        return None  # pytest's own collector takes it
    return pytest.Module.from_parent(parent, path=file_path)


def pytest_configure(config):
    config.addinivalue_line("markers", f"{MARKER}: a flopcast benchmark case (runs only under "
                                       "--benchmark)")
    state = config.stash[STATE] = PluginState(config)
    config.pluginmanager.register(state, "flopcast-state")
    if config.getoption("flopcast_benchmark"):
        checked_device(config)  # a --device that is not here: one line now, not an INTERNALERROR


def pytest_collection_modifyitems(session, config, items):
    """Benchmark cases run only with --benchmark; with it, only they run."""
    if not config.getoption("flopcast_benchmark"):
        skip = pytest.mark.skip(reason=NOT_BENCHMARKING)
        for item in items:
            if _is_bench_item(item):
                item.add_marker(skip)
        return
    keep = [item for item in items if _is_bench_item(item)]
    dropped = [item for item in items if not _is_bench_item(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@dataclass
class BenchSession:
    """What every case of a benchmark run shares."""

    device: object
    device_name: str
    telemetry: object
    machine: dict
    power_window_s: float
    cooldown_s: float


class PluginState:
    """The plugin's state for one pytest run, kept in ``config.stash[STATE]`` (as
    pytest-benchmark keeps its session) and registered as a plugin itself, for the hooks that
    pytest does not hand the config."""

    def __init__(self, config):
        self.config = config
        self.bench: BenchSession | None = None  # under --benchmark, from session start
        self.total = 0  # cases collected
        self.done = 0  # cases finished
        self.started: float | None = None  # when the first case finished (monotonic s)
        self.live = None  # the report pytest's terminal is printing
        self.section: dict | None = None  # the run's flopcast section, once built
        self.run_id = uuid.uuid4().hex  # one id for the journal and every file of the run
        self.journal: Path | None = None  # finished cases' records, from session start
        self.lines: list | None = None  # what to say at the end of the terminal summary

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report):
        """While pytest's terminal prints a case's report, mark it live (see
        `pytest_report_teststatus`); then print the case's progress line."""
        self.live = report
        try:
            return (yield)
        finally:
            self.live = None
            _progress_line(self, report)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session):
        """Before pytest-benchmark writes its JSON or tables: a case interrupted in its first
        round (Ctrl-C) has statistics without a single time, which pytest-benchmark cannot
        summarise (``min()`` of nothing); it is left out, as it measured nothing."""
        bs = getattr(session.config, "_benchmarksession", None)
        if bs is not None:
            bs.benchmarks[:] = [meta for meta in bs.benchmarks if meta]
        return (yield)


STATE = pytest.StashKey[PluginState]()


def bench_session(config) -> BenchSession | None:
    """The run's `BenchSession` (None until session start, and without --benchmark)."""
    return config.stash[STATE].bench


def checked_device(config):
    """The run's torch device (``--device``, else the best present); `pytest.UsageError`
    naming the devices that exist when the one asked for is not here."""
    from bench.device import DeviceError, resolve_device

    try:
        return resolve_device(config.getoption("flopcast_device"))
    except DeviceError as exc:
        raise pytest.UsageError(f"flopcast: {exc}") from None


def open_session(config) -> BenchSession:
    """Open the device and its telemetry once per run."""
    # torch (and the modules that import it, here and for the progress line and summary) is
    # imported only under --benchmark: this plugin loads in every pytest run, and the unit
    # tests of the torch-free half must not pay for torch.
    from bench.device import device_name, machine_info
    from bench.telemetry import open_telemetry

    device = checked_device(config)
    window = config.getoption("flopcast_power_window")
    if window is None:
        window = 5.0 if device.type == "cuda" else 0.5
    telemetry = open_telemetry(device)
    return BenchSession(device=device, device_name=device_name(device), telemetry=telemetry,
                        machine=machine_info(device), power_window_s=window,
                        cooldown_s=config.getoption("flopcast_cooldown"))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    config = session.config
    state = config.stash[STATE]
    state.done, state.started = 0, None
    if not config.getoption("flopcast_benchmark"):
        return
    if state.journal is None:
        # Before the first case: a results folder that cannot be written ends the run now,
        # not after the sweep.
        results_dir = Path(config.getoption("flopcast_results_dir"))
        try:
            state.journal = start_journal(results_dir, state.run_id)
        except OSError as exc:
            raise pytest.UsageError(
                f"flopcast: cannot write into the results folder {results_dir} "
                f"({exc.strerror or exc}); choose a writable one with --results-dir") from None
    if state.bench is None:
        state.bench = open_session(config)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.showfspath = False  # each case's progress line names it


def pytest_report_header(config):
    bench = config.stash[STATE].bench
    if bench is None:
        return None
    telemetry = bench.telemetry.backend
    reason = bench.machine.get("telemetry_reason")
    return [f"flopcast: benchmarking on {bench.device} ({bench.device_name}); sweep "
            f"{config.getoption('flopcast_sweep')}; telemetry {telemetry}"
            + (f" ({reason})" if reason and telemetry == "none" else "")
            + f"; power window {bench.power_window_s:g} s"]


def pytest_unconfigure(config):
    state = config.stash.get(STATE, None)
    if state is None:
        return
    config.pluginmanager.unregister(state)
    if state.bench is not None:
        state.bench.telemetry.close()


@pytest.fixture(scope="session")
def flopcast_session(request) -> BenchSession:
    """The run's device, telemetry and settings (benchmark cases only)."""
    bench = request.config.stash[STATE].bench
    if bench is None:
        pytest.skip(NOT_BENCHMARKING)
    return bench


def pytest_collection_finish(session):
    session.config.stash[STATE].total = len(session.items)


# -- progress --------------------------------------------------------------------------------
#
# Under --benchmark each case gets one line of its own, printed when it finishes, in place of
# pytest's dot (or s, F) and its percentage: the line already counts the cases.


@pytest.hookimpl(wrapper=True)
def pytest_report_teststatus(report, config):
    """No letter for a benchmark case in pytest's progress (its own line stands for it); the
    outcome still counts, and summaries still name it."""
    status = yield
    if (report is config.stash[STATE].live and config.getoption("flopcast_benchmark")
            and config.option.verbose <= 0):
        return status[0], "", ""
    return status


def _progress_line(state: PluginState, report) -> None:
    """One line per finished case: what it measured and how long the rest will take."""
    if report.when != "call" and not (report.when == "setup" and not report.passed):
        return
    config = state.config
    if not config.getoption("flopcast_benchmark"):
        return
    if state.started is None:
        state.started = time.monotonic()
    state.done += 1
    total = state.total or state.done
    elapsed = time.monotonic() - state.started
    left = elapsed / state.done * (total - state.done)
    name = report.nodeid.split("[", 1)[1].rstrip("]") if "[" in report.nodeid \
        else report.nodeid.rsplit("::", 1)[-1]
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
        what = f"skipped: {reason.removeprefix('Skipped: ')}"
    elif report.failed:
        what = "FAILED" if report.when == "call" else f"ERROR in {report.when}"
    else:
        from bench.summary import case_figures

        what = case_figures(dict(report.user_properties).get("flopcast", {}))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.ensure_newline()
        reporter.write_line(f"[{state.done}/{total}] {name}: {what}  "
                            f"({_clock(elapsed)} elapsed, ~{_clock(left)} left)")


def _clock(seconds: float) -> str:
    """Wall-clock time as a clock reads, ``1:05`` or ``2:03:45``."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Copy the case's record fields (with its median time) onto the report for the progress
    line (reports cross process boundaries; fixtures do not)."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not _is_bench_item(item):
        return
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    if fixture is None or fixture.stats is None:
        return
    fields = dict(fixture.extra_info.get("flopcast", {}))
    fields["time_s"] = fixture.stats.stats.median if fixture.stats else None
    report.user_properties.append(("flopcast", fields))
    state = item.config.stash[STATE]
    if state.journal is not None and state.bench is not None:
        append_journal(state.journal, records_from_benchmarks([fixture.stats],
                                                              state.bench.device.type))


# -- records ---------------------------------------------------------------------------------


def records_from_benchmarks(benchmarks, device_type: str | None = None) -> list[dict]:
    """One flopcast record per successful pytest-benchmark measurement (its ``Metadata``) that
    a case described with ``benchmark.extra_info["flopcast"]``."""
    records = []
    for meta in benchmarks:
        fields = meta.extra_info.get("flopcast")
        if not fields or meta.fixture.has_error or not meta.stats:
            continue
        stats = meta.stats
        # The final statistics are pytest-benchmark's; the record is built again from them, so
        # TFLOP/s and GB/s follow its median (`scaling.schema.remake_record`). A case timed by
        # pytest-benchmark's own clock says so.
        timed_by = ({} if "timing_method" in fields else
                    {"timing_method": CPU_PERF_COUNTER, "l2_flush": False,
                     "timing_fallback_reason": None})
        try:
            records.append(remake_record(
                {"name": meta.name, "device": device_type, **fields, **timed_by},
                test=meta.fullname, time_s=stats.median, time_s_min=stats.min,
                time_s_mean=stats.mean, time_s_stddev=stats.stddev, time_s_iqr=stats.iqr,
                rounds=stats.rounds, iterations=meta.iterations))
        except SchemaError as exc:  # one broken case never costs the run its other records
            warnings.warn(f"flopcast: {meta.fullname}: no record written: {exc}", stacklevel=2)
    return records


def _section(config) -> dict | None:
    """The run's flopcast section, built once so every file written for the run (results/,
    --benchmark-json, --benchmark-save) carries the same run id."""
    state = config.stash[STATE]
    if state.section is not None:
        return state.section
    session = state.bench
    if session is None or state.journal is None:
        return None
    records = read_journal(state.journal)  # every finished case, as it finished
    if not records:
        return None
    state.section = flopcast_section(
        records, session.machine, source=SOURCE, sweep=config.getoption("flopcast_sweep"),
        run_id=state.run_id)
    return state.section


def pytest_benchmark_update_json(config, benchmarks, output_json):
    section = _section(config)
    if section is not None:
        output_json["flopcast"] = section


def pytest_sessionfinish(session, exitstatus):
    """Write (and upload) the run's results file from the journal of finished cases; what to
    say about it waits for the end of the terminal summary, after pytest-benchmark's table."""
    config = session.config
    if not config.getoption("flopcast_benchmark"):
        return
    state = config.stash[STATE]
    section = _section(config)
    lines = state.lines = []

    def say(line, **markup):
        lines.append((line, markup))

    if section is None:
        bs = getattr(config, "_benchmarksession", None)
        if bs is not None and bs.benchmarks:  # cases ran, but none described a flopcast record
            say("flopcast: no benchmark case produced a flopcast record; no results file written",
                yellow=True)
        _remove(state.journal)
        return
    bs = config._benchmarksession
    results_dir = config.getoption("flopcast_results_dir")
    try:
        document = config.hook.pytest_benchmark_generate_json(
            config=config, benchmarks=bs.benchmarks, include_data=False,
            machine_info=bs.get_machine_info(),
            commit_info=config.hook.pytest_benchmark_generate_commit_info(config=config))
        path = write_section(section, results_dir, document)
    except (OSError, ValueError) as exc:
        say(f"flopcast: could not write the results file into {results_dir} ({exc}); the "
            f"{len(section['records'])} finished records are safe in {state.journal}", red=True)
        return
    _remove(state.journal)
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    say(f"flopcast: {len(section['records'])} records written to {path}"
        + (" (the run was interrupted: these are the cases that finished)" if interrupted
           else ""), green=True)
    url = config.getoption("flopcast_upload")
    if url:
        _upload(path, url, say)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    """The run's summary, one table per kernel family, then where its results went."""
    state = config.stash[STATE]
    lines = state.lines
    if lines is None:
        return
    section = state.section
    if section is not None:
        from bench.summary import summary

        terminalreporter.write_sep("-", "flopcast summary")
        terminalreporter.write_line(summary(section["records"]))
        terminalreporter.write_line("")
    for line, markup in lines:
        terminalreporter.write_line(line, **markup)


def _remove(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _upload(path: Path, url: str, say) -> None:
    """Upload the run's file; a failure warns and leaves the file for `flopcast upload`."""
    try:
        # Lazily, and the one import of scaling beyond the schema: the store needs pandas and
        # SQLAlchemy, which the benchmark path never loads unless --upload asks for it.
        from scaling.records.store import upload_files

        report = upload_files([path], url)
        say(f"flopcast: upload: {report.summary()}", green=True)
    except Exception as exc:  # never lose the run over an upload
        from scaling.records.database import mask_text

        say(f"flopcast: upload to the results database failed ({mask_text(exc, url)}); the "
            f"results are safe "
            f"in {path}: upload later with `flopcast upload {path} --to URL`", yellow=True)
