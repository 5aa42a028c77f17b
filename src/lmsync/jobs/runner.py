"""What a sync job does, in the worker process: run the engine for one account, re-defer when
the account is busy, and schedule the wake-up of its next scheduled termination."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.errors import Conflict
from lmsync.jobs.queue import Deferrer
from lmsync.storage.database import transaction
from lmsync.storage.tables import Account, LmsInterface, SyncRun, utcnow
from lmsync.sync.engine import (
    RunOptions,
    RunSummary,
    RunTakenOver,
    SyncEngine,
    has_ready_work,
    next_due,
)
from lmsync.sync.worker import automatic_interfaces, hourly_options, next_full_pass

log = structlog.get_logger("lmsync.jobs")

BUSY_RETRY = timedelta(seconds=1)
# Employees a due job takes at most: a bulk edit of 20,000 is 10 jobs, and the account's
# terminations and other accounts' due work go between them.
DUE_SLICE = 2000


class JobRunner:
    def __init__(
        self, engine: SyncEngine, sessions: sessionmaker[Session], deferrer: Deferrer
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.deferrer = deferrer

    def _automatic(self, session: Session, account_id: str) -> LmsInterface | None:
        """The account's interface when automatic sync applies to it (active, hourly transfer
        on, user synchronization enabled); None otherwise: only a manual sync writes then."""
        return session.scalar(
            select(LmsInterface)
            .join(Account, Account.id == LmsInterface.account_id)
            .where(
                LmsInterface.account_id == account_id,
                LmsInterface.active.is_(True),
                LmsInterface.hourly_transfer.is_(True),
                Account.user_sync_enabled.is_(True),
            )
        )

    def deactivate(self, account_id: str) -> None:
        """The account's terminations in effect, alone: a run that deactivates them without
        waiting for the rest of its due work."""
        self._due_run(account_id, terminations_only=True)

    def due(self, account_id: str) -> None:
        """The account's due work, ``DUE_SLICE`` employees a job: between two slices, the
        account's terminations (higher priority, same lock) and other accounts' due work get
        their turn."""
        self._due_run(account_id, terminations_only=False)

    def _due_run(self, account_id: str, *, terminations_only: bool) -> None:
        now = self.engine.clock()
        with self.sessions() as session:
            ready = self._automatic(session, account_id) is not None and has_ready_work(
                session, account_id, now, terminations_only=terminations_only
            )
        if ready:
            options = RunOptions(
                trigger="change",
                terminations_only=terminations_only,
                limit=DUE_SLICE,
                yield_to=None if terminations_only else self._termination_waits(account_id),
            )
            summary = self._run(account_id, options, termination=terminations_only)
            if summary is None:
                return
            if summary.more:  # the next slice, queued behind what waits now
                self.wake(account_id, termination=terminations_only)
        self._schedule_next(account_id)

    def full_pass(self, account_id: str) -> None:
        """The account's hourly pass (incremental, or the daily full sweep)."""
        now = self.engine.clock()
        with self.sessions() as session:
            row = session.execute(
                automatic_interfaces().where(LmsInterface.account_id == account_id)
            ).first()
            due = row is not None and now >= next_full_pass(
                row.last_full_pass_at, row.minute_of_hour, row.activated_at
            )
        if due:  # a second pass job (two ticks, two workers) finds the pass done: nothing
            self._run(account_id, hourly_options(row, now))
            self._schedule_next(account_id)

    def run_queued(self, account_id: str, run_id: str) -> None:
        """Carry out a run asked for by an HR manager; one no longer queued (carried out by a
        twin job, or ended by recovery) is left alone."""
        with self.sessions() as session:
            run = session.get(SyncRun, run_id)
            if run is None or run.status != "queued":
                return
            options = RunOptions.from_run(run)
        options.run_id = run_id
        if options.trigger == "activation":  # what it leaves is still due: a due job follows
            options.yield_to = self._termination_waits(account_id)
        try:
            summary = self.engine.run(account_id, options)
        except RunTakenOver:
            return
        except Conflict:  # the account's lease is held elsewhere: again in a moment
            log.info("sync busy; run deferred again", account_id=account_id, run_id=run_id)
            time.sleep(BUSY_RETRY.total_seconds())
            with transaction(self.sessions) as session:
                self.deferrer.run_queued(session, account_id, run_id, options.trigger)
            return
        if summary.more:  # a yielded activation: due jobs carry out the rest
            self.wake(account_id)
        self._schedule_next(account_id)

    def _termination_waits(self, account_id: str) -> Callable[[], bool]:
        """For a long run of this account: whether its termination job waits behind it."""

        def waits() -> bool:
            with self.sessions() as session:
                return self.deferrer.waiting(session, "deactivate", account_id)

        return waits

    def wake(self, account_id: str, *, termination: bool = False) -> None:
        """Defer the account's deactivation job (``termination``) or its due job, now."""
        with transaction(self.sessions) as session:
            if termination:
                self.deferrer.deactivate(session, [account_id])
            else:
                self.deferrer.due(session, [account_id])

    def tick(self, now: datetime) -> None:
        """Each minute: defer the full passes whose time has come (never queued twice)."""
        with self.sessions() as session:
            query = automatic_interfaces().where(LmsInterface.minute_of_hour == now.minute)
            rows = session.execute(query).all()
        due = [
            row.account_id
            for row in rows
            if now >= next_full_pass(row.last_full_pass_at, row.minute_of_hour, row.activated_at)
        ]
        if due:
            with transaction(self.sessions) as session:
                self.deferrer.full_pass(session, due)

    def _run(
        self, account_id: str, options: RunOptions, *, termination: bool = False
    ) -> RunSummary | None:
        """Run; when another server holds the account (a manual run), try again shortly."""
        try:
            return self.engine.run(account_id, options)
        except Conflict:
            log.info("sync busy; deferred again", account_id=account_id)
            with transaction(self.sessions) as session:
                self.deferrer.wake_at(
                    session, account_id, utcnow() + BUSY_RETRY, termination=termination
                )
            return None

    def _schedule_next(self, account_id: str) -> None:
        """A termination taking effect later (the end of a last day worked): wake then. Only
        a termination is due in the future (other changes are due at once)."""
        with transaction(self.sessions) as session:
            now = self.engine.clock()
            at = next_due(session, account_id, now)
            if at is not None:  # the queue schedules on the database's (real) clock
                self.deferrer.wake_at(session, account_id, utcnow() + (at - now), termination=True)
