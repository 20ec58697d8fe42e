"""Results shared by a team: files readable as the umask allows, a database read from a folder
the reader cannot write, and a relative SQLite URL shown with the file it names."""

import os
import stat
import tempfile
from pathlib import Path

import pytest

from bench.records import atomic_write_text
from scaling.cli.main import main
from scaling.records import store
from scaling.records.database import describe_url
from tests.support.records_factory import write_run

NOBODY = 65534  # the conventional uid/gid of the unprivileged user "nobody"


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_results_files_get_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
        with open(tmp_path / "plain.txt", "w") as f:  # what open() gives, for reference
            f.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "r.json").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def _read_as(uid, url):
    """``read_records(url)`` in a child process running as ``uid`` (root ignores file modes,
    so a read-only folder is only read-only to another user); the count or the error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            message = str(len(store.read_records(url)))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            message = f"{type(exc).__name__}: {exc}"
        os.write(w, message.encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        return f.read()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_database_in_a_read_only_folder_can_be_read():
    root = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path is closed to other users
    try:
        os.chmod(root, 0o755)
        write_run(root / "res")
        folder = root / "db"
        folder.mkdir()
        url = f"sqlite:///{folder}/x.db"
        assert store.upload_files(root / "res", url).ok
        assert len(store.read_records(url)) == 2  # the writer closed: no -wal file is left
        os.chmod(folder / "x.db", 0o644)
        os.chmod(folder, 0o555)
        reader = NOBODY if os.geteuid() == 0 else None
        assert _read_as(reader, url) == "2"
        assert sorted(p.name for p in folder.iterdir()) == ["x.db"]  # nothing written
    finally:
        os.chmod(root / "db", 0o755)
        for p in sorted(root.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        root.rmdir()


def test_a_relative_sqlite_url_is_shown_with_its_absolute_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "res")
    # Three slashes: SQLAlchemy reads tmp/x.db relative to the current folder.
    assert describe_url("sqlite:///tmp/x.db") == \
        f"sqlite:///tmp/x.db (the file {tmp_path / 'tmp' / 'x.db'})"
    assert describe_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"  # absolute already
    assert describe_url("postgresql://u:secret@db/x") == "postgresql://u:***@db/x"
    assert main(["upload", str(tmp_path / "res"), "--to", "sqlite:///tmp/x.db"]) == 0
    out, _ = capsys.readouterr()
    assert f"(the file {tmp_path / 'tmp' / 'x.db'})" in out
    assert main(["results", "--from", "sqlite:///nope/x.db"]) == 2
    _, err = capsys.readouterr()
    assert f"(the file {tmp_path / 'nope' / 'x.db'})" in err
