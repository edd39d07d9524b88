"""Engines for the bot's own database: SQLite by default, PostgreSQL when a URL says so.

SQLite gets WAL (readers never wait for the writer), foreign keys, a busy timeout, and SQLAlchemy
in charge of BEGIN: the `sqlite3` module's own transaction handling does not begin before reads,
and a write transaction must take the write lock at its start (`BEGIN IMMEDIATE`). Otherwise two
writers that both read first could only fail with "database is locked", where one should wait.
The writers of one process also queue for an in-process lock first: SQLite's own busy handler
waits by sleeping ever longer, and twenty members of a fleet writing at once spent most of their
time asleep (docs/benchmarks.md).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from bot.domain.errors import StoreUnavailable

DEFAULT_URL = "sqlite:///./var/bot.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Execution option that marks an engine whose transactions will write (see the module docstring).
WRITE_OPTION = "bot_writes"
_HOLDS_WRITERS = "bot_holds_writers"  # in a pooled connection's info: it holds the writers' lock


def store_url(url: str | URL | None = None) -> URL:
    """Parse a database URL, filling in the default and choosing psycopg 3 for PostgreSQL."""
    try:
        parsed = make_url(url or DEFAULT_URL)
    except ArgumentError as exc:
        # The text may hold a password, so it is not repeated.
        raise StoreUnavailable(
            "The database URL cannot be read: it should look like "
            "`postgresql://user:password@host/dbname` or `sqlite:///path/to/bot.db`."
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend in {"postgresql", "postgres"} and driver in {"", "psycopg"}:
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in {"", "pysqlite"}:
        return parsed
    raise StoreUnavailable(
        f"The database URL {masked(parsed)} is not supported: use PostgreSQL "
        "(`postgresql://...`, driven by psycopg 3) or SQLite (`sqlite:///path/to/bot.db`)."
    )


def masked(url: str | URL) -> str:
    """The URL as it may appear in messages and logs: the password replaced by `***`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unreadable database URL)"


def create_store_engine(url: str | URL | None = None) -> Engine:
    """An engine for `url` (default: SQLite at `./var/bot.db`, its folder created if missing)."""
    parsed = store_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed)
        # pre_ping: a connection kept across a database restart is replaced, not handed out dead.
        # hide_parameters: plans and outputs in statement parameters stay out of error messages.
        return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(
            f"The database {masked(parsed)} cannot be used: {describe(exc)}"
        ) from exc


def describe(exc: BaseException, url: str | URL | None = None) -> str:
    """The first line of a database error, with any password from `url` blanked out."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines() or [""]
    text = f"{type(cause).__name__}: {lines[0]}"
    password = make_url(url).password if url is not None else None
    if password:
        text = text.replace(str(password), "***")
    # Connection strings echoed by a driver: `password=...` and `user:password@`.
    text = re.sub(r"(password=)\S+", r"\1***", text, flags=re.IGNORECASE)
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # No pre-ping: a file has no server that could have dropped the connection, and the ping
    # would be one more statement before every transaction, the writers' included.
    engine = create_engine(url, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we send BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # FULL, not WAL's usual NORMAL: a step recorded as started must survive a power cut,
            # or recovery could not tell that the step may have run.
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    # Reentrant: a thread may open a second write transaction while it holds one.
    writers = threading.RLock()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        if not connection.get_execution_options().get(WRITE_OPTION, False):
            connection.exec_driver_sql("BEGIN")
            return
        writers.acquire()
        connection.info[_HOLDS_WRITERS] = True
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    # Released once the connection is back in the pool, after its COMMIT or ROLLBACK, or when it
    # is thrown away (its info then goes with it).
    @event.listens_for(engine.pool, "checkin")
    @event.listens_for(engine.pool, "invalidate")
    def _release(_dbapi_connection: Any, record: Any, *_exception: Any) -> None:
        if record is not None and record.info.pop(_HOLDS_WRITERS, False):
            writers.release()

    return engine
