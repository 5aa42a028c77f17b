"""A sync run's page against a real SCIM LMS: every count it shows can be filtered on, and the
filter shows as many rows as the count says (a plan; a real run, where no-ops and excluded
employees keep no row, says so); changed fields read as labels and human values."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from lmsync.settings import Settings
from lmsync.web.app import create_app
from tests.api.test_pages import sign_in
from tests.conftest import World
from tests.integration.conftest import Harness, configure
from tests.lms_peer import LmsProcess, scim_user

COUNT = re.compile(r'data-count="(\w+)">[^<]*<span class="count-n">([\d,]+)</span>')
ROWS = re.compile(r'id="row-count">\s*([\d,]+) rows?')
OPTION = re.compile(r'<option value="(\w+)"[^>]*>[^<]*\(([\d,]+)\)</option>')


@pytest.fixture
def harness(settings: Settings, world: World, lms: LmsProcess) -> Iterator[Harness]:
    app = create_app(settings, poll_seconds=0.1)
    with TestClient(app, raise_server_exceptions=False) as client:
        configure(client, world, lms, hourly_transfer=False)  # runs only when asked
        yield Harness(client, world, lms)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _rows(client: TestClient, run_id: str, **params: str) -> tuple[int, str]:
    page = client.get(f"/sync/{run_id}", params=params)
    assert page.status_code == 200, page.text
    found = ROWS.search(page.text)
    assert found, page.text
    return _number(found[1]), page.text


def check_counts_match_rows(harness: Harness, run_id: str, *, dry_run: bool) -> dict[str, int]:
    """Every count of the run's page is a filter option, and filtering on it shows as many rows
    (a real run: at most as many for "none" and "excluded", and the page says why)."""
    client = harness.client
    total, page = _rows(client, run_id, action="")
    counts = {key: _number(n) for key, n in COUNT.findall(page)}
    stored = harness.run(run_id)["run"]["counts"]
    assert counts == {key: n for key, n in stored.items() if n}, page
    options = {key: _number(n) for key, n in OPTION.findall(page)}
    assert set(counts) <= set(options), (
        f"counts that cannot be filtered: {set(counts) - set(options)}"
    )
    for key, n in options.items():
        assert _rows(client, run_id, action=key)[0] == n, key  # an option's number: its rows
    assert sum(options.values()) == total  # each row is under one key
    for key, n in counts.items():
        if dry_run or key not in ("none", "excluded"):
            assert options[key] == n, f"{key}: {n} counted, {options[key]} rows"
        else:
            assert options[key] <= n
            assert 'id="no-rows-note"' in page
    return counts


def test_a_runs_counts_match_its_rows(harness: Harness) -> None:
    lms = harness.lms
    lms.load([scim_user("pre@example.com")])
    linked = harness.hire("E-1", "pre@example.com")  # link
    harness.hire("E-2", "new@example.com")  # create
    harness.hire("E-3", None)  # skip
    harness.hire("E-4", "x@example.com", lms_excluded=True)  # excluded
    harness.hire("E-5", "dup@example.com")  # conflict (a work email shared in HR)
    harness.hire("E-6", "dup@example.com")
    harness.hire("E-7", "bad@example.com")  # create
    gone = harness.hire("E-8", "gone@example.com")  # none: terminated, never created
    terminated = harness.client.post(
        f"/api/v1/employees/{gone['id']}/terminate",
        json={"termination_date": "2024-06-01"},
        headers=harness.mhr,
    )
    assert terminated.status_code == 200, terminated.text
    token = sign_in(harness.client, "mhr_a@example.com")

    preview = harness.client.post("/settings/interfaces/lms/preview", data={"csrf_token": token})
    assert preview.status_code == 200, preview.text
    found = re.search(r'href="/sync/([\w-]+)"', preview.text)
    assert found
    plan = found[1]
    assert check_counts_match_rows(harness, plan, dry_run=True) == {
        "create": 2,
        "link": 1,
        "skip": 1,
        "conflict": 2,
        "none": 1,
        "excluded": 1,
    }

    lms.fault(status=400, methods=["POST"], count=1)  # one of the two creations is refused
    activated = harness.client.post(
        "/settings/interfaces/lms/activate",
        data={"csrf_token": token, "confirm": "yes", "preview_run_id": plan},
        follow_redirects=False,
    )
    assert activated.status_code == 303, activated.text
    run_id = activated.headers["location"].split("?")[0].rsplit("/", 1)[1]
    harness.wait_run(run_id)
    counts = check_counts_match_rows(harness, run_id, dry_run=False)
    assert (counts["create"], counts["failed"]) == (1, 1)
    assert counts["excluded"] == 1
    # A created LMS user's values read as labels and human values, not field names.
    _, created = _rows(harness.client, run_id, action="create")
    assert "First name: Zoë" in created
    assert "first_name:" not in created

    changed = harness.client.patch(
        f"/api/v1/employees/{linked['id']}", json={"job_title": "Welder"}, headers=harness.mhr
    )
    assert changed.status_code == 200, changed.text
    synced = harness.client.post("/sync/now", data={"csrf_token": token}, follow_redirects=False)
    assert synced.status_code == 303, synced.text
    update_run = synced.headers["location"].split("?")[0].rsplit("/", 1)[1]
    harness.wait_run(update_run)
    assert check_counts_match_rows(harness, update_run, dry_run=False)["update"] >= 1
    _, updated = _rows(harness.client, update_run, action="update")
    assert "Job title: — → Welder" in updated
    assert "changed: Job title" in updated
