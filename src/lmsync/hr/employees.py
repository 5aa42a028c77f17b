"""Employee lifecycle: hire, update (incl. exclusion), terminate (scheduled or in effect, changed
or cancelled), rehire; one transaction each.

Every change that matters to the LMS sets ``lms_due_at`` in the same transaction, so the sync
engine can never miss it (docs/rules.md: level-triggered, the change only marks the employee
as due).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, Session

from lmsync.domain import employment
from lmsync.domain.employees import (
    EDITABLE_FIELDS,
    LMS_RELEVANT_FIELDS,
    CancelTerminationIn,
    EmployeeData,
    RehireIn,
    TerminateIn,
    TerminationChangeIn,
    check_rehire,
    check_termination,
    normalize_employee,
)
from lmsync.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from lmsync.domain.normalize import NormalizationError, clean_text
from lmsync.hr.principal import Principal
from lmsync.i18n import _
from lmsync.storage.tables import Account, Employee, EmployeeEvent, utcnow

NUMBER_TAKEN = _("already used by another employee of this account")
MUST_NOT_BE_NULL = _("must not be null")


def account_today(account: Account, now: datetime | None = None) -> date:
    return (
        (now or datetime.now(ZoneInfo(account.timezone)))
        .astimezone(ZoneInfo(account.timezone))
        .date()
    )


def status_condition(status: str, now: datetime) -> ColumnElement[bool]:
    """Employees whose status as of ``now`` is ``status`` (``active`` includes those leaving:
    they are employed until their last day ends)."""
    ends = Employee.access_ends_at
    if status == "terminated":
        return and_(ends.is_not(None), ends <= now)
    if status == "leaving":
        return and_(ends.is_not(None), ends > now)
    return or_(ends.is_(None), ends > now)


def status_of(employee: Employee, now: datetime | None = None) -> employment.EmploymentStatus:
    return employment.status_as_of(employee.access_ends_at, now or utcnow())


def _account(session: Session, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(_("account not found"))
    return account


def _record(
    session: Session,
    employee: Employee,
    principal: Principal | None,
    kind: str,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        EmployeeEvent(
            account_id=employee.account_id,
            employee_id=employee.id,
            kind=kind,
            actor_user_id=principal.user_id if principal else None,
            details=details or {},
        )
    )


def _number_taken(session: Session, account_id: str, number: str, except_id: str | None) -> bool:
    query = select(Employee.id).where(
        Employee.account_id == account_id, Employee.employee_number == number
    )
    if except_id is not None:
        query = query.where(Employee.id != except_id)
    return session.scalar(query) is not None


def _flush_unique(session: Session) -> None:
    """Flush, turning a lost race on the employee number into the same field error."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise ValidationFailed([FieldError("employee_number", NUMBER_TAKEN)]) from exc


def validate_new(session: Session, account: Account, raw: Mapping[str, Any]) -> EmployeeData:
    """Check a would-be hire without writing (used by hire and by CSV dry runs)."""
    data = normalize_employee(raw, today=account_today(account))
    if _number_taken(session, account.id, data.employee_number, None):
        raise ValidationFailed([FieldError("employee_number", NUMBER_TAKEN)])
    return data


def hire(
    session: Session,
    principal: Principal | None,
    account_id: str,
    raw: Mapping[str, Any],
    now: datetime | None = None,
) -> Employee:
    """Create an employee (active). Due for the LMS unless excluded."""
    account = _account(session, account_id)
    data = validate_new(session, account, raw)
    now = now or utcnow()
    employee = Employee(
        account_id=account.id,
        created_at=now,
        updated_at=now,
        lms_due_at=None if data.lms_excluded else now,
        **asdict(data),
    )
    session.add(employee)
    _flush_unique(session)
    _record(session, employee, principal, "hired", {"lms_excluded": data.lms_excluded})
    return employee


def get_employee(session: Session, account_id: str, employee_id: str) -> Employee:
    employee = session.get(Employee, employee_id)
    if employee is None or employee.account_id != account_id:
        raise NotFound(_("employee not found"))
    return employee


def _current_raw(employee: Employee) -> dict[str, Any]:
    return {name: getattr(employee, name) for name in EDITABLE_FIELDS}


def update(
    session: Session,
    principal: Principal | None,
    account_id: str,
    employee_id: str,
    patch: Mapping[str, Any],
    now: datetime | None = None,
) -> tuple[Employee, set[str]]:
    """Apply the fields present in ``patch``; returns the employee and the names that changed."""
    employee = get_employee(session, account_id, employee_id)
    account = _account(session, account_id)
    nulls = [
        FieldError(name, MUST_NOT_BE_NULL)
        for name in ("hire_date", "lms_excluded")
        if name in patch and patch[name] is None
    ]
    if nulls:
        raise ValidationFailed(nulls)
    merged = _current_raw(employee) | dict(patch)
    data = normalize_employee(merged, today=account_today(account))
    if employee.termination_date is not None:
        check_termination(data.hire_date, employee.termination_date)
    if data.employee_number != employee.employee_number and _number_taken(
        session, account_id, data.employee_number, employee.id
    ):
        raise ValidationFailed([FieldError("employee_number", NUMBER_TAKEN)])
    changed = {name for name, value in asdict(data).items() if getattr(employee, name) != value}
    if not changed:
        return employee, changed
    old_email_key = employee.work_email_key
    for name in changed:
        setattr(employee, name, getattr(data, name))
    now = now or utcnow()
    employee.updated_at = now
    if changed & LMS_RELEVANT_FIELDS or "work_email_key" in changed:
        employee.lms_due_at = now
    if "work_email_key" in changed:
        # Whoever shared the old address (a duplicate now resolved) or shares the new one (a
        # duplicate now created) must be looked at again too.
        keys = {k for k in (old_email_key, employee.work_email_key) if k is not None}
        session.execute(
            sa_update(Employee)
            .where(
                Employee.account_id == account_id,
                Employee.id != employee.id,
                Employee.work_email_key.in_(keys),
            )
            .values(lms_due_at=now)
        )
    _flush_unique(session)
    public = sorted(changed - {"work_email_key", "home_phone_e164", "cell_phone_e164"})
    if "lms_excluded" in changed:
        _record(session, employee, principal, "excluded" if data.lms_excluded else "included")
    if public != ["lms_excluded"]:
        _record(
            session,
            employee,
            principal,
            "updated",
            {"fields": [f for f in public if f != "lms_excluded"]},
        )
    return employee, changed


def _clean_reason(reason: str | None, field: str = "reason") -> str | None:
    try:
        return clean_text(reason, max_length=500)
    except NormalizationError as exc:
        raise ValidationFailed([FieldError(field, exc.message)]) from exc


def _schedule(
    employee: Employee,
    account: Account,
    termination_date: date,
    *,
    immediate: bool,
    now: datetime,
) -> None:
    employee.termination_date = termination_date
    employee.termination_immediate = immediate
    employee.access_ends_at = employment.access_ends_at(
        termination_date, account.timezone, immediate=immediate, recorded_at=now
    )
    # Due now: the run deactivates an ended access at once, or records "leaving" and moves the
    # due time to the end of the last day worked (the worker wakes then).
    employee.updated_at = now
    employee.lms_due_at = now


def _termination_details(employee: Employee, now: datetime) -> dict[str, Any]:
    assert employee.termination_date is not None
    assert employee.access_ends_at is not None
    return {
        "termination_date": employee.termination_date.isoformat(),
        "effective_immediately": employee.termination_immediate,
        "access_ends_at": employee.access_ends_at.isoformat(),
        "status": status_of(employee, now),
        "reason": employee.termination_reason,
    }


def _clear_termination(employee: Employee, now: datetime) -> None:
    """No termination any more (cancelled, or a rehire): active, due for the LMS now."""
    employee.termination_date = None
    employee.termination_reason = None
    employee.termination_immediate = False
    employee.access_ends_at = None
    employee.updated_at = now
    employee.lms_due_at = now


def terminate(
    session: Session,
    principal: Principal | None,
    account_id: str,
    employee_id: str,
    data: TerminateIn,
    now: datetime | None = None,
) -> Employee:
    """Record a termination. It takes effect when the last day worked ends (the LMS user stays
    active until then), or at once when that day is past or it is "effective immediately"."""
    now = now or utcnow()
    employee = get_employee(session, account_id, employee_id)
    account = _account(session, account_id)
    status = status_of(employee, now)
    if status == "leaving":
        assert employee.termination_date is not None
        raise Conflict(
            _(
                "employee is already leaving on {day}; change or cancel that termination instead",
                day=employee.termination_date.isoformat(),
            )
        )
    if status == "terminated":
        assert employee.termination_date is not None
        raise Conflict(
            _(
                "employee is already terminated (since {day})",
                day=employee.termination_date.isoformat(),
            )
        )
    check_termination(employee.hire_date, data.termination_date)
    employee.termination_reason = _clean_reason(data.reason)
    _schedule(
        employee, account, data.termination_date, immediate=data.effective_immediately, now=now
    )
    session.flush()
    _record(session, employee, principal, "terminated", _termination_details(employee, now))
    return employee


def change_termination(
    session: Session,
    principal: Principal | None,
    account_id: str,
    employee_id: str,
    data: TerminationChangeIn,
    now: datetime | None = None,
) -> Employee:
    """Change a scheduled termination (date, reason, effective immediately) before it takes
    effect; afterwards it can only be cancelled."""
    now = now or utcnow()
    employee = get_employee(session, account_id, employee_id)
    account = _account(session, account_id)
    status = status_of(employee, now)
    if status == "active":
        raise Conflict(_("employee has no termination to change"))
    assert employee.termination_date is not None
    if status == "terminated":
        raise Conflict(
            _(
                "the termination took effect (last day worked {day}); cancel it if it was "
                "recorded by mistake, or rehire the employee",
                day=employee.termination_date.isoformat(),
            )
        )
    sent = data.model_fields_set
    nulls = [
        FieldError(name, MUST_NOT_BE_NULL)
        for name in ("termination_date", "effective_immediately")
        if name in sent and getattr(data, name) is None
    ]
    if nulls:
        raise ValidationFailed(nulls)
    day = data.termination_date if "termination_date" in sent else None
    day = day or employee.termination_date
    immediate = data.effective_immediately if "effective_immediately" in sent else None
    immediate = employee.termination_immediate if immediate is None else immediate
    check_termination(employee.hire_date, day)
    reason = _clean_reason(data.reason) if "reason" in sent else employee.termination_reason
    before = _termination_details(employee, now)
    if (day, immediate, reason) == (
        employee.termination_date,
        employee.termination_immediate,
        employee.termination_reason,
    ):
        return employee
    employee.termination_reason = reason
    _schedule(employee, account, day, immediate=immediate, now=now)
    session.flush()
    _record(
        session,
        employee,
        principal,
        "termination_changed",
        {"before": before, "after": _termination_details(employee, now)},
    )
    return employee


def cancel_termination(
    session: Session,
    principal: Principal | None,
    account_id: str,
    employee_id: str,
    data: CancelTerminationIn,
    now: datetime | None = None,
) -> Employee:
    """Undo a termination, scheduled or in effect (recorded by mistake, resignation withdrawn).
    The employment goes on as if it had not been recorded: the hire date stays; an LMS user
    already deactivated is reactivated; a scheduled one changes nothing in the LMS."""
    now = now or utcnow()
    employee = get_employee(session, account_id, employee_id)
    if employee.access_ends_at is None:
        raise Conflict(_("employee has no termination to cancel"))
    note = _clean_reason(data.note, "note")
    details = _termination_details(employee, now) | {"note": note}
    _clear_termination(employee, now)
    session.flush()
    _record(session, employee, principal, "termination_cancelled", details)
    return employee


def rehire(
    session: Session,
    principal: Principal | None,
    account_id: str,
    employee_id: str,
    data: RehireIn,
    now: datetime | None = None,
) -> Employee:
    """Start a new period of employment for a terminated employee from ``hire_date``; the LMS
    user is due for reactivation."""
    now = now or utcnow()
    employee = get_employee(session, account_id, employee_id)
    status = status_of(employee, now)
    if status == "leaving":
        assert employee.termination_date is not None
        raise Conflict(
            _(
                "employee is still employed (leaving on {day}); cancel the termination instead",
                day=employee.termination_date.isoformat(),
            )
        )
    if status != "terminated":
        raise Conflict(_("employee is active; only a terminated employee can be rehired"))
    check_rehire(employee.termination_date, data.hire_date)
    previous = employee.termination_date
    employee.hire_date = data.hire_date
    _clear_termination(employee, now)
    session.flush()
    _record(
        session,
        employee,
        principal,
        "rehired",
        {
            "hire_date": data.hire_date.isoformat(),
            "previous_termination_date": previous.isoformat() if previous else None,
        },
    )
    return employee


def reschedule_for_timezone(session: Session, account: Account, now: datetime) -> int:
    """The account's time zone changed: scheduled terminations end at the new midnight."""
    moved = 0
    for employee in session.scalars(
        select(Employee).where(
            Employee.account_id == account.id,
            Employee.termination_immediate.is_(False),
            status_condition("leaving", now),
        )
    ):
        assert employee.termination_date is not None
        _schedule(employee, account, employee.termination_date, immediate=False, now=now)
        moved += 1
    return moved


@dataclass(frozen=True)
class EmployeeFilter:
    status: str | None = None
    excluded: bool | None = None
    text: str | None = None


def contains(text: str, *columns: QueryableAttribute[str | None]) -> ColumnElement[bool]:
    """Rows where one of ``columns`` contains ``text`` (case-insensitive; ``%`` and ``_`` taken
    literally)."""
    pattern = "%" + text.strip().replace("%", r"\%").replace("_", r"\_") + "%"
    return or_(*(column.ilike(pattern, escape="\\") for column in columns))


def text_condition(text: str) -> ColumnElement[bool]:
    """Employees whose name, work email or number contains ``text`` (case-insensitive)."""
    return contains(
        text,
        Employee.first_name,
        Employee.last_name,
        Employee.work_email,
        Employee.employee_number,
    )


def list_employees(
    session: Session,
    account_id: str,
    filters: EmployeeFilter,
    *,
    limit: int,
    offset: int,
    now: datetime | None = None,
) -> tuple[list[Employee], int]:
    query = select(Employee).where(Employee.account_id == account_id)
    if filters.status is not None:
        query = query.where(status_condition(filters.status, now or utcnow()))
    if filters.excluded is not None:
        query = query.where(Employee.lms_excluded.is_(filters.excluded))
    if filters.text:
        query = query.where(text_condition(filters.text))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Employee.last_name, Employee.first_name, Employee.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def list_events(session: Session, account_id: str, employee_id: str) -> list[EmployeeEvent]:
    get_employee(session, account_id, employee_id)
    return list(
        session.scalars(
            select(EmployeeEvent)
            .where(EmployeeEvent.employee_id == employee_id)
            .order_by(EmployeeEvent.at, EmployeeEvent.id)
        )
    )
