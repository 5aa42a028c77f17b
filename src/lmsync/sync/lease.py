"""The account's sync lock as a lease with a fencing number, and the run's heartbeat.

One sync per account at a time: a run takes the lock on the account's ``lms_interfaces`` row
(owner, until, fence) with a conditional update, and a thread renews it while the run lives.
Each acquisition increments the fencing number. A process that was stopped or cut off long
enough for the lease to pass may find another process holding the lock with a newer number:
it must then stop writing. So the run checks its claim before each batch of LMS writes (a local
deadline, which also covers a process frozen by SIGSTOP: the monotonic clock keeps running) and
before recording each batch (the fenced renewal, inside the recording transaction, so the row
lock taken by that update keeps the claim valid until the batch commits).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.errors import Conflict
from lmsync.i18n import N_
from lmsync.storage.tables import LmsInterface, SyncRun, table_of, utcnow

# Also the message of the run it stops (English; ``sync.reasons.stored`` says it again).
LOST = N_("this server lost the account's sync lock; it stops writing")

log = structlog.get_logger("lmsync.sync")

INTERFACES, RUNS = table_of(LmsInterface), table_of(SyncRun)


class LeaseLost(Conflict):
    """This process no longer holds the account's sync lock: it must not write any more."""


@dataclass
class Claim:
    """A held lock: who, which fencing number, for which run, valid until when (monotonic)."""

    account_id: str
    owner: str
    fence: int
    lease: timedelta
    run_id: str | None = None
    valid_until: float = 0.0
    lost: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the claim is certainly still ours (before an LMS write)."""
        if self.lost.is_set() or time.monotonic() >= self.valid_until:
            self.lost.set()
            raise LeaseLost(LOST)

    def renew(self, connection: Connection) -> None:
        """Extend the lease, only if the lock still carries our owner and fencing number;
        otherwise mark the claim lost and raise ``LeaseLost``. Runs inside the caller's
        transaction: on PostgreSQL the updated row stays locked until it commits."""
        started = time.monotonic()
        now = utcnow()
        result = connection.execute(
            update(INTERFACES)
            .where(
                INTERFACES.c.account_id == self.account_id,
                INTERFACES.c.lock_owner == self.owner,
                INTERFACES.c.lock_fence == self.fence,
            )
            .values(lock_until=now + self.lease)
        )
        if not result.rowcount:
            self.lost.set()
            raise LeaseLost(LOST)
        # A third of the lease is kept as a margin for clock drift between servers.
        self.valid_until = max(self.valid_until, started + self.lease.total_seconds() * 2 / 3)
        if self.run_id is not None:
            connection.execute(
                update(RUNS)
                .where(RUNS.c.id == self.run_id, RUNS.c.owner == self.owner)
                .values(heartbeat_at=now)
            )


def acquire(
    sessions: sessionmaker[Session], account_id: str, owner: str, lease: timedelta
) -> Claim | None:
    """Take the account's lock if it is free or its lease has passed; None when it is held."""
    started = time.monotonic()
    now = utcnow()
    with sessions() as session, session.begin():
        result = session.execute(
            update(LmsInterface)
            .where(
                LmsInterface.account_id == account_id,
                (LmsInterface.lock_owner.is_(None)) | (LmsInterface.lock_until < now),
            )
            .values(
                lock_owner=owner,
                lock_until=now + lease,
                lock_fence=LmsInterface.lock_fence + 1,
            )
        )
        if not getattr(result, "rowcount", 0):
            return None
        fence = session.scalar(
            select(LmsInterface.lock_fence).where(LmsInterface.account_id == account_id)
        )
    claim = Claim(account_id, owner, int(fence or 0), lease)
    claim.valid_until = started + lease.total_seconds() * 2 / 3
    return claim


def release(sessions: sessionmaker[Session], claim: Claim) -> None:
    with sessions() as session, session.begin():
        session.execute(
            update(LmsInterface)
            .where(
                LmsInterface.account_id == claim.account_id,
                LmsInterface.lock_owner == claim.owner,
                LmsInterface.lock_fence == claim.fence,
            )
            .values(lock_owner=None, lock_until=None)
        )


def keep_renewed(sessions: sessionmaker[Session], claim: Claim, stop: threading.Event) -> None:
    """Renew the claim every third of the lease until ``stop``; a database hiccup is retried at
    the next tick (the local deadline stops the writes if it lasts); a lost claim ends it."""
    while not stop.wait(claim.lease.total_seconds() / 3):
        try:
            with sessions() as session, session.begin():
                claim.renew(session.connection())
        except LeaseLost:
            log.warning("sync lock lost", account_id=claim.account_id, run_id=claim.run_id)
            return
        except Exception:
            log.warning("sync lease renewal failed", account_id=claim.account_id, exc_info=True)
