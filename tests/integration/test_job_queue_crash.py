"""A worker killed or frozen in the middle of a run, on the real PostgreSQL with the real SCIM
server (slowed down, so that a run lasts a few seconds): the work completes on another worker,
no LMS user is created twice, no run is left ``running``, no job is lost; a frozen worker that
wakes up after another took the account writes nothing more for it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from lmsync.settings import Settings
from lmsync.storage.database import make_engine, make_session_factory
from lmsync.storage.tables import LmsInterface, SyncRun
from tests.conftest import _truncate_all
from tests.integration.conftest import wait_for
from tests.integration.test_job_queue import (
    _accounts_with_active_interfaces,
    hire_many,
    spawn_worker,
    stop_workers,
)
from tests.lms_peer import LmsProcess, running_lms

STALL_SECONDS = "3"
LEASE_SECONDS = "3"


@pytest.fixture
def slow_lms(tmp_path: Path) -> Iterator[LmsProcess]:
    """The SCIM server, answering each request after 50 ms (an LMS across a network)."""
    with running_lms(tmp_path, "--latency-ms", "50", name="slow-lms") as process:
        yield process


@pytest.fixture
def pg(postgres_database: str, tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    _truncate_all(postgres_database)
    settings = Settings(
        database_url=postgres_database,
        data_dir=tmp_path / "data",
        job_queue="procrastinate",
        job_stall_seconds=float(STALL_SECONDS),
        sync_lease_seconds=float(LEASE_SECONDS),
    )
    engine = make_engine(postgres_database)
    yield settings, engine
    engine.dispose()


def running_owner_log(logs: list[Path]) -> int | None:
    """Which worker (index) logged the start of a run that has not finished."""
    for i, path in enumerate(logs):
        content = path.read_text(errors="replace")
        if content.count('"sync started"') > content.count('"sync finished"'):
            return i
    return None


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_worker_lost_mid_run_loses_nothing_and_duplicates_nothing(
    how: str, pg: tuple[Settings, Engine], slow_lms: LmsProcess, tmp_path: Path
) -> None:
    settings, engine = pg
    [account_id] = _accounts_with_active_interfaces(settings, engine, slow_lms, 1)
    with Session(engine) as session, session.begin():  # one user per request: a long run
        session.get_one(LmsInterface, account_id).options = {"use_bulk": False}
    paths = [tmp_path / f"worker{i}.log" for i in range(2)]
    logs = [p.open("wb") for p in paths]
    workers = [
        spawn_worker(
            settings,
            log,
            LMSYNC_JOB_STALL_SECONDS=STALL_SECONDS,
            LMSYNC_SYNC_LEASE_SECONDS=LEASE_SECONDS,
            LMSYNC_WORKER_CONCURRENCY="1",
        )
        for log in logs
    ]
    total = 300
    try:
        time.sleep(2)  # both workers listening
        hire_many(settings, engine, account_id, total, "p")
        wait_for(lambda: running_owner_log(paths) is not None, timeout=30)
        victim = running_owner_log(paths)
        assert victim is not None
        time.sleep(0.5)  # mid-run: some users created, most not
        assert 0 < len(slow_lms.users()) < total
        victim_proc = workers[victim]
        victim_proc.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGSTOP)

        wait_for(lambda: len(slow_lms.users()) >= total, timeout=120, step=0.5)
        if how == "SIGSTOP":
            frozen_writes = len(slow_lms.users())
            victim_proc.send_signal(signal.SIGCONT)
            time.sleep(3)  # it wakes up, finds its claim gone, and must not write
            assert len(slow_lms.users()) == frozen_writes
        time.sleep(1)
        emails = [u["emails"][0]["value"] for u in slow_lms.users()]
        assert len(emails) == total
        assert len(set(emails)) == total  # no duplicate LMS user

        sessions = make_session_factory(engine)

        def settled() -> bool:
            with sessions() as s:
                return not s.scalars(
                    select(SyncRun).where(SyncRun.status.in_(("running", "queued")))
                ).first()

        wait_for(settled, timeout=30, step=0.5)
        with sessions() as s:
            statuses = sorted(s.scalars(select(SyncRun.status)).all())
        assert "interrupted" in statuses  # the lost worker's run says so
        with engine.connect() as conn:
            left = conn.execute(
                text(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                    "AND task_name = 'lmsync.sync_due'"
                )
            ).scalar()
        assert left == 0  # nothing queued lost, nothing left doing
    finally:
        stop_workers(workers, logs)
