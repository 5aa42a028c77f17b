"""What a sync run reads from the database, as plain records: employees, links and states.

A run reads these rows once, without the ORM (no identity map, no mapped object per row to build
or expunge), and keeps them as its snapshot: only the engine writes links and states, and it does so
under the account's lock, so the snapshot is what the recording compares against.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from lmsync.domain.employees import EmployeeData
from lmsync.storage.tables import Employee, LmsLink, LmsState, table_of

# Rows are read in chunks of ids, so that an IN list stays far below every database's limit.
ID_CHUNK = 500


@dataclass
class EmployeeRecord(EmployeeData):
    """The columns of an employee that a sync reads: its own fields (``EmployeeData``) and the
    sync markers."""

    id: str
    account_id: str
    termination_date: date | None
    access_ends_at: datetime | None  # None: no termination; the status is decided as of now
    lms_due_at: datetime | None
    updated_at: datetime


class LinkRecord(NamedTuple):
    """An employee's link to an LMS user, as recorded before the run."""

    employee_id: str
    lms_user_id: str
    made_by: str
    lms_active: bool
    written: dict[str, Any]
    linked_at: datetime


class StateRecord(NamedTuple):
    """An employee's last LMS outcome, as recorded before the run."""

    employee_id: str
    action: str
    outcome: str
    reason: str
    attempts: int
    next_attempt_at: datetime | None
    rejected_record_at: datetime | None


Record = TypeVar("Record", EmployeeRecord, LinkRecord, StateRecord)


def _names(record: type[Any]) -> list[str]:
    """A record's fields in order: a dataclass's or a named tuple's."""
    return [f.name for f in fields(record)] if is_dataclass(record) else list(record._fields)


def _columns(model: type[Any], record: type[Record]) -> list[ColumnElement[Any]]:
    table = table_of(model)
    return [table.c[name] for name in _names(record)]


EMPLOYEE_COLUMNS = _columns(Employee, EmployeeRecord)
LINK_COLUMNS = _columns(LmsLink, LinkRecord)
STATE_COLUMNS = _columns(LmsState, StateRecord)


def chunks(ids: list[str], size: int = ID_CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _read(session: Session, query: Select[Any], record: type[Record]) -> Iterable[Record]:
    return (record(*row) for row in session.execute(query))


def _read_among(
    session: Session,
    query: Select[Any],
    record: type[Record],
    column: ColumnElement[Any],
    ids: list[str] | None,
) -> Iterator[Record]:
    """The rows of ``query`` whose ``column`` is one of ``ids`` (read in chunks, each id once),
    or all of them when ``ids`` is None."""
    if ids is None:
        yield from _read(session, query, record)
        return
    for chunk in chunks(list(dict.fromkeys(ids))):
        yield from _read(session, query.where(column.in_(chunk)), record)


def employees(
    session: Session,
    account_id: str,
    *,
    employee_ids: list[str] | None,
    due_only: bool,
    now: datetime,
    terminated_only: bool = False,
) -> list[EmployeeRecord]:
    """The account's employees: these ids, or all of them; ``due_only``: those due by ``now``;
    ``terminated_only``: those whose access has ended by ``now``."""
    table = table_of(Employee)
    query = select(*EMPLOYEE_COLUMNS).where(table.c.account_id == account_id)
    if due_only:
        query = query.where(table.c.lms_due_at <= now)
    if terminated_only:
        query = query.where(table.c.access_ends_at <= now)
    return list(_read_among(session, query, EmployeeRecord, table.c.id, employee_ids))


Keyed = TypeVar("Keyed", LinkRecord, StateRecord)


def by_employee(
    session: Session, record: type[Keyed], account_id: str, employee_ids: list[str] | None
) -> dict[str, Keyed]:
    """The links or the states of these employees (of the whole account when ids are None)."""
    model = LmsLink if record is LinkRecord else LmsState
    table = table_of(model)
    query = select(*_columns(model, record)).where(table.c.account_id == account_id)
    rows = _read_among(session, query, record, table.c.employee_id, employee_ids)
    return {row.employee_id: row for row in rows}


def shared_email_keys(
    session: Session, account_id: str, among: set[str] | None, now: datetime
) -> set[str]:
    """Work email keys held by more than one active (as of ``now``), included employee of the
    account. ``among`` narrows the question to these keys (an incremental run asks about its
    own)."""
    table = table_of(Employee)
    query = (
        select(table.c.work_email_key)
        .where(
            table.c.account_id == account_id,
            or_(table.c.access_ends_at.is_(None), table.c.access_ends_at > now),
            table.c.lms_excluded.is_(False),
            table.c.work_email_key.is_not(None),
        )
        .group_by(table.c.work_email_key)
        .having(func.count() > 1)
    )
    if among is not None:
        query = query.where(table.c.work_email_key.in_(among))
    return set(session.scalars(query))


def claimed_users(session: Session, account_id: str, user_ids: set[str]) -> dict[str, str]:
    """Which of these LMS users are already linked, and to which employee."""
    table = table_of(LmsLink)
    claimed: dict[str, str] = {}
    for chunk in chunks(sorted(user_ids)):
        rows = session.execute(
            select(table.c.lms_user_id, table.c.employee_id).where(
                table.c.account_id == account_id, table.c.lms_user_id.in_(chunk)
            )
        )
        claimed.update({str(row[0]): str(row[1]) for row in rows})
    return claimed


def unlinked_with_email(session: Session, account_id: str, keys: set[str]) -> list[str]:
    """The account's employees with one of these work email keys and no LMS link."""
    employees, links = table_of(Employee), table_of(LmsLink)
    found: list[str] = []
    for chunk in chunks(sorted(keys)):
        query = (
            select(employees.c.id)
            .outerjoin(links, links.c.employee_id == employees.c.id)
            .where(
                employees.c.account_id == account_id,
                employees.c.work_email_key.in_(chunk),
                links.c.employee_id.is_(None),
            )
        )
        found.extend(str(row) for row in session.scalars(query))
    return found
