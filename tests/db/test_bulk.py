"""storage.bulk.insert_rows: COPY on PostgreSQL and INSERT elsewhere store the same values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, select

from lmsync.domain.accounts import AccountCreateIn
from lmsync.hr import accounts
from lmsync.storage.bulk import COPY_MIN_ROWS, insert_rows
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import SyncOutcome, SyncRun, table_of

OUTCOMES = table_of(SyncOutcome)


def _run(engine: Engine) -> tuple[str, str]:
    sessions = make_session_factory(engine)
    with transaction(sessions) as s:
        account = accounts.create_account(s, AccountCreateIn(name="A", company_name="A inc."))
        run = SyncRun(account_id=account.id, trigger="manual")
        s.add(run)
        s.flush()
        return account.id, run.id


def _rows(account_id: str, run_id: str, n: int) -> list[dict[str, Any]]:
    paris = timezone(timedelta(hours=1))
    return [
        {
            "id": f"o{i:04d}",
            "run_id": run_id,
            "account_id": account_id,
            "employee_id": f"e{i}",
            "action": "create",
            "outcome": "done",
            "reason": 'tab\there, newline\nthere, backslash \\ and "quotes"',
            "lms_user_id": None if i % 2 else f"u{i}",
            "before": None,
            "after": {"email": f"é{i}@example.com", "n": i, "nested": [1, None, "x"]},
            # An aware datetime in another zone: stored as its UTC instant.
            "at": datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=paris),
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [COPY_MIN_ROWS - 1, COPY_MIN_ROWS + 5])
def test_rows_read_back_as_written(engine: Engine, n: int) -> None:
    account_id, run_id = _run(engine)
    rows = _rows(account_id, run_id, n)
    with engine.begin() as connection:
        insert_rows(connection, OUTCOMES, rows)
    with engine.connect() as connection:
        stored = connection.execute(select(OUTCOMES).order_by(OUTCOMES.c.id)).mappings().all()
    assert len(stored) == n
    for row, back in zip(rows, stored, strict=True):
        expected = {**row, "at": datetime(2026, 1, 2, 2, 4, 5, 123456, tzinfo=UTC)}
        assert dict(back) == expected


def test_rows_roll_back_with_the_transaction(engine: Engine) -> None:
    account_id, run_id = _run(engine)
    connection = engine.connect()
    transaction = connection.begin()
    insert_rows(connection, OUTCOMES, _rows(account_id, run_id, COPY_MIN_ROWS * 2))
    assert connection.execute(select(OUTCOMES.c.id)).all() != []  # visible inside
    transaction.rollback()  # as when a later statement of the batch fails
    connection.close()
    with engine.connect() as connection:
        assert connection.execute(select(OUTCOMES.c.id)).all() == []


def test_nothing_to_insert(engine: Engine) -> None:
    with engine.begin() as connection:
        insert_rows(connection, OUTCOMES, [])
