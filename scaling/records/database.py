"""Reaching a results database: its URL, its password, its connection and its locks.

A results database is addressed by a URL. ``sqlite:///results/flopcast.db`` (the default) is
one file and needs no server; ``postgresql://USER@HOST:PORT/DB`` is a shared server, reached
through SQLAlchemy and psycopg 3. A bare path means an SQLite file.

Passwords come from the URL, ``PGPASSWORD`` or ``~/.pgpass`` (libpq reads the last two itself)
and never appear in a message: `mask_url` is the only way a URL is shown, and `mask_text`
scrubs every spelling of a password from a driver's error before it is shown.

SQLite writers take the write lock up front (``BEGIN IMMEDIATE``) and wait for each other
(busy timeout, WAL journal); `retry` runs a transaction again while it fails on a lock or
serialisation conflict. What goes into the database and how it comes back out is
`scaling.records.store`.

SQLAlchemy is imported by the functions that need it, so that `flopcast upload --help` can
show `DEFAULT_URL` without loading it.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from scaling.errors import StoreError

if TYPE_CHECKING:
    import sqlalchemy as sa

DEFAULT_URL = "sqlite:///results/flopcast.db"

# --------------------------------------------------------------------------------------------
# URLs and secrets
# --------------------------------------------------------------------------------------------


# ``scheme://user:password@host...``, the password running to the *last* '@' of the URL, so
# that a raw '@' in a password (``u:p@ss@host``) is read, and masked, as part of it.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][\w+.-]*://[^:/@\s]*):(?P<password>\S*)@")
# ``password=...`` as a URL query parameter or a libpq key=value conninfo entry, quoted or not.
_PASSWORD_PARAM = re.compile(r"(?i)(?P<head>\bpassword\s*=\s*)"
                             r"(?P<password>'(?:\\.|[^'\\])*'|[^&\s'\"]+)")

# A libpq key=value connection string (``host=db password=... dbname=x``).
_CONNINFO = re.compile(r"(?i)\b(host|hostaddr|port|dbname|user|password|sslmode)\s*=")


def _quote_raw_at(text: str) -> str:
    """``u:p@ss@host`` with the password's raw '@' percent-encoded, so that the URL parser takes
    the last '@' as the end of the credentials (as a user who typed it meant)."""
    match = _USERINFO.match(text)
    if not match or "@" not in match["password"]:
        return text
    return (f"{match['head']}:{match['password'].replace('@', '%40')}@"
            + text[match.end():])


def _given_url(url: str | sa.URL | None) -> sa.URL:
    """The URL as the user wrote it, parsed; a bare path means an SQLite file."""
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    if isinstance(url, sa.URL):
        return url
    text = str(url or DEFAULT_URL)
    if "://" not in text:
        if _CONNINFO.search(text):
            raise StoreError(f"'{mask_text(text)}' is a libpq key=value string; flopcast takes "
                             "a URL: postgresql://USER@HOST:PORT/DB (the password from "
                             "PGPASSWORD or ~/.pgpass)")
        if ":" in text:
            # '::::' or 'host:5432/db' is a mistyped URL far more often than a file name.
            raise StoreError(f"'{mask_text(text)}' is neither a database URL nor a plain path; "
                             "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
        text = "sqlite:///" + text
    try:
        parsed = sa.make_url(_quote_raw_at(text))
    except (sa_exc.ArgumentError, ValueError):
        raise StoreError(f"'{mask_text(text)}' is not a database URL (is the port a "
                         "number?); use sqlite:///PATH or postgresql://USER@HOST:PORT/DB") from None
    return parsed


def parse_url(url: str | sa.URL | None) -> sa.URL:
    """A store URL as SQLAlchemy's URL, with its driver: ``postgresql://`` means psycopg 3."""
    parsed = _given_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite+pysqlite")
    raise StoreError(f"unsupported database '{parsed.drivername}' in "
                     f"{parsed.render_as_string(hide_password=True)}; use sqlite:///PATH or "
                     "postgresql://USER@HOST:PORT/DB")


def _secrets(url: str | sa.URL | None = None) -> list[str]:
    """Every spelling of a password that could end up in a message: ``PGPASSWORD``, and the
    URL's own (its credentials or its ``password=`` parameter), raw and percent-encoded."""
    found = [os.environ.get("PGPASSWORD") or ""]
    passwords = []
    if url is not None and not isinstance(url, str):
        passwords.append(str(url.password or ""))
        passwords += [str(v) for k, v in url.query.items() if k.lower() == "password"]
    elif url:
        passwords += [m["password"] for m in _USERINFO.finditer(url)]
        passwords += [m["password"].strip("'") for m in _PASSWORD_PARAM.finditer(url)]
    for password in filter(None, passwords):
        found += [password, unquote(password), quote(password, safe=""), quote(password)]
    return sorted({s for s in found if s}, key=len, reverse=True)


def mask_text(text: str, url: str | sa.URL | None = None) -> str:
    """``text`` with every password replaced by ``***``: the ``user:pass@`` part of any URL in
    it, any ``password=`` parameter or conninfo entry, ``PGPASSWORD``'s value, and every
    spelling of ``url``'s password. The one way anything that may hold a secret is shown."""
    text = _USERINFO.sub(r"\g<head>:***@", str(text))
    text = _PASSWORD_PARAM.sub(r"\g<head>***", text)
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def mask_url(url: str | sa.URL | None) -> str:
    """The URL as it may be shown: the password, if any, as ``***``."""
    try:
        parsed = _given_url(url)
    except StoreError:
        return mask_text(str(url))
    # Masked by its structure (credentials, password= parameters), not by searching the
    # password's text, which a short password would find inside the host or port.
    return mask_text(parsed.render_as_string(hide_password=True))


def describe_url(url: str | sa.URL | None) -> str:
    """The URL as it is shown to people: masked (`mask_url`), and for an SQLite file given
    by a relative path, with the absolute path it resolves to. SQLAlchemy reads
    ``sqlite:///tmp/x.db`` (three slashes) as the relative path ``tmp/x.db``, in the current
    folder, and ``sqlite:////tmp/x.db`` (four) as ``/tmp/x.db``; the resolved path shows
    which file is meant."""
    shown = mask_url(url)
    try:
        parsed = _given_url(url)
    except StoreError:
        return shown
    database = parsed.database
    if (parsed.drivername.startswith("sqlite") and database and database != ":memory:"
            and not database.startswith("file:") and not Path(database).is_absolute()):
        return f"{shown} (the file {Path(database).resolve()})"
    return shown


def one_line(exc: BaseException, url: sa.URL) -> str:
    """The driver's own reason for a failure, on one line, masked."""
    reason = getattr(exc, "orig", None) or exc
    return mask_text(" ".join(str(reason).split()), url) or type(reason).__name__


# --------------------------------------------------------------------------------------------
# Connecting
# --------------------------------------------------------------------------------------------

_BUSY_TIMEOUT_S = 60.0  # how long an SQLite writer waits for the lock before retrying
_RETRY_DEADLINE_S = 300.0


def sqlite_read_uri(path) -> str | None:
    """The ``file:`` URI a reader opens an SQLite database by when it cannot write the
    database's folder (None when it can: then it opens the file as a writer would, and
    tidies the ``-wal`` and ``-shm`` files away on closing). A reader of a WAL database needs
    those two files and creates them when they are missing, which a read-only folder forbids
    ("attempt to write a readonly database"). So the file is opened ``mode=ro``, and also
    ``immutable=1`` when there is no ``-wal`` file (no writer is active): that tells SQLite
    nothing can change the file, so it reads without them (https://www.sqlite.org/wal.html,
    "Read-Only Databases"; https://www.sqlite.org/uri.html). While a writer that may write
    the folder is active its ``-wal`` file exists, and ``mode=ro`` reads its commits."""
    path = Path(path).resolve()
    if os.access(path.parent, os.W_OK):
        return None
    query = "mode=ro" if Path(f"{path}-wal").exists() else "mode=ro&immutable=1"
    return f"{path.as_uri()}?{query}"


def _sqlite_engine(url: sa.URL, write: bool) -> sa.Engine:
    """An SQLite engine whose transactions start when SQLAlchemy begins them, with the write
    lock taken at BEGIN by writers. A reader that cannot write the database's folder opens
    the file read-only (`sqlite_read_uri`), so that it is still read."""
    import sqlalchemy as sa

    options = {}
    uri = None
    if not write and url.database and url.database != ":memory:":
        uri = sqlite_read_uri(url.database)
    if uri:
        options["creator"] = lambda: sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S)
    engine = sa.create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_S},
                              poolclass=sa.pool.NullPool, **options)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event below issue BEGIN, instead of pysqlite's own
        # deferred one (the SQLAlchemy documentation's recipe for pysqlite transactions).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if write:
            # WAL lets readers go on while one node writes; it stays set in the file.
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection):
        # A writer takes the write lock at BEGIN, so two writers never deadlock upgrading
        # read locks; the busy timeout makes the second wait.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def open_engine(url: sa.URL, write: bool) -> sa.Engine:
    """An engine for a parsed store URL; no connection is made yet."""
    import sqlalchemy as sa

    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, write)
    query = dict(url.query)
    connect_args = {} if "connect_timeout" in query else {"connect_timeout": 10}
    return sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)


def unreachable(url: sa.URL, shown: str, exc: BaseException) -> StoreError:
    """The error for a database that cannot be reached: where it was looked for, and why."""
    if url.get_backend_name() == "sqlite":
        where = url.database
    else:
        where = mask_text(f"host {url.host or 'localhost (socket)'}, port {url.port or 5432}",
                          url)
    return StoreError(f"cannot reach the results database {shown} ({where}): "
                      f"{one_line(exc, url)}")


def is_transient(exc: BaseException) -> bool:
    """A lock or serialisation conflict that goes away if the transaction is tried again."""
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).lower()
    if any(f"database {what}" in text for what in ("is locked", "is busy", "table is locked")):
        return True
    return getattr(orig, "sqlstate", None) in ("40001", "40P01")  # serialization, deadlock


def retry(fn, deadline_s: float = _RETRY_DEADLINE_S):
    """Run ``fn`` (one whole transaction) again, with jittered back-off, while it fails on a
    transient lock conflict."""
    from sqlalchemy import exc as sa_exc

    delay, start = 0.02, time.monotonic()
    while True:
        try:
            return fn()
        except sa_exc.DBAPIError as exc:
            if not is_transient(exc) or time.monotonic() - start > deadline_s:
                raise
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 1.0)
