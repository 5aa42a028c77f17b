"""The Moodle connector end to end: lmsync's API and worker against a real Moodle 5.0 (the peer of
``tests.moodle_peer``), every rule of docs/rules.md, and what a real Moodle does to batches."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from lmsync.settings import Settings
from lmsync.web.app import create_app
from tests.conftest import World
from tests.integration.conftest import Harness, wait_for
from tests.lms_peer import LmsProcess
from tests.moodle_peer import LANGUAGES, MoodleSite, moodle, moodle_site  # noqa: F401


class MoodleHarness(Harness):
    site: MoodleSite

    def configure(self, **options: Any) -> dict[str, Any]:
        body = {
            "connector": "moodle",
            "base_url": self.site.url,
            "secret": self.site.token,
            "options": {"languages": LANGUAGES, **options},
        }
        response = self.client.put("/api/v1/lms/interface", json=body, headers=self.mhr)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def activate_dry(self) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/lms/interface/activate", json={"dry_run": True}, headers=self.mhr
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def mh(settings: Settings, world: World, moodle: MoodleSite) -> Iterator[MoodleHarness]:  # noqa: F811
    app = create_app(settings, poll_seconds=0.1)
    with TestClient(app, raise_server_exceptions=False) as client:
        enabled = client.patch(
            f"/api/v1/accounts/{world.account_a}",
            json={"user_sync_enabled": True},
            headers=World.auth(world.operator),
        )
        assert enabled.status_code == 200
        harness = MoodleHarness(client, world, cast(LmsProcess, None))
        harness.site = moodle
        harness.configure()
        yield harness


def test_connection_test_reports_the_site(mh: MoodleHarness) -> None:
    saved = mh.configure()
    report = saved["connection_test"]
    assert report["ok"] is True, report
    messages = " ".join(f["message"] for f in report["findings"])
    assert "Moodle site 'Moodle WS test peer', release 5.0.6+" in messages
    assert "every function lmsync needs" in messages
    assert "notificationsenabled" in messages  # the checkbox field, listed on every user
    assert mh.site.users() == []  # a test writes nothing
    shown = mh.client.get("/api/v1/lms/interface", headers=mh.mhr).json()
    assert shown["connector"] == "moodle"
    assert shown["options"]["languages"] == LANGUAGES
    assert shown["options"]["auth_method"] == "manual"

    bad = {"connector": "moodle", "base_url": mh.site.url, "secret": "0" * 32}
    response = mh.client.put("/api/v1/lms/interface", json=bad, headers=mh.mhr)
    assert response.status_code == 200, response.text
    report = response.json()["connection_test"]
    assert report["ok"] is False
    assert any("token was refused" in f["message"] for f in report["findings"])
    assert "0" * 32 not in response.text


def test_every_rule_on_moodle(mh: MoodleHarness) -> None:
    site = mh.site
    existing_id = site.add_user("ALREADY.there@Example.com", "Al", "Ready")
    # Two Moodle users with one email (Moodle refuses it through its forms and web services
    # unless "allowaccountssameemail" is on; an old import can leave them behind).
    twin_a = site.add_user("twin@example.com")
    twin_b = site.add_user("twin-b@example.com")
    site.sql(f"UPDATE mdl_user SET email = 'Twin@Example.com' WHERE id = {int(twin_b)}")  # noqa: S608
    # The username lmsync would give is held by someone else.
    site.add_user("someone.else@example.com", username="taken@example.com")

    creator = mh.hire(
        "E-1",
        "Jean.Tremblay@Example.CA",
        language="fr-CA",
        job_title="Payroll clerk",
        home_phone="514 555-0199",
        cell_phone="+1 (438) 555-0142",
        address="1000 rue Sherbrooke O.",
        city="Montréal",
        province="Québec",
        country="Canada",
        postal_code="H3A 3G4",
    )
    excluded = mh.hire("E-2", "excluded@example.com", lms_excluded=True)
    no_email = mh.hire("E-3", None)
    matched = mh.hire("E-4", "already.there@example.com", language="es")
    dup_1 = mh.hire("E-5", "shared@example.com")
    dup_2 = mh.hire("E-6", "SHARED@example.com")
    twin = mh.hire("E-7", "twin@example.com")
    taken = mh.hire("E-8", "Taken@Example.com")
    plus = mh.hire("E-10", "ann+training@example.com")
    leaver = mh.hire("E-9", "leaver@example.com")
    mh.client.post(
        f"/api/v1/employees/{leaver['id']}/terminate",
        json={"termination_date": "2026-11-01"},
        headers=mh.mhr,
    )

    run = mh.activate()
    assert run["status"] == "partial", run  # the "+" address below
    assert (run["counts"]["create"], run["counts"]["link"]) == (1, 1), run
    assert run["counts"]["failed"] == 1, run

    # active, work email, no Moodle user → created with every mapped field
    [created] = site.by_email("jean.tremblay@example.ca")
    assert created["username"] == "jean.tremblay@example.ca"
    assert created["email"] == "Jean.Tremblay@Example.CA"
    assert (created["firstname"], created["lastname"]) == ("Zoë", "Ngô E-1")
    assert created["idnumber"] == "E-1"
    assert created["lang"] == "fr_ca"
    assert (created["institution"], created["department"]) == ("Alpha inc.", "Payroll clerk")
    assert (created["address"], created["city"], created["country"]) == (
        "1000 rue Sherbrooke O.",
        "Montréal",
        "CA",
    )
    assert created["auth"] == "manual"
    assert created["suspended"] is False
    custom = site.custom(created)
    assert (custom["province"], custom["postalcode"]) == ("CA-QC", "H3A 3G4")
    assert custom["accessmode"] == "Request"
    assert custom["notificationsenabled"] == "1"
    registered = datetime.fromtimestamp(int(custom["registrationdate"]), UTC)
    expires = datetime.fromtimestamp(int(custom["expirationdate"]), UTC)
    assert expires.year - registered.year == 100
    # Phones are hidden from the web-service user unless "Show user identity" lists them.
    user_id = int(created["id"])
    [[phone1, phone2]] = site.sql(f"SELECT phone1, phone2 FROM mdl_user WHERE id = {user_id}")  # noqa: S608
    assert (phone1, phone2) == ("+15145550199", "+14385550142")
    state = mh.lms_state(creator["id"])
    assert (state["state"], state["made_by"], state["lms_user_id"]) == (
        "linked",
        "created",
        str(created["id"]),
    )

    # excluded → never created
    assert site.by_email("excluded@example.com") == []
    assert mh.lms_state(excluded["id"])["state"] == "excluded"
    # no work email → skipped with the reason
    state = mh.lms_state(no_email["id"])
    assert (state["state"], state["reason"]) == ("skipped", "work email required")
    # a Moodle user with the same email in another letter case → linked, no new user
    state = mh.lms_state(matched["id"])
    assert (state["state"], state["made_by"], state["lms_user_id"]) == (
        "linked",
        "matched",
        str(existing_id),
    )
    linked = site.user(existing_id)
    assert (linked["firstname"], linked["idnumber"], linked["lang"]) == ("Zoë", "E-4", "es")
    assert len(site.by_email("already.there@example.com")) == 1
    # two Moodle users with the employee's email → conflict, both left alone
    state = mh.lms_state(twin["id"])
    assert state["state"] == "conflict"
    assert str(twin_a) in state["reason"]
    assert str(twin_b) in state["reason"]
    # duplicate work email in HR → conflict for both, nothing written
    assert site.by_email("shared@example.com") == []
    for dup in (dup_1, dup_2):
        state = mh.lms_state(dup["id"])
        assert (state["state"], state["reason"]) == ("conflict", "duplicate work email in HR")
    # the username is held by another Moodle user → conflict, with the reason
    state = mh.lms_state(taken["id"])
    assert state["state"] == "conflict", state
    assert "username 'taken@example.com' is taken" in state["reason"]
    # a work email Moodle refuses as a username ("+") → refused with the reason
    state = mh.lms_state(plus["id"])
    assert state["state"] == "error", state
    assert "cannot be a Moodle username" in state["reason"]
    # terminated, never linked → never created
    assert site.by_email("leaver@example.com") == []
    assert len(site.users()) == 5  # the 4 seeded users and the one created

    # linked, changed in HR → the same Moodle user updated, email and username included
    mh.client.patch(
        f"/api/v1/employees/{creator['id']}",
        json={"job_title": "Payroll lead", "work_email": "jean.t@example.ca"},
        headers=mh.mhr,
    )
    wait_for(lambda: site.by_email("jean.t@example.ca"), timeout=5)
    updated = site.user(created["id"])
    assert (updated["email"], updated["username"]) == ("jean.t@example.ca", "jean.t@example.ca")
    assert updated["department"] == "Payroll lead"
    assert len(site.users()) == 5

    # terminated, linked → suspended within 2 seconds, without a manual sync
    mh.client.post(
        f"/api/v1/employees/{creator['id']}/terminate",
        json={"termination_date": "2026-11-20"},
        headers=mh.mhr,
    )
    start = time.monotonic()
    wait_for(lambda: site.user(created["id"])["suspended"] is True, timeout=2)
    assert time.monotonic() - start < 2
    assert mh.lms_state(creator["id"])["state"] == "deactivated"

    # rehired → unsuspended
    mh.client.post(
        f"/api/v1/employees/{creator['id']}/rehire",
        json={"hire_date": "2027-01-04"},
        headers=mh.mhr,
    )
    wait_for(lambda: site.user(created["id"])["suspended"] is False, timeout=5)

    # linked, Moodle user deleted → link dropped, correlated again, created anew
    site.call("core_user_delete_users", userids=[created["id"]])
    mh.client.patch(
        f"/api/v1/employees/{creator['id']}", json={"job_title": "Controller"}, headers=mh.mhr
    )
    wait_for(lambda: site.by_email("jean.t@example.ca"), timeout=5)
    [again] = site.by_email("jean.t@example.ca")
    assert again["id"] != created["id"]
    assert again["department"] == "Controller"
    wait_for(lambda: mh.lms_state(creator["id"])["lms_user_id"] == str(again["id"]))


def test_dry_run_writes_nothing_and_a_second_pass_writes_nothing(mh: MoodleHarness) -> None:
    site = mh.site
    site.add_user("Case.Variant@Example.com", "Case", "Variant")
    for n in range(12):
        mh.hire(f"D-{n}", f"person.{n}@example.com", city="Laval", country="CA", language="fr")
    mh.hire("D-99", "case.variant@example.com")

    plan = mh.activate_dry()
    assert (plan["to_create"], plan["to_link"]) == (12, 1), plan
    assert [u["email"] for u in site.users()] == ["Case.Variant@Example.com"]

    run = mh.activate()
    assert run["status"] == "succeeded", run
    assert len(site.users()) == 13
    [[before]] = site.sql("SELECT max(timemodified) FROM mdl_user")

    run = mh.sync(full=True)
    assert run["status"] == "succeeded", run
    writes = {k: v for k, v in run["counts"].items() if k in ("create", "update", "link")}
    assert not any(writes.values()), run
    [[after]] = site.sql("SELECT max(timemodified) FROM mdl_user")
    assert after == before


def test_a_batch_with_one_refused_user_creates_the_others(mh: MoodleHarness) -> None:
    site = mh.site
    site.add_user("someone.else@example.com", username="b.12@example.com")
    mh.configure(max_concurrency=1)  # one chunk: the 30 creates go in one call
    employees = [mh.hire(f"B-{n}", f"b.{n}@example.com") for n in range(30)]

    run = mh.activate()
    assert run["status"] == "succeeded", run
    assert run["counts"]["create"] == 29, run
    assert run["counts"]["conflict"] == 1, run
    emails = {u["email"] for u in site.users()}
    assert emails == {f"b.{n}@example.com" for n in range(30) if n != 12} | {
        "someone.else@example.com"
    }
    state = mh.lms_state(employees[12]["id"])
    assert state["state"] == "conflict"
    assert "taken" in state["reason"]


def test_a_batch_past_max_input_vars_loses_no_field(mh: MoodleHarness) -> None:
    # Configured as if PHP took 100,000 fields: the site takes 5,000 and refuses larger calls.
    saved = mh.configure(max_concurrency=1, batch_size=1000, max_input_vars=100_000)
    assert "up to 1000 users per call" in str(saved["connection_test"])
    for n in range(260):
        mh.hire(
            f"M-{n}",
            f"m.{n}@example.com",
            language="de",
            job_title="Welder",
            cell_phone="+1 438 555 0142",
            address="1 rue X",
            city="Laval",
            province="Québec",
            country="Canada",
            postal_code="H7A 1A1",
        )
    run = mh.activate()
    assert run["status"] == "succeeded", run
    assert run["counts"]["create"] == 260, run
    users = mh.site.users()
    assert len(users) == 260
    for user in users:
        custom = mh.site.custom(user)
        assert (user["lang"], user["department"], user["city"], user["country"]) == (
            "de",
            "Welder",
            "Laval",
            "CA",
        ), user
        assert user["idnumber"] == "M-" + user["email"].split(".")[1].split("@")[0]
        assert (custom["province"], custom["postalcode"], custom["accessmode"]) == (
            "CA-QC",
            "H7A 1A1",
            "Request",
        ), user
        assert custom["notificationsenabled"] == "1"
        assert "registrationdate" in custom
        assert "expirationdate" in custom
    phones = mh.site.sql("SELECT count(*) FROM mdl_user WHERE phone2 = '+14385550142'")
    assert phones == [["260"]]


def test_a_profile_field_missing_on_moodle_is_reported_and_not_rewritten(
    mh: MoodleHarness,
) -> None:
    mh.configure(profile_fields={"province": "regionx"})  # no such field on the site
    for n in range(3):
        mh.hire(f"P-{n}", f"p.{n}@example.com", province="Québec", country="Canada")
    run = mh.activate()
    assert run["status"] == "succeeded", run
    assert run["counts"]["create"] == 3
    assert "custom profile fields missing on Moodle (values not kept): regionx" in run["message"]
    [user, *_] = mh.site.users()
    assert "regionx" not in mh.site.custom(user)

    again = mh.sync(full=True)
    assert again["status"] == "succeeded", again
    assert not again["counts"].get("update"), again
