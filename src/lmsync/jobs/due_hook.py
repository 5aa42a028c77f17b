"""The accounts a transaction made due work for, collected on the session and handed to the job
queue before the commit (so that a rollback defers nothing).

The HR core only sets ``employees.lms_due_at``; this hook notices it. ORM changes are seen by
``after_flush``; a bulk ``UPDATE`` that marks employees due says so with ``note_due``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from lmsync.storage.tables import Employee

_KEY = "lmsync.due_accounts"

# Called before the commit with the session and the accounts it made due (the procrastinate
# queue defers there, in the same transaction).
BeforeCommit = Callable[[Session, set[str]], None]


def note_due(session: Session, account_id: str) -> None:
    """This transaction made employees of ``account_id`` due (a bulk update the hook can't see)."""
    session.info.setdefault(_KEY, set()).add(account_id)


def _after_flush(session: Session, _context: Any) -> None:
    for employee in [*session.new, *session.dirty]:
        if not isinstance(employee, Employee) or employee.lms_due_at is None:
            continue
        history = inspect(employee).attrs.lms_due_at.history
        if history.added:
            note_due(session, employee.account_id)


def install(sessions: sessionmaker[Session], before_commit: BeforeCommit) -> None:
    """Collect on every session of ``sessions`` and call ``before_commit`` with what it made
    due (nothing when the transaction made nothing due)."""

    def _before_commit(session: Session) -> None:
        session.flush()  # the last changes' due marks reach after_flush
        accounts = session.info.pop(_KEY, set())
        if accounts:
            before_commit(session, accounts)

    def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
        if not previous.nested:  # a savepoint's rollback leaves the outer transaction's marks
            session.info.pop(_KEY, None)

    event.listen(sessions, "after_flush", _after_flush)
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_soft_rollback", _after_soft_rollback)
