"""No database password is ever printed, in any spelling libpq accepts (credentials in the
URL, a raw '@' in them, a ``password=`` query parameter, a key=value conninfo string,
PGPASSWORD) and on any output path (error lines, the upload summary, --json, the benchmark
plugin's --upload warning). PostgreSQL cases run against the suite's real server."""

import json
import uuid
from urllib.parse import quote

import pytest

from bench import plugin
from scaling.records import database
from scaling.cli.main import main
from tests.support.pg_server import ROLE, free_port, pg_url, postgres_server  # noqa: F401 (fixtures)
from tests.support.records_factory import write_run

SECRET = "Qz7-s3cret-pw"


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out + err


def query_url(pg_url, password):
    """The suite's URL with the password moved from the credentials to ``?password=``."""
    head, _, rest = pg_url.partition("://")
    auth, _, host_db = rest.partition("@")
    return f"{head}://{auth.partition(':')[0]}@{host_db}?password={quote(password, safe='')}"


# -- the masking function itself --------------------------------------------------------------


@pytest.mark.parametrize("text", [
    f"postgresql://u:{SECRET}@h:5432/db",
    f"postgresql://u:ab@{SECRET}@h:5432/db",           # a raw '@' in the password
    f"postgresql://u@h:5432/db?password={SECRET}&sslmode=disable",
    f"postgresql://u@h/db?sslmode=disable&PASSWORD={SECRET}",
    f"host=h port=5432 password={SECRET} dbname=x",   # libpq key=value conninfo
    f"host=h password = '{SECRET} with space' dbname=x",
])
def test_mask_text_hides_every_spelling(text):
    shown = database.mask_text(f"failed: {text} (again)")
    assert SECRET not in shown and "***" in shown
    assert database.mask_url(text) != text and SECRET not in database.mask_url(text)


def test_a_raw_at_in_the_password_does_not_become_the_host():
    url = database.parse_url(f"postgresql://u:ab@{SECRET}@db.example:5432/x")
    assert url.host == "db.example" and url.password == f"ab@{SECRET}"
    assert database.mask_url(f"postgresql://u:ab@{SECRET}@db.example:5432/x") == \
        "postgresql://u:***@db.example:5432/x"


def test_pgpassword_echoed_by_a_driver_is_masked(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", SECRET)
    assert database.mask_text(f"password {SECRET} rejected") == "password *** rejected"


def test_a_conninfo_string_is_refused_masked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a bare path's SQLite file would go
    write_run(tmp_path / "res")
    code, shown = cli(capsys, "upload", tmp_path / "res", "--to",
                      f"host=127.0.0.1 password={SECRET} dbname=x")
    assert code == 2 and "key=value" in shown and SECRET not in shown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


# -- every output path, against the real server ------------------------------------------------


@pytest.mark.postgres
def test_query_password_upload_summary_and_json(pg_url, postgres_server, tmp_path, capsys):
    url = query_url(pg_url, postgres_server.password)
    write_run(tmp_path / "res")
    code, shown = cli(capsys, "upload", tmp_path / "res", "--to", url)
    assert code == 0, shown
    assert "1 uploaded" in shown and postgres_server.password not in shown
    assert "password=***" in shown
    write_run(tmp_path / "more")
    code, shown = cli(capsys, "upload", tmp_path / "more", "--to", url, "--json")
    assert code == 0, shown
    assert postgres_server.password not in shown
    assert json.loads(shown)["url"].endswith("password=***")
    code, shown = cli(capsys, "results", "--from", url)
    assert code == 0 and postgres_server.password not in shown


@pytest.mark.postgres
def test_query_password_error_lines(pg_url, postgres_server, capsys):
    wrong = query_url(pg_url, SECRET)  # the server refuses this password
    code, shown = cli(capsys, "results", "--from", wrong)
    assert code == 2 and "cannot reach" in shown and SECRET not in shown
    missing = query_url(pg_url.rsplit("/", 1)[0] + "/no_such_db", postgres_server.password)
    code, shown = cli(capsys, "upload", "--to", missing)
    assert code == 2 and postgres_server.password not in shown


@pytest.mark.postgres
def test_a_raw_at_password_connects_and_is_masked(postgres_server, tmp_path, capsys):
    role, password = f"r_{uuid.uuid4().hex[:8]}", f"ab@{SECRET}/x"
    postgres_server.admin(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    name = postgres_server.create_database()
    postgres_server.admin(f"GRANT ALL ON DATABASE {name} TO {role}")
    postgres_server.admin(f"ALTER DATABASE {name} OWNER TO {role}")
    url = f"postgresql://{role}:{password}@127.0.0.1:{postgres_server.port}/{name}"
    write_run(tmp_path / "res")
    code, shown = cli(capsys, "upload", tmp_path / "res", "--to", url, "--json")
    assert code == 0, shown
    assert SECRET not in shown and "ab@" not in shown
    wrong = url.replace(SECRET, "nope")
    code, shown = cli(capsys, "results", "--from", wrong)
    assert code == 2 and "nope" not in shown and SECRET not in shown and "ab@" not in shown


@pytest.mark.parametrize("spelling", ["query", "credentials", "raw-at"])
def test_plugin_upload_warning_is_masked(spelling, tmp_path):
    path = write_run(tmp_path / "res")
    port = free_port()  # nothing listens there: the upload fails and the plugin warns
    url = {"query": f"postgresql://{ROLE}@127.0.0.1:{port}/x?password={SECRET}",
           "credentials": f"postgresql://{ROLE}:{SECRET}@127.0.0.1:{port}/x",
           "raw-at": f"postgresql://{ROLE}:ab@{SECRET}@127.0.0.1:{port}/x"}[spelling]
    said = []
    plugin._upload(path, url, lambda line, **_: said.append(line))
    assert len(said) == 1 and "failed" in said[0] and "safe" in said[0]
    assert SECRET not in said[0]
