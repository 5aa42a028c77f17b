"""The hourly pass that costs what changed, against the real scim2-server: a user changed by hand
in the LMS is corrected by the next hourly pass when the LMS filters on meta.lastModified, and by
the daily full sweep when it does not; a user deleted in the LMS is found by the sweep."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from lmsync.domain.interface import InterfaceIn
from lmsync.hr import employees
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import Employee, LmsInterface, utcnow
from lmsync.sync.engine import RunOptions, SyncEngine
from lmsync.sync.service import SyncService
from tests.conftest import World
from tests.integration.conftest import Harness, direct
from tests.lms_peer import LmsProcess, running_lms

HOURLY = RunOptions(trigger="hourly", incremental=True)
SWEEP = RunOptions(trigger="hourly", full=True)
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Setup:
    def __init__(self, engine: Engine, settings: Settings, world: World, lms: LmsProcess) -> None:
        self.lms = lms
        self.world = world
        made = direct(engine, settings, world, lms)
        self.sessions, self.sync, self.service = made.sessions, made.sync, made.service
        with transaction(self.sessions) as session:
            for n in range(5):
                employees.hire(
                    session,
                    None,
                    world.account_a,
                    {
                        "employee_number": f"I{n}",
                        "first_name": "Inc",
                        "last_name": f"Pass{n}",
                        "work_email": f"inc{n}@example.com",
                        "hire_date": "2024-01-01",
                    },
                )
        activation = RunOptions(trigger="activation", full=True, activating=True)
        assert self.sync.run(world.account_a, activation).counts == {"create": 5}

    def interface(self) -> LmsInterface:
        with self.sessions() as session:
            interface = session.get_one(LmsInterface, self.world.account_a)
            session.expunge(interface)
            return interface

    def quiet_since_now(self) -> None:
        """As if the last pass read the LMS long after the activation: only what changes from
        here on is new to the next incremental read (the filter compares whole seconds)."""
        time.sleep(2.1)
        with transaction(self.sessions) as session:
            interface = session.get_one(LmsInterface, self.world.account_a)
            interface.lms_changes_since = utcnow() - timedelta(seconds=0.1)

    def by_hand(self, email: str, **values: Any) -> str:
        """Change an LMS user outside lmsync (an LMS administrator); returns its id."""
        (user,) = [u for u in self.lms.users() if u["userName"] == email]
        ops = [{"op": "replace", "path": path, "value": value} for path, value in values.items()]
        response = httpx.patch(
            f"{self.lms.base_url}/Users/{user['id']}",
            json={"schemas": [PATCH_OP], "Operations": ops},
            headers={"Authorization": f"Bearer {self.lms.token}"},
        )
        assert response.status_code in (200, 204), response.text
        return str(user["id"])

    def user(self, email: str) -> dict[str, Any]:
        (user,) = [u for u in self.lms.users() if u["userName"] == email]
        return user


@pytest.fixture
def setup(engine: Engine, settings: Settings, world: World, lms: LmsProcess) -> Iterator[Setup]:
    made = Setup(engine, settings, world, lms)
    yield made
    made.service.close()


def test_hourly_pass_reads_only_what_changed_and_corrects_it(setup: Setup) -> None:
    setup.quiet_since_now()
    setup.by_hand("inc1@example.com", **{"name.givenName": "Hacked"})
    setup.lms.reset_stats()

    summary = setup.sync.run(setup.world.account_a, HOURLY)

    assert summary.status == "succeeded", summary
    assert summary.counts == {"update": 1}  # the four others were not even looked at
    requests = setup.lms.stats()["requests"]
    # One filtered read of the changed users, one PATCH: no listing of every user.
    assert requests == {"GET": 1, "PATCH": 1}, requests
    assert setup.user("inc1@example.com")["name"]["givenName"] == "Inc"
    interface = setup.interface()
    assert interface.modified_filter is True
    assert interface.lms_changes_since is not None
    assert interface.last_sweep_at is not None  # the activation's, not this pass's
    swept = interface.last_sweep_at

    # Nothing changed since: the next pass reads its own PATCH back (the overlap), writes nothing.
    again = setup.sync.run(setup.world.account_a, HOURLY)
    assert again.status == "succeeded"
    assert "update" not in again.counts
    assert setup.interface().last_sweep_at == swept


def test_an_employee_changed_in_hr_is_carried_by_the_hourly_pass(setup: Setup) -> None:
    setup.quiet_since_now()
    with transaction(setup.sessions) as session:
        employee = session.scalar(
            select(Employee.id).where(Employee.work_email_key == "inc3@example.com")
        )
        assert employee is not None
        employees.update(session, None, setup.world.account_a, employee, {"job_title": "Chef"})
    summary = setup.sync.run(setup.world.account_a, HOURLY)
    assert summary.counts == {"update": 1}
    assert setup.user("inc3@example.com")["title"] == "Chef"


def test_without_the_filter_the_daily_sweep_corrects_and_finds_deletions(
    engine: Engine, settings: Settings, world: World, tmp_path: Path
) -> None:
    with running_lms(tmp_path, modified_filter=False) as lms:
        setup = Setup(engine, settings, world, lms)
        try:
            setup.quiet_since_now()
            setup.by_hand("inc2@example.com", **{"name.familyName": "Changed"})
            gone = setup.user("inc4@example.com")["id"]
            lms.delete(gone)

            hourly = setup.sync.run(world.account_a, HOURLY)
            assert hourly.status == "succeeded", hourly
            assert hourly.counts == {}  # the LMS cannot say what changed: left to the sweep
            assert setup.interface().modified_filter is False
            assert setup.user("inc2@example.com")["name"]["familyName"] == "Changed"

            sweep = setup.sync.run(world.account_a, SWEEP)
            assert sweep.status == "succeeded", sweep
            assert sweep.counts.get("update") == 1
            assert sweep.counts.get("create") == 1  # the deleted user, made again
            assert setup.user("inc2@example.com")["name"]["familyName"] == "Pass2"
            assert setup.user("inc4@example.com")["id"] != gone
            assert setup.interface().last_sweep_at is not None
        finally:
            setup.service.close()


def test_a_deleted_user_is_not_seen_hourly_but_found_by_the_sweep(setup: Setup) -> None:
    setup.quiet_since_now()
    gone = setup.user("inc0@example.com")["id"]
    setup.lms.delete(gone)
    assert setup.sync.run(setup.world.account_a, HOURLY).counts == {}
    assert not [u for u in setup.lms.users() if u["userName"] == "inc0@example.com"]
    sweep = setup.sync.run(setup.world.account_a, SWEEP)
    assert sweep.counts.get("create") == 1, sweep
    assert setup.user("inc0@example.com")["id"] != gone


def test_connection_test_remembers_whether_the_lms_filters(
    engine: Engine, settings: Settings, world: World, tmp_path: Path
) -> None:
    for supported in (True, False):
        with running_lms(tmp_path, name=f"lms-{supported}", modified_filter=supported) as lms:
            sessions = make_session_factory(engine)
            secrets = SecretBox.from_settings(None, settings.data_dir)
            service = SyncService(sessions, secrets, SyncEngine(sessions, secrets))
            try:
                with transaction(sessions) as session:
                    body = {"base_url": lms.base_url, "secret": lms.token}
                    service.put_interface(
                        session, world.account_a, InterfaceIn.model_validate(body)
                    )
                report = service.test_interface(world.account_a)
                messages = " ".join(f.message for f in report.findings)
                assert report.modified_filter is supported
                assert ("filters users on meta.lastModified" in messages) is supported
                assert ("daily full sweep" in messages) is not supported
                assert "Bulk supported: up to 100 users per request" in messages
                with sessions() as session:
                    stored = session.get_one(LmsInterface, world.account_a).modified_filter
                assert stored is supported
            finally:
                service.close()


@pytest.mark.parametrize("filtering", [True, False])
def test_an_hourly_pass_against_an_lms_that_is_down_fails_and_says_why(
    engine: Engine, settings: Settings, world: World, tmp_path: Path, filtering: bool
) -> None:
    """With or without a change to read, the pass reaches the LMS (the overview's health and
    the outage alert read the runs); the watermark does not move past what was not read."""
    with running_lms(tmp_path, modified_filter=filtering) as lms:
        setup = Setup(engine, settings, world, lms)
        try:
            setup.quiet_since_now()
            if not filtering:
                setup.sync.run(world.account_a, HOURLY)  # finds out: no filter
                assert setup.interface().modified_filter is False
            before = setup.interface().lms_changes_since
            lms.fault(status=503, count=50)
            failed = setup.sync.run(world.account_a, HOURLY)
            assert failed.status == "failed", failed
            assert failed.message is not None
            assert "HTTP status 503" in failed.message
            assert setup.interface().lms_changes_since == before
        finally:
            setup.service.close()


def test_the_api_sets_the_sweep_hour_and_refuses_a_bad_one(harness: Harness) -> None:
    body = {"base_url": harness.lms.base_url, "secret": harness.lms.token, "sweep_hour": 23}
    saved = harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr)
    assert saved.status_code == 200, saved.text
    assert saved.json()["sweep_hour"] == 23
    assert saved.json()["modified_filter"] is True  # found by the save's connection test
    for bad in (24, -1, "3am"):
        refused = harness.client.put(
            "/api/v1/lms/interface", json={**body, "sweep_hour": bad}, headers=harness.mhr
        )
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["sweep_hour"]
    del body["sweep_hour"]  # omitted: kept
    kept = harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr)
    assert kept.json()["sweep_hour"] == 23
    assert kept.json()["last_sweep_at"] is None
