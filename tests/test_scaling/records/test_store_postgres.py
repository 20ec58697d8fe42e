"""The results database on a real PostgreSQL server, which the tests start themselves
(`pg_server.py`); skipped, with the reason, where no PostgreSQL binaries exist."""

from __future__ import annotations

import pytest

from tests.support import store_cases as cases
from tests.support.pg_server import pg_url, postgres_server  # noqa: F401 (fixtures)
from scaling.records import store
from scaling.cli.main import main
from scaling.errors import StoreError

pytestmark = pytest.mark.postgres


def test_round_trip_equals_file_loader(pg_url, tmp_path):
    cases.check_round_trip(pg_url, tmp_path / "results")


def test_filters_match_the_file_loader_filtered(pg_url, tmp_path):
    cases.check_filters(pg_url, tmp_path / "results")


def test_double_upload_stores_once(pg_url, tmp_path):
    cases.check_double_upload(pg_url, tmp_path / "results", tmp_path)


def test_bad_files_are_skipped_by_name_and_the_rest_upload(pg_url, tmp_path, capsys):
    cases.check_bad_files_mixed(pg_url, tmp_path / "results", capsys)


def test_kill_mid_upload_leaves_no_partial_run(pg_url, tmp_path):
    cases.check_kill_mid_upload(pg_url, tmp_path / "results")


def test_the_same_run_from_two_nodes_at_once_is_stored_once(pg_url, tmp_path):
    cases.check_same_run_at_once(pg_url, tmp_path / "results")


def test_eight_concurrent_uploaders_on_an_empty_database(pg_url, tmp_path):
    # The tables do not exist yet: the eight also race to create the schema.
    cases.check_concurrent_uploaders(pg_url, tmp_path / "results")


def test_password_from_pgpassword(postgres_server, tmp_path, monkeypatch):
    db = postgres_server.create_database()
    cases.three_runs(tmp_path)
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    report = store.upload_files([tmp_path], postgres_server.url(db, password=False))
    assert report.count(store.UPLOADED) == 3


def test_password_from_pgpass_file(postgres_server, tmp_path, monkeypatch):
    db = postgres_server.create_database()
    cases.three_runs(tmp_path / "results")
    pgpass = tmp_path / ".pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres_server.port}:{db}:flopcast:"
                      f"{postgres_server.password}\n")
    pgpass.chmod(0o600)  # libpq ignores a password file others can read
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    url = postgres_server.url(db, password=False)
    assert store.upload_files([tmp_path / "results"], url).count(store.UPLOADED) == 3
    assert len(store.read_records(url)) == 10


def test_passwords_never_printed(postgres_server, tmp_path, capsys, monkeypatch):
    db = postgres_server.create_database()
    cases.three_runs(tmp_path)
    good = postgres_server.url(db)
    wrong = good.replace(postgres_server.password, "wrong-pw-123")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(StoreError) as caught:
        store.upload_files([tmp_path], wrong)
    assert "password authentication failed" in str(caught.value)
    assert "wrong-pw-123" not in str(caught.value)

    assert main(["upload", str(tmp_path), "--to", good]) == 0
    assert main(["upload", str(tmp_path), "--to", good, "--json"]) == 0
    assert main(["results", "--from", good]) == 0
    assert main(["upload", str(tmp_path), "--to", wrong]) == 2
    out, err = capsys.readouterr()
    assert "already present" in out and "Runs in postgresql://flopcast:***@127.0.0.1" in out
    for secret in (postgres_server.password, "wrong-pw-123"):
        assert secret not in out and secret not in err
