"""The API docs in a real browser with no internet: every request to another host is refused
(and recorded), and /docs (Swagger UI) and /redoc (ReDoc) must still render the API, break no
rule of their Content-Security-Policy and raise no script error."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Request, Route, expect

from lmsync.settings import Settings
from tests.browser.conftest import SCREENSHOTS, LiveServer

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def docs_url(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    """An lmsync server on SQLite: the docs read no data, one backend is enough."""
    folder = tmp_path_factory.mktemp("docs")
    shutil.copy(sqlite_template, folder / "lmsync.sqlite3")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'lmsync.sqlite3'}", data_dir=folder / "data"
    )
    server = LiveServer(settings)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@dataclass
class Offline:
    """What a page tried to fetch elsewhere, why its failed requests failed, and what went
    wrong in it (console errors, CSP violations included, and uncaught script errors)."""

    page: Page
    blocked: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def screenshot(page: Page, name: str) -> None:
    """The viewport only: the docs pages run to tens of thousands of pixels."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture
def offline(browser: Browser, docs_url: str) -> Iterator[Offline]:
    own = urlsplit(docs_url).netloc
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=docs_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    watch = Offline(page)

    def only_local(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == own:
            route.continue_()
        else:  # recorded by on_request
            route.abort("blockedbyclient")

    def on_request(request: Request) -> None:
        # Every request, those routing does not see too (Chromium does not route favicons).
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != own:
            watch.blocked.append(request.url)

    def on_failed(request: Request) -> None:
        watch.failures[request.url] = request.failure or ""

    def on_console(message: ConsoleMessage) -> None:
        # Chromium reports a CSP violation, and a failed load, as a console error.
        if message.type == "error":
            watch.problems.append(message.text)

    def on_error(error: Error) -> None:
        watch.problems.append(f"{error.name}: {error.message}")

    page.route("**/*", only_local)
    page.on("request", on_request)
    page.on("requestfailed", on_failed)
    page.on("console", on_console)
    page.on("pageerror", on_error)
    yield watch
    context.close()


def test_swagger_ui_renders_offline(offline: Offline) -> None:
    page = offline.page
    page.goto("/docs")
    expect(page.locator(".info .title")).to_contain_text("lmsync")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() > 5
    screenshot(page, "api-docs-swagger")
    # "Try it out" calls the API from the page (the policy's connect-src).
    health = page.locator(".opblock", has=page.locator("[data-path='/healthz']"))
    health.locator(".opblock-summary").click()
    health.get_by_role("button", name="Try it out").click()
    health.get_by_role("button", name="Execute").click()
    live = health.locator(".live-responses-table td.response-col_status:not(.col_header)")
    expect(live).to_have_text("200")
    assert offline.blocked == []
    assert offline.problems == []


def test_redoc_renders_offline(offline: Offline) -> None:
    page = offline.page
    page.goto("/redoc")
    expect(page.locator("h1").first).to_contain_text("lmsync")
    expect(page.get_by_role("heading", name="Liveness and database reachability")).to_be_visible()
    # The search runs in a blob: worker (the policy's worker-src).
    page.get_by_placeholder("Search...").fill("readiness")
    found = page.get_by_role("search").get_by_role("menuitem", name="Readiness: the database")
    expect(found.first).to_be_visible()
    screenshot(page, "api-docs-redoc")
    # ReDoc's sidebar always shows its maker's logo from the maker's CDN: the docs' policy
    # refuses it in the browser, before any connection, and ReDoc then hides the image.
    assert set(offline.blocked) <= {REDOC_LOGO}
    assert all(offline.failures.get(url) == "csp" for url in offline.blocked), offline.failures
    assert [p for p in offline.problems if REDOC_LOGO not in p] == []


def test_the_browser_gets_the_favicon(browser: Browser, docs_url: str) -> None:
    # Without the offline routing: Chromium does not route the requests it makes for a
    # favicon.ico, and with routing on it aborts them.
    context = browser.new_context(base_url=docs_url)
    try:
        response = context.new_page().goto("/favicon.ico")
        assert response is not None
        assert response.status == 200
        assert response.headers["content-type"] == "image/svg+xml"
    finally:
        context.close()
