"""What the interface's three switches hold back: counted when one is saved off, made due at once
when one is turned back on (docs/rules.md: "a switch turned back on makes what it held back due at
once, not at the next hourly pass").

Definitions, as of ``now``. A switch holds nothing back while the account's user synchronization
is off or the interface is not active: those hold everything back themselves (and turning the
account's switch on makes every employee due, ``hr.accounts.update_account``). Otherwise:

- ``sync_users`` ("Synchronize LMS users") holds back the included employees active as of now
  (those leaving included) for whom the rules would do something with the switch on: not linked
  (to be looked up, then linked or created; or skipped, or in conflict), or linked to a
  deactivated LMS user (to be reactivated), or whose maintained fields differ from those last
  written (to be updated).
- ``deactivate_terminated`` ("Deactivate LMS users of terminated employees") holds back the
  included employees terminated as of now whose linked LMS user is recorded active.
- ``hourly_transfer`` ("Activate automatic transfer to LMS at each hour") holds back the included
  employees due now whose work may run now (not waiting for a retry, nor for their record to
  change after a permanent rejection or a held deactivation): the work a change run would pick
  up. They stay due while it is off, so turning it on needs no marking, only the worker's wake.

The first two are decided by ``rules.decide`` itself, once with the switch on and once off: an
employee is held back when the two answers differ. Each count stands alone (an employee held back
by two switches is counted by both). Marking due is all a catch-up does; the engine does the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from lmsync.domain.employment import is_active
from lmsync.hr.employees import status_condition
from lmsync.i18n import N_
from lmsync.jobs.due_hook import note_due
from lmsync.lms.registry import shaper
from lmsync.storage.tables import Account, Employee, LmsInterface, LmsState, table_of
from lmsync.sync import rules, snapshot
from lmsync.sync.mapping import desired_fields
from lmsync.sync.snapshot import EmployeeRecord, LinkRecord

SWITCHES = ("hourly_transfer", "sync_users", "deactivate_terminated")
# The switches' labels (English; ``i18n.gettext(label)`` says one in the reader's language).
SWITCH_LABELS = {
    "hourly_transfer": N_("Activate automatic transfer to LMS at each hour"),
    "sync_users": N_("Synchronize LMS users"),
    "deactivate_terminated": N_("Deactivate LMS users of terminated employees"),
}
# Which employees each switch of the rules can hold back: active ones, or terminated ones.
_STATUS = {"sync_users": "active", "deactivate_terminated": "terminated"}


def switches_of(interface: LmsInterface) -> dict[str, bool]:
    return {name: bool(getattr(interface, name)) for name in SWITCHES}


def count(
    session: Session, account: Account, interface: LmsInterface, now: datetime
) -> dict[str, int]:
    """For each switch that is off, how many employees it holds back now."""
    return {
        name: len(held_back(session, account, interface, name, now))
        if name in _STATUS
        else _due_now(session, account, interface, now)
        for name, on in switches_of(interface).items()
        if not on
    }


def catch_up(
    session: Session,
    account: Account,
    interface: LmsInterface,
    turned_on: Iterable[str],
    now: datetime,
) -> dict[str, int]:
    """Make due at once, in the caller's transaction, what the switches just turned on (and
    saved on in ``interface``) held back; returns how many employees are due for each."""
    due: dict[str, int] = {}
    for name in turned_on:
        if name in _STATUS:
            ids = held_back(session, account, interface, name, now)
            mark_due(session, ids, now)
            if ids:
                note_due(session, account.id)
            due[name] = len(ids)
        else:
            due[name] = _due_now(session, account, interface, now)
            if due[name]:  # due already; the job queue needs to hear of it
                note_due(session, account.id)
    return due


def mark_due(session: Session, ids: list[str], now: datetime) -> None:
    """Due now; an employee already due earlier keeps its time, one due later (a scheduled
    termination) is brought forward (the engine moves it back once it has acted)."""
    for chunk in snapshot.chunks(ids):
        session.execute(
            update(Employee)
            .where(
                Employee.id.in_(chunk),
                or_(Employee.lms_due_at.is_(None), Employee.lms_due_at > now),
            )
            .values(lms_due_at=now)
            .execution_options(synchronize_session=False)
        )


def held_back(
    session: Session, account: Account, interface: LmsInterface, switch: str, now: datetime
) -> list[str]:
    """The ids of the employees ``switch`` (sync_users or deactivate_terminated) holds back:
    those the rules decide differently with it on and with it off."""
    if not (account.user_sync_enabled and interface.active):
        return []
    scope = rules.Scope(
        user_sync_enabled=True,
        interface_active=True,
        sync_users=interface.sync_users,
        deactivate_terminated=interface.deactivate_terminated,
    )
    on, off = replace(scope, **{switch: True}), replace(scope, **{switch: False})
    employees = _included(session, account.id, _STATUS[switch], now)
    links = snapshot.by_employee(session, LinkRecord, account.id, None)
    shape = shaper(interface)
    ids = []
    for employee in employees:
        view = rules.EmployeeView(
            id=employee.id,
            active=is_active(employee.access_ends_at, now),
            excluded=False,
            email_key=employee.work_email_key,
            # Only tells a skip or a conflict from a lookup: none of them is "nothing to do".
            email_shared=False,
            desired=desired_fields(employee, account, shape),
        )
        link = links.get(employee.id)
        link_view = (
            rules.LinkView(link.lms_user_id, link.lms_active, link.written) if link else None
        )
        if rules.decide(view, link_view, on).kind != rules.decide(view, link_view, off).kind:
            ids.append(employee.id)
    return ids


def _included(
    session: Session, account_id: str, status: str, now: datetime
) -> list[EmployeeRecord]:
    employees = table_of(Employee)
    query = select(*snapshot.EMPLOYEE_COLUMNS).where(
        employees.c.account_id == account_id,
        employees.c.lms_excluded.is_(False),
        status_condition(status, now),
    )
    return [EmployeeRecord(*row) for row in session.execute(query)]


def _due_now(session: Session, account: Account, interface: LmsInterface, now: datetime) -> int:
    """Included employees due now whose work may run now (``engine.has_ready_work``'s test)."""
    if not (account.user_sync_enabled and interface.active):
        return 0
    query = (
        select(func.count())
        .select_from(Employee)
        .outerjoin(LmsState, LmsState.employee_id == Employee.id)
        .where(
            Employee.account_id == account.id,
            Employee.lms_excluded.is_(False),
            Employee.lms_due_at <= now,
            LmsState.next_attempt_at.is_(None) | (LmsState.next_attempt_at <= now),
            LmsState.rejected_record_at.is_(None)
            | (Employee.updated_at > LmsState.rejected_record_at),
        )
    )
    return session.scalar(query) or 0
