"""Sync work as procrastinate jobs on PostgreSQL: what the web tier defers, in its transaction.

Two procrastinate apps register the same tasks (``tasks.register``): the *defer* app, on a sync
connector, defers on the caller's own connection (the job commits or rolls back with the HR
change, and the app's pool is never opened); the *worker* app, on the async connector, runs them
(``worker.py``). One app cannot do both (an opened async connector refuses sync defers).

Job kinds and their locks, per account ``A`` (every kind holds ``lock=account:A``, so two workers
never sync one account at once, and the highest priority waiting goes first):

- ``lmsync.sync_deactivate``: the account's terminations in effect, and nothing else.
  ``queueing_lock=deactivate:A``, priority 20, on the ``deactivate`` queue that every worker
  process also serves with a lane of its own (``worker.py``): a termination never waits for a
  free slot behind other accounts' long runs.
- ``lmsync.sync_due``: the account's due work, in slices (``runner.py``). ``queueing_lock=due:A``
  (a burst of changes collapses into one waiting job), priority 10.
- ``lmsync.sync_pass``: the hourly full pass. ``queueing_lock=pass:A``, priority 0, so that due
  work of any account goes first.
- ``lmsync.run_queued``: a run an HR manager asked for (activation, Sync now), whose row is
  already ``queued``: priority 5, ``queueing_lock=run:<run id>``. An approval (held
  deactivations) goes to the ``deactivate`` queue with priority 20.
- ``lmsync.wake_at``: defers ``sync_deactivate`` (or ``sync_due``) at a given time (a termination
  taking effect at the end of the last day worked). No lock: a job scheduled later would hold
  back every job of its lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import make_url, text
from sqlalchemy.orm import Session

QUEUE = "sync"
DEACTIVATE_QUEUE = "deactivate"  # served by every worker's own lane as well
DEACTIVATE_TASK = "lmsync.sync_deactivate"
DUE_TASK = "lmsync.sync_due"
PASS_TASK = "lmsync.sync_pass"  # noqa: S105 - a task name
WAKE_TASK = "lmsync.wake_at"
RUN_TASK = "lmsync.run_queued"
TICK_TASK = "lmsync.hourly_tick"
STALLED_TASK = "lmsync.retry_stalled_jobs"
DEACTIVATE_PRIORITY = 20
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

    def _defer(
        self, session: Session, task: str, args: dict[str, Any], queue: str, **options: Any
    ) -> bool:
        """Defer once; False when a job with the same queueing lock is already waiting (that
        job will see this transaction's work: it has not started yet)."""
        try:
            with session.begin_nested():  # a refused insert must not poison the transaction
                # Asked for inside the savepoint: SQLAlchemy emits SAVEPOINT lazily.
                raw = session.connection().connection.driver_connection
                self.app.configure_task(task, connection=raw, queue=queue, **options).defer(**args)
        except AlreadyEnqueued:
            return False
        return True

    def _defer_each(
        self,
        session: Session,
        account_ids: Iterable[str],
        task: str,
        kind: str,
        priority: int,
        queue: str = QUEUE,
    ) -> None:
        for account_id in sorted(account_ids):
            self._defer(
                session,
                task,
                {"account_id": account_id},
                queue,
                queueing_lock=f"{kind}:{account_id}",
                lock=f"account:{account_id}",
                priority=priority,
            )

    def waiting(self, session: Session, kind: str, account_id: str) -> bool:
        """Whether the account's job of this kind (``deactivate``, ``due``...) waits to start."""
        found = session.execute(
            text(
                "SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = :lock AND status = 'todo'"
            ),
            {"lock": f"{kind}:{account_id}"},
        ).first()
        return found is not None

    def changed(self, session: Session, due: set[str], terminations: set[str]) -> None:
        """What an HR transaction made due (``due_hook``): terminations get their own job."""
        self.deactivate(session, terminations)
        self.due(session, due)

    def deactivate(self, session: Session, account_ids: Iterable[str]) -> None:
        self._defer_each(
            session,
            account_ids,
            DEACTIVATE_TASK,
            "deactivate",
            DEACTIVATE_PRIORITY,
            DEACTIVATE_QUEUE,
        )

    def due(self, session: Session, account_ids: Iterable[str]) -> None:
        self._defer_each(session, account_ids, DUE_TASK, "due", DUE_PRIORITY)

    def full_pass(self, session: Session, account_ids: Iterable[str]) -> None:
        self._defer_each(session, account_ids, PASS_TASK, "pass", PASS_PRIORITY)

    def run_queued(self, session: Session, account_id: str, run_id: str, trigger: str) -> None:
        """The job of a queued run; one only while it waits (recovery, finding the run's
        heartbeat old because it waits behind a long run, submits it again)."""
        approval = trigger == "approval"  # held deactivations: they go first
        self._defer(
            session,
            RUN_TASK,
            {"account_id": account_id, "run_id": run_id},
            DEACTIVATE_QUEUE if approval else QUEUE,
            queueing_lock=f"run:{run_id}",
            lock=f"account:{account_id}",
            priority=DEACTIVATE_PRIORITY if approval else RUN_PRIORITY,
        )

    def wake_at(
        self, session: Session, account_id: str, at: datetime, *, termination: bool = False
    ) -> None:
        """At ``at``, defer the account's deactivation job (``termination``) or its due job."""
        self._defer(
            session,
            WAKE_TASK,
            {"account_id": account_id, "termination": termination},
            DEACTIVATE_QUEUE if termination else QUEUE,
            queueing_lock=f"wake:{account_id}:{termination:d}:{at.timestamp():.6f}",
            schedule_at=at,
            priority=DEACTIVATE_PRIORITY if termination else DUE_PRIORITY,
        )


def defer_app(database_url: str) -> procrastinate.App:
    """The app the web tier (and the worker, for follow-up jobs) defers with: its pool is never
    opened, every defer passes the caller's connection."""
    from lmsync.jobs.tasks import register

    app = procrastinate.App(
        connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo(database_url))
    )
    register(app)
    return app
