"""A real SCIM LMS process (scim2-server, ``python -m lmsync.lms.embedded``) and an lmsync app
wired to it, on each database backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.interface import InterfaceIn
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import Account
from lmsync.sync.engine import SyncEngine
from lmsync.sync.service import SyncService
from lmsync.web.app import create_app
from tests.conftest import World
from tests.lms_peer import LMS_TOKEN, LmsProcess, scim_user

__all__ = ["LMS_TOKEN", "LmsProcess", "scim_user"]


@dataclass
class Direct:
    """The engine and the service on the test's database, without the app (no worker): the
    test runs each sync itself."""

    sessions: sessionmaker[Session]
    sync: SyncEngine
    service: SyncService


def direct(
    engine: Engine, settings: Settings, world: World, lms: LmsProcess, **options: Any
) -> Direct:
    """Account A with user synchronization enabled and an interface to ``lms`` (``options``:
    the interface's options); the caller closes ``service``."""
    sessions = make_session_factory(engine)
    secrets = SecretBox.from_settings(None, settings.data_dir)
    sync = SyncEngine(sessions, secrets)
    service = SyncService(sessions, secrets, sync)
    body = {"base_url": lms.base_url, "secret": lms.token, "options": options}
    with transaction(sessions) as session:
        session.get_one(Account, world.account_a).user_sync_enabled = True
        service.put_interface(session, world.account_a, InterfaceIn.model_validate(body))
    return Direct(sessions, sync, service)


@dataclass
class Harness:
    client: TestClient
    world: World
    lms: LmsProcess

    @property
    def mhr(self) -> dict[str, str]:
        return World.auth(self.world.mhr_a)

    def hire(self, number: str, email: str | None, **fields: Any) -> dict[str, Any]:
        body = {
            "employee_number": number,
            "first_name": "Zoë",
            "last_name": f"Ngô {number}",
            "work_email": email,
            "hire_date": "2024-01-02",
            **fields,
        }
        response = self.client.post("/api/v1/employees", json=body, headers=self.mhr)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def lms_state(self, employee_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/employees/{employee_id}/lms", headers=self.mhr)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def activate(self) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/lms/interface/activate", json={"dry_run": False}, headers=self.mhr
        )
        assert response.status_code == 202, response.text
        return self.wait_run(response.json()["run_id"])

    def sync(self, *, full: bool = False) -> dict[str, Any]:
        response = self.client.post("/api/v1/lms/sync", json={"full": full}, headers=self.mhr)
        assert response.status_code == 202, response.text
        return self.wait_run(response.json()["run_id"])

    def run(self, run_id: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/lms/runs/{run_id}", params=params, headers=self.mhr)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_run(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run: dict[str, Any] = self.run(run_id)["run"]
            if run["status"] not in ("queued", "running"):
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def wait_for(predicate: Callable[[], Any], timeout: float = 10, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def configure(client: TestClient, world: World, lms: LmsProcess, **overrides: Any) -> None:
    enabled = client.patch(
        f"/api/v1/accounts/{world.account_a}",
        json={"user_sync_enabled": True},
        headers=World.auth(world.operator),
    )
    assert enabled.status_code == 200
    body = {"base_url": lms.base_url, "auth_type": "bearer", "secret": lms.token, **overrides}
    response = client.put("/api/v1/lms/interface", json=body, headers=World.auth(world.mhr_a))
    assert response.status_code == 200, response.text


@pytest.fixture
def harness(settings: Settings, world: World, lms: LmsProcess) -> Iterator[Harness]:
    app = create_app(settings, poll_seconds=0.1)
    with TestClient(app, raise_server_exceptions=False) as client:
        configure(client, world, lms)
        yield Harness(client, world, lms)
