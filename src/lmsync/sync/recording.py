"""Keeping what a sync run did: links, per-employee states, outcomes, due markers and run counts.

A batch of results is written in one transaction with a few Core statements (multi-row inserts,
executemany updates), compared against the run's snapshot rather than re-read: no ORM object is
built per employee, and an employee whose state does not change costs no write at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.engine import Connection

from lmsync.lms.base import ConflictError, LmsError, TransientError
from lmsync.storage.bulk import insert_rows
from lmsync.storage.tables import (
    Employee,
    LmsLink,
    LmsState,
    SyncOutcome,
    SyncRun,
    table_of,
)
from lmsync.sync.mapping import shown
from lmsync.sync.rules import Action, EmployeeView, Kind
from lmsync.sync.snapshot import EmployeeRecord, LinkRecord, StateRecord

RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
)


@dataclass(slots=True)
class Planned:
    """One employee of a run: what was read, and the action the rules chose."""

    employee: EmployeeRecord
    view: EmployeeView
    link: LinkRecord | None
    state: StateRecord | None
    action: Action


@dataclass(slots=True)
class Result:
    """What carrying out a planned action gave."""

    planned: Planned
    outcome: str  # done | failed | none | held
    action: str
    reason: str = ""
    lms_user_id: str | None = None
    made_by: str | None = None
    lms_active: bool | None = None
    written: dict[str, Any] | None = None
    drop_link: bool = False
    error: LmsError | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


EMPLOYEES, LINKS, STATES = table_of(Employee), table_of(LmsLink), table_of(LmsState)
RUNS, OUTCOMES = table_of(SyncRun), table_of(SyncOutcome)

_UPDATE_LINK = (
    LINKS.update()
    .where(LINKS.c.employee_id == bindparam("key_employee_id"))
    .values(
        lms_user_id=bindparam("lms_user_id"),
        made_by=bindparam("made_by"),
        lms_active=bindparam("lms_active"),
        written=bindparam("written"),
        linked_at=bindparam("linked_at"),
        synced_at=bindparam("synced_at"),
    )
)
# Compare-and-clear: a change made while the run worked moved the employee's due time, so the
# employee stays due. An employee leaving later becomes due again when the termination takes
# effect. (One statement per row: a row-value IN list makes PostgreSQL scan.)
_CLEAR_DUE = (
    EMPLOYEES.update()
    .where(EMPLOYEES.c.id == bindparam("key_id"), EMPLOYEES.c.lms_due_at == bindparam("seen"))
    .values(lms_due_at=bindparam("next"))
)
# A transient failure of an employee that was not due (a correction an hourly pass found): due
# from now on, so that the due runs try it again after the retry delay.
_MAKE_DUE = (
    EMPLOYEES.update()
    .where(
        EMPLOYEES.c.id == bindparam("key_id"),
        or_(EMPLOYEES.c.lms_due_at.is_(None), EMPLOYEES.c.lms_due_at > bindparam("at")),
    )
    .values(lms_due_at=bindparam("at"))
)
_STATE_FIELDS = (
    "action",
    "outcome",
    "reason",
    "attempts",
    "next_attempt_at",
    "rejected_record_at",
    "run_id",
    "at",
)
_UPDATE_STATE = (
    STATES.update()
    .where(STATES.c.employee_id == bindparam("key_employee_id"))
    .values({name: bindparam(name) for name in _STATE_FIELDS})
)


@dataclass
class _Batch:
    link_inserts: list[dict[str, Any]]
    link_updates: list[dict[str, Any]]
    link_deletes: list[str]
    state_inserts: list[dict[str, Any]]
    state_updates: list[dict[str, Any]]
    cleared: list[dict[str, Any]]
    made_due: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    counts: dict[str, int]


def record_batch(
    connection: Connection,
    run_id: str,
    account_id: str,
    results: list[Result],
    done: int,
    total: int,
    now: datetime,
) -> None:
    """Write one batch of results and the run's progress, inside the caller's transaction."""
    batch = _Batch([], [], [], [], [], [], [], [], {})
    for result in results:
        _link_change(batch, account_id, result, now)
        _state_change(batch, account_id, run_id, result, now)
        if _worth_an_outcome(result):
            conflict = isinstance(result.error, ConflictError)  # shown as the plan's conflicts
            batch.outcomes.append(
                _outcome_row(
                    run_id,
                    account_id,
                    now,
                    employee_id=result.planned.employee.id,
                    action="conflict" if conflict else result.action,
                    outcome="none" if conflict else result.outcome,
                    reason=result.reason,
                    lms_user_id=result.lms_user_id,
                    before=result.before,
                    after=result.after,
                )
            )
    counts = connection.execute(select(RUNS.c.counts).where(RUNS.c.id == run_id)).scalar_one()
    merged = dict(counts or {})
    for key, value in batch.counts.items():
        merged[key] = merged.get(key, 0) + value
    connection.execute(
        RUNS.update()
        .where(RUNS.c.id == run_id)
        .values(counts=merged, progress_done=done, progress_total=total)
    )
    if batch.link_deletes:
        connection.execute(LINKS.delete().where(LINKS.c.employee_id.in_(batch.link_deletes)))
    if batch.link_updates:
        connection.execute(_UPDATE_LINK, batch.link_updates)
    insert_rows(connection, LINKS, batch.link_inserts)
    if batch.state_updates:
        connection.execute(_UPDATE_STATE, batch.state_updates)
    insert_rows(connection, STATES, batch.state_inserts)
    if batch.cleared:
        connection.execute(_CLEAR_DUE, batch.cleared)
    if batch.made_due:
        connection.execute(_MAKE_DUE, batch.made_due)
    insert_rows(connection, OUTCOMES, batch.outcomes)


def record_plan(
    connection: Connection,
    run_id: str,
    account_id: str,
    planned: list[Planned],
    outcome: str,
    now: datetime,
    create_only: Mapping[str, Any] | None = None,
) -> None:
    """Keep a plan that was not carried out (a dry run, or a run held by the guard). A planned
    creation shows every field it would write, the create-only ones (``create_only``) included,
    as the outcome of the real creation does."""
    extra = shown(create_only or {})
    rows = [
        _outcome_row(
            run_id,
            account_id,
            now,
            employee_id=item.employee.id,
            action=str(item.action.kind),
            outcome=outcome,
            reason=item.action.reason,
            lms_user_id=item.action.lms_user_id or (item.link.lms_user_id if item.link else None),
            before=None,
            after=(
                {**item.action.changes, **extra}
                if item.action.kind == Kind.CREATE
                else dict(item.action.changes)
            )
            or None,
        )
        for item in planned
    ]
    insert_rows(connection, OUTCOMES, rows)


def _link_change(batch: _Batch, account_id: str, result: Result, now: datetime) -> None:
    link = result.planned.link
    keeps = keeps_link(result)
    employee_id = result.planned.employee.id
    if link is not None and result.drop_link and not keeps:
        batch.link_deletes.append(employee_id)
        return
    refresh = result.planned.action.refresh
    if link is not None and refresh is not None and result.outcome == "none":
        batch.link_updates.append(
            {
                "key_employee_id": employee_id,
                "lms_user_id": link.lms_user_id,
                "made_by": link.made_by,
                "linked_at": link.linked_at,
                "lms_active": refresh.lms_active,
                "written": link.written if refresh.written is None else dict(refresh.written),
                "synced_at": now,
            }
        )
        return
    if not keeps:
        return
    if link is None:
        batch.link_inserts.append(
            {
                "employee_id": employee_id,
                "account_id": account_id,
                "lms_user_id": result.lms_user_id,
                "made_by": result.made_by or "matched",
                "lms_active": bool(result.lms_active),
                "written": result.written or {},
                "linked_at": now,
                "synced_at": now,
            }
        )
        return
    relinked = link.lms_user_id != result.lms_user_id  # the linked user was gone
    batch.link_updates.append(
        {
            "key_employee_id": employee_id,
            "lms_user_id": result.lms_user_id,
            "made_by": (result.made_by or "matched") if relinked else link.made_by,
            "lms_active": bool(result.lms_active),
            "written": result.written if result.written is not None else link.written,
            "linked_at": now if relinked else link.linked_at,
            "synced_at": now,
        }
    )


def _state_change(
    batch: _Batch, account_id: str, run_id: str, result: Result, now: datetime
) -> None:
    item = result.planned
    state = item.state
    key = "excluded" if item.view.excluded else result.action
    # A no-op after a success leaves the row alone: the employee file keeps showing the last
    # thing lmsync did (the next action is computed live), and an hourly pass costs no write.
    unchanged = result.outcome == "none" and state is not None and state.outcome == "ok"
    clear = True
    if unchanged:
        batch.counts[key] = batch.counts.get(key, 0) + 1
        _clear(batch, item, clear)
        return
    values: dict[str, Any] = {
        "action": result.action,
        "reason": result.reason,
        "run_id": run_id,
        "at": now,
        "attempts": 0,
        "next_attempt_at": None,
        "rejected_record_at": None,
    }
    if result.outcome == "held":
        # Waiting for approval: not picked up again by change runs until the record changes
        # (a rehire, say) or the hold is approved (the approval run names these employees).
        batch.counts["held"] = batch.counts.get("held", 0) + 1
        values["outcome"] = "held"
        values["rejected_record_at"] = item.employee.updated_at
    elif result.outcome == "failed" and isinstance(result.error, ConflictError):
        # Found at write time (a username held by another LMS user...): a person decides;
        # tried again once the employee's record changes.
        batch.counts["conflict"] = batch.counts.get("conflict", 0) + 1
        values["outcome"] = "conflict"
        values["rejected_record_at"] = item.employee.updated_at
    elif result.outcome == "failed":
        batch.counts["failed"] = batch.counts.get("failed", 0) + 1
        values["outcome"] = "error"
        values["attempts"] = (state.attempts if state else 0) + 1
        if isinstance(result.error, TransientError) or result.error is None:
            delay = RETRY_DELAYS[min(values["attempts"] - 1, len(RETRY_DELAYS) - 1)]
            values["next_attempt_at"] = now + delay
            clear = False  # stays due: retried after the delay
            if item.employee.lms_due_at is None or item.employee.lms_due_at > now:
                batch.made_due.append({"key_id": item.employee.id, "at": now})
        else:
            # A permanent rejection: tried again once the employee's record changes.
            values["rejected_record_at"] = item.employee.updated_at
    else:
        batch.counts[key] = batch.counts.get(key, 0) + 1
        kind = item.action.kind
        values["outcome"] = {Kind.SKIP: "skipped", Kind.CONFLICT: "conflict"}.get(kind, "ok")
    if state is None:
        batch.state_inserts.append(
            {"employee_id": item.employee.id, "account_id": account_id, **values}
        )
    else:
        batch.state_updates.append({"key_employee_id": item.employee.id, **values})
    _clear(batch, item, clear)


def _clear(batch: _Batch, item: Planned, clear: bool) -> None:
    employee = item.employee
    if clear and employee.lms_due_at is not None:
        # Decided active with an end ahead (leaving): due again the moment access ends.
        ends = employee.access_ends_at if item.view.active else None
        batch.cleared.append({"key_id": employee.id, "seen": employee.lms_due_at, "next": ends})


def _outcome_row(
    run_id: str,
    account_id: str,
    now: datetime,
    *,
    employee_id: str,
    action: str,
    outcome: str,
    reason: str,
    lms_user_id: str | None,
    before: dict[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A ``sync_outcomes`` row: what was done (or planned) for one employee in a run."""
    return {
        "id": str(uuid.uuid4()),
        "run_id": run_id,
        "account_id": account_id,
        "employee_id": employee_id,
        "action": action,
        "outcome": outcome,
        "reason": reason,
        "lms_user_id": lms_user_id,
        "before": before,
        "after": jsonable(after),
        "at": now,
    }


def keeps_link(result: Result) -> bool:
    return result.outcome == "done" and result.lms_user_id is not None and result.action != "none"


def _worth_an_outcome(result: Result) -> bool:
    """Outcome rows are kept for what was done, failed, skipped or in conflict, and for what a
    pass saw change in the LMS (not for no-ops)."""
    return (
        result.outcome == "failed"
        or result.action != "none"
        or result.planned.action.kind in (Kind.SKIP, Kind.CONFLICT)
        or result.after is not None
    )


def jsonable(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
