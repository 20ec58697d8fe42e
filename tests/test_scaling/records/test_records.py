"""Writing results files atomically and loading them with validation."""

import json
import math
import os
import shutil
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.records import atomic_write_text
from scaling.errors import ResultsFileError
from scaling.records.load import ResultsWarning, best_by_kernel, load_results
from tests.support.records_factory import gemm_record, write_run


def test_round_trip(tmp_path):
    path = write_run(tmp_path)
    df = load_results(path)
    assert len(df) == 2
    row = df.iloc[0]
    assert row["kernel"] == "gemm" and row["shape"] == "256x256x256"
    assert row["shape_m"] == 256 and row["device"] == "cpu"
    assert row["tflops"] == pytest.approx(2 * 256**3 / 1e-3 / 1e12)
    assert row["file"] == str(path) and row["hostname"] == "node-a"
    assert str(df["created_utc"].dt.tz) == "UTC"
    assert df.attrs["files"] == [str(path)]


def test_directory_is_expanded(tmp_path):
    write_run(tmp_path)
    write_run(tmp_path)
    (tmp_path / "notes.txt").write_text("not a results file")
    assert load_results(tmp_path)["run_id"].nunique() == 2


def test_speedup_against_the_baseline_of_the_same_run(tmp_path):
    """Records without a ``baseline`` field (files written before it): torch is the baseline."""
    path = write_run(tmp_path, [gemm_record(256, "torch", 2e-3), gemm_record(256, "triton", 1e-3),
                                gemm_record(512, "triton", 1e-3)])
    df = load_results(path).set_index(["impl", "shape"])
    assert df.loc[("triton", "256x256x256"), "speedup_vs_baseline"] == pytest.approx(2.0)
    assert df.loc[("torch", "256x256x256"), "speedup_vs_baseline"] == pytest.approx(1.0)
    assert df.loc[("triton", "256x256x256"), "baseline_impl"] == "torch"
    assert math.isnan(df.loc[("triton", "512x512x512"), "speedup_vs_baseline"])
    assert df.loc[("triton", "512x512x512"), "baseline_impl"] is None


def attention_record(impl, time_s, baseline, seq=256, **extra):
    shape = {"batch": 1, "heads_q": 8, "heads_kv": 8, "seq": seq, "head_dim": 64, "causal": True}
    return gemm_record(64, impl, time_s, name=f"attention-fwd-bf16-{impl}-{seq}",
                       kernel="attention", layout="", shape=shape, baseline=baseline, **extra)


def test_speedup_is_over_the_fastest_baseline_and_names_it(tmp_path):
    records = [attention_record("sdpa-flash", 2e-3, True),
               attention_record("sdpa-cudnn", 1e-3, True),
               attention_record("sdpa-efficient", 4e-3, True),
               attention_record("triton", 0.8e-3, False),
               attention_record("sdpa-flash", 2e-3, True, seq=512),
               attention_record("triton", 1e-3, False, seq=512)]
    df = load_results(write_run(tmp_path, records)).set_index(["impl", "shape_seq"])
    assert df.loc[("triton", 256), "speedup_vs_baseline"] == pytest.approx(1.25)
    assert df.loc[("triton", 256), "baseline_impl"] == "sdpa-cudnn"
    # each baseline against the fastest one: how much slower the other backends are
    assert df.loc[("sdpa-flash", 256), "speedup_vs_baseline"] == pytest.approx(0.5)
    assert df.loc[("sdpa-cudnn", 256), "speedup_vs_baseline"] == pytest.approx(1.0)
    # at 512 only flash ran
    assert df.loc[("triton", 512), "baseline_impl"] == "sdpa-flash"
    assert df.loc[("triton", 512), "speedup_vs_baseline"] == pytest.approx(2.0)
    assert set(df["baseline"]) == {True, False}


def test_the_baseline_field_overrides_the_old_rule(tmp_path):
    records = [gemm_record(256, "torch", 1e-3, baseline=False),
               gemm_record(256, "cublaslt", 2e-3, baseline=True),
               gemm_record(256, "triton", 1e-3, baseline=False)]
    df = load_results(write_run(tmp_path, records)).set_index("impl")
    assert df.loc["triton", "baseline_impl"] == "cublaslt"
    assert df.loc["torch", "speedup_vs_baseline"] == pytest.approx(2.0)


def test_a_baseline_measured_twice_counts_by_its_median(tmp_path):
    records = [gemm_record(256, "torch", t, baseline=True) for t in (1e-3, 2e-3, 9e-3)]
    records.append(gemm_record(256, "triton", 1e-3, baseline=False))
    df = load_results(write_run(tmp_path, records)).set_index("impl")
    assert df.loc["triton", "speedup_vs_baseline"] == pytest.approx(2.0)


def test_baseline_must_be_a_boolean(tmp_path):
    path = write_run(tmp_path, [gemm_record(64, baseline="yes")])
    with pytest.raises(ResultsFileError, match=r"records\[0\]\.baseline"):
        load_results(path)


def test_best_by_kernel_keeps_the_fastest_case(tmp_path):
    df = load_results(write_run(tmp_path, [gemm_record(256, time_s=1e-3),
                                           gemm_record(512, time_s=2e-3)]))
    best = best_by_kernel(df)
    assert len(best) == 1 and best.iloc[0]["shape"] == "512x512x512"


def test_truncated_file_names_the_file(tmp_path):
    path = write_run(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ResultsFileError, match="not valid JSON") as info:
        load_results(path)
    assert str(path) in str(info.value)


def _edit(path, fn):
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_wrong_schema_version(tmp_path):
    path = write_run(tmp_path)
    _edit(path, lambda d: d["flopcast"].update(schema_version=99))
    with pytest.raises(ResultsFileError, match="schema version 99") as info:
        load_results(path)
    assert info.value.field == "flopcast.schema_version"


def test_missing_field_is_named(tmp_path):
    path = write_run(tmp_path)
    _edit(path, lambda d: d["flopcast"]["records"][1].pop("kernel"))
    with pytest.raises(ResultsFileError, match=r"records\[1\]\.kernel"):
        load_results(path)


def test_nan_time_is_refused(tmp_path):
    path = write_run(tmp_path)
    path.write_text(path.read_text().replace('"time_s": 0.001', '"time_s": NaN', 1))
    with pytest.raises(ResultsFileError, match="NaN"):
        load_results(path)


def test_negative_time_is_refused(tmp_path):
    path = write_run(tmp_path, [gemm_record(256, time_s=-1e-3)])
    with pytest.raises(ResultsFileError, match=r"records\[0\]\.time_s"):
        load_results(path)


def test_not_a_flopcast_file(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(ResultsFileError, match="no 'flopcast' section"):
        load_results(path)


def test_duplicate_run_counted_once_and_reported(tmp_path):
    path = write_run(tmp_path)
    copy = tmp_path / "copy" / path.name
    copy.parent.mkdir()
    shutil.copy(path, copy)
    with pytest.warns(ResultsWarning, match="counted once"):
        df = load_results([path, copy])
    assert len(df) == 2
    assert df.attrs["duplicates"] == [str(copy)]


def test_skip_invalid_lets_good_files_through(tmp_path):
    good = write_run(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ResultsFileError):
        load_results([good, bad])
    with pytest.warns(ResultsWarning, match="bad.json"):
        df = load_results([good, bad], skip_invalid=True)
    assert len(df) == 2 and df.attrs["skipped"] == [str(bad)]


def test_missing_path(tmp_path):
    with pytest.raises(ResultsFileError, match="no such file"):
        load_results(tmp_path / "nope.json")


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    atomic_write_text(target, "old")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new content")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"], "no temporary file is left behind"


def test_atomic_write_never_shows_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.exists(dst))  # before the rename the final name does not exist
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_text(target, "x" * 100_000)
    assert seen == [False] and len(target.read_text()) == 100_000


# Any corruption of a record's fields either loads or raises ResultsFileError: never another
# exception, never a silent NaN time.
BAD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                       st.text(max_size=3), st.lists(st.integers(), max_size=2),
                       st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
FIELDS = ["name", "kernel", "impl", "dtype", "device", "shape", "flops", "bytes", "time_s",
          "time_s_min", "tflops", "variant", "baseline"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=BAD_VALUES, drop=st.booleans())
def test_corrupted_records_fail_cleanly(tmp_path, field, value, drop):
    path = write_run(tmp_path, [gemm_record(64, baseline=True)])
    doc = json.loads(path.read_text())
    record = doc["flopcast"]["records"][0]
    if drop:
        record.pop(field)
    else:
        record[field] = value
    path.write_text(json.dumps(doc))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            df = load_results(path)
    except ResultsFileError as exc:
        assert str(path) in str(exc)
    else:
        assert (df["time_s"] > 0).all()
    finally:
        path.unlink()


def test_numpy_scalars_are_written_as_numbers(tmp_path):
    import numpy as np

    path = write_run(tmp_path, [gemm_record(64, time_s=np.float64(2e-3), rounds=np.int64(7),
                                            avg_power_w=np.float32("nan"))])
    record = json.loads(path.read_text())["flopcast"]["records"][0]
    assert record["time_s"] == 2e-3 and record["rounds"] == 7 and record["avg_power_w"] is None


def test_tflops_are_recomputed_from_flops_and_time_not_read(tmp_path):
    """A file claiming 131 TFLOP/s for a 1e308 s GEMM gets the rate its FLOPs and time give."""
    from scaling.records.load import load_results
    from tests.support.records_factory import gemm_record, write_run

    record = gemm_record(512)
    record.update(time_s=1e308, time_s_mean=1e308)
    write_run(tmp_path, [record, gemm_record(256, time_s=2e-3)])
    df = load_results(tmp_path).sort_values("flops")
    assert df["tflops"].tolist() == [2 * 256**3 / 2e-3 / 1e12, 2 * 512**3 / 1e308 / 1e12]


def test_peak_refusal_for_given_rates(capsys):
    """--tflops-per-gpu above the device's dense datasheet peak (H100 SXM BF16: 989, NVIDIA
    datasheet) is refused in step and plan, one line; at the peak it is accepted."""
    from scaling.cli.main import main

    for argv in (["step", "--params", "8B", "--tp", "8"], ["plan"]):
        assert main(argv + ["--tflops-per-gpu", "1e9"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "989" in err[0] and "peak" in err[0]
    # (TP 8: at one GPU an 8B model with Adam does not fit an H100's 80 GB)
    assert main(["step", "--params", "8B", "--tp", "8", "--tflops-per-gpu", "989"]) == 0
