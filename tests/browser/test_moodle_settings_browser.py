"""The LMS settings page with the Moodle connector, in Debian's chromium, against the real Moodle
peer: the form shows Moodle's fields only, saves, tests the connection and activates."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Site, shot, sign_in
from tests.moodle_peer import MoodleSite, moodle, moodle_site  # noqa: F401


def test_an_hr_manager_connects_moodle_from_the_page(
    page: Page,
    site: Site,
    moodle: MoodleSite,  # noqa: F811
) -> None:
    moodle.add_user("Pre.Existing@Example.com", "Pre", "Existing")
    site.hire("M-1", "pre.existing@example.com", language="fr-CA")
    site.hire("M-2", "new.hire@example.com", job_title="Welder")
    sign_in(page, "mhr_a@example.com")
    page.goto("/settings/interfaces/lms")
    expect(page.get_by_label("Authentication type")).to_be_visible()
    expect(page.get_by_label("Moodle auth method")).to_be_hidden()

    page.get_by_label("API interface").select_option("moodle")
    expect(page.get_by_label("Authentication type")).to_be_hidden()
    expect(page.get_by_label("Portal identifier", exact=True)).to_be_hidden()
    page.get_by_label("URL").fill(moodle.url)
    page.get_by_label("Secret").fill(moodle.token)
    page.get_by_label("Moodle language packs").fill("en, fr, fr-CA")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("LMS interface saved.")).to_be_visible()
    expect(page.get_by_text("Moodle site 'Moodle WS test peer'")).to_be_visible()
    expect(page.get_by_label("API interface")).to_have_value("moodle")
    expect(page.get_by_label("Moodle language packs")).to_have_value("en, fr, fr_ca")
    shot(page, "moodle-settings")
    assert moodle.token not in page.content()

    site.activate()
    [linked] = moodle.by_email("pre.existing@example.com")
    assert (linked["firstname"], linked["lang"]) == ("Zoë", "fr_ca")
    [created] = moodle.by_email("new.hire@example.com")
    assert created["department"] == "Welder"


def test_a_bad_language_code_is_shown_next_to_its_field(
    page: Page,
    site: Site,
    moodle: MoodleSite,  # noqa: F811
) -> None:
    sign_in(page, "mhr_a@example.com")
    page.goto("/settings/interfaces/lms")
    page.get_by_label("API interface").select_option("moodle")
    page.get_by_label("URL").fill(moodle.url)
    page.get_by_label("Secret").fill(moodle.token)
    page.get_by_label("Moodle language packs").fill("en, français")
    page.get_by_role("button", name="Save").click()
    field = page.get_by_label("Moodle language packs")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#e-languages")).to_contain_text("not a Moodle language pack code")
    expect(page.get_by_label("API interface")).to_have_value("moodle")
