"""The layout in a real browser: every page an HR manager reaches fits a phone, speaks French
when asked, and the top bar's language switcher changes the language for good."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta

from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.browser.conftest import PASSWORD, Site, shot

PHONE: ViewportSize = {"width": 390, "height": 844}
# Words an English page shows and a French one never should.
ENGLISH_ONLY = {
    "the", "and", "with", "from", "your", "this", "when", "will", "never", "Save", "Cancel",
    "Next", "Back", "Employees", "Employee", "Settings", "Search", "History", "Hire", "Terminate",
}  # fmt: skip
ENGLISH_PHRASES = ("Sign out", "LMS user", "Work email", "Last sync")
LONG_EMAIL = "marie-josee.lefebvre-tremblay.ressources-humaines@very-long-subdomain.example.com"


def _sign_in(page: Page, email: str = "mhr_a@example.com") -> None:
    """Sign in by the form's fields, whatever language the page speaks."""
    page.goto("/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(PASSWORD)
    page.locator('form[action="/login"] button[type="submit"]').click()
    page.wait_for_url("**/overview")


def _seed(site: Site) -> dict[str, str]:
    """Employees in each stage of employment, with long values that must wrap on a phone."""
    active = site.hire(
        "E-1",
        LONG_EMAIL,
        first_name="Marie-Josée",
        last_name="Lefebvre-Tremblay-Ngô",
        cell_phone="+1 514 555 0199",
        language="fr-CA",
        address="1234, boulevard de la Côte-des-Neiges, bureau 5678",
        city="Montréal",
        province="QC",
        country="CA",
    )
    leaving = site.hire("E-2", "leaving@example.com")
    gone = site.hire("E-3", "gone@example.com")
    for employee, day in [(leaving, date.today() + timedelta(days=30)), (gone, date(2026, 1, 9))]:
        response = site.api(
            "POST",
            f"/api/v1/employees/{employee['id']}/terminate",
            site.world.mhr_a,
            json={"termination_date": day.isoformat(), "reason": "Démission"},
        )
        assert response.status_code == 200, response.text
    return {"active": active["id"], "leaving": leaving["id"], "gone": gone["id"]}


def _visit_every_page(page: Page, site: Site, check: Callable[[str], None]) -> None:
    """Open each page an HR manager can reach and ``check(name)`` it."""
    ids = _seed(site)
    page.goto("/login")
    check("sign-in page")
    _sign_in(page)
    check("overview")
    paths = [
        ("employee list", "/employees"),
        ("hiring form", "/employees/new"),
        *[
            (f"employee file, {tab} tab", f"/employees/{ids['active']}?tab={tab}")
            for tab in ("profile", "employment", "security", "history")
        ],
        ("terminate page", f"/employees/{ids['active']}/terminate"),
        ("change-termination page", f"/employees/{ids['leaving']}/change-termination"),
        ("cancel-termination page", f"/employees/{ids['leaving']}/cancel-termination"),
        ("rehire page", f"/employees/{ids['gone']}/rehire"),
        ("LMS settings", "/settings/interfaces/lms"),
    ]
    for name, path in paths:
        page.goto(path)
        check(name)
    page.locator('form[action$="/lms/preview"] button[type="submit"]').click()
    expect(page.locator("#p-create")).to_be_visible()
    check("activation preview")
    site.activate()
    for name, path in [
        ("employee list after activation", "/employees"),
        ("employee file, LMS panel", f"/employees/{ids['active']}?tab=security"),
        ("employee file, history after activation", f"/employees/{ids['active']}?tab=history"),
        ("sync history", "/sync"),
        ("unlinked LMS users", "/lms/unlinked"),
        ("API tokens", "/tokens"),
    ]:
        page.goto(path)
        check(name)
    page.goto("/sync")
    page.locator('main a[href^="/sync/"]').first.click()
    expect(page.locator("#run-state")).to_be_visible()
    check("a run's page")


def test_no_page_is_wider_than_a_phone(browser: Browser, site: Site) -> None:
    context = browser.new_context(viewport=PHONE, base_url=site.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    too_wide: list[str] = []

    def check(name: str) -> None:
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if width[0] > width[1]:
            too_wide.append(f"{name} ({page.url}): {width[0]} px in a {width[1]} px window")
            shot(page, "phone-too-wide-" + re.sub(r"\W+", "-", name))

    try:
        _visit_every_page(page, site, check)
        page.goto("/employees")
        shot(page, "phone-employees")
    finally:
        context.close()
    assert not too_wide, "wider than the phone:\n" + "\n".join(too_wide)


def test_every_page_speaks_french(browser: Browser, site: Site) -> None:
    """Needs the whole French catalogue: any page text left untranslated fails it."""
    context = browser.new_context(viewport=PHONE, base_url=site.url, locale="fr-CA")
    page = context.new_page()
    page.set_default_timeout(15_000)
    english: list[str] = []

    def check(name: str) -> None:
        lang = page.locator("html").get_attribute("lang")
        text = page.evaluate("document.body.innerText")
        words = sorted(set(re.findall(r"[A-Za-zÀ-ÿ']+", text)) & ENGLISH_ONLY)
        words += [phrase for phrase in ENGLISH_PHRASES if phrase in text]
        if lang != "fr-CA" or words:
            english.append(f"{name} ({page.url}): lang={lang!r}, English: {', '.join(words)}")

    try:
        _visit_every_page(page, site, check)
    finally:
        context.close()
    assert not english, "not in French:\n" + "\n".join(english)


def _lang(page: Page) -> str | None:
    return page.locator("html").get_attribute("lang")


def test_the_language_switcher_changes_the_language_for_good(browser: Browser, site: Site) -> None:
    context = browser.new_context(viewport=PHONE, base_url=site.url, locale="en-CA")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _sign_in(page)
        page.goto("/employees?status=active")
        assert _lang(page) == "en"
        expect(page.locator('.sections a[aria-current="page"]')).to_have_attribute(
            "href", "/employees"
        )
        # app.js sends the form as soon as a language is chosen; the same page comes back.
        with page.expect_navigation():
            page.locator("#ui-language").select_option("fr_CA")
        assert page.url.endswith("/employees?status=active")
        assert _lang(page) == "fr-CA"
        page.reload()
        assert _lang(page) == "fr-CA"
        page.goto("/overview")
        assert _lang(page) == "fr-CA"
        expect(page.locator("#ui-language")).to_have_value("fr_CA")
        shot(page, "phone-overview-french")
        with page.expect_navigation():
            page.locator("#ui-language").select_option("")
        assert _lang(page) == "en"  # back to the account's default: the browser's English
    finally:
        context.close()

    # Without JavaScript, the switcher's own button sends it.
    context = browser.new_context(base_url=site.url, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _sign_in(page)
        page.locator("#ui-language").select_option("fr_CA")
        page.locator("form.lang button[type=submit]").click()
        page.wait_for_url("**/overview")
        assert _lang(page) == "fr-CA"
    finally:
        context.close()


def test_a_flash_message_is_shown_once(page: Page, site: Site) -> None:
    employee = site.hire("E-1", "once@example.com")
    _sign_in(page)
    page.goto(f"/employees/{employee['id']}?tab=security")
    page.locator("#f-lms_excluded").check()
    page.locator('form[action$="/exclusion"] button[type="submit"]').click()
    expect(page.get_by_role("status")).to_have_text("Excluded from the LMS interface.")
    expect(page).to_have_url(re.compile(r"/employees/[^?]+\?tab=security$"))
    page.reload()
    expect(page.locator(".flash")).to_have_count(0)
    expect(page.locator("#lms-state")).to_have_text("excluded")


def test_the_employee_file_in_french_on_a_desktop(browser: Browser, site: Site) -> None:
    """The Security and Access tab of a linked employee, read in French (the README's shot)."""
    ids = _seed(site)
    site.activate()
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, base_url=site.url, locale="fr-CA"
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _sign_in(page)
        page.goto(f"/employees/{ids['active']}?tab=security")
        expect(page.locator('[aria-current="page"]', has_text="Sécurité et accès")).to_be_visible()
        expect(page.locator("#lms-state")).to_have_text("associé")
        expect(page.get_by_text("Cochez cette case pour exclure cet employé")).to_be_visible()
        shot(page, "employee-file-security-fr")
    finally:
        context.close()
