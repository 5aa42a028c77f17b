"""Large CSV imports, carried out in the background in chunks that commit in order.

The file waits in its ``employee_imports`` row until the import ends. Each chunk of rows is one
short transaction (each row in a savepoint, as in ``csv_import``) that also advances the row's
progress, heartbeat and report, so ``done_rows`` always says exactly how far the import got. A
process that stops gracefully hands its import back to the queue; one that died leaves a
heartbeat that goes stale, and whichever process looks next takes the import over (a
conditional update, so only one can) and resumes it at ``done_rows``. A dry run writes no
employees, so it simply starts again from the first row.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Engine, and_, func, literal, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, defer, sessionmaker

from lmsync.domain.errors import Conflict, NotFound, ValidationFailed
from lmsync.hr import accounts, csv_import
from lmsync.hr.csv_import import ImportReport, RejectedRow
from lmsync.hr.principal import Principal
from lmsync.i18n import _
from lmsync.storage.database import lock_row, transaction
from lmsync.storage.tables import Account, EmployeeImport, table_of, utcnow

log = structlog.get_logger("lmsync.imports")

SYNC_ROWS = 1_000  # files up to this many rows are imported within the request
CHUNK_ROWS = 500  # rows a transaction
REPORT_LIMIT = 1_000  # rejected rows kept with their messages; rejected_count counts them all
STALE_AFTER = timedelta(seconds=60)  # a heartbeat this old: the import's process is gone
SWEEP_SECONDS = 15.0  # an idle runner looks for queued and abandoned imports this often
# SQLite has one writer and its busy handler polls for the lock every 100 ms at most: a pause
# this long between chunks lets every waiting writer (another account's hire) in.
SQLITE_PAUSE = 0.1
UNFINISHED = ("queued", "running")

IMPORTS = table_of(EmployeeImport)


class ImportLost(Exception):
    """Another process took this import over (or it was deleted): this one stops at once."""


@dataclass(frozen=True)
class ChunkDone:
    """A committed chunk: how far the import is, and that chunk's own report."""

    import_id: str
    done_rows: int
    total_rows: int
    report: ImportReport


def new_owner() -> str:
    """A name for this process's runner, unique per start (shown in the row for diagnosis)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# -- creating and reading --------------------------------------------------------------------
def queue(
    session: Session,
    principal: Principal | None,
    account_id: str,
    content: bytes,
    *,
    total_rows: int,
    dry_run: bool,
    owner: str | None = None,
) -> EmployeeImport:
    """Record an import of a file already checked by ``csv_import.count_rows``. Without an
    ``owner`` it is queued for any runner; with one it is that runner's from the start."""
    now = utcnow()
    row = EmployeeImport(
        account_id=account_id,
        actor_user_id=principal.user_id if principal else None,
        dry_run=dry_run,
        status="running" if owner else "queued",
        content=content,
        total_rows=total_rows,
        done_rows=0,
        imported_count=0,
        rejected_count=0,
        report={"rejected": []},
        owner=owner,
        heartbeat_at=now,
        created_at=now,
        started_at=now if owner else None,
    )
    session.add(row)
    session.flush()
    return row


def ensure_none_unfinished(session: Session, account_id: str) -> None:
    """One import at a time per account: a client cannot fill the queue (and the database) with
    files, and other accounts' imports wait behind at most one of this account's."""
    # Serialize the check-then-queue of one account (a row lock on PostgreSQL, the write lock
    # on SQLite): two requests at once must not both find nothing unfinished.
    lock_row(session, Account.id, account_id)
    busy = session.scalar(
        select(IMPORTS.c.id)
        .where(IMPORTS.c.account_id == account_id, IMPORTS.c.status.in_(UNFINISHED))
        .limit(1)
    )
    if busy is not None:
        follow = f"/api/v1/employees/imports/{busy}"
        raise Conflict(
            _(
                "import {id} of this account is not finished yet; follow {path} and send this "
                "file when it has finished",
                id=busy,
                path=follow,
            )
        )


def get_import(session: Session, account_id: str, import_id: str) -> EmployeeImport:
    row = session.get(EmployeeImport, import_id, options=[defer(EmployeeImport.content)])
    if row is None or row.account_id != account_id:
        raise NotFound(_("import not found"))
    return row


def list_imports(
    session: Session, account_id: str, *, limit: int, offset: int
) -> tuple[list[EmployeeImport], int]:
    """The account's imports, newest first, without their files and reports."""
    query = select(EmployeeImport).where(EmployeeImport.account_id == account_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(defer(EmployeeImport.content), defer(EmployeeImport.report))
        .order_by(EmployeeImport.created_at.desc(), EmployeeImport.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def rejected_rows(row: EmployeeImport) -> list[dict[str, Any]]:
    """The rejected rows kept in the report (at most ``REPORT_LIMIT``)."""
    rejected: list[dict[str, Any]] = (row.report or {}).get("rejected", [])
    return rejected


# -- claiming ---------------------------------------------------------------------------------
def _claimable(stale_after: timedelta) -> ColumnElement[bool]:
    cutoff = utcnow() - stale_after
    return and_(
        IMPORTS.c.status.in_(UNFINISHED),
        or_(
            IMPORTS.c.owner.is_(None),
            IMPORTS.c.heartbeat_at.is_(None),
            IMPORTS.c.heartbeat_at < cutoff,
        ),
    )


def claim_next(
    sessions: sessionmaker[Session], owner: str, stale_after: timedelta = STALE_AFTER
) -> str | None:
    """Take the oldest import that is queued or whose runner's heartbeat is stale; its id."""
    for _attempt in range(3):  # another process may win the row between the look and the update
        with transaction(sessions) as session:
            # SKIP LOCKED (PostgreSQL): a row in the middle of a live chunk is not a candidate.
            import_id = session.scalar(
                select(IMPORTS.c.id)
                .where(_claimable(stale_after))
                .order_by(IMPORTS.c.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if import_id is None:
                return None
            now = utcnow()
            claimed = session.connection().execute(
                update(IMPORTS)
                .where(IMPORTS.c.id == import_id, _claimable(stale_after))
                .values(
                    status="running",
                    owner=owner,
                    heartbeat_at=now,
                    started_at=func.coalesce(
                        IMPORTS.c.started_at, literal(now, IMPORTS.c.started_at.type)
                    ),
                )
            )
            if claimed.rowcount == 1:
                return str(import_id)
    return None


def _fenced(session: Session, import_id: str, runner: str, done: int, **values: Any) -> None:
    """Update the row only while this runner owns it at ``done`` rows; else ``ImportLost``.
    The first statement of each chunk's transaction: it takes the row's lock (and SQLite's
    write lock) until the chunk commits, so no takeover can slip in between."""
    result = session.connection().execute(
        update(IMPORTS)
        .where(
            IMPORTS.c.id == import_id,
            IMPORTS.c.owner == runner,
            IMPORTS.c.status == "running",
            IMPORTS.c.done_rows == done,
        )
        .values(heartbeat_at=utcnow(), **values)
    )
    if result.rowcount != 1:
        raise ImportLost(import_id)


def _end(
    sessions: sessionmaker[Session], import_id: str, owner: str, status: str, message: str
) -> None:
    now = utcnow()
    with transaction(sessions) as session:
        session.execute(
            update(IMPORTS)
            .where(IMPORTS.c.id == import_id, IMPORTS.c.owner == owner)
            .values(status=status, message=message, content=None, finished_at=now, heartbeat_at=now)
        )


def _principal(row: EmployeeImport) -> Principal | None:
    # hire() records who acted; the request that queued the import was authorized for it.
    if row.actor_user_id is None:
        return None
    return Principal(
        user_id=row.actor_user_id,
        email="",
        is_operator=False,
        account_id=row.account_id,
        role="MHR",
    )


def _rejected_json(row: RejectedRow) -> dict[str, Any]:
    return {
        "line": row.line,
        "employee_number": row.employee_number,
        "errors": [{"field": e.field, "message": e.message} for e in row.errors],
    }


def _chunks(
    rows: Iterator[tuple[int, dict[str, str]]], size: int
) -> Iterator[list[tuple[int, dict[str, str]]]]:
    while chunk := list(islice(rows, size)):
        yield chunk


# -- running ----------------------------------------------------------------------------------
def run_import(
    sessions: sessionmaker[Session],
    import_id: str,
    owner: str,
    *,
    chunk_rows: int = CHUNK_ROWS,
    pause: float = 0.0,
    on_chunk: Callable[[ChunkDone], None] | None = None,
    stop: threading.Event | None = None,
) -> str:
    """Carry out an import claimed by ``owner``, from its ``done_rows``, one transaction a chunk.

    Returns the status it leaves: ``succeeded``, ``failed``, ``queued`` (handed back because
    ``stop`` was set), ``running`` (the database failed: the heartbeat goes stale and a runner
    resumes it later) or ``lost`` (another runner has it). Ctrl-C (the CLI) marks it
    ``interrupted``: the rows committed so far stay imported.
    """
    with sessions() as session:
        row = session.get(EmployeeImport, import_id)
        if row is None or row.owner != owner or row.status != "running" or row.content is None:
            return "lost"
        session.expunge(row)
    account_id, dry_run, total = row.account_id, row.dry_run, row.total_rows
    principal = _principal(row)
    done = row.done_rows
    kept = rejected_rows(row)
    bound = log.bind(account_id=account_id, import_id=import_id, dry_run=dry_run)
    try:
        if dry_run and done:
            # A dry run's duplicate check needs the numbers of every earlier row: start over.
            with transaction(sessions) as session:
                _fenced(
                    session,
                    import_id,
                    owner,
                    done,
                    done_rows=0,
                    imported_count=0,
                    rejected_count=0,
                    report={"rejected": []},
                )
            done, kept = 0, []
        seen: set[str] = set()
        rows = islice(csv_import.iter_rows(row.content), done, None)
        for n, chunk in enumerate(_chunks(rows, chunk_rows)):
            if n and pause:
                if stop is not None:
                    stop.wait(pause)
                else:
                    time.sleep(pause)
            if stop is not None and stop.is_set():
                with transaction(sessions) as session:
                    _fenced(session, import_id, owner, done, status="queued", owner=None)
                return "queued"
            with transaction(sessions) as session:
                _fenced(session, import_id, owner, done)
                report = csv_import.import_rows(
                    session, principal, account_id, chunk, dry_run=dry_run, seen=seen
                )
                values: dict[str, Any] = {
                    "done_rows": done + len(chunk),
                    "imported_count": IMPORTS.c.imported_count + len(report.imported),
                    "rejected_count": IMPORTS.c.rejected_count + len(report.rejected),
                    "heartbeat_at": utcnow(),  # the fence's own is as old as the chunk
                }
                room = REPORT_LIMIT - len(kept)
                more = [_rejected_json(r) for r in report.rejected[: max(room, 0)]]
                if more:
                    values["report"] = {"rejected": kept + more}
                session.execute(update(IMPORTS).where(IMPORTS.c.id == import_id).values(values))
            kept = kept + more
            done += len(chunk)
            if on_chunk is not None:
                on_chunk(ChunkDone(import_id, done, total, report))
        with transaction(sessions) as session:
            _fenced(
                session,
                import_id,
                owner,
                done,
                status="succeeded",
                content=None,
                finished_at=utcnow(),
            )
    except ImportLost:
        bound.warning("import taken over by another runner; this one stops", done_rows=done)
        return "lost"
    except OperationalError:
        bound.exception("database unavailable during an import; it will be resumed")
        return "running"
    except ValidationFailed as exc:
        _end(sessions, import_id, owner, "failed", "; ".join(e.message for e in exc.errors))
        return "failed"
    except Exception:
        bound.exception("import failed", done_rows=done)
        verb = "checked" if dry_run else "imported"
        _end(
            sessions,
            import_id,
            owner,
            "failed",
            f"stopped by an internal error after {done} of {total} rows ({verb}); "
            "the rest were not",
        )
        return "failed"
    except KeyboardInterrupt:
        verb = "checked" if dry_run else "imported"
        _end(
            sessions,
            import_id,
            owner,
            "interrupted",
            f"interrupted after {done} of {total} rows; those were {verb}, the rest were not",
        )
        raise
    return "succeeded"


def run_in_foreground(
    sessions: sessionmaker[Session],
    principal: Principal | None,
    account_id: str,
    content: bytes,
    *,
    on_chunk: Callable[[ChunkDone], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> EmployeeImport:
    """A real import in the caller's thread (the CLI), recorded and chunked like the others:
    its transactions stay short, and a server resumes it if this process dies. Returns the
    finished row; an unreadable file raises ``ValidationFailed`` before anything is written."""
    total = csv_import.count_rows(content)
    owner = new_owner()
    with transaction(sessions) as session:
        accounts.get_account(session, account_id)
        import_id = queue(
            session, principal, account_id, content, total_rows=total, dry_run=False, owner=owner
        ).id
    run_import(sessions, import_id, owner, chunk_rows=chunk_rows, on_chunk=on_chunk)
    with sessions() as session:
        return get_import(session, account_id, import_id)


def _is_sqlite(sessions: sessionmaker[Session]) -> bool:
    bind = sessions.kw.get("bind")
    return not isinstance(bind, Engine) or bind.dialect.name == "sqlite"


class ImportService:
    """The background runners: a thread or two that take queued (or abandoned) imports from the
    database, oldest first, and carry them out. ``wake()`` after queueing one."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        on_change: Callable[[], None] | None = None,
        threads: int | None = None,
        chunk_rows: int = CHUNK_ROWS,
        pause: float | None = None,
        stale_after: timedelta = STALE_AFTER,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        sqlite = _is_sqlite(sessions)
        self.sessions = sessions
        self.on_change = on_change
        # SQLite: one runner, so that two imports never queue for its single writer together.
        self.threads = threads or (1 if sqlite else 2)
        self.chunk_rows = chunk_rows
        self.pause = pause if pause is not None else (SQLITE_PAUSE if sqlite else 0.0)
        self.stale_after = stale_after
        self.sweep_seconds = sweep_seconds
        self.owner = new_owner()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._runners: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.threads):
            runner = threading.Thread(target=self._loop, name=f"lmsync-import-{n}", daemon=True)
            runner.start()
            self._runners.append(runner)

    def stop(self, timeout: float = 30.0) -> None:
        """Hand running imports back to the queue at their next chunk and wait for the runners."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for runner in self._runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        self._runners.clear()

    def wake(self) -> None:
        self._wake.set()

    def run_next(self) -> bool:
        """Claim and carry out one import; False when there was none to take."""
        import_id = claim_next(self.sessions, self.owner, self.stale_after)
        if import_id is None:
            return False
        log.info("import claimed", import_id=import_id, owner=self.owner)
        status = run_import(
            self.sessions,
            import_id,
            self.owner,
            chunk_rows=self.chunk_rows,
            pause=self.pause,
            on_chunk=self._chunk_done,
            stop=self._stop,
        )
        log.info("import left", import_id=import_id, status=status)
        return True

    def _chunk_done(self, chunk: ChunkDone) -> None:
        if self.on_change is not None and chunk.report.imported and not chunk.report.dry_run:
            self.on_change()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                while not self._stop.is_set() and self.run_next():
                    pass
            except Exception:  # a runner must survive anything one import does
                log.exception("import runner failed; it will look again")
            self._wake.wait(self.sweep_seconds)
