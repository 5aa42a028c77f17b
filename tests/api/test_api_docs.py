"""The API docs need no internet: /docs and /redoc name only lmsync's own assets, those assets
are served, the docs' Content-Security-Policy names no outside host, and /favicon.ico answers."""

from __future__ import annotations

import html
import json
import re

import pytest
from fastapi.testclient import TestClient

from lmsync.web.api_docs import FAVICON_URL

# Every URL a page can make the browser fetch: src/href attributes and ReDoc's spec-url.
URL_ATTRIBUTE = re.compile(r"""\b(src|href|spec-url)\s*=\s*["']([^"']*)["']""", re.I)
# The sources the docs' policy may name: no scheme with a host, no wildcard.
LOCAL_SOURCES = {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}


def local(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


def urls(page: str) -> list[str]:
    return [html.unescape(m.group(2)) for m in URL_ATTRIBUTE.finditer(page)]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_pages_name_only_local_assets(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    found = urls(page)
    assert found, page
    assert [u for u in found if not local(u)] == []
    assert "://" not in page  # no absolute URL anywhere, in a script's text or a config either
    for url in found:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url


def test_swagger_ui_starts_from_a_static_script_with_no_outside_validator(
    client: TestClient,
) -> None:
    page = client.get("/docs").text
    scripts = re.findall(r"<script\b[^>]*>", page, re.I)
    assert scripts
    assert all("src=" in tag for tag in scripts), scripts  # no inline script
    match = re.search(r'data-config="([^"]*)"', page)
    assert match is not None
    config = json.loads(html.unescape(match.group(1)))
    assert config["url"] == "/openapi.json"
    assert config["dom_id"] == "#swagger-ui"
    assert config["validatorUrl"] is None  # else the UI shows a badge fetched from outside


def test_the_docs_policy_names_no_outside_host(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        policy = client.get(path).headers["content-security-policy"]
        assert not re.search(r"https?:", policy), policy
        directives = {
            part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()
        }
        assert directives["script-src"] == ["'self'"]  # no 'unsafe-inline' for scripts
        assert directives["frame-ancestors"] == ["'none'"]
        for name, sources in directives.items():
            assert set(sources) <= LOCAL_SOURCES, (name, sources)


def test_the_favicon_is_served(client: TestClient) -> None:
    for path in ("/favicon.ico", FAVICON_URL):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert response.text.lstrip().startswith("<svg")
        assert "no-store" not in response.headers.get("cache-control", "")
