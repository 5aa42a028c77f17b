"""The procrastinate job queue on the real PostgreSQL, with the real SCIM server: a change defers
its account's job in its own transaction (a rollback defers nothing, a burst collapses into one
waiting job), a hire made while no worker runs is synced when one starts, and several
``lmsync worker`` processes never sync one account at once."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from lmsync.hr import accounts, employees
from lmsync.jobs import wiring
from lmsync.settings import Settings
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Employee, SyncRun
from lmsync.web.app import create_app
from tests.api.test_pages import login_token
from tests.conftest import World, _truncate_all, make_world
from tests.integration.conftest import Harness, configure, wait_for
from tests.lms_peer import LmsProcess, scim_user


@pytest.fixture
def pg_url(postgres_database: str) -> str:
    _truncate_all(postgres_database)
    return postgres_database


@pytest.fixture
def queue_settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=pg_url, data_dir=tmp_path / "data", job_queue="procrastinate", log_json=True
    )


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_world(pg_engine: Engine) -> World:
    return make_world(pg_engine)


def jobs(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT task_name, status::text, queueing_lock FROM procrastinate_jobs ORDER BY id"
            )
        ).all()
    return [(str(r[0]), str(r[1]), r[2]) for r in rows]


@pytest.fixture
def web_only(queue_settings: Settings, pg_world: World, lms: LmsProcess) -> Iterator[Harness]:
    """The web tier alone (``serve --no-worker``): jobs are deferred, nobody carries them out."""
    app = create_app(queue_settings, run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        configure(client, pg_world, lms)
        yield Harness(client, pg_world, lms)


def test_a_change_defers_its_job_in_its_transaction(web_only: Harness, pg_engine: Engine) -> None:
    harness = web_only
    account = harness.world.account_a
    assert jobs(pg_engine) == [("lmsync.sync_due", "todo", f"due:{account}")]  # the toggle
    with pg_engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs"))

    # A hire refused (duplicate number) rolls back: nothing deferred.
    harness.hire("E-1", "one@example.com")
    with pg_engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs"))
    refused = harness.client.post(
        "/api/v1/employees",
        json={"employee_number": "E-1", "first_name": "A", "last_name": "B"},
        headers=harness.mhr,
    )
    assert refused.status_code == 422
    assert jobs(pg_engine) == []

    # A rollback after the change defers nothing either, whatever made it roll back.
    sessions = harness.client.app.state.lmsync.sessions  # type: ignore[attr-defined]
    with sessions() as session, session.begin():
        employee = session.scalar(select(Employee).where(Employee.employee_number == "E-1"))
        assert employee is not None
        employee.job_title = "Changed"
        employee.lms_due_at = employee.updated_at
        session.flush()
        session.rollback()
    assert jobs(pg_engine) == []

    # A burst of changes: one waiting job for the account.
    for n in range(2, 7):
        harness.hire(f"E-{n}", f"p{n}@example.com")
    assert jobs(pg_engine) == [("lmsync.sync_due", "todo", f"due:{account}")]


def test_a_hire_made_while_no_worker_runs_is_synced_when_one_starts(
    queue_settings: Settings, pg_world: World, lms: LmsProcess, pg_engine: Engine
) -> None:
    with TestClient(create_app(queue_settings), raise_server_exceptions=False) as client:
        configure(client, pg_world, lms)
        harness = Harness(client, pg_world, lms)
        assert harness.activate()["status"] == "succeeded"
    # Every worker is down: the web tier alone takes the hire.
    with TestClient(
        create_app(queue_settings, run_worker=False), raise_server_exceptions=False
    ) as client:
        Harness(client, pg_world, lms).hire("E-1", "while.down@example.com")
    time.sleep(1)
    assert lms.by_email("while.down@example.com") == []
    assert ("lmsync.sync_due", "todo") in [(t, s) for t, s, _ in jobs(pg_engine)]
    with TestClient(create_app(queue_settings), raise_server_exceptions=False):
        wait_for(lambda: lms.by_email("while.down@example.com"), timeout=10)


def spawn_worker(settings: Settings, log: IO[bytes], **env: str) -> subprocess.Popen[bytes]:
    """``lmsync worker`` on the settings' database; ``env`` adds or overrides variables."""
    return subprocess.Popen(
        [sys.executable, "-m", "lmsync", "worker"],
        env={
            **os.environ,
            "LMSYNC_DATABASE_URL": str(settings.database_url),
            "LMSYNC_DATA_DIR": str(settings.data_dir),
            "LMSYNC_JOB_QUEUE": "procrastinate",
            "LMSYNC_WORKER_CONCURRENCY": "2",
            **env,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_workers(workers: list[subprocess.Popen[bytes]], logs: Sequence[IO[bytes]]) -> None:
    """SIGTERM (after SIGCONT, for a worker a test froze), then SIGKILL after 60 s."""
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    for log in logs:
        log.close()


def hire_many(settings: Settings, engine: Engine, account_id: str, n: int, prefix: str) -> None:
    """``n`` hires in one transaction, through the job queue's hook (one job deferred)."""
    sessions = make_session_factory(engine)
    wiring.install(sessions, wiring.deferrer_for(settings))
    with transaction(sessions) as session:
        for k in range(n):
            employees.hire(
                session,
                None,
                account_id,
                {
                    "employee_number": f"E-{k}",
                    "first_name": "F",
                    "last_name": f"L{k}",
                    "work_email": f"{prefix}{k}@example.com",
                },
            )


def test_three_workers_never_sync_one_account_at_once(
    queue_settings: Settings, lms: LmsProcess, pg_engine: Engine, tmp_path: Path
) -> None:
    accounts_n, employees_n = 20, int(os.environ.get("LMSYNC_TEST_QUEUE_EMPLOYEES", "500"))
    ids = _accounts_with_active_interfaces(queue_settings, pg_engine, lms, accounts_n)
    logs = [(tmp_path / f"worker{i}.log").open("wb") for i in range(3)]
    workers = [spawn_worker(queue_settings, log) for log in logs]
    try:
        sessions = make_session_factory(pg_engine)
        for k, account_id in enumerate(ids):
            hire_many(queue_settings, pg_engine, account_id, employees_n, f"a{k}.p")
        total = accounts_n * employees_n

        def all_created() -> bool:
            return len(lms.users()) >= total

        wait_for(all_created, timeout=300, step=1)
        time.sleep(1)
        assert len(lms.users()) == total  # no duplicate LMS user
        with sessions() as session:
            runs = session.execute(
                select(SyncRun.account_id, SyncRun.owner, SyncRun.started_at, SyncRun.finished_at)
                .where(SyncRun.trigger == "change")
                .order_by(SyncRun.account_id, SyncRun.started_at)
            ).all()
        assert runs
        assert all(r.finished_at for r in runs)  # no run left running
        owners = {r.owner for r in runs}
        assert len(owners) >= 2, "the work was not shared between the workers"
        for first, second in itertools.pairwise(runs):
            if first.account_id == second.account_id:
                assert first.finished_at <= second.started_at, (first, second)
    finally:
        stop_workers(workers, logs)


def _accounts_with_active_interfaces(
    settings: Settings, engine: Engine, lms: LmsProcess, n: int
) -> list[str]:
    from lmsync.domain.accounts import AccountCreateIn
    from lmsync.domain.interface import InterfaceIn
    from lmsync.hr import accounts
    from lmsync.security import SecretBox
    from lmsync.storage.tables import LmsInterface
    from lmsync.sync.engine import SyncEngine
    from lmsync.sync.service import SyncService

    sessions = make_session_factory(engine)
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    service = SyncService(sessions, box, SyncEngine(sessions, box))
    ids: list[str] = []
    body: dict[str, Any] = {"base_url": lms.base_url, "auth_type": "bearer", "secret": lms.token}
    with transaction(sessions) as session:
        for k in range(n):
            account = accounts.create_account(
                session, AccountCreateIn(name=f"A{k}", company_name=f"A{k} inc.")
            )
            account.user_sync_enabled = True
            service.put_interface(session, account.id, InterfaceIn.model_validate(body))
            interface = session.get_one(LmsInterface, account.id)
            interface.active = True
            ids.append(account.id)
    service.close()
    return ids


def test_sync_now_asked_of_the_web_tier_is_carried_out_by_a_worker(
    queue_settings: Settings, pg_world: World, lms: LmsProcess, pg_engine: Engine
) -> None:
    with TestClient(create_app(queue_settings), raise_server_exceptions=False) as client:
        configure(client, pg_world, lms)
        harness = Harness(client, pg_world, lms)
        activation = harness.activate()  # a job too, carried out by this app's worker
        assert activation["status"] == "succeeded"
    lms.load([scim_user("drift@example.com")])
    with TestClient(
        create_app(queue_settings, run_worker=False), raise_server_exceptions=False
    ) as client:
        web = Harness(client, pg_world, lms)
        web.hire("E-1", "manual@example.com", lms_excluded=True)
        asked = client.post("/api/v1/lms/sync", json={"full": True}, headers=web.mhr)
        assert asked.status_code == 202, asked.text
        run_id = asked.json()["run_id"]
        time.sleep(1)
        assert web.run(run_id)["run"]["status"] == "queued"  # no worker: it waits, not lost
        # Waiting long past its heartbeat, recovery takes the run over and submits it again:
        # still one job for it.
        service = client.app.state.lmsync.sync  # type: ignore[attr-defined]
        swept = service.recover(now=datetime.now(UTC) + timedelta(minutes=10))
        assert run_id in swept.adopted
    assert [(t, s) for t, s, _ in jobs(pg_engine) if t == "lmsync.run_queued"] == [
        ("lmsync.run_queued", "todo")
    ]
    with TestClient(create_app(queue_settings), raise_server_exceptions=False) as client:
        done = Harness(client, pg_world, lms).wait_run(run_id, timeout=30)
    assert done["status"] == "succeeded", done
    assert done["full"] is True


def test_readiness_and_the_operator_queue_view(
    web_only: Harness, pg_engine: Engine, tmp_path: Path
) -> None:
    ready = web_only.client.get("/readyz")
    assert ready.json() == {"status": "ok", "database": "ok", "queue": "procrastinate"}
    web_only.hire("E-1", "queued@example.com")
    with transaction(make_session_factory(pg_engine)) as session:
        accounts.create_user(
            session, email="op@example.com", password="staple-horse-battery-42", is_operator=True
        )
    signed = web_only.client.post(
        "/login",
        data={
            "email": "op@example.com",
            "password": "staple-horse-battery-42",
            "next": "/operator/accounts",
            "csrf_token": login_token(web_only.client),
        },
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    page = web_only.client.get("/operator/accounts")
    assert page.status_code == 200
    row = page.text.split(">A<", 1)[1].split("</tr>", 1)[0]
    assert '<td class="queue">1 / 0 / 0</td>' in row  # the hire's job, waiting (no worker)
    sqlite = Settings(
        database_url=f"sqlite:///{tmp_path / 'plain.sqlite3'}", data_dir=tmp_path / "plain"
    )
    with TestClient(create_app(sqlite, upgrade_schema=True, run_worker=False)) as plain:
        assert plain.get("/readyz").json() == {
            "status": "ok",
            "database": "ok",
            "queue": "in-process",
        }
