"""The accounts a transaction made due work for, collected on the session and handed to the job
queue before the commit (so that a rollback defers nothing).

The HR core only sets ``employees.lms_due_at``; this hook notices it. ORM changes are seen by
``after_flush``; a bulk ``UPDATE`` that marks employees due says so with ``note_due``. A mark on
an employee whose access ends by then (a termination in effect) is a *termination*: its account
gets the deactivation job, which goes before any other work.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from lmsync.storage.tables import Employee

_KEY = "lmsync.due_accounts"
_TERMINATIONS = "lmsync.termination_accounts"


class BeforeCommit(Protocol):
    """Called before the commit with the accounts the transaction made due and those among them
    with terminations in effect (the procrastinate queue defers there, in the same
    transaction)."""

    def __call__(self, session: Session, due: set[str], terminations: set[str]) -> None: ...


def note_due(session: Session, account_id: str, *, termination: bool = False) -> None:
    """This transaction made employees of ``account_id`` due (a bulk update the hook can't see);
    ``termination``: some of them are terminated and their LMS users must be deactivated."""
    key = _TERMINATIONS if termination else _KEY
    session.info.setdefault(key, set()).add(account_id)


def _after_flush(session: Session, _context: Any) -> None:
    for employee in [*session.new, *session.dirty]:
        if not isinstance(employee, Employee) or employee.lms_due_at is None:
            continue
        history = inspect(employee).attrs.lms_due_at.history
        if history.added:
            # Due by the time access ends: the HR change's own clock decided both instants.
            ends = employee.access_ends_at
            note_due(
                session,
                employee.account_id,
                termination=ends is not None and ends <= employee.lms_due_at,
            )


def install(sessions: sessionmaker[Session], before_commit: BeforeCommit) -> None:
    """Collect on every session of ``sessions`` and call ``before_commit`` with what it made
    due (nothing when the transaction made nothing due)."""

    def _before_commit(session: Session) -> None:
        session.flush()  # the last changes' due marks reach after_flush
        due = session.info.pop(_KEY, set())
        terminations = session.info.pop(_TERMINATIONS, set())
        if due or terminations:
            before_commit(session, due, terminations)

    def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
        if not previous.nested:  # a savepoint's rollback leaves the outer transaction's marks
            session.info.pop(_KEY, None)
            session.info.pop(_TERMINATIONS, None)

    event.listen(sessions, "after_flush", _after_flush)
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_soft_rollback", _after_soft_rollback)
