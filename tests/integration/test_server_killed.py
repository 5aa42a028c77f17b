"""A server killed (SIGKILL) during the first activation of 3,000 employees, with a manual sync
queued behind it: once a server runs again, no LMS user is duplicated, no run stays running
or queued, and all the work is done (the activation resumed, the queued sync carried out)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lmsync.hr import employees
from lmsync.settings import Settings
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import Employee, LmsLink, SyncRun
from tests.conftest import World
from tests.integration.conftest import LmsProcess, scim_user

N = 3000
ALREADY_IN_LMS = 500
LEASE_SECONDS = 2  # recovery within ~1.5 leases of the restart


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LMSYNC_DATABASE_URL": settings.resolved_database_url(),
        "LMSYNC_DATA_DIR": str(settings.data_dir),
        "LMSYNC_SYNC_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmsync", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("lmsync serve did not start")


def runs(engine: Engine) -> list[SyncRun]:
    with Session(engine) as session:
        return list(session.scalars(select(SyncRun).order_by(SyncRun.started_at)))


def test_server_killed_mid_activation_resumes_without_duplicates(
    engine: Engine, settings: Settings, world: World, lms: LmsProcess, tmp_path: Path
) -> None:
    lms.load([scim_user(f"person{n}@example.com") for n in range(ALREADY_IN_LMS)])
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        for n in range(N):
            employees.hire(
                session,
                None,
                world.account_a,
                {
                    "employee_number": f"E{n:05}",
                    "first_name": "Kim",
                    "last_name": f"Lee {n}",
                    "work_email": f"person{n}@example.com",
                    "hire_date": "2024-01-01",
                },
            )
    auth = World.auth(world.mhr_a)
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    log = tmp_path / "serve.log"
    first = serve(settings, port, log)
    try:
        enabled = httpx.patch(
            f"{base}/accounts/{world.account_a}",
            json={"user_sync_enabled": True},
            headers=World.auth(world.operator),
        )
        assert enabled.status_code == 200, enabled.text
        configured = httpx.put(
            f"{base}/lms/interface",
            json={"base_url": lms.base_url, "secret": lms.token, "options": {"max_concurrency": 4}},
            headers=auth,
        )
        assert configured.status_code == 200, configured.text
        started = httpx.post(
            f"{base}/lms/interface/activate", json={"dry_run": False}, headers=auth
        )
        assert started.status_code == 202, started.text
        activation = started.json()["run_id"]
        queued = httpx.post(f"{base}/lms/sync", json={"full": True}, headers=auth)
        assert queued.status_code == 202, queued.text
        manual = queued.json()["run_id"]
        deadline = time.monotonic() + 120
        progress: dict[str, Any] = {}
        while time.monotonic() < deadline:
            progress = httpx.get(f"{base}/lms/runs/{activation}", headers=auth).json()["run"]
            if progress["progress_done"] >= 500:
                break
            time.sleep(0.02)
        assert 500 <= progress["progress_done"] < N, progress
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    statuses = {r.id: r.status for r in runs(engine)}
    assert statuses[activation] == "running"
    assert statuses[manual] == "queued"

    second = serve(settings, port, log)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            pending = [r for r in runs(engine) if r.status in ("queued", "running")]
            if not pending and len(runs(engine)) >= 3:
                break
            time.sleep(0.2)
        final = {r.id: r for r in runs(engine)}
        assert [r.status for r in final.values() if r.status in ("queued", "running")] == []
        assert final[activation].status == "interrupted"
        assert "resumed as run" in (final[activation].message or "")
        assert final[manual].status == "succeeded", final[manual].message
        resumed = [r for r in final.values() if r.trigger == "activation" and r.id != activation]
        assert len(resumed) == 1
        assert resumed[0].status == "succeeded", resumed[0].message
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()

    users = lms.users()
    emails = Counter(u["emails"][0]["value"].casefold() for u in users)
    assert len(users) == N
    assert [email for email, count in emails.items() if count > 1] == []
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(LmsLink)) == N
        linked_users = session.scalar(select(func.count(func.distinct(LmsLink.lms_user_id))))
        assert linked_users == N
        due = session.scalar(
            select(func.count()).select_from(Employee).where(Employee.lms_due_at.is_not(None))
        )
        assert due == 0
