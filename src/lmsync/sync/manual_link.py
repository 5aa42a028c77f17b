"""Conflict repair by hand: look LMS users up, link an employee to the one an HR manager chose, or
unlink one, with the safety of the automatic link.

- Never one LMS user for two employees: checked here and by the unique key on
  ``lms_links(account_id, lms_user_id)``.
- Under the account's sync lock (``lease``), so no run records a link for the employee meanwhile;
  a running sync makes the request a 409, to try again in a moment.
- The LMS user must exist (read from the LMS, not from a form); the employee must not be excluded.
- Recorded in the employee's history (who and when); the employee is made due, so the next change
  run writes the maintained fields (and reactivates the LMS user of an active employee).

Unlinking lets the rules decide again at the next run: an employee whose email matches exactly
one LMS user is linked to it again. To keep an employee out of the LMS, exclude them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from lmsync.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from lmsync.i18n import _
from lmsync.lms.base import LmsError, NotFoundError, RemoteUser
from lmsync.storage.tables import (
    Employee,
    EmployeeEvent,
    LmsInterface,
    LmsLink,
    LmsState,
    utcnow,
)
from lmsync.sync import lease
from lmsync.sync.service import SyncService

LOCK = timedelta(seconds=60)
MAX_CANDIDATES = 25


@dataclass(frozen=True)
class Candidate:
    id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    active: bool
    linked_to: str | None  # the employee linked to it, if any
    linked_to_name: str | None


def _interface(service: SyncService, account_id: str) -> LmsInterface:
    with service.sessions() as session:
        interface = session.get(LmsInterface, account_id)
        if interface is None:
            raise NotFound(_("the LMS interface is not configured yet"))
        session.expunge(interface)
        return interface


def _employee(service: SyncService, account_id: str, employee_id: str) -> Employee:
    with service.sessions() as session:
        employee = session.get(Employee, employee_id)
        if employee is None or employee.account_id != account_id:
            raise NotFound(_("employee not found"))
        session.expunge(employee)
        return employee


def candidates(
    service: SyncService, account_id: str, employee_id: str, query: str
) -> list[Candidate]:
    """LMS users for ``query``: an email (exact, any letter case), an LMS user id, or part of a
    name (for connectors that search by name)."""
    _employee(service, account_id, employee_id)
    text = query.strip()
    if not text:
        return []
    interface = _interface(service, account_id)
    connector = service.engine.connector_for(interface, dry_run=True)
    found: dict[str, RemoteUser] = {}
    problems: list[str] = []
    search = getattr(connector, "search", None)
    lookups: list[Callable[[], list[RemoteUser]]] = []
    if "@" in text:
        lookups.append(lambda: connector.find_by_email(text))
    if callable(search):
        lookups.append(lambda: list(search(text, MAX_CANDIDATES)))
    lookups.append(lambda: [connector.get(text)])
    try:
        for lookup in lookups:
            try:
                found.update((u.id, u) for u in lookup())
            except NotFoundError:
                continue
            except LmsError as exc:
                problems.append(exc.message)
    finally:
        connector.close()
    if not found and problems:
        raise Conflict(_("the LMS could not be searched: {error}", error=problems[0]))
    users = list(found.values())[:MAX_CANDIDATES]
    with service.sessions() as session:
        links = {
            row.lms_user_id: (row.employee_id, f"{row.first_name} {row.last_name}")
            for row in session.execute(
                select(
                    LmsLink.lms_user_id,
                    LmsLink.employee_id,
                    Employee.first_name,
                    Employee.last_name,
                )
                .join(Employee, Employee.id == LmsLink.employee_id)
                .where(
                    LmsLink.account_id == account_id,
                    LmsLink.lms_user_id.in_([u.id for u in users]),
                )
            )
        }
    return [
        Candidate(
            u.id,
            u.fields.get("email"),
            u.fields.get("first_name"),
            u.fields.get("last_name"),
            u.active,
            links.get(u.id, (None, None))[0],
            links.get(u.id, (None, None))[1],
        )
        for u in users
    ]


def _locked(service: SyncService, account_id: str) -> lease.Claim:
    claim = lease.acquire(service.sessions, account_id, f"manual-{uuid.uuid4().hex[:12]}", LOCK)
    if claim is None:
        raise Conflict(_("a sync is running for this account: try again in a moment"))
    return claim


def link(
    service: SyncService, account_id: str, employee_id: str, lms_user_id: str, actor: str | None
) -> None:
    employee = _employee(service, account_id, employee_id)
    if employee.lms_excluded:
        raise Conflict(_("this employee is excluded from the LMS interface: include them first"))
    interface = _interface(service, account_id)
    claim = _locked(service, account_id)
    try:
        connector = service.engine.connector_for(interface, dry_run=True)
        try:
            user = connector.get(lms_user_id)
        except NotFoundError:
            raise ValidationFailed(
                [FieldError("lms_user_id", _("no LMS user has this id"))]
            ) from None
        except LmsError as exc:
            raise Conflict(_("the LMS could not be read: {error}", error=exc.message)) from None
        finally:
            connector.close()
        now = utcnow()
        with service.sessions() as session, session.begin():
            owner = session.scalar(
                select(LmsLink.employee_id).where(
                    LmsLink.account_id == account_id, LmsLink.lms_user_id == user.id
                )
            )
            if owner is not None and owner != employee_id:
                raise Conflict(
                    _(
                        "this LMS user is already linked to employee {employee}: unlink it first",
                        employee=owner,
                    )
                )
            previous = session.get(LmsLink, employee_id)
            if previous is not None:
                session.delete(previous)
                session.flush()
            session.add(
                LmsLink(
                    employee_id=employee_id,
                    account_id=account_id,
                    lms_user_id=user.id,
                    made_by="manual",
                    lms_active=user.active,
                    written=dict(user.fields),  # what the LMS holds: the next run writes the rest
                    linked_at=now,
                    synced_at=now,
                )
            )
            session.execute(delete(LmsState).where(LmsState.employee_id == employee_id))
            row = session.get_one(Employee, employee_id)
            row.lms_due_at = now
            session.add(
                EmployeeEvent(
                    account_id=account_id,
                    employee_id=employee_id,
                    kind="lms_linked",
                    at=now,
                    actor_user_id=actor,
                    details={
                        "lms_user_id": user.id,
                        "previous": previous.lms_user_id if previous is not None else None,
                    },
                )
            )
            try:
                session.flush()
            except IntegrityError:
                raise Conflict(_("this LMS user was just linked to another employee")) from None
    finally:
        lease.release(service.sessions, claim)
    service.changed()


def unlink(service: SyncService, account_id: str, employee_id: str, actor: str | None) -> None:
    _employee(service, account_id, employee_id)
    claim = _locked(service, account_id)
    try:
        now = utcnow()
        with service.sessions() as session, session.begin():
            previous = session.get(LmsLink, employee_id)
            if previous is None:
                raise Conflict(_("this employee is not linked to an LMS user"))
            session.delete(previous)
            session.execute(delete(LmsState).where(LmsState.employee_id == employee_id))
            session.add(
                EmployeeEvent(
                    account_id=account_id,
                    employee_id=employee_id,
                    kind="lms_unlinked",
                    at=now,
                    actor_user_id=actor,
                    details={"lms_user_id": previous.lms_user_id},
                )
            )
    finally:
        lease.release(service.sessions, claim)
