"""Sync work as procrastinate jobs on PostgreSQL: what the web tier defers, in its transaction.

Two procrastinate apps register the same tasks (``tasks.register``): the *defer* app, on a sync
connector, defers on the caller's own connection (the job commits or rolls back with the HR
change, and the app's pool is never opened); the *worker* app, on the async connector, runs them
(``worker.py``). One app cannot do both (an opened async connector refuses sync defers).

Job kinds and their locks, per account ``A``:

- ``lmsync.sync_due``: the account's due work. ``queueing_lock=due:A`` (a burst of changes
  collapses into one waiting job), ``lock=account:A`` (two workers never sync one account at
  once), priority 10.
- ``lmsync.sync_pass``: the hourly full pass. ``queueing_lock=pass:A``, ``lock=account:A``,
  priority 0, so that due work of any account goes first.
- ``lmsync.run_queued``: a run an HR manager asked for (activation, Sync now, an approval),
  whose row is already ``queued``. ``lock=account:A``; priority 10 for an approval (held
  deactivations), 5 otherwise.
- ``lmsync.wake_at``: defers ``sync_due`` at a given time (a termination taking effect at the end
  of the last day worked). No lock: a job scheduled later would hold back every job of its lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker

from lmsync.storage.database import transaction

QUEUE = "sync"
DUE_TASK = "lmsync.sync_due"
PASS_TASK = "lmsync.sync_pass"  # noqa: S105 - a task name
WAKE_TASK = "lmsync.wake_at"
RUN_TASK = "lmsync.run_queued"
TICK_TASK = "lmsync.hourly_tick"
STALLED_TASK = "lmsync.retry_stalled_jobs"
DUE_PRIORITY = 10
RUN_PRIORITY = 5
PASS_PRIORITY = 0


def conninfo(database_url: str) -> str:
    """libpq's form of lmsync's SQLAlchemy URL (``postgresql+psycopg://`` → ``postgresql://``)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def is_postgres(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


class Deferrer:
    """Defers sync jobs on a SQLAlchemy session's connection, inside its transaction."""

    def __init__(self, app: procrastinate.App) -> None:
        self.app = app

    def _defer(self, session: Session, task: str, account_id: str, **options: Any) -> bool:
        """Defer once; False when a job with the same queueing lock is already waiting (that
        job will see this transaction's work: it has not started yet)."""
        try:
            with session.begin_nested():  # a refused insert must not poison the transaction
                # Asked for inside the savepoint: SQLAlchemy emits SAVEPOINT lazily.
                raw = session.connection().connection.driver_connection
                self.app.configure_task(task, connection=raw, queue=QUEUE, **options).defer(
                    account_id=account_id
                )
        except AlreadyEnqueued:
            return False
        return True

    def due(self, session: Session, account_ids: Iterable[str]) -> None:
        for account_id in sorted(account_ids):
            self._defer(
                session,
                DUE_TASK,
                account_id=account_id,
                queueing_lock=f"due:{account_id}",
                lock=f"account:{account_id}",
                priority=DUE_PRIORITY,
            )

    def full_pass(self, session: Session, account_ids: Iterable[str]) -> None:
        for account_id in sorted(account_ids):
            self._defer(
                session,
                PASS_TASK,
                account_id=account_id,
                queueing_lock=f"pass:{account_id}",
                lock=f"account:{account_id}",
                priority=PASS_PRIORITY,
            )

    def run_queued(self, session: Session, account_id: str, run_id: str, trigger: str) -> None:
        self.app.configure_task(
            RUN_TASK,
            connection=session.connection().connection.driver_connection,
            queue=QUEUE,
            lock=f"account:{account_id}",
            priority=DUE_PRIORITY if trigger == "approval" else RUN_PRIORITY,
        ).defer(account_id=account_id, run_id=run_id)

    def wake_at(self, session: Session, account_id: str, at: datetime) -> None:
        self._defer(
            session,
            WAKE_TASK,
            account_id=account_id,
            queueing_lock=f"wake:{account_id}:{at.timestamp():.6f}",
            schedule_at=at,
            priority=DUE_PRIORITY,
        )

    def due_now(self, sessions: sessionmaker[Session], account_ids: Iterable[str]) -> None:
        """``due`` in a transaction of its own."""
        with transaction(sessions) as session:
            self.due(session, account_ids)


def defer_app(database_url: str) -> procrastinate.App:
    """The app the web tier (and the worker, for follow-up jobs) defers with: its pool is never
    opened, every defer passes the caller's connection."""
    from lmsync.jobs.tasks import register

    app = procrastinate.App(
        connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo(database_url))
    )
    register(app)
    return app
