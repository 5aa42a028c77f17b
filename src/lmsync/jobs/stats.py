"""The queue as the operator sees it: sync jobs waiting, running and failed, per account (from
procrastinate's own table; every sync job carries its account in its arguments)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

_BY_ACCOUNT = text(
    """
    SELECT args->>'account_id' AS account_id,
           count(*) FILTER (WHERE status = 'todo') AS waiting,
           count(*) FILTER (WHERE status = 'doing') AS running,
           count(*) FILTER (WHERE status = 'failed') AS failed
    FROM procrastinate_jobs
    WHERE args ? 'account_id' AND status IN ('todo', 'doing', 'failed')
    GROUP BY 1
    """
)


@dataclass(frozen=True)
class QueueCounts:
    waiting: int = 0
    running: int = 0
    failed: int = 0


def by_account(session: Session) -> dict[str, QueueCounts]:
    """Jobs per account (accounts with none are absent). PostgreSQL with the queue only."""
    return {
        str(row.account_id): QueueCounts(int(row.waiting), int(row.running), int(row.failed))
        for row in session.execute(_BY_ACCOUNT)
    }


def reachable(session: Session) -> None:
    """Raises when the queue's table cannot be read (schema missing, database down)."""
    session.execute(text("SELECT 1 FROM procrastinate_jobs LIMIT 1"))
