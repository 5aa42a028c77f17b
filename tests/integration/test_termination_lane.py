"""Terminations first, on the real PostgreSQL job queue with the real SCIM server: a termination
in effect is its own job (``sync_deactivate``, the ``deactivate`` queue, priority 20), a worker
whose every main slot is busy with another account's long run still deactivates within seconds
(its termination lane), and due work runs in slices that let terminations in between."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.employees import TerminateIn
from lmsync.hr import employees
from lmsync.jobs import runner as runner_module
from lmsync.jobs import wiring
from lmsync.jobs.queue import Deferrer, defer_app
from lmsync.jobs.runner import JobRunner
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Employee, LmsInterface, SyncRun, utcnow
from lmsync.sync.engine import SyncEngine
from tests.conftest import _truncate_all
from tests.integration.conftest import wait_for
from tests.integration.test_job_queue import (
    _accounts_with_active_interfaces,
    hire_many,
    spawn_worker,
    stop_workers,
)
from tests.lms_peer import LmsProcess, running_lms


@pytest.fixture
def pg(postgres_database: str, tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    _truncate_all(postgres_database)
    settings = Settings(
        database_url=postgres_database, data_dir=tmp_path / "data", job_queue="procrastinate"
    )
    engine = make_engine(postgres_database)
    yield settings, engine
    engine.dispose()


def hooked_sessions(settings: Settings, engine: Engine) -> sessionmaker[Session]:
    """Sessions whose transactions defer their accounts' jobs, as the web tier's do."""
    sessions = make_session_factory(engine)
    wiring.install(sessions, wiring.deferrer_for(settings))
    return sessions


def queued(engine: Engine) -> list[tuple[str, str, str | None, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT task_name, queue_name, queueing_lock, priority FROM procrastinate_jobs "
                "WHERE status = 'todo' ORDER BY id"
            )
        ).all()
    return [(str(r[0]), str(r[1]), r[2], int(r[3])) for r in rows]


def clear_jobs(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs"))


def terminate(
    sessions: sessionmaker[Session], account_id: str, number: str, **fields: object
) -> None:
    with transaction(sessions) as session:
        employee = session.scalar(
            select(Employee).where(
                Employee.account_id == account_id, Employee.employee_number == number
            )
        )
        assert employee is not None
        data = {"termination_date": date.today(), "effective_immediately": True, **fields}
        employees.terminate(session, None, account_id, employee.id, TerminateIn(**data))


def test_a_termination_in_effect_defers_its_own_job_and_a_later_one_does_not(
    pg: tuple[Settings, Engine], lms: LmsProcess
) -> None:
    settings, engine = pg
    (account,) = _accounts_with_active_interfaces(settings, engine, lms, 1)
    sessions = hooked_sessions(settings, engine)
    hire_many(settings, engine, account, 3, "p")
    assert queued(engine) == [("lmsync.sync_due", "sync", f"due:{account}", 10)]
    clear_jobs(engine)

    terminate(sessions, account, "E-0")
    assert queued(engine) == [("lmsync.sync_deactivate", "deactivate", f"deactivate:{account}", 20)]
    clear_jobs(engine)

    # Leaving next month: nothing to deactivate yet, an ordinary due job records "leaving".
    later = date.today() + timedelta(days=30)
    terminate(sessions, account, "E-1", termination_date=later, effective_immediately=False)
    assert queued(engine) == [("lmsync.sync_due", "sync", f"due:{account}", 10)]


@pytest.fixture
def slow_lms(tmp_path: Path) -> Iterator[LmsProcess]:
    """The SCIM server answering each request after 100 ms."""
    with running_lms(tmp_path, "--latency-ms", "100", name="slow-lms") as process:
        yield process


def test_a_termination_does_not_wait_for_a_busy_worker(
    pg: tuple[Settings, Engine], slow_lms: LmsProcess, tmp_path: Path
) -> None:
    """One worker, one main slot, busy with another account's long run: the termination goes
    through its lane at once, while that run is still running."""
    settings, engine = pg
    small, big = _accounts_with_active_interfaces(settings, engine, slow_lms, 2)
    sessions = hooked_sessions(settings, engine)
    with transaction(sessions) as session:  # the big account's writes one at a time: ~20 s
        session.get_one(LmsInterface, big).options = {"max_concurrency": 1, "use_bulk": False}
    log = (tmp_path / "worker.log").open("wb")
    worker = spawn_worker(settings, log, LMSYNC_WORKER_CONCURRENCY="1")
    try:
        hire_many(settings, engine, small, 1, "small")
        wait_for(lambda: slow_lms.by_email("small0@example.com"), timeout=30, step=0.1)
        hire_many(settings, engine, big, 150, "big")

        def big_running() -> bool:
            with sessions() as session:
                status = session.scalar(
                    select(SyncRun.status).where(
                        SyncRun.account_id == big, SyncRun.trigger == "change"
                    )
                )
            return status == "running"

        wait_for(big_running, timeout=30, step=0.05)
        time.sleep(1)  # well inside the big run
        started = time.monotonic()
        terminate(sessions, small, "E-0")
        wait_for(
            lambda: slow_lms.by_email("small0@example.com")[0]["active"] is False,
            timeout=30,
            step=0.02,
        )
        elapsed = time.monotonic() - started
        assert big_running(), "the big run ended first: the test proves nothing"
        assert elapsed < 2.0, f"the termination took {elapsed:.2f} s"
        assert len(slow_lms.users()) < 151  # the big run is far from done
    finally:
        stop_workers([worker], [log])


@pytest.fixture
def runner(pg: tuple[Settings, Engine], monkeypatch: pytest.MonkeyPatch) -> JobRunner:
    """A job runner in this process, on slices of 3 employees."""
    settings, engine = pg
    monkeypatch.setattr(runner_module, "DUE_SLICE", 3)
    sessions = make_session_factory(engine)
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    deferrer = Deferrer(defer_app(str(settings.database_url)))
    return JobRunner(SyncEngine(sessions, box), sessions, deferrer)


def change_runs(engine: Engine, account_id: str) -> list[dict[str, int]]:
    with make_session_factory(engine)() as session:
        rows = session.scalars(
            select(SyncRun.counts)
            .where(SyncRun.account_id == account_id, SyncRun.trigger == "change")
            .order_by(SyncRun.started_at)
        ).all()
    return [dict(r or {}) for r in rows]


def test_due_work_runs_in_slices_and_the_terminations_job_takes_only_terminations(
    pg: tuple[Settings, Engine], lms: LmsProcess, runner: JobRunner
) -> None:
    settings, engine = pg
    (account,) = _accounts_with_active_interfaces(settings, engine, lms, 1)
    sessions = hooked_sessions(settings, engine)
    hire_many(settings, engine, account, 7, "p")
    clear_jobs(engine)

    runner.due(account)  # 3 of 7: the next slice is queued behind what waits now
    assert len(lms.users()) == 3
    assert queued(engine) == [("lmsync.sync_due", "sync", f"due:{account}", 10)]
    clear_jobs(engine)
    runner.due(account)
    clear_jobs(engine)
    runner.due(account)  # the last one: nothing more to queue
    assert len(lms.users()) == 7
    assert queued(engine) == []
    assert [r.get("create") for r in change_runs(engine, account)] == [3, 3, 1]

    # A new hire and a termination are due together: the terminations job deactivates and
    # leaves the hire to the due job.
    with transaction(sessions) as session:
        employees.hire(
            session,
            None,
            account,
            {
                "employee_number": "N-1",
                "first_name": "N",
                "last_name": "Ew",
                "work_email": "n@example.com",
            },
        )
    terminate(sessions, account, "E-2")
    clear_jobs(engine)
    runner.deactivate(account)
    assert lms.by_email("p2@example.com")[0]["active"] is False
    assert lms.by_email("n@example.com") == []
    last = change_runs(engine, account)[-1]
    assert last == {"deactivate": 1}, last
    runner.due(account)
    assert lms.by_email("n@example.com")
    with sessions() as session:
        assert (
            session.scalar(
                select(Employee.lms_due_at).where(
                    Employee.account_id == account, Employee.lms_due_at <= utcnow()
                )
            )
            is None
        )


def test_a_termination_does_not_wait_for_its_own_accounts_long_run(
    pg: tuple[Settings, Engine], slow_lms: LmsProcess, tmp_path: Path
) -> None:
    """The account itself is busy with a long due run (its lock held): the run sees the
    termination waiting, stops handing out writes and leaves the rest due; the termination
    goes through within seconds, then the rest is carried out, every user created once."""
    settings, engine = pg
    (account,) = _accounts_with_active_interfaces(settings, engine, slow_lms, 1)
    sessions = hooked_sessions(settings, engine)
    with transaction(sessions) as session:  # writes one at a time: ~12 s for 120 hires
        options = {"max_concurrency": 1, "use_bulk": False}
        session.get_one(LmsInterface, account).options = options
    log = (tmp_path / "worker.log").open("wb")
    worker = spawn_worker(settings, log)
    try:
        hire_many(settings, engine, account, 120, "p")
        first = wait_for(lambda: [u for u in slow_lms.users() if u["active"]][:1], timeout=30)
        email = first[0]["emails"][0]["value"]
        number = "E-" + email.split("@")[0].removeprefix("p")
        started = time.monotonic()
        terminate(sessions, account, number)
        wait_for(lambda: slow_lms.by_email(email)[0]["active"] is False, timeout=30, step=0.02)
        elapsed = time.monotonic() - started
        assert elapsed < 2.5, f"the termination took {elapsed:.2f} s"
        assert len(slow_lms.users()) < 120  # the long run had not finished
        wait_for(lambda: len(slow_lms.users()) >= 120, timeout=60, step=0.5)
        time.sleep(1)
        assert len(slow_lms.users()) == 120  # every user once
        with sessions() as session:
            first_run = session.scalars(
                select(SyncRun)
                .where(SyncRun.account_id == account, SyncRun.trigger == "change")
                .order_by(SyncRun.started_at)
            ).first()
        assert first_run is not None
        assert first_run.status == "succeeded"
        assert "a termination went first" in (first_run.message or ""), first_run.message
    finally:
        stop_workers([worker], [log])
