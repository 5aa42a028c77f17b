"""The HR manager's pages in a real browser (Debian chromium + Playwright), against a real LMS."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from typing import Any

from babel.dates import format_date
from playwright.sync_api import Page, expect

from tests.browser.conftest import OPERATOR_EMAIL, Site, shot, sign_in
from tests.integration.conftest import scim_user, wait_for

EXCLUDE = (
    "Check this box to exclude this employee from the Learning Management System (LMS) interface"
)


def _linked(site: Site, employee_id: str) -> bool:
    state = site.api("GET", f"/api/v1/employees/{employee_id}/lms", site.world.mhr_a).json()
    return bool(state["state"] == "linked")


def test_hire_appears_in_the_lms(page: Page, site: Site) -> None:
    site.activate()
    sign_in(page, "mhr_a@example.com")
    shot(page, "employees-empty")
    page.get_by_role("link", name="Hire an employee").click()
    expect(page.get_by_label(EXCLUDE)).not_to_be_checked()
    page.get_by_label("Employee number").fill("E-100")
    page.get_by_label("First name").fill("Zoë")
    page.get_by_label("Last name").fill("Lévesque-Ngô")
    page.get_by_label("Work email").fill("Zoe.Levesque@Example.CA")
    page.get_by_label("Language").fill("fr-CA")
    page.get_by_label("Cell phone").fill("514 555-0199")
    page.get_by_label("Country").fill("Canada")
    page.get_by_label("Province").fill("Québec")
    shot(page, "employee-new")
    page.get_by_role("button", name="Hire").click()
    expect(page.get_by_role("status")).to_have_text("Employee hired.")
    wait_for(lambda: site.lms.by_email("zoe.levesque@example.ca"), timeout=10)
    [user] = site.lms.by_email("zoe.levesque@example.ca")
    assert user["name"] == {"givenName": "Zoë", "familyName": "Lévesque-Ngô"}
    page.reload()
    panel = page.locator("#lms-panel")
    expect(panel).to_contain_text("linked")
    expect(panel).to_contain_text("created by lmsync")
    expect(panel).to_contain_text(user["id"])
    shot(page, "employee-file-security")
    page.get_by_role("link", name="Profile").click()
    shot(page, "employee-file-profile")
    page.get_by_role("link", name="Employment").click()
    shot(page, "employee-file-employment")
    page.goto("/employees")
    expect(page.get_by_role("link", name="Lévesque-Ngô, Zoë")).to_be_visible()
    shot(page, "employees")


def test_exclude_keeps_the_employee_out(page: Page, site: Site) -> None:
    site.activate()
    sign_in(page, "mhr_a@example.com")
    page.goto("/employees/new")
    for label, value in [
        ("Employee number", "E-1"),
        ("First name", "Jean"),
        ("Last name", "Tremblay"),
        ("Work email", "jean@example.com"),
    ]:
        page.get_by_label(label).fill(value)
    page.get_by_label(EXCLUDE).check()
    page.get_by_role("button", name="Hire").click()
    expect(page.locator("#lms-panel")).to_contain_text("excluded")
    time.sleep(0.5)
    assert site.lms.by_email("jean@example.com") == []
    # including them again from the Security and Access tab creates the LMS user
    page.get_by_label(EXCLUDE).uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Included in the LMS interface.")
    wait_for(lambda: site.lms.by_email("jean@example.com"), timeout=10)


def test_terminate_deactivates_the_lms_user(page: Page, site: Site) -> None:
    site.activate()
    employee = site.hire("E-7", "leaver@example.com")
    wait_for(lambda: _linked(site, employee["id"]), timeout=10)
    sign_in(page, "mhr_a@example.com")
    page.goto(f"/employees/{employee['id']}?tab=employment")
    page.get_by_role("link", name="Terminate…").click()
    expect(page.get_by_text("The termination date is the last day worked")).to_be_visible()
    shot(page, "terminate-confirm")
    page.get_by_label("Last day worked").fill("2026-11-20")  # recorded after the fact
    page.get_by_label("Reason").fill("Resignation")
    page.get_by_role("button", name="Yes, terminate").click()
    expect(page.get_by_role("status")).to_have_text(
        "Terminated: the LMS user is deactivated within seconds."
    )
    wait_for(lambda: site.lms.by_email("leaver@example.com")[0]["active"] is False, timeout=5)
    page.get_by_role("link", name="Security and Access").click()
    expect(page.locator("#lms-panel")).to_contain_text("deactivated")


def test_the_lms_panel_shows_the_deactivation_without_a_reload(page: Page, site: Site) -> None:
    site.activate()
    employee = site.hire("E-9", "live@example.com")
    wait_for(lambda: _linked(site, employee["id"]), timeout=10)
    # The LMS asks lmsync to come back in 3 seconds: the deactivation is pending meanwhile.
    site.lms.fault(status=429, count=1, retry_after=3, methods=["PATCH"])
    sign_in(page, "mhr_a@example.com")
    page.goto(f"/employees/{employee['id']}?tab=employment")
    page.get_by_role("link", name="Terminate…").click()
    page.get_by_label("Last day worked").fill("2026-11-20")
    page.get_by_role("button", name="Yes, terminate").click()
    page.get_by_role("link", name="Security and Access").click()
    panel = page.locator("#lms-panel")
    expect(panel).to_contain_text("deactivate — within seconds")
    expect(panel.locator(".badge")).to_have_text("linked")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    expect(panel.locator(".badge")).to_have_text("deactivated", timeout=15_000)
    assert navigations == []  # the panel updated itself
    assert site.lms.by_email("live@example.com")[0]["active"] is False

    # The History tab: HR events and LMS actions, interleaved, newest first, who and when.
    page.get_by_role("link", name="History", exact=True).click()
    rows = page.locator("#timeline tbody tr")
    expect(rows.first).to_contain_text("LMS user deactivated")
    expect(rows.first).to_contain_text("lmsync (change run)")
    expect(page.locator('#timeline tr[data-source="hr"]').first).to_contain_text(
        "Termination recorded"
    )
    expect(page.locator('#timeline tr[data-source="hr"]').first).to_contain_text(
        "mhr_a@example.com"
    )
    expect(page.locator('#timeline tr[data-source="lms"]').last).to_contain_text("LMS user created")
    expect(page.locator('#timeline tr[data-source="hr"]').last).to_contain_text("Hired")
    shot(page, "employee-history")


def test_a_resignation_shows_leaving_on_and_can_be_cancelled(page: Page, site: Site) -> None:
    site.activate()
    employee = site.hire("E-8", "notice@example.com", last_name="Ngô")
    wait_for(lambda: _linked(site, employee["id"]), timeout=10)
    last_day = (date.today() + timedelta(days=30)).isoformat()
    shown_day = format_date(date.fromisoformat(last_day), "medium", locale="en")  # as pages say it
    sign_in(page, "mhr_a@example.com")
    page.goto(f"/employees/{employee['id']}?tab=employment")
    page.get_by_role("link", name="Terminate…").click()
    page.get_by_label("Last day worked").fill(last_day)
    page.get_by_label("Reason").fill("Resignation")
    page.get_by_role("button", name="Yes, terminate").click()
    expect(page.get_by_role("status")).to_have_text(
        "Termination recorded: the employee stays active until the last day worked ends."
    )
    expect(page.locator("#status-badge")).to_have_text(f"leaving on {shown_day}")
    expect(page.locator("#employment-status")).to_have_text(f"active, leaving on {shown_day}")
    shot(page, "employee-leaving")
    page.get_by_role("link", name="Security and Access").click()
    panel = page.locator("#lms-panel")
    expect(panel).to_contain_text(f"when {last_day} ends")
    time.sleep(0.5)  # the change run has had its chance: the user must stay active
    assert site.lms.by_email("notice@example.com")[0]["active"] is True
    page.goto("/employees?status=leaving")
    row = page.get_by_role("row").filter(has_text="Ngô")
    expect(row).to_contain_text(f"leaving on {shown_day}")
    shot(page, "employees-leaving")

    # The resignation is withdrawn: cancel, and nothing changes in the LMS.
    page.goto(f"/employees/{employee['id']}?tab=employment")
    page.get_by_role("link", name="Cancel termination…").click()
    expect(page.get_by_text("nothing changes in the LMS")).to_be_visible()
    page.get_by_label("Note (why)").fill("Resignation withdrawn")
    shot(page, "cancel-termination-confirm")
    page.get_by_role("button", name="Yes, cancel the termination").click()
    expect(page.get_by_role("status")).to_have_text(
        "Termination cancelled: the employment goes on."
    )
    expect(page.locator("#status-badge")).to_have_text("active")
    expect(page.get_by_role("link", name="Terminate…")).to_be_visible()
    latest = page.locator("#history tbody tr").first
    expect(latest).to_contain_text(
        f"Termination cancelled: last day worked {shown_day}, reason: Resignation, "
        "note: Resignation withdrawn"
    )
    expect(latest).to_contain_text("mhr_a@example.com")
    shot(page, "employment-history-cancelled")
    assert site.lms.by_email("notice@example.com")[0]["active"] is True
    events = site.api("GET", f"/api/v1/employees/{employee['id']}/events", site.world.mhr_a)
    assert [e["kind"] for e in events.json()][-2:] == ["terminated", "termination_cancelled"]


def test_activation_preview_then_confirm(page: Page, site: Site) -> None:
    site.lms.load([scim_user("ALREADY@example.com")])
    site.hire("E-1", "already@example.com")
    site.hire("E-2", "new@example.com")
    site.hire("E-3", None)
    site.hire("E-4", "out@example.com", lms_excluded=True)
    sign_in(page, "mhr_a@example.com")
    page.get_by_role("link", name="Settings", exact=True).click()
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("connection works")
    shot(page, "lms-settings")
    page.get_by_role("button", name="Preview the activation").click()
    expect(page.locator("#p-link")).to_have_text("1")
    expect(page.locator("#p-create")).to_have_text("1")
    expect(page.locator("#p-skip")).to_have_text("1")
    expect(page.locator("#p-excluded")).to_have_text("1")
    shot(page, "activation-preview")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the whole plan (CSV)").click()
    plan = download_info.value.path().read_text(encoding="utf-8")
    assert "already@example.com,link,planned" in plan
    assert "new@example.com,create,planned" in plan
    assert site.lms.stats()["writes"] == 0
    page.get_by_label("I have reviewed this plan").check()
    page.get_by_role("button", name="Activate").click()
    expect(page.locator("#run-state")).to_have_text("succeeded")
    shot(page, "sync-run")
    assert len(site.lms.users()) == 2
    page.get_by_role("link", name="Sync history").click()
    expect(page.get_by_text("activation").first).to_be_visible()
    shot(page, "sync-history")


def test_bad_form_shows_errors_and_keeps_values(page: Page, site: Site) -> None:
    sign_in(page, "mhr_a@example.com")
    page.goto("/employees/new")
    page.get_by_label("Employee number").fill("E-9")
    page.get_by_label("First name").fill("Zoë")
    page.get_by_label("Work email").fill("not-an-email@")
    page.get_by_label("Home phone").fill("abc")
    page.get_by_label("Country").fill("Atlantis")
    page.get_by_label(EXCLUDE).check()
    page.get_by_role("button", name="Hire").click()
    expect(page.get_by_role("alert")).to_contain_text("nothing was saved")
    expect(page.locator("#e-last_name")).to_have_text("is required")
    expect(page.locator("#e-home_phone")).to_contain_text("not a phone number")
    expect(page.locator("#e-country")).to_contain_text('unknown country "Atlantis"')
    expect(page.get_by_label("First name")).to_have_value("Zoë")
    expect(page.get_by_label("Home phone")).to_have_value("abc")
    expect(page.get_by_label(EXCLUDE)).to_be_checked()
    shot(page, "employee-new-errors")
    listed = site.api("GET", "/api/v1/employees", site.world.mhr_a).json()
    assert listed["total"] == 0


def test_viewer_cannot_change_anything(page: Page, site: Site) -> None:
    employee = site.hire("E-1", "seen@example.com")
    sign_in(page, "viewer_a@example.com")
    expect(page.get_by_role("link", name="Hire an employee")).to_have_count(0)
    page.goto(f"/employees/{employee['id']}?tab=security")
    expect(page.get_by_label(EXCLUDE)).to_be_disabled()
    expect(page.get_by_role("button", name="Sync this employee now")).to_have_count(0)
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    page.goto(f"/employees/{employee['id']}?tab=employment")
    expect(page.get_by_role("link", name="Terminate…")).to_have_count(0)
    page.goto("/settings/interfaces/lms")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    expect(page.get_by_label("URL")).to_be_disabled()
    shot(page, "viewer-settings")
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    refused = page.request.post(
        f"/employees/{employee['id']}/exclusion",
        form={"csrf_token": token or "", "lms_excluded": "true"},
    )
    assert refused.status == 403
    after = site.api("GET", f"/api/v1/employees/{employee['id']}", site.world.mhr_a).json()
    assert after["lms_excluded"] is False


def test_form_without_csrf_token_is_refused(page: Page, site: Site) -> None:
    sign_in(page, "mhr_a@example.com")
    refused = page.request.post(
        "/employees/new",
        form={"employee_number": "E-1", "first_name": "A", "last_name": "B"},
    )
    assert refused.status == 403
    assert "Reload the page" in refused.text()
    forged = page.request.post(
        "/employees/new",
        form={
            "csrf_token": "forged",
            "employee_number": "E-1",
            "first_name": "A",
            "last_name": "B",
        },
    )
    assert forged.status == 403
    assert site.api("GET", "/api/v1/employees", site.world.mhr_a).json()["total"] == 0


def test_held_run_is_approved_from_its_page(page: Page, site: Site) -> None:
    ids = [site.hire(f"E-{n}", f"p{n}@example.com")["id"] for n in range(22)]
    site.activate()
    site.api(
        "PUT",
        "/api/v1/lms/interface",
        site.world.mhr_a,
        json={"base_url": site.lms.base_url, "hourly_transfer": False},
    )
    for employee_id in ids[:21]:
        site.api(
            "POST",
            f"/api/v1/employees/{employee_id}/terminate",
            site.world.mhr_a,
            json={"termination_date": "2026-11-20"},
        )
    sign_in(page, "mhr_a@example.com")
    page.goto("/settings/interfaces/lms")
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#run-state")).to_have_text("held")
    expect(page.get_by_role("heading", name="Waiting for approval")).to_be_visible()
    shot(page, "sync-run-held")
    assert all(u["active"] for u in site.lms.users())
    page.get_by_role("button", name="Approve and run").click()
    expect(page.locator("#run-state")).to_have_text("succeeded")
    assert sum(not u["active"] for u in site.lms.users()) == 21


def test_operator_switches_user_sync_and_phone_width(page: Page, site: Site) -> None:
    sign_in_operator(page)
    row = page.get_by_role("row", name=re.compile("^B "))
    expect(row).to_contain_text("off")
    page.get_by_role("button", name="Switch on user synchronization for B").click()
    expect(page.get_by_role("status")).to_contain_text("switched on for B")
    shot(page, "operator-accounts")
    account: dict[str, Any] = site.api(
        "GET", f"/api/v1/accounts/{site.world.account_b}", site.world.operator
    ).json()
    assert account["user_sync_enabled"] is True
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/operator/accounts")
    shot(page, "operator-accounts-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 400


def sign_in_operator(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(OPERATOR_EMAIL)
    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/operator/accounts")


def test_linking_a_conflicted_employee_by_hand_resolves_it(page: Page, site: Site) -> None:
    site.lms.load(
        [
            scim_user("shared.box@example.com", "Front", "Desk"),
            scim_user("SHARED.BOX@example.com", "Ann", "Lee", userName="ann.lee"),
        ]
    )
    employee = site.hire("C-1", "shared.box@example.com", first_name="Ann", last_name="Lee")
    site.activate()
    sign_in(page, "mhr_a@example.com")
    page.goto("/overview")
    expect(page.locator('[data-alert="conflicts"]')).to_contain_text("1 employee cannot")
    page.goto(f"/employees/{employee['id']}?tab=security")
    panel = page.locator("#lms-panel")
    expect(panel.locator(".badge").first).to_have_text("conflict")
    expect(panel).to_contain_text("several LMS users have this email")
    page.get_by_label("Link to an LMS user by hand").fill("Lee")
    page.get_by_role("button", name="Search the LMS").click()
    row = page.locator("#candidates tbody tr", has_text="Ann Lee")
    expect(row).to_have_count(1)
    shot(page, "conflict-repair")
    row.get_by_role("button", name="Link").click()
    expect(page.get_by_role("status")).to_have_text(
        "Linked to the LMS user: its fields are written within seconds."
    )
    expect(panel.locator(".badge").first).to_have_text("linked")
    expect(panel).to_contain_text("linked by hand")
    expect(page.locator('[data-alert="conflicts"]')).to_have_count(0)
    page.get_by_role("link", name="History", exact=True).click()
    expect(page.locator('#timeline tr[data-source="hr"]').first).to_contain_text(
        "Linked by hand to an LMS user"
    )


def test_the_employee_list_shows_the_lms_state_without_a_reload(page: Page, site: Site) -> None:
    site.activate()
    # The LMS asks lmsync to come back in 3 seconds: the creation is pending meanwhile.
    site.lms.fault(status=429, count=1, retry_after=3, methods=["POST"])
    site.hire("L-1", "listed@example.com", last_name="Listed")
    sign_in(page, "mhr_a@example.com")
    row = page.get_by_role("row", name=re.compile("Listed"))
    expect(row).to_contain_text("not linked")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    expect(row.locator(".badge").last).to_have_text("linked", timeout=15_000)
    assert navigations == []
