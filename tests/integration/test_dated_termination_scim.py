"""A termination dated today, against the real SCIM server: the LMS user stays active while the
last day worked lasts, and is deactivated within 2 s after midnight in the account's time zone,
by the worker alone (no manual sync). The sync's clock is driven to a few seconds before that
midnight, then runs at the speed of real time: no sleeping for hours, and no clock jump that
would wake the worker by itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from lmsync.domain.employment import end_of_day
from lmsync.settings import Settings
from lmsync.storage.tables import utcnow
from lmsync.web.app import create_app
from tests.conftest import World
from tests.integration.conftest import Harness, configure
from tests.lms_peer import LmsProcess

ZONE = "Pacific/Kiritimati"  # UTC+14: the first midnight on Earth
LEAD = 3.0  # seconds of real time between setting the clock and the boundary


class DrivenClock:
    """Real time plus an offset the test sets: time flows, from wherever the test put it."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@pytest.fixture
def driven(
    settings: Settings, world: World, lms: LmsProcess
) -> Iterator[tuple[Harness, DrivenClock]]:
    clock = DrivenClock()
    # A long poll: only the worker's own wake-up at the boundary can be in time.
    app = create_app(settings, poll_seconds=60, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        configure(client, world, lms)
        yield Harness(client, world, lms), clock


def test_a_termination_dated_today_deactivates_within_2s_after_local_midnight(
    driven: tuple[Harness, DrivenClock],
) -> None:
    harness, clock = driven
    client, lms = harness.client, harness.lms
    operator = World.auth(harness.world.operator)
    moved = client.patch(
        f"/api/v1/accounts/{harness.world.account_a}", json={"timezone": ZONE}, headers=operator
    )
    assert moved.status_code == 200, moved.text
    employee = harness.hire("E-1", "last.day@example.com")
    assert harness.activate()["status"] == "succeeded"
    assert lms.by_email("last.day@example.com")[0]["active"] is True

    # The sync's "now": LEAD seconds before midnight at the end of today in Kiritimati.
    today = utcnow().astimezone(ZoneInfo(ZONE)).date()
    midnight = end_of_day(today, ZONE)
    clock.offset = midnight - timedelta(seconds=LEAD) - utcnow()
    boundary = time.monotonic() + LEAD

    out = client.post(
        f"/api/v1/employees/{employee['id']}/terminate",
        json={"termination_date": today.isoformat(), "reason": "Resignation"},
        headers=harness.mhr,
    )
    assert out.status_code == 200, out.text
    assert out.json()["leaving_on"] == today.isoformat()

    # Until midnight the employee works: the LMS user stays active, the change run says why.
    while time.monotonic() < boundary - 0.5:
        assert lms.by_email("last.day@example.com")[0]["active"] is True
        time.sleep(0.1)
    state = harness.lms_state(employee["id"])
    assert state["state"] == "linked"
    assert state["next_action"] == "deactivate"
    assert today.isoformat() in state["next_action_when"]

    while time.monotonic() < boundary + 2.0:
        if lms.by_email("last.day@example.com")[0]["active"] is False:
            break
        time.sleep(0.02)
    late = time.monotonic() - boundary
    assert lms.by_email("last.day@example.com")[0]["active"] is False, (
        f"still active {late:.2f} s after midnight"
    )
    assert late > 0, "deactivated before the last day worked ended"
    runs = client.get("/api/v1/lms/runs", headers=harness.mhr).json()["items"]
    assert not [r for r in runs if r["trigger"] == "manual"]
