"""What an HR manager must see at a glance: the LMS connection's health, the employees by LMS
state, the runs waiting for approval, the last runs; and the alerts (banners, emails) that say
what needs them and what to do.

Health is read from the runs themselves (no probe): the last run that reached the LMS
(succeeded, partial, held: its writes or its reads went through) is the last successful contact;
failed runs after it mean the LMS fails, since the first of them. All queries are small (counts
and a few recent rows by the account's index) so that every page can afford the alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lmsync import i18n
from lmsync.hr.employees import status_condition
from lmsync.i18n import _, _n
from lmsync.storage.tables import (
    Account,
    Employee,
    LmsInterface,
    LmsLink,
    LmsState,
    SyncRun,
    UnlinkedLmsUser,
)
from lmsync.sync.service import LMS_STATES, lms_state_column

# Runs whose LMS calls went through (some of them at least).
_REACHED = ("succeeded", "partial", "held", "approved")
DEFAULT_DOWN_MINUTES = 15


@dataclass(frozen=True)
class Health:
    last_success_at: datetime | None  # when the last run that reached the LMS ended
    failing_since: datetime | None  # the first failed run after it started
    last_error: str | None  # the last failed run's message
    down: bool  # failing for longer than the threshold


@dataclass(frozen=True)
class RunLine:
    id: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    message: str | None
    counts: dict[str, int]
    dry_run: bool = False
    full: bool = False
    progress_done: int = 0
    progress_total: int = 0
    approved_run_id: str | None = None


@dataclass(frozen=True)
class Alert:
    kind: str  # held | lms_down | conflicts
    message: str
    action: str
    url: str


@dataclass
class Overview:
    configured: bool
    active: bool
    connector: str | None
    health: Health
    counts: dict[str, int]  # employees by LMS state, plus to_create and leaving_soon
    held_runs: list[RunLine] = field(default_factory=list)
    last_runs: list[RunLine] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    unlinked: int = 0  # LMS users linked to no employee at the last full pass


def _line(run: SyncRun) -> RunLine:
    return RunLine(
        run.id,
        run.trigger,
        run.status,
        run.started_at,
        run.finished_at,
        run.message,
        dict(run.counts or {}),
        bool(run.dry_run),
        bool(run.full),
        run.progress_done or 0,
        run.progress_total or 0,
        run.approved_run_id,
    )


def health(session: Session, account_id: str, now: datetime, down_after: timedelta) -> Health:
    real = (SyncRun.account_id == account_id, SyncRun.dry_run.is_(False))
    last_success = session.scalar(
        select(func.max(SyncRun.finished_at)).where(*real, SyncRun.status.in_(_REACHED))
    )
    failed = [SyncRun.status == "failed", *real]
    if last_success is not None:
        failed.append(SyncRun.started_at > last_success)
    since = session.scalar(select(func.min(SyncRun.started_at)).where(*failed))
    message = None
    if since is not None:
        message = session.scalar(
            select(SyncRun.message).where(*failed).order_by(SyncRun.started_at.desc()).limit(1)
        )
    return Health(
        last_success_at=last_success,
        failing_since=since,
        last_error=message,
        down=since is not None and now - since >= down_after,
    )


def state_counts(session: Session, account_id: str, now: datetime) -> dict[str, int]:
    state = lms_state_column()
    rows = session.execute(
        select(state, func.count())
        .select_from(Employee)
        .outerjoin(LmsLink, LmsLink.employee_id == Employee.id)
        .outerjoin(LmsState, LmsState.employee_id == Employee.id)
        .where(Employee.account_id == account_id)
        .group_by(state)
    ).all()
    counts = dict.fromkeys(LMS_STATES, 0)
    counts.update({str(name): int(n) for name, n in rows})
    counts["to_create"] = int(
        session.scalar(
            select(func.count())
            .select_from(Employee)
            .outerjoin(LmsLink, LmsLink.employee_id == Employee.id)
            .outerjoin(LmsState, LmsState.employee_id == Employee.id)
            .where(
                Employee.account_id == account_id,
                state == "not_linked",
                status_condition("active", now),
                Employee.work_email_key.is_not(None),
            )
        )
        or 0
    )
    counts["leaving_soon"] = int(
        session.scalar(
            select(func.count())
            .select_from(Employee)
            .where(Employee.account_id == account_id, status_condition("leaving", now))
        )
        or 0
    )
    return counts


def held_runs(session: Session, account_id: str) -> list[RunLine]:
    runs = session.scalars(
        select(SyncRun)
        .where(SyncRun.account_id == account_id, SyncRun.status == "held")
        .order_by(SyncRun.started_at.desc())
        .limit(20)
    )
    return [_line(r) for r in runs]


def alerts(
    session: Session,
    account_id: str,
    now: datetime,
    down_after: timedelta = timedelta(minutes=DEFAULT_DOWN_MINUTES),
) -> list[Alert]:
    """What needs an HR manager now, each with the action to take (the banners)."""
    interface = session.get(LmsInterface, account_id)
    if interface is None:
        return []
    state = health(session, account_id, now, down_after) if interface.active else None
    return _alerts(session, account_id, held_runs(session, account_id), state)


def _moment(when: datetime, tz: str) -> str:
    """A moment of an alert, in the account's time zone and the current language."""
    return f"{i18n.format_datetime(when, tz)} ({tz})"


def _alerts(
    session: Session, account_id: str, held: list[RunLine], state: Health | None
) -> list[Alert]:
    """The alerts, from the held runs and the health (None: the interface is not active). Their
    texts are messages (``lmsync.i18n``): a page says them in its reader's language, their dates
    in the account's time zone."""
    out: list[Alert] = []
    tz = session.get_one(Account, account_id).timezone
    for run in held[:3]:
        count = run.counts.get("held", 0)
        when = _moment(run.started_at, tz)
        message = _n(
            "{count} deactivation of LMS users waits for approval (the deactivation guard "
            "held a run started {when}).",
            "{count} deactivations of LMS users wait for approval (the deactivation guard "
            "held a run started {when}).",
            count,
            count=i18n.format_number(count),
            when=when,
        )
        out.append(Alert("held", message, _("Review and approve or reject"), f"/sync/{run.id}"))
    if state is not None and state.down and state.failing_since is not None:
        out.append(
            Alert(
                "lms_down",
                _(
                    "The LMS has been failing since {when}: {error}.",
                    when=_moment(state.failing_since, tz),
                    error=state.last_error or _("the last runs failed"),
                ),
                _("Check the LMS settings and test the connection"),
                "/settings/interfaces/lms",
            )
        )
    conflicts = int(
        session.scalar(
            select(func.count())
            .select_from(LmsState)
            .where(LmsState.account_id == account_id, LmsState.outcome == "conflict")
        )
        or 0
    )
    if conflicts:
        message = _n(
            "{count} employee cannot be synchronized until someone settles a conflict (a "
            "shared email, or an LMS user that matches several people).",
            "{count} employees cannot be synchronized until someone settles a conflict (a "
            "shared email, or an LMS user that matches several people).",
            conflicts,
            count=i18n.format_number(conflicts),
        )
        out.append(
            Alert(
                "conflicts",
                message,
                _("See the employees in conflict"),
                "/employees?lms=conflict",
            )
        )
    return out


def overview(
    session: Session,
    account_id: str,
    now: datetime,
    down_after: timedelta = timedelta(minutes=DEFAULT_DOWN_MINUTES),
) -> Overview:
    interface = session.get(LmsInterface, account_id)
    last = session.scalars(
        select(SyncRun)
        .where(SyncRun.account_id == account_id)
        .order_by(SyncRun.started_at.desc())
        .limit(10)
    )
    state = health(session, account_id, now, down_after)
    held = held_runs(session, account_id)
    active = bool(interface and interface.active)
    return Overview(
        configured=interface is not None,
        active=active,
        connector=interface.connector if interface is not None else None,
        health=state,
        counts=state_counts(session, account_id, now),
        held_runs=held,
        last_runs=[_line(r) for r in last],
        alerts=_alerts(session, account_id, held, state if active else None)
        if interface is not None
        else [],
        unlinked=int(
            session.scalar(
                select(func.count())
                .select_from(UnlinkedLmsUser)
                .where(UnlinkedLmsUser.account_id == account_id)
            )
            or 0
        ),
    )
