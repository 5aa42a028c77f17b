"""Runs whose server is gone: found by their stale heartbeat, ended or taken over.

A running run's heartbeat is renewed with the account's lease (see ``lease``); a queued run's by
the server whose pool holds it. When a heartbeat is older than ``stale``, that server stopped
(crashed, killed, cut off): a running run becomes ``interrupted`` (what it recorded stays; the
rest is still due, or is resumed by a new run when someone asked for it), and a queued run is
taken over by the server that noticed. Every change is a conditional update, so two servers
sweeping at once never both take the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from lmsync.i18n import N_
from lmsync.storage.tables import SyncRun

# Runs someone asked for: resumed by a new run when interrupted. Change runs and hourly passes
# need not be: their employees are still due, and the next pass comes anyway.
RESUMED_TRIGGERS = frozenset({"activation", "manual", "approval"})

# An interrupted run's message (English; ``sync.reasons.stored`` says it again).
INTERRUPTED_RESUMED = N_("interrupted: the server carrying it out stopped; resumed as run {run}")
INTERRUPTED_DUE = N_(
    "interrupted: the server carrying it out stopped; what it had not done yet is still due"
)


@dataclass(frozen=True)
class Swept:
    interrupted: list[str]
    resumed: list[str]  # new queued runs (owned by the sweeping server) for interrupted ones
    adopted: list[str]  # queued runs taken over by the sweeping server


def _stale(since: datetime) -> ColumnElement[bool]:
    return or_(
        SyncRun.heartbeat_at < since,
        SyncRun.heartbeat_at.is_(None) & (SyncRun.started_at < since),
    )


def heartbeat(
    sessions: sessionmaker[Session], owner: str, run_ids: list[str], now: datetime
) -> None:
    """This server still holds these queued runs."""
    if not run_ids:
        return
    with sessions() as session, session.begin():
        session.execute(
            update(SyncRun)
            .where(SyncRun.id.in_(run_ids), SyncRun.owner == owner, SyncRun.status == "queued")
            .values(heartbeat_at=now)
        )


def sweep(sessions: sessionmaker[Session], owner: str, now: datetime, stale: timedelta) -> Swept:
    since = now - stale
    interrupted: list[str] = []
    resumed: list[str] = []
    adopted: list[str] = []
    with sessions() as session:
        running = list(
            session.scalars(select(SyncRun.id).where(SyncRun.status == "running", _stale(since)))
        )
        queued = list(
            session.scalars(
                select(SyncRun.id)
                .where(SyncRun.status == "queued", _stale(since))
                .order_by(SyncRun.started_at)
            )
        )
    for run_id in running:
        with sessions() as session, session.begin():
            done = session.execute(
                update(SyncRun)
                .where(SyncRun.id == run_id, SyncRun.status == "running", _stale(since))
                .values(status="interrupted", finished_at=now)
            )
            if not getattr(done, "rowcount", 0):
                continue
            run = session.get_one(SyncRun, run_id)
            interrupted.append(run_id)
            if run.trigger in RESUMED_TRIGGERS and not run.dry_run:
                follow = SyncRun(
                    account_id=run.account_id,
                    trigger=run.trigger,
                    dry_run=False,
                    full=run.full,
                    status="queued",
                    # The activation made the interface active already: resume as a full pass.
                    options={**(run.options or {}), "activating": False},
                    approved_run_id=run.approved_run_id,
                    owner=owner,
                    heartbeat_at=now,
                    started_at=now,
                )
                session.add(follow)
                session.flush()
                resumed.append(follow.id)
                run.message = INTERRUPTED_RESUMED.format(run=follow.id)
            else:
                run.message = INTERRUPTED_DUE
    for run_id in queued:
        with sessions() as session, session.begin():
            taken = session.execute(
                update(SyncRun)
                .where(SyncRun.id == run_id, SyncRun.status == "queued", _stale(since))
                .values(owner=owner, heartbeat_at=now)
            )
            if getattr(taken, "rowcount", 0):
                adopted.append(run_id)
    return Swept(interrupted, resumed, adopted)
