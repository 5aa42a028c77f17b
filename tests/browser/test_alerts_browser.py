"""What needs an HR manager, in Debian's chromium: the overview, the banners on every page and the
emails (a real SMTP server started by the test), raised and cleared by what happens to the LMS."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from lmsync.settings import Settings
from lmsync.storage.tables import utcnow
from tests.browser.conftest import Site, shot, sign_in
from tests.integration.conftest import wait_for
from tests.smtp_peer import SmtpServer, smtp  # noqa: F401

PUBLIC_URL = "https://lmsync.example.com"


class Clock:
    """The app's "now": the real time, moved forward by ``ahead``."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.ahead


@pytest.fixture
def app_clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp: SmtpServer) -> Settings:  # noqa: F811
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=True,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_security="none",
        notify_poll_seconds=0.2,
        public_url=PUBLIC_URL,
    )


def test_a_held_run_raises_a_banner_and_an_email_until_approved(
    page: Page,
    site: Site,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    ids = [site.hire(f"E-{n}", f"p{n}@example.com")["id"] for n in range(22)]
    site.activate()
    manual = {"base_url": site.lms.base_url, "hourly_transfer": False}
    site.api("PUT", "/api/v1/lms/interface", site.world.mhr_a, json=manual)
    for employee_id in ids[:21]:
        site.api(
            "POST",
            f"/api/v1/employees/{employee_id}/terminate",
            site.world.mhr_a,
            json={"termination_date": "2026-11-20"},
        )
    sign_in(page, "mhr_a@example.com")
    expect(page.locator("[data-alert]")).to_have_count(0)
    page.goto("/settings/interfaces/lms")
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#run-state")).to_have_text("held")
    run_id = page.url.split("?")[0].rstrip("/").rsplit("/", 1)[1]
    # The run opens on what waits for approval; the employees say so.
    expect(page.locator("#row-count")).to_contain_text(
        "21 rows: the deactivations waiting for approval"
    )
    page.goto(f"/employees/{ids[0]}?tab=security")
    expect(page.locator("#lms-panel .badge").first).to_have_text("held: awaiting approval")

    for path in ("/overview", "/employees", "/sync", "/tokens"):
        page.goto(path)
        expect(page.locator('[data-alert="held"]')).to_contain_text(
            "21 deactivations of LMS users wait for approval"
        )
    page.goto("/overview")
    expect(page.locator("#count-held")).to_contain_text("21")
    shot(page, "overview-held")
    [mail] = smtp.inbox.wait_for(1)
    assert mail["To"] == "mhr_a@example.com"
    assert f"{PUBLIC_URL}/sync/{run_id}" in mail.get_content()

    page.locator('[data-alert="held"]').get_by_role("link").click()
    page.get_by_role("button", name="Approve and run").click()
    expect(page.locator("#run-state")).to_have_text("succeeded")
    page.goto("/overview")
    expect(page.locator('[data-alert="held"]')).to_have_count(0)
    assert sum(not u["active"] for u in site.lms.users()) == 21
    assert len(smtp.inbox.received()) == 1  # one email for the event


def test_the_lms_going_down_raises_a_banner_after_the_threshold_and_clears_when_back(
    page: Page,
    site: Site,
    app_clock: Clock,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    site.hire("E-1", "first@example.com")
    site.activate()
    site.lms.fault(status=401, count=1000)  # the LMS now refuses lmsync's credentials
    site.hire("E-2", "second@example.com")

    def failing() -> bool:
        seen = site.api("GET", "/api/v1/lms/overview", site.world.mhr_a).json()
        return seen["health"]["failing_since"] is not None

    wait_for(failing, timeout=15)
    sign_in(page, "mhr_a@example.com")
    page.goto("/overview")
    expect(page.locator("#health")).to_have_text("failing (for less than 15 minutes)")
    expect(page.locator('[data-alert="lms_down"]')).to_have_count(0)

    app_clock.ahead = timedelta(minutes=16)
    page.reload()
    banner = page.locator('[data-alert="lms_down"]')
    expect(banner).to_contain_text("The LMS has been failing since")
    expect(banner).to_contain_text("refused the credentials")
    expect(page.locator("#health")).to_have_text("failing")
    shot(page, "banner-lms-down")
    wait_for(
        lambda: any(
            "The LMS has been failing since" in str(m["Subject"]) for m in smtp.inbox.received()
        ),
        timeout=15,
    )

    httpx.delete(f"{site.lms.admin_url}/faults").raise_for_status()  # the LMS is back
    started = site.api("POST", "/api/v1/lms/sync", site.world.mhr_a, json={})
    assert started.status_code == 202, started.text
    wait_for(lambda: not failing(), timeout=15)
    page.goto("/employees")
    expect(page.locator('[data-alert="lms_down"]')).to_have_count(0)
    page.goto("/overview")
    expect(page.locator("#health")).to_have_text("healthy")
    shot(page, "overview")
