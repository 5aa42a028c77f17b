"""The in-process triggers: due employees within seconds, and an hourly full pass per account.

One background thread. ``wake()`` (called after an HR change commits) makes it look at once;
otherwise it looks every ``poll_seconds``, or sooner when an employee becomes due before that (a
termination that takes effect at the end of the last day worked). Accounts are spread over the
hour by their interface's ``minute_of_hour``. An hourly pass reads only what changed (the due
employees, and the LMS users modified since the previous pass); once a day, at the interface's
``sweep_hour`` in the account's time zone, it is a full sweep that reads everyone. With
"automatic transfer at each hour" off, it leaves the account alone: only a manual sync writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.errors import Conflict
from lmsync.storage.tables import Account, LmsInterface, utcnow
from lmsync.sync.engine import RunOptions, SyncEngine, has_ready_work, next_due

log = structlog.get_logger("lmsync.worker")


def next_full_pass(
    last: datetime | None, minute_of_hour: int, activated: datetime | None
) -> datetime:
    """The first time at ``minute_of_hour`` at least 30 minutes after the last full pass."""
    base = last or activated or utcnow()
    candidate = base.replace(minute=minute_of_hour % 60, second=0, microsecond=0)
    while candidate < base + timedelta(minutes=30):
        candidate += timedelta(hours=1)
    return candidate


def next_sweep(
    last: datetime | None, sweep_hour: int, minute_of_hour: int, timezone: str
) -> datetime:
    """When the daily full sweep is due: the first ``sweep_hour:minute_of_hour`` of the
    account's time zone at least 30 minutes after the last sweep; at once when there was none."""
    if last is None:
        return datetime.min.replace(tzinfo=UTC)
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    after = (last + timedelta(minutes=30)).astimezone(zone)
    candidate = after.replace(hour=sweep_hour % 24, minute=minute_of_hour % 60, second=0)
    candidate = candidate.replace(microsecond=0, fold=0)  # a repeated hour: its first time
    # Compared in UTC: aware times of one zone compare by wall clock, blind to a repeated hour.
    if candidate.astimezone(UTC) < after.astimezone(UTC):
        candidate += timedelta(days=1)  # same wall-clock time the next day (DST included)
    return candidate.astimezone(UTC)


def hourly_options(row: Any, now: datetime) -> RunOptions:
    """The hourly pass of an ``automatic_interfaces()`` row: a full sweep when the daily one is
    due, or when nothing tells what changed in the LMS since a known time; else incremental."""
    sweep = now >= next_sweep(row.last_sweep_at, row.sweep_hour, row.minute_of_hour, row.timezone)
    unknown = row.lms_changes_since is None and row.modified_filter is not False
    if sweep or unknown:
        return RunOptions(trigger="hourly", full=True)
    return RunOptions(trigger="hourly", incremental=True)


def automatic_interfaces() -> Select[
    str,
    datetime | None,
    int,
    datetime | None,
    datetime | None,
    int,
    datetime | None,
    bool | None,
    str,
]:
    """The interfaces synchronized without a click (active, automatic transfer each hour on,
    the account's user synchronization enabled): account, last hourly pass, minute, activation,
    and what ``hourly_options`` reads."""
    return (
        select(
            LmsInterface.account_id,
            LmsInterface.last_full_pass_at,
            LmsInterface.minute_of_hour,
            LmsInterface.activated_at,
            LmsInterface.last_sweep_at,
            LmsInterface.sweep_hour,
            LmsInterface.lms_changes_since,
            LmsInterface.modified_filter,
            Account.timezone,
        )
        .join(Account, Account.id == LmsInterface.account_id)
        .where(
            LmsInterface.active.is_(True),
            LmsInterface.hourly_transfer.is_(True),
            Account.user_sync_enabled.is_(True),
        )
    )


class SyncWorker:
    def __init__(
        self,
        engine: SyncEngine,
        sessions: sessionmaker[Session],
        *,
        poll_seconds: float = 2.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.poll_seconds = poll_seconds
        self.clock = clock or engine.clock
        self._next_due: datetime | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lmsync-sync-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except Exception:  # the worker must survive anything one account does
                log.exception("sync worker tick failed")
            self._wake.wait(self._pause())

    def _pause(self) -> float:
        """Seconds until the next look: the poll interval, or less when something falls due."""
        if self._next_due is None:
            return self.poll_seconds
        until = (self._next_due - self.clock()).total_seconds()
        return min(self.poll_seconds, max(until, 0.0))

    def tick(self) -> int:
        """Run what is due now; returns how many runs were started."""
        now = self.clock()
        with self.sessions() as session:
            rows = session.execute(automatic_interfaces()).all()
            work = [
                (
                    row.account_id,
                    has_ready_work(session, row.account_id, now),
                    hourly_options(row, now)
                    if now
                    >= next_full_pass(row.last_full_pass_at, row.minute_of_hour, row.activated_at)
                    else None,
                )
                for row in rows
            ]

        started = 0
        for account_id, due, hourly in work:
            if self._stop.is_set():
                break
            for options in (RunOptions(trigger="change") if due else None, hourly):
                if options is None:
                    continue
                try:
                    self.engine.run(account_id, options)
                    started += 1
                except Conflict:
                    log.info("sync busy; will look again", account_id=account_id)
        self._next_due = self._earliest_due([account_id for account_id, _, _ in work])
        return started

    def _earliest_due(self, account_ids: list[str]) -> datetime | None:
        """After the runs (which move a leaving employee's due time to the end of their last
        day): the earliest time an employee of these accounts falls due."""
        now = self.clock()
        with self.sessions() as session:
            upcoming = [next_due(session, account_id, now) for account_id in account_ids]
        return min((at for at in upcoming if at is not None), default=None)
