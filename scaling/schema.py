"""The result record: the contract between the measuring half (``bench``) and the planning half.

Standard library only (and `scaling.errors`, which is too), so that ``bench`` writes records
with the same rules ``scaling`` reads them by, without pandas, numpy or torch. Here, once:

* the schema version written (`SCHEMA_VERSION`) and the versions read (`READABLE_VERSIONS`);
* the record's fields with their types and units (`RECORD_FIELDS`, grouped as the tables of
  results/README.md, which `readme_tables` writes: ``python -m scaling.schema``);
* the one constructor of every record, kernel, collective or fit (`make_record`), which
  computes TFLOP/s and GB/s from FLOPs, bytes and the median time;
* validation of a record and of a results file's ``flopcast`` section (`validate_record`,
  `validate_section`): what the writer checks and what the loader and the store accept;
* which records are baselines (`is_baseline`) and the speedup over the fastest baseline
  (`compare_with_fastest`, `fastest_baselines`);
* JSON-safe values (`jsonable`) and shapes as text (`shape_str`).
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from scaling.errors import FlopcastError

SCHEMA_VERSION = 1  # the version this flopcast writes
READABLE_VERSIONS = (1,)  # the versions it reads

KINDS = ("kernel", "comm", "fit", "layout_search")  # what `make_record` builds records of

# Integers are stored in 64-bit signed database columns (SQLite INTEGER, PostgreSQL bigint).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# Physical bounds of a power reading. Stated assumptions, not datasheet figures: no datasheet
# bounds a faulty reading, so these are set well outside anything a working device reports.
# A board's power controller holds its average draw to the enforced power limit; excursions
# above it last milliseconds, so a reading (or a window's mean) above this factor times the
# limit is a fault of the reading, not of the board.
POWER_LIMIT_FACTOR = 2.0
# Without a known limit: no single GPU board or CPU package draws this much (about ten times
# the largest board limits of current GPUs, which are around 1 kW).
MAX_POWER_W = 10_000.0
# Clocks of a running device: above zero and below 10 GHz (GPU SM and memory clocks are
# below 3 GHz, CPU cores below 6 GHz).
MAX_CLOCK_MHZ = 10_000.0
# A running device's temperature: from -40 degC (the low end of industrial operating
# ranges) to 150 degC (above every GPU's and CPU's thermal shutdown point).
TEMP_C_RANGE = (-40.0, 150.0)
# NVML's energy counter updates about every 100 ms (Yang, Adamek and Armour 2023, "Part-time
# Power Measurements: nvidia-smi's Lack of Attention"): a window of ``window_s`` can show up
# to one update more than its length, so a window's mean power is held to the bound times
# ``(window_s + COUNTER_UPDATE_S) / window_s``.
COUNTER_UPDATE_S = 0.1


def impossible_reading(field: str, value: Any, power_limit_w: Any = None,
                       window_s: Any = None) -> str | None:
    """Why ``value`` of the power field ``field`` cannot be a real reading, or None.

    Power fields (``*_power_w``, ``power_w``, ``power_limit_w``) must be non-negative and at
    most `POWER_LIMIT_FACTOR` times ``power_limit_w`` (when that is itself plausible), else at
    most `MAX_POWER_W`; ``energy_j`` non-negative; clocks (``*_mhz``) above zero and at most
    `MAX_CLOCK_MHZ`; ``temp_c`` within `TEMP_C_RANGE`. Non-numbers are the type check's job.
    ``avg_power_w``, a mean over a window of ``window_s`` seconds, gets one counter update
    of slack (`COUNTER_UPDATE_S`).
    """
    if not _number(value):
        return None
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if field == "energy_j" and value < 0:
        return f"{value!r} J is negative"
    if field == "power_limit_w" or field.endswith("power_w"):
        if value < 0:
            return f"{value!r} W is negative"
        limit = power_limit_w if field != "power_limit_w" else None
        slack = 1.0
        if field == "avg_power_w" and _number(window_s) and window_s > 0:
            slack = (window_s + COUNTER_UPDATE_S) / window_s
        if _number(limit) and 0 < limit <= MAX_POWER_W:
            if value > POWER_LIMIT_FACTOR * limit * slack:
                return (f"{value!r} W is above {POWER_LIMIT_FACTOR:g} x the board's "
                        f"{limit:g} W power limit")
        elif value > MAX_POWER_W * slack:
            return f"{value!r} W is above {MAX_POWER_W:g} W, more than any board draws"
    if field.endswith("_mhz") and not 0 < value <= MAX_CLOCK_MHZ:
        return f"{value!r} MHz is not a clock (0 < clock <= {MAX_CLOCK_MHZ:g} MHz)"
    if field == "temp_c" and not TEMP_C_RANGE[0] <= value <= TEMP_C_RANGE[1]:
        return (f"{value!r} degC is outside a running device's range "
                f"({TEMP_C_RANGE[0]:g} to {TEMP_C_RANGE[1]:g} degC)")
    return None


class SchemaError(FlopcastError):
    """A record or section does not follow the schema: ``field`` names where, ``problem`` what."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"field '{field}': {problem}")


@dataclass(frozen=True)
class Field:
    """One field of a record: its name, JSON type, unit ("" when it has none) and meaning."""

    name: str
    type: str
    unit: str
    meaning: str
    group: str  # the results/README.md table it is listed in


def _fields(group: str, rows: Sequence[tuple[str, str, str, str]]) -> tuple[Field, ...]:
    return tuple(Field(name, type_, unit, meaning, group) for name, type_, unit, meaning in rows)


IDENTITY = _fields("identity", [
    ("name", "str", "", "e.g. `gemm-bf16-rr-torch-4096x4096x4096`"),
    ("test", "str or null", "", "the pytest node id that produced it"),
    ("label", "str", "", "where a shape comes from, e.g. `llama3-405b ffn-up` for a model's layer; `\"\"` otherwise"),
    ("kernel", "str", "", "family: `gemm`, `attention`, `grouped_gemm`, `moe_dispatch`, `moe_combine`, `comm`, `fit`, `layout_search`"),
    ("impl", "str", "", "`torch` (`torch.matmul`, `torch._scaled_mm`), `sdpa-flash`, `sdpa-cudnn`, `sdpa-efficient`, `sdpa-math` (SDPA with that one backend pinned), `triton`, ..."),
    ("baseline", "bool", "", "whether `impl` is one of the family's baselines in the kernel registry (`torch` for `gemm`; the four `sdpa-*` for `attention`), which the others are compared with; `false` for `comm`, `fit` and `layout_search`. Files written before the field existed lack it: the loader then takes `torch` as the baseline of `gemm` and `attention` and no baseline elsewhere (`scaling.schema.LEGACY_BASELINE_IMPL`)"),
    ("backend", "str", "", "the library backend the implementation pinned: SDPA's `FLASH_ATTENTION`, `CUDNN_ATTENTION`, `EFFICIENT_ATTENTION` or `MATH` (`torch.nn.attention.SDPBackend` names); for `comm`, the process-group backend (`nccl`, `gloo`); `\"\"` when nothing is pinned"),
    ("gqa_method", "str", "", "how SDPA got grouped-query heads (`heads_kv < heads_q`): `enable_gqa` (torch 2.5 and later), `repeat_interleave` (K and V heads expanded inside the timed call, on torch 2.4); `\"\"` otherwise"),
    ("dtype", "str", "", "input type: `fp32`, `bf16`, `fp16`, `fp8_e4m3`, `fp8_e5m2`, ..."),
    ("out_dtype", "str", "", "output type, as `dtype`"),
    ("direction", "str", "", "`fwd` or `bwd` (grouped GEMM: `bwd_dx`, `bwd_dw`)"),
    ("variant", "str", "", "e.g. FP8 GEMM scaling and accumulation `tensorwise-precise-accum` / `rowwise-fast-accum`; the collective for `comm`; `\"\"` when there is one way"),
    ("layout", "str", "", "GEMM operand majorness, A then B: `rr`, `rc`, `cr`, `cc`; `\"\"` otherwise"),
    ("shape", "object", "", "GEMM `{m, n, k}`; attention `{batch, heads_q, heads_kv, seq, head_dim, causal}`; comm `{message_bytes, world_size}`"),
    ("flops", "int", "FLOP", "FLOPs of one call (conventions in `kernels/flops.py`); 0 where not meaningful (comm, fit)"),
    ("bytes", "int", "B", "minimal bytes moved by one call"),
    ("device", "str", "", "`cuda` or `cpu`, as in `machine`"),
    ("device_name", "str", "", "as in `machine`"),
])

TIMING = _fields("timing", [
    ("time_s", "float", "s", "median over rounds"),
    ("time_s_min", "float or null", "s", "fastest round"),
    ("time_s_mean", "float or null", "s", "mean over rounds"),
    ("time_s_stddev", "float or null", "s", "standard deviation over rounds"),
    ("time_s_iqr", "float or null", "s", "interquartile range over rounds"),
    ("rounds", "int or null", "", "rounds timed"),
    ("iterations", "int or null", "", "calls per round"),
    ("timing_method", "str or null", "", "what measured `time_s`: `cuda-events` (a pair of CUDA events around each call, median over calls, as `triton.testing.do_bench`), `cuda-graph` (CUDA-graph replay of `iterations` calls between one pair of events per round, for calls under 100 us), `cpu-perf-counter` (the host's `perf_counter` around synchronised rounds: CPU timing)"),
    ("l2_flush", "bool or null", "", "whether L2 was flushed (256 MiB zeroed) before each timed call, outside its events"),
    ("timing_fallback_reason", "str or null", "", "why the planned method was not used (e.g. a failed CUDA-graph capture), else `null`"),
    ("tflops", "float or null", "TFLOP/s", "`flops / time_s / 1e12` (null when `flops` is 0)"),
    ("gbps", "float or null", "GB/s", "`bytes / time_s / 1e9` (null when `bytes` is 0)"),
    ("rel_error", "float or null", "", "relative Frobenius error of the checked output against float64"),
    ("tolerance", "float or null", "", "the limit `rel_error` passed"),
])

POWER = _fields("power", [
    ("telemetry_backend", "str", "", "`nvml`, `rapl` or `none`"),
    ("power_window_s", "float or null", "s", "length of the steady back-to-back window the power was measured over"),
    ("energy_j", "float or null", "J", "energy per call"),
    ("avg_power_w", "float or null", "W", "mean over the window"),
    ("max_power_w", "float or null", "W", "max over the window"),
    ("tflops_per_w", "float or null", "TFLOP/J", "TFLOP per joule (= TFLOP/s per W)"),
    ("sustained_tflops", "float or null", "TFLOP/s", "throughput of the power window's own calls: `flops * calls / power_window_s / 1e12`, at the clocks the watts were read at; the planner prefers it to `tflops`"),
    ("sm_clock_mhz", "float or null", "MHz", "mean SM clock over the window"),
    ("mem_clock_mhz", "float or null", "MHz", "mean memory clock over the window"),
    ("temp_c", "float or null", "degC", "max over the window"),
    ("power_limit_w", "float or null", "W", "enforced power limit"),
    ("throttled", "bool or null", "", "whether clocks were held back for power or heat"),
    ("throttle_reasons", "list or null", "", "the clock-event reasons seen, by name"),
    ("power_missing_reason", "str or null", "", "why power fields are `null`, else `null`"),
])

RECORD_FIELDS: tuple[Field, ...] = IDENTITY + TIMING + POWER
FIELD_NAMES = tuple(f.name for f in RECORD_FIELDS)
POWER_FIELDS = tuple(f.name for f in POWER)  # the power keys, in the order of the table
TIME_FIELDS = ("time_s", "time_s_min", "time_s_mean", "time_s_stddev", "time_s_iqr")
TEXT_FIELDS = ("name", "kernel", "impl", "dtype", "device")  # required, non-empty
# Fields that tell the rows of one table apart, with the value a record without them takes.
KEY_DEFAULTS = {"out_dtype": None, "direction": "fwd", "variant": "", "layout": "", "label": ""}
COMPUTED = ("tflops", "gbps")  # `make_record` computes them; callers never pass them

# The one fallback for files written before records carried ``baseline``: the baseline of each
# family (attention's meant SDPA with its backend unpinned). Newer records say it themselves,
# from the kernel registry.
LEGACY_BASELINE_IMPL = {"gemm": "torch", "attention": "torch"}

NOT_MEASURED = "power not measured for this case"


# -- values ----------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: NaN and infinities become null, NumPy and torch scalars
    Python numbers (not their text), tuples lists, mapping keys text, dates ISO 8601."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)) \
            and getattr(value, "ndim", 0) == 0:
        try:
            value = value.item()
        except (ValueError, AttributeError, TypeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat") and not isinstance(value, (int, float, str)):
        return value.isoformat()
    return value


def shape_str(shape: Mapping[str, Any]) -> str:
    """A shape as people read it: its dimensions in order, then ``-causal`` where it applies
    (``{"m": 8, "n": 16, "k": 32}`` -> ``8x16x32``; ``1x8x8x512x64-causal``)."""
    def dim(v):
        return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
    dims = "x".join(dim(v) for k, v in shape.items() if k != "causal")
    return dims + ("-causal" if shape.get("causal") else "")


def rate(amount: float | None, time_s: float | None, scale: float) -> float | None:
    """``amount / time_s / scale`` (TFLOP/s with 1e12, GB/s with 1e9); None when there is no
    amount or no positive time."""
    if not amount or time_s is None or not time_s > 0:
        return None
    return amount / time_s / scale


# -- the constructor -------------------------------------------------------------------------


def null_power(backend: str, reason: str) -> dict:
    """A record's power fields when power was not measured, and why."""
    fields = dict.fromkeys(POWER_FIELDS)
    fields.update(telemetry_backend=backend, power_missing_reason=reason)
    return fields


def make_record(kind: str, *, name: str, kernel: str, impl: str, dtype: str, shape: Mapping,
                flops: int, bytes: int, device: str, time_s: float,
                device_name: str | None = None, baseline: bool | None = None,
                test: str | None = None, label: str = "", backend: str = "",
                gqa_method: str = "", out_dtype: str | None = None, direction: str = "fwd",
                variant: str = "", layout: str = "", time_s_min: float | None = None,
                time_s_mean: float | None = None, time_s_stddev: float | None = None,
                time_s_iqr: float | None = None, rounds: int | None = None,
                iterations: int | None = None, timing_method: str | None = None,
                l2_flush: bool | None = None, timing_fallback_reason: str | None = None,
                rel_error: float | None = None, tolerance: float | None = None,
                power: Mapping | None = None, **extra) -> dict:
    """The record of one measured case, validated, every field of `RECORD_FIELDS` in order and
    the family's own fields (``extra``) after them.

    ``kind`` is ``kernel`` (a registry kernel: ``rel_error``, ``tolerance`` and ``baseline``,
    the registry's flag for ``impl``, required), ``comm`` (a collective), ``fit`` (a
    loss-law fit timed on the CPU) or ``layout_search`` (the planner's layout search timed on
    the CPU); only kernel records can be baselines. TFLOP/s and
    GB/s are computed here from ``flops``, ``bytes`` and ``time_s``, never passed in.
    ``timing_method``, ``l2_flush`` and ``timing_fallback_reason`` say how ``time_s`` was
    measured (`bench.timing`). ``power`` is the power fields
    (`POWER_FIELDS`, and any of the family's own beside them, such as ``rank_power``); without
    it they are null with the reason `NOT_MEASURED`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown record kind '{kind}'; known: {', '.join(KINDS)}")
    computed = [key for key in COMPUTED if key in extra]
    if computed:
        raise TypeError(f"{', '.join(computed)} are computed from flops, bytes and time_s; "
                        f"do not pass them")
    if kind == "kernel" and (rel_error is None or tolerance is None):
        raise TypeError("a kernel record needs rel_error and tolerance (it was checked first)")
    if kind != "kernel":
        baseline = False if baseline is None else baseline
    power_fields = null_power("none", NOT_MEASURED) if power is None else dict(power)
    missing = [key for key in POWER_FIELDS if key not in power_fields]
    if missing:
        raise TypeError(f"power lacks the fields {', '.join(missing)}")
    extra = {**{k: v for k, v in power_fields.items() if k not in POWER_FIELDS}, **extra}
    record = {
        "name": name, "test": test, "label": label, "kernel": kernel, "impl": impl,
        "baseline": baseline, "backend": backend, "gqa_method": gqa_method, "dtype": dtype,
        "out_dtype": out_dtype or dtype, "direction": direction, "variant": variant,
        "layout": layout, "shape": dict(shape), "flops": flops, "bytes": bytes,
        "device": device, "device_name": device_name,
        "time_s": time_s, "time_s_min": time_s_min, "time_s_mean": time_s_mean,
        "time_s_stddev": time_s_stddev, "time_s_iqr": time_s_iqr, "rounds": rounds,
        "iterations": iterations, "timing_method": timing_method, "l2_flush": l2_flush,
        "timing_fallback_reason": timing_fallback_reason,
        "tflops": rate(flops, time_s, 1e12), "gbps": rate(bytes, time_s, 1e9),
        "rel_error": rel_error, "tolerance": tolerance,
        **{key: power_fields[key] for key in POWER_FIELDS},
    }
    clash = [key for key in extra if key in record]
    if clash:
        raise TypeError(f"extra fields {', '.join(clash)} are record fields")
    record.update(extra)
    if not isinstance(baseline, bool):
        raise SchemaError("baseline", f"must be true or false (the registry's flag), got {baseline!r}")
    validate_record(record)
    return record


def remake_record(record: Mapping, **changes) -> dict:
    """``record`` with ``changes`` (e.g. the final timing statistics), through `make_record`
    again, so TFLOP/s and GB/s follow the new time. Power fields come along when the record
    has all of them, else they become null with the reason `NOT_MEASURED`."""
    fields = {k: v for k, v in record.items() if k not in COMPUTED and k not in POWER_FIELDS}
    fields.update(changes)
    power = {k: record[k] for k in POWER_FIELDS if k in record}
    return make_record(kind_of(record), **fields,
                       power=power if len(power) == len(POWER_FIELDS) else None)


def kind_of(record: Mapping) -> str:
    """The `make_record` kind a record was built as, from its family."""
    return record["kernel"] if record.get("kernel") in KINDS else "kernel"


# -- validation ------------------------------------------------------------------------------


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int_ranges(value: Any, where: str) -> None:
    """Every integer in ``value`` (recursively) fits a signed 64-bit column."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise SchemaError(where, f"integer {value} does not fit in 64 bits "
                                     f"(from {INT64_MIN} to {INT64_MAX})")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_int_ranges(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_int_ranges(item, f"{where}[{i}]")


def validate_record(record: Any, where: str = "record") -> None:
    """Raise `SchemaError` naming the field when ``record`` breaks the schema's rules."""
    if not isinstance(record, Mapping):
        raise SchemaError(where, "must be an object")
    for key in TEXT_FIELDS:
        if not isinstance(record.get(key), str) or not record[key]:
            raise SchemaError(f"{where}.{key}", "missing or not a non-empty string")
    for key in KEY_DEFAULTS:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise SchemaError(f"{where}.{key}", f"must be a string or null, got {record[key]!r}")
    if record.get("baseline") is not None and not isinstance(record["baseline"], bool):
        raise SchemaError(f"{where}.baseline",
                          f"must be true, false or null, got {record['baseline']!r}")
    if not isinstance(record.get("shape"), Mapping):
        raise SchemaError(f"{where}.shape", "missing or not an object")
    for key in ("flops", "bytes"):
        value = record.get(key)
        if not _number(value) or not value >= 0:
            raise SchemaError(f"{where}.{key}", f"must be a non-negative number, got {value!r}")
    for key in TIME_FIELDS:
        value = record.get(key)
        if key != "time_s" and value is None:
            continue  # only time_s is required; the spread fields may be absent or null
        if not _number(value) or not math.isfinite(value) or value < 0 \
                or (key == "time_s" and value == 0):
            raise SchemaError(f"{where}.{key}",
                              f"must be a positive finite number of seconds, got {value!r}")
    for key in ("energy_j", "avg_power_w", "max_power_w", "power_limit_w", "sm_clock_mhz",
                "mem_clock_mhz", "temp_c"):
        problem = impossible_reading(key, record.get(key), record.get("power_limit_w"),
                                     record.get("power_window_s"))
        if problem is not None:
            raise SchemaError(f"{where}.{key}", f"impossible reading: {problem}")
    check_int_ranges(dict(record), where)


# ISO 8601 as Python and pandas both read it: a date, optionally a time (with optional
# fraction) and an offset; `datetime.fromisoformat` then checks the values (month 13, day 32,
# offset +25:00 are refused) and four-digit years keep it within what the store holds.
_ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}"
                       r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?")


def parse_timestamp(text: Any, where: str = "created_utc") -> datetime:
    """``text`` as a datetime when it is an ISO 8601 time with a valid date and offset (e.g.
    ``2025-01-02T03:04:05+00:00``); else `SchemaError` naming ``where``."""
    if not isinstance(text, str) or not _ISO_8601.fullmatch(text):
        raise SchemaError(where, f"must be an ISO 8601 time such as 2025-01-02T03:04:05+00:00, "
                                 f"got {text!r}")
    value = re.sub(r"(\.\d{6})\d+", r"\1", text)  # Python keeps microseconds
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SchemaError(where, f"not a valid ISO 8601 time ({exc}): {text!r}") from None


def validate_section(section: Any) -> None:
    """Raise `SchemaError` naming the field when a results file's ``flopcast`` section breaks
    the schema: an unreadable version, a missing or mistyped run field, an invalid time, an
    integer past 64 bits, or any record's problem (`validate_record`)."""
    if not isinstance(section, Mapping):
        raise SchemaError("flopcast", "must be an object")
    version = section.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise SchemaError("flopcast.schema_version",
                          f"schema version {version!r} is not one this flopcast reads "
                          f"({', '.join(map(str, READABLE_VERSIONS))}); upgrade flopcast to load it")
    for key, kind in (("run_id", str), ("created_utc", str), ("machine", dict), ("records", list)):
        if not isinstance(section.get(key), kind):
            problem = "missing" if key not in section else f"must be {kind.__name__}"
            raise SchemaError(f"flopcast.{key}", problem)
    parse_timestamp(section["created_utc"], "flopcast.created_utc")
    check_int_ranges(section["machine"], "flopcast.machine")
    for i, record in enumerate(section["records"]):
        validate_record(record, f"flopcast.records[{i}]")


# -- baselines and speedups ------------------------------------------------------------------


def is_baseline(record: Mapping) -> bool:
    """Whether a record is a baseline: its ``baseline`` field (the registry's flag), or for
    older records without one, whether its impl is its family's `LEGACY_BASELINE_IMPL`."""
    declared = record.get("baseline")
    if isinstance(declared, bool) or type(declared).__name__ in ("bool", "bool_"):  # numpy too
        return bool(declared)
    return LEGACY_BASELINE_IMPL.get(record.get("kernel")) == record.get("impl")


def compare_with_fastest(time_s: float | None, candidates: Iterable[tuple[str, float | None]]
                         ) -> tuple[str | None, float | None]:
    """(the fastest candidate that was timed, its time / ``time_s``): the speedup over it.
    ``candidates`` are (name, time) pairs; of equal times the first name in sort order wins. (None, None)
    when no candidate was timed; the speedup is None when ``time_s`` is not positive."""
    timed = [(t, name) for name, t in candidates
             if t is not None and isinstance(t, (int, float)) and math.isfinite(t) and t > 0]
    if not timed:
        return None, None
    best_t, best = min(timed)
    ok = time_s is not None and math.isfinite(time_s) and time_s > 0
    return best, (best_t / time_s if ok else None)


def _key(value):
    """A problem-key value with every kind of missing (None, NaN) the same."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def fastest_baselines(records: Sequence[Mapping], problem_key: Sequence[str]
                      ) -> list[tuple[str | None, float | None]]:
    """Per record: (the fastest baseline impl measured for the same problem, that baseline's
    time / this record's time). Records measure the same problem when their ``problem_key``
    fields agree; an impl measured more than once counts by its median time."""
    times: dict[tuple, dict[str, list[float]]] = {}
    keys = [tuple(_key(r.get(k)) for k in problem_key) for r in records]
    for key, record in zip(keys, records):
        t = record.get("time_s")
        if is_baseline(record) and isinstance(t, (int, float)) and math.isfinite(t):
            times.setdefault(key, {}).setdefault(record["impl"], []).append(t)
    medians = {key: sorted((impl, statistics.median(ts)) for impl, ts in by_impl.items())
               for key, by_impl in times.items()}
    return [compare_with_fastest(record.get("time_s"), medians.get(key, ()))
            for key, record in zip(keys, records)]


# -- results/README.md -----------------------------------------------------------------------


def readme_table(group: str) -> str:
    """The markdown table of one group of fields, as results/README.md holds it."""
    rows = ["| field | type | unit | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| `{f.name}` | {f.type} | {f.unit or '-'} | {f.meaning} |"
             for f in RECORD_FIELDS if f.group == group]
    return "\n".join(rows)


def readme_tables() -> dict[str, str]:
    """Every group's table, by group name."""
    return {group: readme_table(group) for group in ("identity", "timing", "power")}


if __name__ == "__main__":
    for group, table in readme_tables().items():
        print(f"<!-- {group} -->\n{table}\n")
