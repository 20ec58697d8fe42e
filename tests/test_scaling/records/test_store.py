"""The results database on SQLite (no server needed), and what needs no database at all:
URLs, masking, filters, an unreachable server."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import store_cases as cases
from tests.support.pg_server import free_port
from scaling.records import database
from scaling.records import store
from scaling.cli.main import main
from scaling.errors import DataError, StoreError


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'db' / 'flopcast.db'}"


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "results"


def test_round_trip_equals_file_loader(url, runs_dir):
    cases.check_round_trip(url, runs_dir)


def test_filters_match_the_file_loader_filtered(url, runs_dir):
    cases.check_filters(url, runs_dir)


def test_double_upload_stores_once(url, runs_dir, tmp_path):
    cases.check_double_upload(url, runs_dir, tmp_path)


def test_bad_files_are_skipped_by_name_and_the_rest_upload(url, runs_dir, capsys):
    cases.check_bad_files_mixed(url, runs_dir, capsys)


def test_kill_mid_upload_leaves_no_partial_run(url, runs_dir):
    cases.check_kill_mid_upload(url, runs_dir)


def test_the_same_run_from_two_nodes_at_once_is_stored_once(url, runs_dir):
    cases.check_same_run_at_once(url, runs_dir)


def test_eight_concurrent_uploaders(url, runs_dir):
    cases.check_concurrent_uploaders(url, runs_dir)


def test_schema_is_created_once_with_its_version(url, runs_dir):
    cases.three_runs(runs_dir)
    store.upload_files([runs_dir], url)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM flopcast_schema").fetchall() == [(1,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.execute("UPDATE flopcast_schema SET version = 2")
    with pytest.raises(StoreError, match="schema version 2; this flopcast reads version 1"):
        store.read_records(url)


def test_reading_a_missing_database_creates_nothing(tmp_path):
    path = tmp_path / "nowhere.db"
    with pytest.raises(StoreError, match="no results database at .*nowhere.db"):
        store.read_records(f"sqlite:///{path}")
    assert not path.exists()


def test_a_bare_path_means_sqlite_and_other_schemes_are_refused(tmp_path, runs_dir):
    cases.three_runs(runs_dir)
    path = tmp_path / "plain.db"
    assert store.upload_files([runs_dir], str(path)).count(store.UPLOADED) == 3
    assert len(store.read_records(f"sqlite:///{path}")) == 10
    with pytest.raises(StoreError, match="unsupported database 'mysql'.*mysql://u:\\*\\*\\*@h/db"):
        database.parse_url("mysql://u:hunter2@h/db")


def test_commands_read_the_database_with_from(url, runs_dir, capsys):
    cases.three_runs(runs_dir)
    assert main(["upload", str(runs_dir), "--to", url]) == 0
    capsys.readouterr()
    assert main(["results", "--from", url, "--device", "h100", "--kernel", "gemm"]) == 0
    out = capsys.readouterr().out
    assert "Runs in sqlite:///" in out and "node-a" in out and "laptop" not in out
    assert "4096x4096x4096" in out and "Test CPU" not in out
    assert main(["results", "--from", url, "--kernel", "fit"]) == 2
    assert "no records found in sqlite:///" in capsys.readouterr().err
    # The filters narrow files too, the same way.
    assert main(["results", str(runs_dir), "--since", "2026-11-03", "--json"]) == 0
    assert {r["device"] for r in json.loads(capsys.readouterr().out)} == {"cpu"}


# --------------------------------------------------------------------------------------------
# An unreachable server, and passwords
# --------------------------------------------------------------------------------------------


def test_server_down_is_one_clear_line_and_local_files_stay(runs_dir, capsys):
    files = cases.three_runs(runs_dir)
    before = cases.digest(files)
    port = free_port()
    url = f"postgresql://flopcast:s3cret-pw@127.0.0.1:{port}/flopcast"
    with pytest.raises(StoreError) as caught:
        store.upload_files([runs_dir], url)
    message = str(caught.value)
    assert f"host 127.0.0.1, port {port}" in message and "refused" in message.lower()
    assert "s3cret-pw" not in message and "flopcast:***@127.0.0.1" in message

    assert main(["upload", str(runs_dir), "--to", url]) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "cannot reach the results database" in err
    assert "s3cret-pw" not in out + err
    assert main(["results", "--from", url]) == 2
    assert "s3cret-pw" not in "".join(capsys.readouterr())
    assert cases.digest(files) == before


def test_pgpassword_is_masked_too(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "env-secret-42")
    port = free_port()
    with pytest.raises(StoreError) as caught:
        store.read_records(f"postgresql://flopcast@127.0.0.1:{port}/flopcast")
    assert "env-secret-42" not in str(caught.value)
    assert database.mask_text("driver said env-secret-42") == "driver said ***"


@settings(max_examples=200, deadline=None)
@given(password=st.text(st.characters(exclude_characters="*", exclude_categories=("Cs",)),
                        min_size=1, max_size=20))
def test_no_password_survives_masking(password):
    from urllib.parse import quote

    url = f"postgresql://user:{quote(password, safe='')}@db.example:5432/flopcast"
    assert database.parse_url(url).password == password
    assert database.mask_url(url) == "postgresql://user:***@db.example:5432/flopcast"
    message = database.mask_text(f"login failed with {password} ({quote(password, safe='')})",
                                 database.parse_url(url))
    assert password not in message and quote(password, safe="") not in message


# --------------------------------------------------------------------------------------------
# --since
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("2026-11-01", datetime(2026, 11, 1)),
    ("2026-11-01T12:30", datetime(2026, 11, 1, 12, 30)),
    ("2026-11-01T12:30:00+02:00", datetime(2026, 11, 1, 10, 30)),
    ("2026-11-01T12:30:00Z", datetime(2026, 11, 1, 12, 30)),
])
def test_since_dates_are_utc(text, expected):
    assert store.parse_since(text) == expected


@pytest.mark.parametrize("text, age", [("90m", timedelta(minutes=90)), ("12h", timedelta(hours=12)),
                                       ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2))])
def test_since_ages_count_back_from_now(text, age):
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert abs(store.parse_since(text) - (now - age)) < timedelta(seconds=5)


@pytest.mark.parametrize("text", ["yesterday", "7 days", "-3d", ""])
def test_since_rejects_what_it_cannot_read(text):
    with pytest.raises(DataError, match="--since"):
        store.parse_since(text)


def test_a_lock_conflict_on_connecting_is_tried_again(tmp_path, monkeypatch):
    """Several first writers switching a new SQLite file to WAL at once can get "database is
    locked" on connecting, without SQLite waiting: the store tries again instead of calling
    the database unreachable; an error that is not a lock is not retried."""
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    real_connect = sa.engine.Engine.connect
    calls = {"n": 0}

    def locked_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sa_exc.OperationalError("PRAGMA journal_mode = WAL", {},
                                          sqlite3.OperationalError("database is locked"))
        return real_connect(self, *args, **kwargs)

    monkeypatch.setattr(sa.engine.Engine, "connect", locked_once)
    opened = store.Store(f"sqlite:///{tmp_path / 'db' / 'flopcast.db'}", write=True)
    assert calls["n"] >= 2 and opened.engine is not None

    def unopenable(self, *args, **kwargs):
        calls["n"] += 1
        raise sa_exc.OperationalError("connect", {},
                                      sqlite3.OperationalError("unable to open database file"))

    calls["n"] = 0
    monkeypatch.setattr(sa.engine.Engine, "connect", unopenable)
    with pytest.raises(StoreError, match="cannot reach the results database"):
        store.Store(f"sqlite:///{tmp_path / 'other.db'}", write=True)
    assert calls["n"] == 1
