"""`flopcast results` on real files: the table, --json, and clean errors."""

import json

import pytest

from scaling.cli.main import main
from tests.support.records_factory import gemm_record, write_run


def test_table_shows_best_per_kernel(tmp_path, capsys):
    write_run(tmp_path, [gemm_record(256, time_s=1e-3), gemm_record(512, time_s=2e-3)])
    assert main(["results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "512x512x512" in out and "256x256x256" not in out
    assert "CPU rows are real CPU timings" in out


def test_table_and_json_name_the_fastest_baseline(tmp_path, capsys):
    write_run(tmp_path, [gemm_record(256, "torch", 2e-3, baseline=True),
                         gemm_record(256, "triton", 1e-3, baseline=False)])
    assert main(["results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fastest base" in out and "vs base" in out
    triton = next(line for line in out.splitlines() if " triton " in line)
    assert " 2 " in f"{triton} " and "torch" in triton.split("triton", 1)[1]
    assert main(["results", str(tmp_path), "--json"]) == 0
    rows = {r["impl"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["triton"]["baseline_impl"] == "torch" and rows["triton"]["baseline"] is False
    assert rows["triton"]["speedup_vs_baseline"] == pytest.approx(2.0)
    assert rows["torch"]["baseline"] is True


def test_times_carry_their_unit(tmp_path, capsys):
    """Each time is scaled to its own unit and says which; --json keeps SI seconds."""
    write_run(tmp_path, [gemm_record(256, time_s=48.5e-6), gemm_record(512, time_s=1.25),
                         gemm_record(512, impl="triton", time_s=0.0177)])
    assert main(["results", str(tmp_path), "--all"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert "time" in header and "s" not in header  # no bare "time s" column of raw seconds
    assert "48.5 us" in out and "1.25 s" in out and "17.7 ms" in out
    assert main(["results", str(tmp_path), "--all", "--json"]) == 0
    times = sorted(row["time_s"] for row in json.loads(capsys.readouterr().out))
    assert times == [48.5e-6, 0.0177, 1.25]


def test_json_has_the_documented_keys(tmp_path, capsys):
    write_run(tmp_path, [gemm_record(256, time_s=1e-3)])
    assert main(["results", str(tmp_path), "--json", "--all"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    for key in ("kernel", "impl", "dtype", "device", "shape", "time_s", "tflops"):
        assert key in rows[0]
    assert rows[0]["tflops"] == pytest.approx(2 * 256**3 / 1e-3 / 1e12)
    assert rows[0]["shape_dims"] == {"m": 256, "n": 256, "k": 256}


def test_bad_file_is_one_line_on_stderr(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"flopcast": ')
    assert main(["results", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err and "Traceback" not in err


def test_skip_invalid_warns_and_continues(tmp_path, capsys):
    write_run(tmp_path)
    (tmp_path / "bad.json").write_text("{")
    assert main(["results", str(tmp_path), "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "warning: skipped" in captured.err and "bad.json" in captured.err
    assert "256x256x256" in captured.out or "512x512x512" in captured.out


def test_empty_folder_says_what_to_do(tmp_path, capsys):
    assert main(["results", str(tmp_path)]) == 2
    assert "run `python -m pytest --benchmark` first" in capsys.readouterr().err
