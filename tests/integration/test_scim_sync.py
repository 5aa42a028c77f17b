"""docs/rules.md end to end: the API, the engine, the worker and a real scim2-server process."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from functools import partial

import pytest

from lmsync import i18n
from tests.api.test_pages import sign_in
from tests.integration.conftest import Harness, scim_user, wait_for

EXT = "urn:ietf:params:scim:schemas:extension:lms:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_connection_test_reports_findings(harness: Harness) -> None:
    response = harness.client.post("/api/v1/lms/interface/test", headers=harness.mhr)
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is True, report
    messages = " ".join(f["message"] for f in report["findings"])
    assert "authentication accepted" in messages
    assert f"LMS extension {EXT} found" in messages
    assert harness.lms.stats()["writes"] == 0


def test_connection_test_reports_bad_token_and_missing_extension(harness: Harness) -> None:
    body = {
        "base_url": harness.lms.base_url,
        "secret": "wrong",
        "options": {"extension_urn": "urn:example:missing:1.0:User"},
    }
    assert (
        harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr).status_code
        == 200
    )
    report = harness.client.post("/api/v1/lms/interface/test", headers=harness.mhr).json()
    assert report["ok"] is False
    assert any("authentication failed" in f["message"] for f in report["findings"])
    body["secret"] = harness.lms.token
    harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr)
    report = harness.client.post("/api/v1/lms/interface/test", headers=harness.mhr).json()
    assert any(
        "urn:example:missing:1.0:User is missing" in f["message"] for f in report["findings"]
    )


def test_interface_secret_is_write_only(harness: Harness) -> None:
    out = harness.client.get("/api/v1/lms/interface", headers=harness.mhr)
    assert out.json()["secret_set"] is True
    assert harness.lms.token not in out.text
    viewer = harness.client.put(
        "/api/v1/lms/interface",
        json={"base_url": "http://x.example"},
        headers={"Authorization": f"Bearer {harness.world.viewer_a}"},
    )
    assert viewer.status_code == 403


def test_activation_needs_user_sync_enabled(harness: Harness) -> None:
    harness.client.patch(
        f"/api/v1/accounts/{harness.world.account_a}",
        json={"user_sync_enabled": False},
        headers={"Authorization": f"Bearer {harness.world.operator}"},
    )
    response = harness.client.post(
        "/api/v1/lms/interface/activate", json={"dry_run": True}, headers=harness.mhr
    )
    assert response.status_code == 409
    assert "contact a product expert" in response.json()["detail"]


def test_every_rule_end_to_end(harness: Harness) -> None:
    lms = harness.lms
    lms.load([scim_user("ALREADY.there@Example.com", "Al", "Ready")])
    creator = harness.hire(
        "E-1",
        "Jean.Tremblay+hr@Example.CA",
        language="fr-CA",
        job_title="Payroll clerk",
        home_phone="514 555-0199",
        cell_phone="+1 (438) 555-0142 ext. 3",
        address="1000 rue Sherbrooke O.",
        city="Montréal",
        province="Québec",
        country="Canada",
        postal_code="H3A 3G4",
    )
    excluded = harness.hire("E-2", "excluded@example.com", lms_excluded=True)
    no_email = harness.hire("E-3", None)
    matched = harness.hire("E-4", "already.there@example.com")
    dup_1 = harness.hire("E-5", "shared@example.com")
    dup_2 = harness.hire("E-6", "SHARED@example.com")
    terminated = harness.hire("E-7", "leaver@example.com")
    harness.client.post(
        f"/api/v1/employees/{terminated['id']}/terminate",
        json={"termination_date": "2026-11-01"},
        headers=harness.mhr,
    )

    run = harness.activate()
    assert run["status"] == "succeeded", run
    assert run["counts"]["create"] == 1
    assert run["counts"]["link"] == 1

    # active, work email, no LMS user → created with every mapped field
    [created] = lms.by_email("Jean.Tremblay+hr@example.ca")
    assert created["userName"].casefold() == "jean.tremblay+hr@example.ca"
    assert created["externalId"] == creator["id"]
    assert created["name"] == {"givenName": "Zoë", "familyName": "Ngô E-1"}
    assert created["preferredLanguage"] == "fr-CA"
    assert created["title"] == "Payroll clerk"
    assert {p["type"]: p["value"] for p in created["phoneNumbers"]} == {
        "home": "+15145550199",
        "mobile": "+14385550142",
    }
    [address] = created["addresses"]
    assert (address["locality"], address["region"], address["country"]) == (
        "Montréal",
        "CA-QC",
        "CA",
    )
    assert created[ENTERPRISE] == {"employeeNumber": "E-1", "organization": "Alpha inc."}
    extension = created[EXT]
    registered = datetime.fromisoformat(extension["registrationDate"])
    expires = datetime.fromisoformat(extension["expirationDate"])
    assert expires.year - registered.year == 100
    assert (expires.month, expires.day) == (registered.month, registered.day)
    assert extension["notificationsEnabled"] is True
    assert extension["accessMode"] == "Request"
    assert created["active"] is True
    state = harness.lms_state(creator["id"])
    assert (state["state"], state["made_by"], state["lms_user_id"]) == (
        "linked",
        "created",
        created["id"],
    )

    # excluded → nothing
    assert lms.by_email("excluded@example.com") == []
    assert harness.lms_state(excluded["id"])["state"] == "excluded"
    # no work email → skipped with the reason
    state = harness.lms_state(no_email["id"])
    assert (state["state"], state["reason"]) == ("skipped", "work email required")
    # existing LMS user with the same email in another letter case → linked, no new user
    [existing] = lms.by_email("already.there@example.com")
    state = harness.lms_state(matched["id"])
    assert (state["state"], state["made_by"], state["lms_user_id"]) == (
        "linked",
        "matched",
        existing["id"],
    )
    assert existing["name"]["givenName"] == "Zoë"  # maintained fields written on link
    assert existing["externalId"] == matched["id"]
    # duplicate work email in HR → conflict for both, nothing written
    assert lms.by_email("shared@example.com") == []
    for dup in (dup_1, dup_2):
        state = harness.lms_state(dup["id"])
        assert (state["state"], state["reason"]) == ("conflict", "duplicate work email in HR")
    # terminated, never linked → never created
    assert lms.by_email("leaver@example.com") == []

    # linked, changed in HR → updated (no new user), email change included
    lms.reset_stats()
    harness.client.patch(
        f"/api/v1/employees/{creator['id']}",
        json={"job_title": "Payroll lead", "work_email": "jean.t@example.ca"},
        headers=harness.mhr,
    )
    wait_for(lambda: lms.by_email("jean.t@example.ca"))
    [updated] = lms.by_email("jean.t@example.ca")
    assert updated["id"] == created["id"]
    assert updated["title"] == "Payroll lead"
    assert len(lms.users()) == 2
    assert lms.stats()["requests"].get("POST", 0) == 0

    # terminated, linked → deactivated at once (no manual sync)
    harness.client.post(
        f"/api/v1/employees/{creator['id']}/terminate",
        json={"termination_date": "2026-11-20"},
        headers=harness.mhr,
    )
    wait_for(lambda: lms.by_email("jean.t@example.ca")[0]["active"] is False, timeout=2)
    assert harness.lms_state(creator["id"])["state"] == "deactivated"

    # rehired → reactivated
    harness.client.post(
        f"/api/v1/employees/{creator['id']}/rehire",
        json={"hire_date": "2027-01-04"},
        headers=harness.mhr,
    )
    wait_for(lambda: lms.by_email("jean.t@example.ca")[0]["active"] is True, timeout=5)

    # excluded while linked → frozen: a termination writes nothing
    harness.client.patch(
        f"/api/v1/employees/{matched['id']}", json={"lms_excluded": True}, headers=harness.mhr
    )
    harness.client.post(
        f"/api/v1/employees/{matched['id']}/terminate",
        json={"termination_date": "2026-11-20"},
        headers=harness.mhr,
    )
    time.sleep(0.5)
    assert lms.by_email("already.there@example.com")[0]["active"] is True

    # linked, LMS user gone (404) → link dropped, correlated again, created anew
    lms.delete(created["id"])
    harness.client.patch(
        f"/api/v1/employees/{creator['id']}", json={"job_title": "Controller"}, headers=harness.mhr
    )
    wait_for(lambda: lms.by_email("jean.t@example.ca"))
    [again] = lms.by_email("jean.t@example.ca")
    assert again["id"] != created["id"]
    assert again["title"] == "Controller"
    wait_for(lambda: harness.lms_state(creator["id"])["lms_user_id"] == again["id"])

    # the duplicate resolved in HR → both are synchronized
    harness.client.patch(
        f"/api/v1/employees/{dup_2['id']}",
        json={"work_email": "other@example.com"},
        headers=harness.mhr,
    )
    wait_for(lambda: lms.by_email("shared@example.com") and lms.by_email("other@example.com"))


def test_first_activation_1000_against_500(harness: Harness) -> None:
    lms = harness.lms
    # 500 LMS users: 250 share an email with an employee (half in another letter case)
    preexisting = []
    for n in range(250):
        email = f"emp{n}@example.com"
        preexisting.append(scim_user(email.upper() if n % 2 else email))
    preexisting += [scim_user(f"lms-only{n}@example.com") for n in range(250)]
    lms.load(preexisting)
    rows = ["employee_number,first_name,last_name,work_email,lms_excluded"]
    for n in range(1000):
        email = "" if n % 100 == 99 else f"emp{n}@example.com"  # 10 without email
        excluded = "true" if n % 100 == 98 else "false"  # 10 excluded
        rows.append(f"E{n:04d},First{n},Last{n},{email},{excluded}")
    upload = harness.client.post(
        "/api/v1/employees/import",
        files={"file": ("e.csv", "\n".join(rows).encode())},
        headers=harness.mhr,
    )
    assert upload.json()["imported_count"] == 1000

    preview = harness.client.post(
        "/api/v1/lms/interface/activate", json={"dry_run": True}, headers=harness.mhr
    ).json()
    # emp98/emp198 (excluded) and emp99/emp199 (no email) are among the 250 matching numbers
    assert preview["to_link"] == 246
    assert preview["to_create"] == 734
    assert preview["skipped_no_email"] == 10
    assert preview["excluded"] == 10
    assert preview["conflicts"] == 0
    assert lms.stats()["writes"] == 0

    started = time.monotonic()
    run = harness.activate()
    elapsed = time.monotonic() - started
    assert run["status"] == "succeeded", run
    assert run["counts"]["link"] == 246
    assert run["counts"]["create"] == 734
    users = lms.users()
    assert len(users) == 500 + 734
    emails = [u["emails"][0]["value"].casefold() for u in users]
    assert len(emails) == len(set(emails)), "duplicate LMS users"
    print(f"first activation of 1000 employees against 500 LMS users: {elapsed:.2f}s")

    lms.reset_stats()
    second = harness.sync(full=True)
    assert second["status"] == "succeeded"
    assert lms.stats()["writes"] == 0


def test_dry_run_writes_nothing(harness: Harness) -> None:
    for n in range(5):
        harness.hire(f"E-{n}", f"p{n}@example.com")
    leaver = harness.hire("E-9", "leaver@example.com")
    harness.client.post(
        f"/api/v1/employees/{leaver['id']}/terminate",
        json={"termination_date": "2026-11-01"},
        headers=harness.mhr,
    )
    harness.lms.reset_stats()
    response = harness.client.post(
        "/api/v1/lms/interface/activate", json={"dry_run": True}, headers=harness.mhr
    )
    assert response.json()["to_create"] == 5
    assert response.json()["nothing_to_do"] == 1  # the leaver: never created
    assert harness.lms.stats()["writes"] == 0
    assert harness.lms.users() == []
    run_id = response.json()["run_id"]
    outcomes = harness.run(run_id, action="create")["outcomes"]
    assert outcomes["total"] == 5
    assert {o["outcome"] for o in outcomes["items"]} == {"planned"}


def test_the_preview_shows_every_field_a_creation_will_write(harness: Harness) -> None:
    """The create-only fields (registration date, expiration +100 years, access mode) are in
    the preview, in each planned creation, in the plan's CSV, and equal what the activation
    then writes."""
    newcomer = harness.hire("E-1", "new.comer@example.com", job_title="Nurse")
    harness.lms.load([scim_user("already.there@example.com", "Ann", "There")])
    harness.hire("E-2", "already.there@example.com")
    preview = harness.client.post(
        "/api/v1/lms/interface/activate", json={"dry_run": True}, headers=harness.mhr
    ).json()
    create_only = preview["create_only"]
    assert create_only["access_mode"] == "Request"
    registered = datetime.fromisoformat(create_only["registration_date"])
    expires = datetime.fromisoformat(create_only["expiration_date"])
    assert registered.date() == datetime.now(registered.tzinfo).date()
    assert (expires.year - registered.year, expires.month, expires.day) == (
        100,
        registered.month,
        registered.day,
    )
    plan = {o["action"]: o for o in harness.run(preview["run_id"])["outcomes"]["items"]}
    assert plan["create"]["after"]["registration_date"] == create_only["registration_date"]
    assert plan["create"]["after"]["expiration_date"] == create_only["expiration_date"]
    assert plan["create"]["after"]["access_mode"] == "Request"
    assert plan["create"]["after"]["job_title"] == "Nurse"
    assert plan["create"]["after"]["notifications_enabled"] is True
    assert "registration_date" not in (plan["link"]["after"] or {})  # a link never writes them

    token = sign_in(harness.client, "mhr_a@example.com")
    page = harness.client.post("/settings/interfaces/lms/preview", data={"csrf_token": token})
    assert page.status_code == 200
    shown = page.text.split('id="create-only"')[1].split("</dl>")[0]
    # The page says the dates in the reader's language (English here: "Dec 3, 2026").
    assert i18n.format_date(registered.date()) in shown
    assert i18n.format_date(expires.date()) in shown
    assert "Request" in shown
    rows = list(
        csv.DictReader(io.StringIO(harness.client.get(f"/sync/{preview['run_id']}/plan.csv").text))
    )
    by_number = {r["employee_number"]: r for r in rows}
    assert by_number["E-1"]["lms.registration_date"] == create_only["registration_date"]
    assert by_number["E-1"]["lms.access_mode"] == "Request"
    assert by_number["E-1"]["lms.job_title"] == "Nurse"
    assert by_number["E-2"]["lms.registration_date"] == ""

    harness.activate()
    [created] = harness.lms.by_email("new.comer@example.com")
    extension = created[EXT]
    assert datetime.fromisoformat(extension["registrationDate"]) == registered
    assert datetime.fromisoformat(extension["expirationDate"]) == expires
    assert extension["accessMode"] == create_only["access_mode"]
    assert newcomer


def test_transient_failures_are_survived(harness: Harness) -> None:
    harness.activate()
    harness.lms.fault(status=503, count=2, methods=["POST"])
    first = harness.hire("E-1", "first@example.com")
    wait_for(lambda: harness.lms.by_email("first@example.com"), timeout=15)
    harness.lms.fault(status=429, count=1, retry_after=1, methods=["POST"])
    second = harness.hire("E-2", "second@example.com")
    wait_for(lambda: harness.lms.by_email("second@example.com"), timeout=15)
    stats = harness.lms.stats()
    assert stats["faulted"] == 3
    assert len(harness.lms.users()) == 2
    for employee_id in (first["id"], second["id"]):
        wait_for(partial(lambda i: harness.lms_state(i)["state"] == "linked", employee_id))


def test_deactivation_guard_holds_then_approval_applies(harness: Harness) -> None:
    ids = [harness.hire(f"E-{n}", f"p{n}@example.com")["id"] for n in range(25)]
    harness.activate()
    harness.client.put(
        "/api/v1/lms/interface",
        json={"base_url": harness.lms.base_url, "hourly_transfer": False},
        headers=harness.mhr,
    )
    for employee_id in ids[:21]:
        harness.client.post(
            f"/api/v1/employees/{employee_id}/terminate",
            json={"termination_date": "2026-11-20"},
            headers=harness.mhr,
        )
    run = harness.sync()
    assert run["status"] == "held"
    assert "21 deactivations planned" in run["message"]
    assert all(u["active"] for u in harness.lms.users())
    approved = harness.client.post(f"/api/v1/lms/runs/{run['id']}/approve", headers=harness.mhr)
    assert approved.status_code == 202
    final = harness.wait_run(approved.json()["run_id"])
    assert final["counts"]["deactivate"] == 21
    assert sum(not u["active"] for u in harness.lms.users()) == 21
    again = harness.client.post(f"/api/v1/lms/runs/{run['id']}/approve", headers=harness.mhr)
    assert again.status_code == 409


def test_manual_mode_waits_for_sync_now(harness: Harness) -> None:
    harness.activate()
    harness.client.put(
        "/api/v1/lms/interface",
        json={"base_url": harness.lms.base_url, "hourly_transfer": False},
        headers=harness.mhr,
    )
    employee = harness.hire("E-1", "manual@example.com")
    time.sleep(0.5)
    assert harness.lms.users() == []
    assert harness.lms_state(employee["id"])["next_action_when"] == "at the next manual sync"
    run = harness.sync()
    assert run["counts"]["create"] == 1
    assert len(harness.lms.by_email("manual@example.com")) == 1


@pytest.mark.parametrize("value", [0, 65, "many"])
def test_max_concurrency_out_of_range_is_a_field_error(harness: Harness, value: object) -> None:
    body = {"base_url": harness.lms.base_url, "options": {"max_concurrency": value}}
    response = harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr)
    assert response.status_code == 422
    fields = [error["field"] for error in response.json()["errors"]]
    assert fields == ["options.max_concurrency"]
    stored = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    assert stored["options"]["max_concurrency"] == 16  # nothing half-written
