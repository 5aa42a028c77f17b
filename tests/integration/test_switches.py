"""Switches that catch up (docs/rules.md, issue 10), against a real scim2-server process and the
in-process worker: for each switch, off → a change → the LMS does not follow → on → the LMS
matches within 2 s, without a manual sync. And a switch saved off says how many employees it
holds back (API, page, CLI)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lmsync.settings import Settings
from lmsync.sync.rules import DEACTIVATION_OFF, SYNC_USERS_OFF
from lmsync.web.app import create_app
from tests.api.test_pages import sign_in
from tests.conftest import World
from tests.db.test_cli import run
from tests.integration.conftest import Harness, LmsProcess, configure, wait_for

CATCH_UP_SECONDS = 2.0
LAST_DAY = "2025-06-30"  # in the past: with effective_immediately, access ends at once
ALL_OFF = {"hourly_transfer": False, "sync_users": False, "deactivate_terminated": False}
ALL_ON = {"hourly_transfer": True, "sync_users": True, "deactivate_terminated": True}


@pytest.fixture
def awake(settings: Settings, world: World, lms: LmsProcess) -> Iterator[Harness]:
    """A server whose worker only looks when woken (or every 30 s): a switch turned on must
    wake it, as an HR change does, for the LMS to follow within 2 s."""
    app = create_app(settings, poll_seconds=30)
    with TestClient(app, raise_server_exceptions=False) as client:
        configure(client, world, lms)
        yield Harness(client, world, lms)


def put_switches(harness: Harness, **switches: bool) -> dict[str, Any]:
    """Save the interface (same LMS, so the stored secret is kept) with these switches."""
    body = {"base_url": harness.lms.base_url, **switches}
    response = harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr)
    assert response.status_code == 200, response.text
    saved: dict[str, Any] = response.json()
    assert saved["connection_test"]["ok"] is True
    return saved


def employee(harness: Harness, employee_id: str) -> dict[str, Any]:
    response = harness.client.get(f"/api/v1/employees/{employee_id}", headers=harness.mhr)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def edit(harness: Harness, employee_id: str, **fields: Any) -> None:
    response = harness.client.patch(
        f"/api/v1/employees/{employee_id}", json=fields, headers=harness.mhr
    )
    assert response.status_code == 200, response.text


def terminate_now(harness: Harness, employee_id: str) -> None:
    response = harness.client.post(
        f"/api/v1/employees/{employee_id}/terminate",
        json={"termination_date": LAST_DAY, "effective_immediately": True},
        headers=harness.mhr,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "terminated"


def set_user_sync(harness: Harness, enabled: bool) -> None:
    response = harness.client.patch(
        f"/api/v1/accounts/{harness.world.account_a}",
        json={"user_sync_enabled": enabled},
        headers=World.auth(harness.world.operator),
    )
    assert response.status_code == 200, response.text


def held_by_the_worker(harness: Harness, *employee_ids: str) -> None:
    """Wait until the worker has looked at these employees (their due marker is cleared)."""
    wait_for(lambda: all(employee(harness, i)["lms_due_at"] is None for i in employee_ids))


def left_alone(harness: Harness, *employee_ids: str) -> None:
    """The worker leaves these employees alone: still due after the change woke it."""
    time.sleep(0.5)
    assert all(employee(harness, i)["lms_due_at"] is not None for i in employee_ids)


def caught_up(turn_on: Callable[[], Any], matches: Callable[[], Any]) -> tuple[Any, float]:
    """Turn a switch on, then poll the LMS until it matches; the answer and the seconds taken."""
    started = time.monotonic()
    answer = turn_on()
    wait_for(matches, timeout=CATCH_UP_SECONDS + 3, step=0.02)
    return answer, time.monotonic() - started


def title_of(harness: Harness, email: str) -> str | None:
    [user] = harness.lms.by_email(email)
    title: str | None = user.get("title")
    return title


def test_synchronize_lms_users_catches_up_when_turned_back_on(awake: Harness) -> None:
    harness = awake
    lms = harness.lms
    kept = harness.hire("E-1", "kept@example.com")
    harness.activate()
    assert put_switches(harness, sync_users=False)["held_back"] == {"sync_users": 0}

    new = harness.hire("E-2", "new@example.com")
    edit(harness, kept["id"], job_title="Controller")
    held_by_the_worker(harness, new["id"], kept["id"])
    assert lms.by_email("new@example.com") == []
    assert title_of(harness, "kept@example.com") is None
    assert harness.lms_state(new["id"])["reason"] == SYNC_USERS_OFF

    saved, seconds = caught_up(
        lambda: put_switches(harness, sync_users=True),
        lambda: lms.by_email("new@example.com") and title_of(harness, "kept@example.com"),
    )

    assert seconds < CATCH_UP_SECONDS, seconds
    assert saved["caught_up"] == {"sync_users": 2}
    assert saved["held_back"] == {}
    assert title_of(harness, "kept@example.com") == "Controller"
    wait_for(lambda: harness.lms_state(new["id"])["state"] == "linked")


def test_deactivation_of_terminated_employees_catches_up_when_turned_back_on(
    awake: Harness,
) -> None:
    harness = awake
    lms = harness.lms
    leaver = harness.hire("E-1", "leaver@example.com")
    harness.activate()
    put_switches(harness, deactivate_terminated=False)

    terminate_now(harness, leaver["id"])
    held_by_the_worker(harness, leaver["id"])
    assert lms.by_email("leaver@example.com")[0]["active"] is True
    assert harness.lms_state(leaver["id"])["reason"] == DEACTIVATION_OFF

    saved, seconds = caught_up(
        lambda: put_switches(harness, deactivate_terminated=True),
        lambda: lms.by_email("leaver@example.com")[0]["active"] is False,
    )

    assert seconds < CATCH_UP_SECONDS, seconds
    assert saved["caught_up"] == {"deactivate_terminated": 1}
    wait_for(lambda: harness.lms_state(leaver["id"])["state"] == "deactivated")


def test_automatic_transfer_catches_up_when_turned_back_on(awake: Harness) -> None:
    harness = awake
    changed = harness.hire("E-1", "hourly@example.com")
    harness.activate()
    put_switches(harness, hourly_transfer=False)

    edit(harness, changed["id"], job_title="Controller")
    left_alone(harness, changed["id"])
    assert title_of(harness, "hourly@example.com") is None

    saved, seconds = caught_up(
        lambda: put_switches(harness, hourly_transfer=True),
        lambda: title_of(harness, "hourly@example.com") == "Controller",
    )

    assert seconds < CATCH_UP_SECONDS, seconds
    assert saved["caught_up"] == {"hourly_transfer": 1}


def test_the_accounts_user_synchronization_catches_up_when_turned_back_on(awake: Harness) -> None:
    harness = awake
    lms = harness.lms
    harness.activate()
    set_user_sync(harness, False)

    late = harness.hire("E-1", "late@example.com")
    left_alone(harness, late["id"])
    assert lms.by_email("late@example.com") == []

    _, seconds = caught_up(
        lambda: set_user_sync(harness, True), lambda: lms.by_email("late@example.com")
    )

    assert seconds < CATCH_UP_SECONDS, seconds
    wait_for(lambda: harness.lms_state(late["id"])["state"] == "linked")


def test_switches_off_say_how_many_employees_they_hold_back(awake: Harness) -> None:
    harness = awake
    lms = harness.lms
    edited = harness.hire("E-1", "edited@example.com")
    harness.hire("E-2", "untouched@example.com")
    leaver = harness.hire("E-3", "leaver@example.com")
    # Before the activation the switches hold nothing back: the inactive interface does.
    before = put_switches(harness, **ALL_OFF)
    assert before["held_back"] == dict.fromkeys(ALL_OFF, 0)
    assert put_switches(harness, **ALL_ON)["caught_up"] == dict.fromkeys(ALL_ON, 0)
    harness.activate()
    assert put_switches(harness, **ALL_OFF)["held_back"] == dict.fromkeys(ALL_OFF, 0)

    harness.hire("E-4", "hired@example.com")
    harness.hire("E-5", None)  # no work email: would be skipped, still held back
    harness.hire("E-6", "excluded@example.com", lms_excluded=True)  # never counted
    edit(harness, edited["id"], job_title="Controller")
    terminate_now(harness, leaver["id"])
    edit(harness, leaver["id"], job_title="Gone")  # terminated: not held back by sync_users

    counted = put_switches(harness, **ALL_OFF)

    assert counted["held_back"] == {
        "sync_users": 3,  # hired, no email, edited
        "deactivate_terminated": 1,  # the leaver, whose LMS user is active
        "hourly_transfer": 4,  # due: hired, no email, edited, leaver
    }
    viewer = World.auth(harness.world.viewer_a)
    assert "held_back" not in harness.client.get("/api/v1/lms/interface", headers=viewer).json()

    saved, seconds = caught_up(
        lambda: put_switches(harness, **ALL_ON),
        lambda: (
            lms.by_email("hired@example.com")
            and title_of(harness, "edited@example.com") == "Controller"
            and lms.by_email("leaver@example.com")[0]["active"] is False
        ),
    )

    assert seconds < CATCH_UP_SECONDS, seconds
    assert saved["held_back"] == {}
    assert saved["caught_up"] == {
        "hourly_transfer": 4,
        "sync_users": 3,
        "deactivate_terminated": 1,
    }
    assert lms.by_email("excluded@example.com") == []
    assert title_of(harness, "untouched@example.com") is None


def test_the_page_and_the_cli_say_what_a_switch_holds_back(
    harness: Harness, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.activate()
    put_switches(harness, sync_users=False)
    waiting = harness.hire("E-1", "waiting@example.com")
    held_by_the_worker(harness, waiting["id"])
    csrf = sign_in(harness.client, "mhr_a@example.com")
    form = {"csrf_token": csrf, "base_url": harness.lms.base_url, "auth_type": "bearer"}

    page = harness.client.post(
        "/settings/interfaces/lms",
        data={**form, "hourly_transfer": "true", "deactivate_terminated": "true"},
    )

    assert page.status_code == 200
    assert "“Synchronize LMS users” is off: it holds back 1 employee (" in page.text
    assert "Deactivate LMS users of terminated employees” is off" not in page.text

    assert settings.database_url is not None
    monkeypatch.setenv("LMSYNC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LMSYNC_DATA_DIR", str(settings.data_dir))
    cli = CliRunner()
    configure = ("lms", "configure", "--account", harness.world.account_a)
    off = run(cli, *configure, "--url", harness.lms.base_url, "--no-sync-users", "--no-hourly")
    assert '"Synchronize LMS users" is off: it holds back 1 employee\n' in off + "\n"
    assert '"Activate automatic transfer to LMS at each hour" is off: it holds back 0' in off

    on = run(cli, *configure, "--url", harness.lms.base_url)  # every switch on

    assert '"Synchronize LMS users" is on again: 1 employee it held back due now' in on
    # The CLI cannot wake the server's worker: its next look (every 0.1 s here) picks it up.
    wait_for(lambda: harness.lms.by_email("waiting@example.com"), timeout=CATCH_UP_SECONDS)
