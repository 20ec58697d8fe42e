"""Hostile and careless input gets one clear line on stderr and a non-zero exit, never a
traceback and never a hang (each case below once raised or blocked)."""

import os
import threading

import numpy as np
import pandas as pd
import pytest

from scaling.cli.main import main
from tests.support.records_factory import write_run


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *needles):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def runs_csv(tmp_path):
    n = np.array([1e8, 2e8, 4e8, 8e8, 1.6e9] * 3)
    d = np.repeat([2e9, 8e9, 3.2e10], 5)
    loss = 1.8 + 400 / n ** 0.34 + 400 / d ** 0.28
    path = tmp_path / "runs.csv"
    pd.DataFrame({"params": n, "tokens": d, "loss": loss}).to_csv(path, index=False)
    return path


def test_deeply_nested_json_is_named_not_a_recursion_error(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run_cli(capsys, "results", path)
    one_line_error(code, err, "deep.json", "nested too deeply")


def test_fit_with_constant_loss_says_so(tmp_path, capsys):
    path = tmp_path / "flat.csv"
    n = [1e8, 2e8, 4e8, 8e8] * 3
    d = [1e9] * 4 + [3e9] * 4 + [1e10] * 4
    pd.DataFrame({"params": n, "tokens": d, "loss": [2.0] * 12}).to_csv(path, index=False)
    code, _, err = run_cli(capsys, "fit", path)
    one_line_error(code, err, "same loss")


def test_fit_plot_with_an_unknown_format_is_refused_before_fitting(runs_csv, tmp_path, capsys):
    code, _, err = run_cli(capsys, "fit", runs_csv, "--plot", tmp_path / "p.txt")
    one_line_error(code, err, "p.txt", ".png")
    assert not (tmp_path / "p.txt").exists()


def test_fit_negative_seed_is_refused(runs_csv, capsys):
    code, _, err = run_cli(capsys, "fit", runs_csv, "--seed", "-1", "--bootstrap", "5")
    one_line_error(code, err, "--seed", "-1")


def test_profile_save_into_a_missing_folder(tmp_path, capsys):
    write_run(tmp_path / "res")
    code, _, err = run_cli(capsys, "profile", tmp_path / "res", "--save",
                           tmp_path / "nonexistent" / "x.json")
    one_line_error(code, err, "x.json", "No such file")


def test_since_an_age_too_far_back(tmp_path, capsys):
    write_run(tmp_path / "res")
    code, _, err = run_cli(capsys, "results", tmp_path / "res", "--since", "99999999999d")
    one_line_error(code, err, "--since", "99999999999d")


def test_a_non_numeric_port(capsys):
    code, _, err = run_cli(capsys, "results", "--from", "postgresql://u@localhost:abc/db")
    one_line_error(code, err, "port")


def test_a_database_under_a_regular_file(tmp_path, capsys):
    write_run(tmp_path / "res")
    (tmp_path / "afile").write_text("")
    code, _, err = run_cli(capsys, "upload", tmp_path / "res", "--to",
                           f"sqlite:///{tmp_path}/afile/x.db")
    one_line_error(code, err, "afile")
    code, _, err = run_cli(capsys, "results", "--from", f"sqlite:///{tmp_path}/afile/x.db")
    one_line_error(code, err, "afile")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_skipped_with_a_warning_not_read_forever(tmp_path, capsys):
    write_run(tmp_path / "res")
    os.mkfifo(tmp_path / "res" / "pipe.json")
    os.mkfifo(tmp_path / "given.json")
    result = {}

    def load():
        result["code"] = main(["results", str(tmp_path / "res"), str(tmp_path / "given.json")])

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # unblock the reader so the test process can end
        for name in ("given.json", "res/pipe.json"):
            fd = os.open(tmp_path / name, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        pytest.fail("reading a FIFO blocked")
    out, err = capsys.readouterr()
    assert result["code"] == 0, err
    warnings = [line for line in err.splitlines() if "not a regular file" in line]
    assert len(warnings) == 2, err
    assert "gemm" in out


def test_an_unreadable_subfolder_is_warned_about(tmp_path, capsys, monkeypatch):
    write_run(tmp_path / "res")
    locked = tmp_path / "res" / "locked"
    write_run(locked)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: refuse the listing instead
            real_scandir = os.scandir

            def scandir(path="."):
                if os.fspath(path) == os.fspath(locked):
                    raise PermissionError(13, "Permission denied", os.fspath(path))
                return real_scandir(path)

            monkeypatch.setattr(os, "scandir", scandir)
        code, _, err = run_cli(capsys, "results", tmp_path / "res")
    finally:
        locked.chmod(0o755)
    assert code == 0, err
    assert "locked" in err and "cannot be read" in err, err


def test_upload_to_a_colon_string_is_refused_and_creates_nothing(tmp_path, capsys, monkeypatch):
    write_run(tmp_path / "res")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "upload", "res", "--to", "::::")
    one_line_error(code, err, "::::", "sqlite:///")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


@pytest.mark.parametrize("command", [["plan"], ["model", "--params", "8B"],
                                     ["step", "--params", "8B"]])
def test_seq_zero_is_refused(command, capsys):
    code, _, err = run_cli(capsys, *command, "--seq", "0")
    one_line_error(code, err, "seq", "0")


def test_batch_tokens_abc_blames_batch_tokens(capsys):
    code, _, err = run_cli(capsys, "step", "--params", "8B", "--batch-tokens", "abc")
    line = one_line_error(code, err, "--batch-tokens", "abc")
    assert "--params" not in line
