"""The hourly pass on the PostgreSQL job queue, with the real SCIM server: the minute's tick
(whichever worker runs it, however often) queues one pass job per account whose minute has
come, and an account's pass runs once an hour even when its job is carried out twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update

from lmsync.jobs.queue import Deferrer, defer_app
from lmsync.jobs.runner import JobRunner
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import LmsInterface, SyncRun
from lmsync.sync.engine import SyncEngine
from tests.conftest import _truncate_all
from tests.integration.test_job_queue import _accounts_with_active_interfaces
from tests.lms_peer import LmsProcess

NOW = datetime(2026, 12, 2, 9, 17, 30, tzinfo=UTC)


@pytest.fixture
def pg(postgres_database: str, tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    _truncate_all(postgres_database)
    settings = Settings(
        database_url=postgres_database, data_dir=tmp_path / "data", job_queue="procrastinate"
    )
    engine = make_engine(postgres_database)
    yield settings, engine
    engine.dispose()


def runner_at(settings: Settings, engine: Engine, now: list[datetime]) -> JobRunner:
    """A worker's job runner whose clock reads ``now[0]``."""
    sessions = make_session_factory(engine)
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    deferrer = Deferrer(defer_app(str(settings.database_url)))
    return JobRunner(SyncEngine(sessions, box, clock=lambda: now[0]), sessions, deferrer)


def pass_jobs(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT args->>'account_id' FROM procrastinate_jobs "
                "WHERE task_name = 'lmsync.sync_pass' AND status = 'todo' ORDER BY 1"
            )
        ).all()
    return [str(r[0]) for r in rows]


def hourly_runs(engine: Engine) -> dict[str, int]:
    with make_session_factory(engine)() as session:
        rows = session.execute(
            select(SyncRun.account_id, func.count())
            .where(SyncRun.trigger == "hourly")
            .group_by(SyncRun.account_id)
        ).all()
    return {str(r[0]): int(r[1]) for r in rows}


def test_each_accounts_pass_is_queued_and_run_once_an_hour(
    pg: tuple[Settings, Engine], lms: LmsProcess
) -> None:
    settings, engine = pg
    ids = _accounts_with_active_interfaces(settings, engine, lms, 6)
    due_now, other_minute = ids[:4], ids[4:]
    with transaction(make_session_factory(engine)) as session:
        session.execute(
            update(LmsInterface)
            .where(LmsInterface.account_id.in_(ids))
            .values(
                activated_at=NOW - timedelta(days=1), last_full_pass_at=NOW - timedelta(hours=1)
            )
        )
        session.execute(
            update(LmsInterface)
            .where(LmsInterface.account_id.in_(due_now))
            .values(minute_of_hour=NOW.minute)
        )
        session.execute(
            update(LmsInterface)
            .where(LmsInterface.account_id.in_(other_minute))
            .values(minute_of_hour=(NOW.minute + 20) % 60)
        )
    clock = [NOW]
    workers = [runner_at(settings, engine, clock) for _ in range(3)]

    # Three workers' ticks for the same minute: one pass job per account whose minute it is.
    for worker in workers:
        worker.tick(NOW)
    assert pass_jobs(engine) == sorted(due_now)

    # Each job carried out twice (a retried job, a second worker): one pass each.
    for account_id in due_now:
        workers[0].full_pass(account_id)
        workers[1].full_pass(account_id)
    assert hourly_runs(engine) == dict.fromkeys(due_now, 1)

    # Later in the same hour, the minute comes again only an hour on: nothing more.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs"))
    clock[0] = NOW + timedelta(minutes=30)
    workers[2].tick(clock[0])
    assert pass_jobs(engine) == []
    clock[0] = NOW + timedelta(hours=1)
    workers[2].tick(clock[0])
    assert pass_jobs(engine) == sorted(due_now)
