"""The deactivation guard: too many deactivations within a sliding window wait for approval.

It counts across runs, not per run, so a stream of small change runs (terminations arriving one
API call at a time) cannot walk around it: the deactivations carried out in the window (approved
ones included) plus those a run plans are compared with the users linked at the window's start.
While a run is held, further deactivations join its held set instead of going through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lmsync.i18n import N_
from lmsync.storage.tables import LmsLink, SyncOutcome, SyncRun

# The guard's word, kept as the run's message (English; ``sync.reasons.stored`` says it again).
JOINED = N_("{count} deactivations joined the ones waiting for an HR manager's approval")
ABOVE_THRESHOLD = N_(
    "{planned} deactivations planned and {done} carried out in the last {minutes} minutes, above "
    "the safety threshold of {threshold}: waiting for an HR manager's approval"
)


@dataclass(frozen=True)
class GuardSettings:
    percent: int  # of the users linked at the window's start
    minimum: int  # never hold below this many
    window: timedelta


@dataclass(frozen=True)
class WindowState:
    """What the database says about the window: deactivations done, active links, open hold."""

    done: int
    linked_active: int
    open_hold: str | None  # the id of a run still waiting for approval


@dataclass(frozen=True)
class GuardDecision:
    hold: bool
    join: str | None  # a held run to join instead of holding in this run
    threshold: int
    message: str


def decide(settings: GuardSettings, window: WindowState, planned: int) -> GuardDecision:
    """Whether ``planned`` deactivations may go through now (pure)."""
    linked_at_start = window.linked_active + window.done
    threshold = max(settings.minimum, math.ceil(linked_at_start * settings.percent / 100))
    minutes = int(settings.window.total_seconds() // 60)
    if planned == 0:
        return GuardDecision(False, None, threshold, "")
    if window.open_hold is not None:
        return GuardDecision(
            True,
            window.open_hold,
            threshold,
            JOINED.format(count=planned),
        )
    if window.done + planned > threshold:
        return GuardDecision(
            True,
            None,
            threshold,
            ABOVE_THRESHOLD.format(
                planned=planned, done=window.done, minutes=minutes, threshold=threshold
            ),
        )
    return GuardDecision(False, None, threshold, "")


def read_window(session: Session, account_id: str, since: datetime) -> WindowState:
    done = session.scalar(
        select(func.count())
        .select_from(SyncOutcome)
        .where(
            SyncOutcome.account_id == account_id,
            SyncOutcome.action == "deactivate",
            SyncOutcome.outcome == "done",
            SyncOutcome.at >= since,
        )
    )
    linked = session.scalar(
        select(func.count())
        .select_from(LmsLink)
        .where(LmsLink.account_id == account_id, LmsLink.lms_active.is_(True))
    )
    hold = session.scalar(
        select(SyncRun.id)
        .where(SyncRun.account_id == account_id, SyncRun.status == "held")
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    )
    return WindowState(int(done or 0), int(linked or 0), hold)


def held_employee_ids(session: Session, run_id: str) -> list[str]:
    """The employees whose deactivation a held run holds (each once)."""
    rows = session.scalars(
        select(SyncOutcome.employee_id)
        .where(SyncOutcome.run_id == run_id, SyncOutcome.outcome == "held")
        .distinct()
    )
    return sorted(rows)
