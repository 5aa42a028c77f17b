"""Creating engines and sessions for SQLite (default) or PostgreSQL."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson
import structlog
from sqlalchemy import Engine, create_engine, event, make_url, update
from sqlalchemy.orm import Session, sessionmaker

log = structlog.get_logger("lmsync.storage")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# The JSON columns hold small dicts read and written by the thousand in a sync run.
_JSON = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def _private_sqlite_file(url: str) -> None:
    """Make the SQLite file readable by its owner only (0600) before SQLite opens it.

    It holds personal data and password hashes. SQLite creates its -wal, -shm and -journal
    files with the database file's own permissions, so they follow. A file wider than 0600
    (one made before this rule) is narrowed, with a warning.
    """
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    if parsed.query.get("uri") or parsed.query.get("mode") == "memory":
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite reports the missing directory when it connects
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        file = path.with_name(path.name + suffix)
        try:
            if stat.S_IMODE(file.stat().st_mode) & 0o077:
                file.chmod(0o600)
                log.warning("narrowed a database file to mode 0600", path=str(file))
        except FileNotFoundError:
            continue
        except PermissionError:  # another user's file: say so, SQLite decides whether it opens
            log.warning("database file is accessible to other users; chmod 600 it", path=str(file))


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout."""
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgres://")
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **_JSON
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, **_JSON)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def lock_row(session: Session, column: Any, key: str) -> None:
    """Serialize a check-then-write on one row inside the caller's transaction: a no-op update
    of ``column`` (the row's key) takes the row lock on PostgreSQL and the write lock on SQLite,
    and what is read after it is what the previous holder committed."""
    table = column.table
    # Columns with an onupdate (updated_at) are set to themselves too: the lock changes nothing.
    unchanged = {c.key: c for c in table.c if c.onupdate is not None or c is column}
    session.execute(update(table).where(column == key).values(unchanged))
