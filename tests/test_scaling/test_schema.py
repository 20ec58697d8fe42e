"""The record contract, `scaling.schema`: one constructor, one set of rules for the writer, the
loader and the store, and the documentation that says the same."""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling import schema

from scaling.records import store
from scaling.errors import ResultsFileError
from scaling.records.load import RECORD_COLUMNS, ResultsWarning, load_results
from scaling.schema import SchemaError
from tests.support.records_factory import MACHINE, gemm_record, write_run

REPO = Path(__file__).resolve().parents[2]
README = REPO / "results" / "README.md"


def kernel_record(**changes):
    fields = dict(name="gemm-bf16-rr-torch-256x256x256", kernel="gemm", impl="torch",
                  dtype="bf16", shape={"m": 256, "n": 256, "k": 256}, flops=2 * 256**3,
                  bytes=3 * 256 * 256 * 2, device="cpu", device_name="Test CPU", baseline=True,
                  time_s=1e-3, rel_error=2e-3, tolerance=1e-2, layout="rr")
    fields.update(changes)
    return schema.make_record("kernel", **fields)


# -- the documentation -------------------------------------------------------------------------


def test_the_readme_tables_are_the_schema_s():
    text = README.read_text()
    for group, table in schema.readme_tables().items():
        assert table in text, f"results/README.md's {group} table differs from scaling.schema: " \
                              f"rewrite it with `python -m scaling.schema`"
    record_part = text.split("### A record", 1)[1].split("## Loading", 1)[0]
    documented = [m for row in record_part.splitlines() if row.startswith("| `")
                  for m in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])]
    assert documented == list(schema.FIELD_NAMES)


def test_the_loader_s_columns_and_bench_s_power_fields_are_the_schema_s():
    from bench.power import POWER_FIELDS

    assert RECORD_COLUMNS == list(schema.FIELD_NAMES)
    assert POWER_FIELDS is schema.POWER_FIELDS
    assert f"schema version {schema.SCHEMA_VERSION})" in README.read_text().splitlines()[0]


# -- the constructor ---------------------------------------------------------------------------


def test_make_record_computes_the_rates_once_from_flops_bytes_and_time():
    record = kernel_record()
    # 2 * 256^3 = 33,554,432 FLOP in 1 ms; 393,216 B in 1 ms.
    assert record["tflops"] == pytest.approx(0.033554432, rel=1e-15)
    assert record["gbps"] == pytest.approx(0.393216, rel=1e-15)
    assert list(record)[:len(schema.FIELD_NAMES)] == list(schema.FIELD_NAMES)
    assert record["out_dtype"] == "bf16" and record["baseline"] is True
    assert record["power_missing_reason"] == schema.NOT_MEASURED
    later = schema.remake_record(record, time_s=2e-3, test="bench/x.py::t")
    assert later["tflops"] == pytest.approx(0.033554432 / 2) and later["test"] == "bench/x.py::t"
    with pytest.raises(TypeError, match="computed"):
        kernel_record(tflops=1.0)


def test_make_record_refuses_what_the_loader_would_refuse():
    with pytest.raises(SchemaError, match="baseline"):
        kernel_record(baseline=None)  # a kernel record carries the registry's flag
    with pytest.raises(SchemaError) as caught:
        kernel_record(time_s=0.0)
    assert caught.value.field == "record.time_s"
    with pytest.raises(SchemaError) as caught:
        kernel_record(shape={"m": 2**63, "n": 1, "k": 1})
    assert caught.value.field == "record.shape.m"
    with pytest.raises(TypeError, match="rel_error"):
        kernel_record(rel_error=None)


def test_comm_and_fit_records_are_never_baselines_and_count_no_flops():
    fit = schema.make_record("fit", name="test_fit", kernel="fit", impl="flopcast",
                             dtype="fp64", shape={"points": 240}, flops=0, bytes=0,
                             device="cpu", time_s=0.5, objective=1.5)
    assert fit["baseline"] is False and fit["tflops"] is None and fit["gbps"] is None
    assert fit["objective"] == 1.5 and list(fit)[-1] == "objective"
    power = {**schema.null_power("nvml", "window too short"), "rank_power": None}
    comm = schema.make_record("comm", name="comm-fp32-all_reduce-torch-1024x2", kernel="comm",
                              impl="torch", dtype="fp32", shape={"message_bytes": 1024,
                                                                 "world_size": 2},
                              flops=0, bytes=1024, device="cpu", time_s=1e-6, power=power)
    assert comm["gbps"] == pytest.approx(1.024)  # 1024 B / 1 us
    assert comm["rank_power"] is None and comm["power_missing_reason"] == "window too short"


# -- validation: times and integers ----------------------------------------------------------


@pytest.mark.parametrize("text", ["yesterday", "2025-13-01T00:00:00+00:00",
                                  "2025-01-01T00:00:00+25:00", "99999-01-01T00:00:00+00:00",
                                  "2025-02-30T00:00:00Z", "2025-01-01T24:00:00Z", "", "2025"])
def test_impossible_times_are_named_with_their_field(text):
    section = {"schema_version": 1, "run_id": "a" * 32, "created_utc": text,
               "machine": {}, "records": []}
    with pytest.raises(SchemaError) as caught:
        schema.validate_section(section)
    assert caught.value.field == "flopcast.created_utc"


OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30),
                    timezones=st.none() | OFFSETS),
       st.sampled_from(["seconds", "microseconds", "minutes"]), st.sampled_from(["T", " "]))
def test_every_iso_8601_time_is_accepted_and_read_alike_by_pandas(moment, spec, sep):
    text = moment.isoformat(sep=sep, timespec=spec)
    parsed = schema.parse_timestamp(text)
    assert parsed == datetime.fromisoformat(text)
    # what the loader and the store then do with it cannot fail
    stamp = pd.to_datetime(pd.Series([text]), utc=True, format="ISO8601")[0]
    expected = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    assert stamp.to_pydatetime() == expected.astimezone(timezone.utc)


@given(st.text(max_size=40))
def test_any_text_is_a_time_or_a_schema_error(text):
    try:
        parsed = schema.parse_timestamp(text)
    except SchemaError as exc:
        assert exc.field == "created_utc"
    else:
        pd.to_datetime(pd.Series([text]), utc=True, format="ISO8601")  # never raises
        assert 1 <= parsed.year <= 9999


@given(st.integers())
def test_integers_fit_in_64_bits_or_are_named(value):
    record = gemm_record(rounds=value)
    if -(2**63) <= value < 2**63:
        schema.validate_record(record)
    else:
        with pytest.raises(SchemaError) as caught:
            schema.validate_record(record, "flopcast.records[0]")
        assert caught.value.field == "flopcast.records[0].rounds"


# -- the writer and the loader agree ---------------------------------------------------------

JSON_LEAVES = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
JSON_LIKE = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                         | st.tuples(inner, inner)
                         | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)


def _expected(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _expected(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_expected(v) for v in value]
    return value


@given(JSON_LIKE)
def test_jsonable_values_are_strict_json_that_reads_back(value):
    text = json.dumps(schema.jsonable(value), allow_nan=False)
    assert json.loads(text) == _expected(value)


def test_jsonable_turns_numpy_scalars_and_times_into_json():
    assert schema.jsonable({"a": np.float64(1.5), "b": np.int64(3), "c": np.float32("nan"),
                            1: datetime(2025, 1, 2, tzinfo=timezone.utc)}) == \
        {"a": 1.5, "b": 3, "c": None, "1": "2025-01-02T00:00:00+00:00"}
    assert type(schema.jsonable(np.int64(3))) is int


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-9, 1e3), st.integers(0, 2**62), st.booleans()),
                min_size=1, max_size=4))
def test_records_written_load_with_the_same_rates(tmp_path_factory, cases):
    records = [kernel_record(name=f"gemm-{i}", time_s=t, flops=flops, baseline=baseline)
               for i, (t, flops, baseline) in enumerate(cases)]
    path = write_run(tmp_path_factory.mktemp("run"), records)
    df = load_results(path)
    for (t, flops, _), tflops in zip(cases, df["tflops"]):
        if flops:
            assert tflops == pytest.approx(flops / t / 1e12)
        else:
            assert math.isnan(tflops)


def test_files_the_loader_refuses_the_upload_skips_and_keeps_going(tmp_path):
    good = write_run(tmp_path / "good")
    bad = {}
    for name, change in {"yesterday": ("created_utc", "yesterday"),
                         "month13": ("created_utc", "2025-13-01T00:00:00+00:00"),
                         "bigint": ("flops", 2**63)}.items():
        path = write_run(tmp_path / name)
        document = json.loads(path.read_text())
        key, value = change
        if key == "created_utc":
            document["flopcast"][key] = value
        else:
            document["flopcast"]["records"][0][key] = value
        path.write_text(json.dumps(document))
        bad[name] = path
    with pytest.raises(ResultsFileError) as caught:
        load_results(bad["bigint"])
    assert caught.value.field == "flopcast.records[0].flops"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultsWarning)
        df = load_results(tmp_path, skip_invalid=True)
    assert df.attrs["files"] == [str(good)] and len(df.attrs["skipped"]) == 3
    report = store.upload_files([tmp_path], f"sqlite:///{tmp_path / 'x.db'}")
    by_file = {Path(o.file).parent.name: o for o in report.outcomes}
    assert by_file["good"].status == store.UPLOADED
    assert "flopcast.created_utc" in by_file["yesterday"].message
    assert "flopcast.created_utc" in by_file["month13"].message
    assert "flopcast.records[0].flops" in by_file["bigint"].message
    assert all(by_file[n].status == store.INVALID for n in bad)


# -- baselines and speedups ------------------------------------------------------------------


def test_speedup_is_over_the_fastest_baseline_by_median():
    rows = [{"impl": "sdpa-flash", "baseline": True, "kernel": "attention", "k": 1, "time_s": t}
            for t in (2.0, 3.0, 10.0)]  # median 3.0
    rows += [{"impl": "sdpa-cudnn", "baseline": True, "kernel": "attention", "k": 1, "time_s": 2.5},
             {"impl": "triton", "baseline": False, "kernel": "attention", "k": 1, "time_s": 1.25},
             {"impl": "triton", "baseline": False, "kernel": "attention", "k": 2, "time_s": 1.0}]
    compared = schema.fastest_baselines(rows, ["k"])
    assert compared[3] == ("sdpa-cudnn", pytest.approx(1.0))
    assert compared[4] == ("sdpa-cudnn", pytest.approx(2.0))
    assert compared[5] == (None, None)


def test_older_records_without_the_flag_fall_back_in_one_place():
    assert schema.is_baseline({"kernel": "gemm", "impl": "torch"})
    assert not schema.is_baseline({"kernel": "gemm", "impl": "triton"})
    assert not schema.is_baseline({"kernel": "comm", "impl": "torch"})
    assert schema.is_baseline({"kernel": "gemm", "impl": "triton", "baseline": np.True_})
    assert not schema.is_baseline({"kernel": "gemm", "impl": "torch", "baseline": False})


def test_shape_text():
    assert schema.shape_str({"m": 8, "n": 16, "k": 32}) == "8x16x32"
    assert schema.shape_str({"batch": 1, "seq": 512.0, "causal": True}) == "1x512-causal"


# -- the import boundary ---------------------------------------------------------------------

ALLOWED_FROM_BENCH = {"scaling.schema", "scaling.units", "scaling.errors", "scaling.output"}


def _imports(path: Path):
    """(module imported, whether at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name, id(node) in top) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, id(node) in top


def test_bench_imports_nothing_of_scaling_but_the_schema_and_printers():
    for path in sorted((REPO / "bench").rglob("*.py")):
        for module, top_level in _imports(path):
            if not module.startswith("scaling"):
                continue
            if module in ALLOWED_FROM_BENCH and top_level:
                continue
            # the one exception: the upload after a run loads the store (and the database's
            # credential masking for its warning) lazily
            assert (path.name, module, top_level) in {
                ("plugin.py", "scaling.records.store", False),
                ("plugin.py", "scaling.records.database", False)}, \
                f"{path.relative_to(REPO)} imports {module}"


def test_the_schema_and_what_bench_uses_need_only_the_standard_library():
    code = ("import sys; import scaling.schema, scaling.output, scaling.units, bench.records; "
            "bad = [m for m in ('pandas', 'numpy', 'torch', 'sqlalchemy', 'scipy') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"

