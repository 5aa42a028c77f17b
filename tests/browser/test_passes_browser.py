"""The LMS settings page's hourly passes and daily sweep, in Debian's chromium against the real
scim2-server: the sweep's hour and SCIM Bulk are set from the form, a bad hour is shown next to
its field, and the activation card says what the hourly pass reads."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Site, shot, sign_in


def _interface(site: Site) -> dict[str, object]:
    response = site.api("GET", "/api/v1/lms/interface", site.world.mhr_a)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_the_sweep_hour_and_bulk_are_set_from_the_form(page: Page, site: Site) -> None:
    sign_in(page, "mhr_a@example.com")
    page.goto("/settings/interfaces/lms")
    expect(page.get_by_label("Daily full sweep at (hour, UTC)")).to_have_value("3")
    expect(page.get_by_label("Send users in SCIM Bulk requests")).to_be_checked()

    page.get_by_label("Secret").fill(site.lms.token)
    page.get_by_label("Daily full sweep at (hour, UTC)").fill("22")
    page.get_by_label("Send users in SCIM Bulk requests").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("LMS interface saved.")).to_be_visible()
    # The connection test found both abilities of the server.
    expect(page.get_by_text("Bulk is off for this interface")).to_be_visible()
    expect(page.get_by_text("the server filters users on meta.lastModified")).to_be_visible()
    expect(page.get_by_label("Daily full sweep at (hour, UTC)")).to_have_value("22")
    expect(page.get_by_label("Send users in SCIM Bulk requests")).not_to_be_checked()
    stored = _interface(site)
    assert stored["sweep_hour"] == 22
    assert stored["modified_filter"] is True
    options = stored["options"]
    assert isinstance(options, dict)
    assert options["use_bulk"] is False

    site.activate()
    page.goto("/settings/interfaces/lms")
    card = page.locator("section", has=page.get_by_role("heading", name="Activation"))
    expect(card).to_contain_text("reads only the LMS users changed since the previous one")
    expect(card).to_contain_text("each day at 22:")
    expect(card).to_contain_text("the last one ran")
    shot(page, "passes-settings")


def test_a_bad_sweep_hour_is_shown_next_to_its_field(page: Page, site: Site) -> None:
    sign_in(page, "mhr_a@example.com")
    page.goto("/settings/interfaces/lms")
    page.get_by_label("Secret").fill(site.lms.token)
    field = page.get_by_label("Daily full sweep at (hour, UTC)")
    field.fill("24")
    page.get_by_role("button", name="Save").click()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#e-sweep_hour")).to_contain_text("must be at most 23")
    expect(page.get_by_text("nothing was saved")).to_be_visible()
    assert _interface(site)["sweep_hour"] == 3
