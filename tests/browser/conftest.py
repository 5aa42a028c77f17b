"""Browser tests: Debian's chromium driven by Playwright against a live lmsync server (uvicorn in
a thread) wired to a real SCIM LMS process. Screenshots go to ``test-artifacts/screenshots``.

Chromium comes from the apt package (``scripts/test.sh`` installs it); Playwright never downloads
a browser. In CI a missing chromium fails these tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from lmsync.hr import accounts
from lmsync.settings import Settings
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import utcnow
from lmsync.web.app import create_app
from tests.conftest import IN_CI, World
from tests.lms_peer import LmsProcess

CHROMIUM = os.environ.get("LMSYNC_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct horse"
OPERATOR_EMAIL = "operator@example.com"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        message = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )
    yield browser
    browser.close()


class LiveServer:
    """lmsync's app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings, poll_seconds=0.1, clock=clock), log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("lmsync did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


@dataclass
class Site:
    url: str
    world: World
    lms: LmsProcess

    def api(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kwargs,
        )

    def hire(self, number: str, email: str | None, **fields: Any) -> dict[str, Any]:
        body = {
            "employee_number": number,
            "first_name": "Zoë",
            "last_name": f"Ngô {number}",
            "work_email": email,
            "hire_date": "2024-01-02",
            **fields,
        }
        response = self.api("POST", "/api/v1/employees", self.world.mhr_a, json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def activate(self) -> None:
        started = self.api(
            "POST", "/api/v1/lms/interface/activate", self.world.mhr_a, json={"dry_run": False}
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = self.api("GET", f"/api/v1/lms/runs/{run_id}", self.world.mhr_a).json()["run"]
            if run["status"] not in ("queued", "running"):
                assert run["status"] == "succeeded", run
                return
            time.sleep(0.05)
        raise AssertionError("activation did not finish")


@pytest.fixture
def app_clock() -> Callable[[], datetime]:
    """The app's "now" (a test module may drive it instead)."""
    return utcnow


@pytest.fixture
def site(
    settings: Settings,
    world: World,
    lms: LmsProcess,
    database_url: str,
    app_clock: Callable[[], datetime],
) -> Iterator[Site]:
    engine = make_engine(database_url)
    with transaction(make_session_factory(engine)) as session:
        accounts.create_user(session, email=OPERATOR_EMAIL, password=PASSWORD, is_operator=True)
    engine.dispose()
    server = LiveServer(settings, app_clock)
    server.start()
    try:
        site = Site(server.url, world, lms)
        enabled = site.api(
            "PATCH",
            f"/api/v1/accounts/{world.account_a}",
            world.operator,
            json={"user_sync_enabled": True},
        )
        assert enabled.status_code == 200
        configured = site.api(
            "PUT",
            "/api/v1/lms/interface",
            world.mhr_a,
            json={"base_url": lms.base_url, "secret": lms.token},
        )
        assert configured.status_code == 200, configured.text
        yield site
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def sign_in(page: Page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/overview")  # an HR manager's home page
    page.goto("/employees")


def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
