"""Conflict repair by hand through the API, against the real SCIM LMS: look LMS users up, link an
employee to the chosen one, unlink; never one LMS user for two employees."""

from __future__ import annotations

from typing import Any

from tests.api.test_pages import sign_in
from tests.integration.conftest import Harness, scim_user, wait_for


def candidates(harness: Harness, employee_id: str, q: str) -> list[dict[str, Any]]:
    response = harness.client.get(
        f"/api/v1/employees/{employee_id}/lms/candidates", params={"q": q}, headers=harness.mhr
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def link(harness: Harness, employee_id: str, lms_user_id: str) -> Any:
    return harness.client.put(
        f"/api/v1/employees/{employee_id}/lms/link",
        json={"lms_user_id": lms_user_id},
        headers=harness.mhr,
    )


def test_a_conflict_is_settled_by_linking_by_hand(harness: Harness) -> None:
    lms = harness.lms
    lms.load(
        [
            scim_user("twin@example.com", "Old", "Twin"),
            scim_user("TWIN@example.com", "New", "Twin", userName="twin.new"),
            scim_user("other@example.com", "Someone", "Else"),
        ]
    )
    twin = harness.hire("T-1", "twin@example.com", job_title="Nurse")
    other = harness.hire("T-2", "other@example.com")
    run = harness.activate()
    assert run["status"] == "succeeded", run
    state = harness.lms_state(twin["id"])
    assert state["state"] == "conflict"
    assert "several LMS users have this email" in state["reason"]

    found = candidates(harness, twin["id"], "Twin@Example.com")
    assert sorted(c["first_name"] for c in found) == ["New", "Old"]
    assert all(c["linked_to"] is None for c in found)
    by_name = candidates(harness, twin["id"], "Twi")  # part of a name
    assert {c["id"] for c in by_name} == {c["id"] for c in found}
    chosen = next(c for c in found if c["first_name"] == "New")

    taken = next(c for c in candidates(harness, twin["id"], "other@example.com"))
    assert taken["linked_to"] == other["id"]
    refused = link(harness, twin["id"], taken["id"])
    assert refused.status_code == 409
    assert f"already linked to employee {other['id']}" in refused.json()["detail"]
    unknown = link(harness, twin["id"], "no-such-user")
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "lms_user_id"

    assert link(harness, twin["id"], chosen["id"]).status_code == 204
    state = harness.lms_state(twin["id"])
    assert (state["state"], state["made_by"], state["lms_user_id"]) == (
        "linked",
        "manual",
        chosen["id"],
    )
    # The next change run writes the maintained fields to the chosen user only.
    wait_for(lambda: next(u for u in lms.users() if u["id"] == chosen["id"]).get("title"))
    old = next(u for u in lms.users() if u["name"]["givenName"] == "Old")
    assert "title" not in old
    events = harness.client.get(f"/api/v1/employees/{twin['id']}/events", headers=harness.mhr)
    assert events.json()[-1]["kind"] == "lms_linked"

    # Unlinked: the LMS user is left as it is.
    gone = harness.client.delete(f"/api/v1/employees/{twin['id']}/lms/link", headers=harness.mhr)
    assert gone.status_code == 204
    assert harness.lms_state(twin["id"])["state"] == "not_linked"
    assert next(u for u in lms.users() if u["id"] == chosen["id"])["active"] is True
    again = harness.client.delete(f"/api/v1/employees/{twin['id']}/lms/link", headers=harness.mhr)
    assert again.status_code == 409


def test_a_viewer_cannot_link(harness: Harness) -> None:
    employee = harness.hire("V-1", "v@example.com")
    response = harness.client.put(
        f"/api/v1/employees/{employee['id']}/lms/link",
        json={"lms_user_id": "x"},
        headers={"Authorization": f"Bearer {harness.world.viewer_a}"},
    )
    assert response.status_code == 403


def test_the_lms_users_linked_to_no_employee_are_listed_and_exported(harness: Harness) -> None:
    harness.lms.load(
        [
            scim_user("stranger@example.com", '=HYPERLINK("http://x")', "Stranger"),
            scim_user("known@example.com", "Known", "Person"),
        ]
    )
    harness.hire("K-1", "known@example.com")
    run = harness.activate()
    assert run["status"] == "succeeded", run
    listed = harness.client.get("/api/v1/lms/unlinked-users", headers=harness.mhr).json()
    assert [u["email"] for u in listed["items"]] == ["stranger@example.com"]
    assert listed["total"] == 1
    overview = harness.client.get("/api/v1/lms/overview", headers=harness.mhr).json()
    assert overview["unlinked"] == 1
    filtered = harness.client.get(
        "/api/v1/lms/unlinked-users", params={"q": "nobody"}, headers=harness.mhr
    ).json()
    assert filtered["total"] == 0

    sign_in(harness.client, "mhr_a@example.com")
    page = harness.client.get("/lms/unlinked")
    assert page.status_code == 200
    assert "stranger@example.com" in page.text
    exported = harness.client.get("/lms/unlinked.csv")
    assert exported.status_code == 200
    lines = exported.text.splitlines()
    assert lines[0] == "lms_user_id,email,first_name,last_name,active,seen_at"
    assert "'=HYPERLINK" in lines[1]  # a formula cell is neutralised
