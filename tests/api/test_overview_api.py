"""``GET /api/v1/lms/overview`` and the banners, against an account seeded with every LMS state,
held and failed runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from lmsync.storage.tables import (
    Employee,
    LmsInterface,
    LmsLink,
    LmsState,
    SyncOutcome,
    SyncRun,
    utcnow,
)
from lmsync.sync.service import LMS_STATES
from tests.api.test_employees_api import hire
from tests.api.test_pages import sign_in
from tests.conftest import World

OVERVIEW = "/api/v1/lms/overview"


def seed(client: TestClient, world: World, engine: Engine) -> dict[str, str]:
    """One employee in each LMS state of account A (and one leaving), nothing due."""
    token = world.mhr_a
    ids = {
        name: hire(client, token, employee_number=f"E-{n}", work_email=f"{name}@example.com")["id"]
        for n, name in enumerate(
            ["linked", "linked2", "deactivated", "conflict", "error", "held", "skipped", "new"]
        )
    }
    ids["excluded"] = hire(
        client, token, employee_number="E-X", work_email="x@example.com", lms_excluded=True
    )["id"]
    ids["no_email"] = hire(client, token, employee_number="E-N", work_email=None)["id"]
    leaving = client.post(
        f"/api/v1/employees/{ids['linked2']}/terminate",
        json={"termination_date": (utcnow() + timedelta(days=30)).date().isoformat()},
        headers=World.auth(token),
    )
    assert leaving.status_code == 200, leaving.text
    now = utcnow()
    account = world.account_a
    with Session(engine) as s, s.begin():
        s.execute(update(Employee).values(lms_due_at=None))
        for name, active in (("linked", True), ("linked2", True), ("deactivated", False)):
            s.add(
                LmsLink(
                    employee_id=ids[name],
                    account_id=account,
                    lms_user_id=f"u-{name}",
                    made_by="created",
                    lms_active=active,
                )
            )
        for name, outcome in (
            ("conflict", "conflict"),
            ("error", "error"),
            ("held", "held"),
            ("skipped", "skipped"),
            ("no_email", "skipped"),
        ):
            s.add(
                LmsState(
                    employee_id=ids[name],
                    account_id=account,
                    action="create",
                    outcome=outcome,
                    reason="seeded",
                )
            )
        s.add(
            LmsInterface(
                account_id=account,
                connector="scim",
                base_url="http://lms.invalid/scim/v2",
                auth_type="bearer",
                auth_header="X-API-Key",
                active=True,
                activated_at=now - timedelta(days=1),
                hourly_transfer=False,
                minute_of_hour=0,
                options={},
            )
        )
        s.add_all(
            [
                SyncRun(
                    id="run-ok",
                    account_id=account,
                    trigger="hourly",
                    status="succeeded",
                    counts={"none": 3},
                    started_at=now - timedelta(hours=2),
                    finished_at=now - timedelta(hours=2) + timedelta(seconds=5),
                ),
                SyncRun(
                    id="run-held",
                    account_id=account,
                    trigger="change",
                    status="held",
                    counts={"held": 25},
                    started_at=now - timedelta(hours=1, minutes=30),
                    finished_at=now - timedelta(hours=1, minutes=30),
                ),
                SyncRun(
                    id="run-failed-1",
                    account_id=account,
                    trigger="hourly",
                    status="failed",
                    message="GET /Users: the LMS refused the credentials (HTTP status 401)",
                    started_at=now - timedelta(minutes=40),
                    finished_at=now - timedelta(minutes=40),
                ),
                SyncRun(
                    id="run-failed-2",
                    account_id=account,
                    trigger="change",
                    status="failed",
                    message="POST /Users: cannot connect",
                    started_at=now - timedelta(minutes=5),
                    finished_at=now - timedelta(minutes=5),
                ),
            ]
        )
    return ids


def overview(client: TestClient, token: str) -> dict[str, Any]:
    response = client.get(OVERVIEW, headers=World.auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_overview_counts_every_state(client: TestClient, world: World, engine: Engine) -> None:
    seed(client, world, engine)
    seen = overview(client, world.mhr_a)
    assert seen["counts"] == {
        "not_linked": 1,  # "new"
        "linked": 2,
        "deactivated": 1,
        "skipped": 2,
        "conflict": 1,
        "error": 1,
        "held": 1,
        "excluded": 1,
        "to_create": 1,  # "new": active, a work email, not linked
        "leaving_soon": 1,
    }
    assert (seen["configured"], seen["active"], seen["connector"]) == (True, True, "scim")
    assert [r["id"] for r in seen["held_runs"]] == ["run-held"]
    assert [r["id"] for r in seen["last_runs"]] == [
        "run-failed-2",
        "run-failed-1",
        "run-held",
        "run-ok",
    ]
    health = seen["health"]
    assert health["last_success_at"] is not None
    assert health["failing_since"] is not None
    assert health["last_error"] == "POST /Users: cannot connect"
    assert health["down"] is True  # failing for 40 minutes, the threshold is 15
    assert [a["kind"] for a in seen["alerts"]] == ["held", "lms_down", "conflicts"]
    held = seen["alerts"][0]
    assert held["url"] == "/sync/run-held"
    assert "25 deactivations" in held["message"]
    # Another account sees none of it.
    other = overview(client, world.mhr_b)
    assert other["configured"] is False
    assert other["alerts"] == []
    assert sum(other["counts"].values()) == 0


def test_a_success_ends_the_outage(client: TestClient, world: World, engine: Engine) -> None:
    seed(client, world, engine)
    now = utcnow()
    with Session(engine) as s, s.begin():
        s.add(
            SyncRun(
                id="run-back",
                account_id=world.account_a,
                trigger="change",
                status="succeeded",
                started_at=now - timedelta(minutes=1),
                finished_at=now,
            )
        )
    health = overview(client, world.mhr_a)["health"]
    assert (health["failing_since"], health["down"]) == (None, False)
    assert "lms_down" not in [a["kind"] for a in overview(client, world.mhr_a)["alerts"]]


def test_a_recent_failure_is_not_an_outage_yet(
    client: TestClient, world: World, engine: Engine
) -> None:
    seed(client, world, engine)
    with Session(engine) as s, s.begin():
        s.execute(
            update(SyncRun)
            .where(SyncRun.id == "run-failed-1")
            .values(status="succeeded", message=None)
        )
    health = overview(client, world.mhr_a)["health"]
    assert health["failing_since"] is not None  # run-failed-2, 5 minutes ago
    assert health["down"] is False


def test_the_banners_are_on_every_page(client: TestClient, world: World, engine: Engine) -> None:
    seed(client, world, engine)
    sign_in(client, "mhr_a@example.com")
    home = client.get("/", follow_redirects=False)
    assert home.headers["location"] == "/overview"
    for path in ("/overview", "/employees", "/sync", "/settings/interfaces/lms", "/tokens"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert 'data-alert="held"' in page.text, path
        assert 'href="/sync/run-held"' in page.text, path
        assert 'data-alert="lms_down"' in page.text, path
        assert 'href="/employees?lms=conflict"' in page.text, path
    page = client.get("/overview").text
    assert 'id="count-to_create"' in page
    assert "the LMS refused the credentials" not in page  # only the last error is shown
    assert "POST /Users: cannot connect" in page


def test_the_employee_list_carries_and_filters_the_lms_state(
    client: TestClient, world: World, engine: Engine
) -> None:
    ids = seed(client, world, engine)
    auth = World.auth(world.mhr_a)
    listed = client.get("/api/v1/employees", params={"limit": 200}, headers=auth).json()
    states = {e["id"]: e["lms_state"] for e in listed["items"]}
    assert states[ids["linked"]] == "linked"
    assert states[ids["new"]] == "not_linked"
    assert states[ids["excluded"]] == "excluded"
    # The same state as the employee's own LMS answer (and as the employees page).
    for employee_id, state in states.items():
        lms = client.get(f"/api/v1/employees/{employee_id}/lms", headers=auth).json()
        assert lms["state"] == state
    counts = overview(client, world.mhr_a)["counts"]
    for state in LMS_STATES:
        only = client.get("/api/v1/employees", params={"lms_state": state}, headers=auth).json()
        assert only["total"] == counts[state], state
        assert {e["lms_state"] for e in only["items"]} <= {state}
    both = {"lms_state": "skipped", "q": "skipped@"}
    assert client.get("/api/v1/employees", params=both, headers=auth).json()["total"] == 1
    unknown = client.get("/api/v1/employees", params={"lms_state": "lost"}, headers=auth)
    assert unknown.status_code == 422
    [error] = unknown.json()["errors"]
    assert (error["field"], error["code"]) == ("lms_state", "must be one of: {expected}")
    assert error["message"] == (
        "must be one of: not_linked, linked, deactivated, skipped, conflict, error, held, excluded"
    )


def test_run_outcomes_name_their_employee(client: TestClient, world: World, engine: Engine) -> None:
    ids = seed(client, world, engine)
    with Session(engine) as s, s.begin():
        for name in ("held", "new"):
            s.add(
                SyncOutcome(
                    run_id="run-held",
                    account_id=world.account_a,
                    employee_id=ids[name],
                    action="deactivate" if name == "held" else "create",
                    outcome="held" if name == "held" else "planned",
                )
            )
        s.add(
            SyncOutcome(
                run_id="run-held",
                account_id=world.account_a,
                employee_id="gone",
                action="none",
                outcome="none",
            )
        )
    auth = World.auth(world.mhr_a)
    run = client.get("/api/v1/lms/runs/run-held", headers=auth).json()
    named = {
        o["employee_id"]: (o["employee_number"], o["employee_name"])
        for o in run["outcomes"]["items"]
    }
    assert named == {
        ids["held"]: ("E-5", "Zoë Lévesque-Ngô"),
        ids["new"]: ("E-7", "Zoë Lévesque-Ngô"),
        "gone": (None, None),
    }
    held_only = client.get("/api/v1/lms/runs/run-held", params={"outcome": "held"}, headers=auth)
    assert [o["employee_number"] for o in held_only.json()["outcomes"]["items"]] == ["E-5"]
