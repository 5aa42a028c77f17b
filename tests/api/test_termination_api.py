"""The API of dated terminations: leaving on a date, changing and cancelling a scheduled
termination, cancelling one recorded by mistake, and the refusals (409, 422, 403)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import Account
from tests.api.test_employees_api import API, hire
from tests.conftest import World

ZONE = "America/Toronto"


def in_toronto(engine: Engine, world: World) -> date:
    """Put account A in Toronto; its local date today."""
    with transaction(make_session_factory(engine)) as s:
        s.get_one(Account, world.account_a).timezone = ZONE
    return datetime.now(ZoneInfo(ZONE)).date()


def end_of(day: date) -> str:
    local = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(ZONE))
    return local.astimezone(UTC).isoformat().replace("+00:00", "Z")


def post(client: TestClient, token: str, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json=body, headers=World.auth(token))


def test_a_resignation_dated_later_keeps_the_employee_active_and_leaving(
    client: TestClient, world: World, engine: Engine
) -> None:
    today = in_toronto(engine, world)
    last_day = today + timedelta(days=45)
    employee = hire(client, world.mhr_a)
    url = f"{API}/{employee['id']}"
    out = post(
        client,
        world.mhr_a,
        f"{url}/terminate",
        {"termination_date": last_day.isoformat(), "reason": "Resignation"},
    )
    assert out.status_code == 200, out.text
    body = out.json()
    assert body["status"] == "active"
    assert body["leaving_on"] == last_day.isoformat()
    assert body["termination_date"] == last_day.isoformat()
    assert body["termination_effective_immediately"] is False
    assert body["access_ends_at"] == end_of(last_day)
    auth = World.auth(world.mhr_a)
    leaving = client.get(API, params={"status": "leaving"}, headers=auth).json()
    assert [e["id"] for e in leaving["items"]] == [employee["id"]]
    active = client.get(API, params={"status": "active"}, headers=auth).json()
    assert [e["id"] for e in active["items"]] == [employee["id"]]
    assert client.get(API, params={"status": "terminated"}, headers=auth).json()["total"] == 0

    again = post(client, world.mhr_a, f"{url}/terminate", {"termination_date": today.isoformat()})
    assert again.status_code == 409
    assert f"already leaving on {last_day.isoformat()}" in again.json()["detail"]
    rehire = post(client, world.mhr_a, f"{url}/rehire", {"hire_date": today.isoformat()})
    assert rehire.status_code == 409
    assert "cancel the termination instead" in rehire.json()["detail"]


def test_a_scheduled_termination_is_changed_then_cancelled(
    client: TestClient, world: World, engine: Engine
) -> None:
    today = in_toronto(engine, world)
    employee = hire(client, world.mhr_a)
    url = f"{API}/{employee['id']}"
    post(client, world.mhr_a, f"{url}/terminate", {"termination_date": today.isoformat()})
    auth = World.auth(world.mhr_a)

    later = today + timedelta(days=7)
    moved = client.patch(
        f"{url}/termination", json={"termination_date": later.isoformat()}, headers=auth
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["leaving_on"] == later.isoformat()
    assert moved.json()["access_ends_at"] == end_of(later)

    for bad, field in [
        ({"termination_date": None}, "termination_date"),
        ({"termination_date": "2020-01-01"}, "termination_date"),  # before the hire date
        ({"termination_date": "31/12/2026"}, "termination_date"),
        ({"effective_immediately": None}, "effective_immediately"),
    ]:
        refused = client.patch(f"{url}/termination", json=bad, headers=auth)
        assert refused.status_code == 422, (bad, refused.text)
        assert [e["field"] for e in refused.json()["errors"]] == [field], bad
    extra = client.patch(f"{url}/termination", json={"status": "active"}, headers=auth)
    assert extra.status_code == 422
    viewer = client.patch(
        f"{url}/termination", json={"reason": "x"}, headers=World.auth(world.viewer_a)
    )
    assert viewer.status_code == 403
    other_account = client.patch(
        f"{url}/termination", json={"reason": "x"}, headers=World.auth(world.mhr_b)
    )
    assert other_account.status_code == 404
    assert client.get(url, headers=auth).json()["leaving_on"] == later.isoformat()

    cancelled = post(client, world.mhr_a, f"{url}/cancel-termination", {"note": "Withdrawn"})
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["status"], body["leaving_on"], body["termination_date"]) == ("active", None, None)
    assert body["hire_date"] == employee["hire_date"]
    twice = post(client, world.mhr_a, f"{url}/cancel-termination", {})
    assert twice.status_code == 409
    nothing = client.patch(f"{url}/termination", json={"reason": "x"}, headers=auth)
    assert nothing.status_code == 409

    events = client.get(f"{url}/events", headers=auth).json()
    assert [e["kind"] for e in events] == [
        "hired",
        "terminated",
        "termination_changed",
        "termination_cancelled",
    ]
    assert len({e["actor_user_id"] for e in events}) == 1
    assert events[-1]["details"]["note"] == "Withdrawn"


def test_a_dismissal_and_a_past_date_take_effect_at_once_and_can_be_cancelled(
    client: TestClient, world: World, engine: Engine
) -> None:
    today = in_toronto(engine, world)
    dismissed, past = hire(client, world.mhr_a), hire(client, world.mhr_a, employee_number="E-2")
    out = post(
        client,
        world.mhr_a,
        f"{API}/{dismissed['id']}/terminate",
        {
            "termination_date": (today + timedelta(days=14)).isoformat(),
            "effective_immediately": True,
        },
    )
    assert (out.json()["status"], out.json()["leaving_on"]) == ("terminated", None)
    assert out.json()["termination_effective_immediately"] is True
    yesterday = (today - timedelta(days=1)).isoformat()
    out = post(
        client, world.mhr_a, f"{API}/{past['id']}/terminate", {"termination_date": yesterday}
    )
    assert (out.json()["status"], out.json()["leaving_on"]) == ("terminated", None)

    late = client.patch(
        f"{API}/{past['id']}/termination",
        json={"termination_date": today.isoformat()},
        headers=World.auth(world.mhr_a),
    )
    assert late.status_code == 409
    assert "took effect" in late.json()["detail"]
    undone = post(client, world.mhr_a, f"{API}/{past['id']}/cancel-termination", {})
    assert undone.json()["status"] == "active"
    assert undone.json()["lms_due_at"] is not None  # the LMS user is due for reactivation
