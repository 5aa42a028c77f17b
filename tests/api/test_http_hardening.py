"""HTTP-level hardening, on both databases: security headers on every answer, templates that
need no inline script or style, the body size limit, `next` links that ignore the Host header,
bounded offsets, and idempotency keys that never replay across two accounts of one login."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from lmsync.hr import accounts
from lmsync.settings import Settings
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import Account, Employee
from lmsync.web.app import create_app
from tests.api.test_employees_api import hire, zoe
from tests.conftest import World

API = "/api/v1/employees"
PAGE_CSP = {
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "frame-ancestors 'none'",
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
}


def directives(policy: str) -> set[str]:
    return {part.strip() for part in policy.split(";") if part.strip()}


def assert_hardened(response: Any, *, cacheable: bool = False) -> None:
    headers = response.headers
    assert directives(headers["content-security-policy"]) == PAGE_CSP, response.request.url
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert "camera=()" in headers["permissions-policy"]
    if cacheable:
        assert "no-store" not in headers.get("cache-control", "")
    else:
        assert headers["cache-control"] == "no-store"


def sign_in(client: TestClient, email: str) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]*)"', form)
    data = {"email": email, "password": "correct horse", "next": "/employees"}
    if token:
        data["csrf_token"] = token.group(1)
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text


# --- security headers ---------------------------------------------------------------------


def test_every_kind_of_answer_carries_the_security_headers(
    client: TestClient, world: World
) -> None:
    auth = World.auth(world.mhr_a)
    hire(client, world.mhr_a)
    assert_hardened(client.get("/login"))  # page
    assert_hardened(client.get("/nowhere"))  # error page
    assert_hardened(client.get(API, headers=auth))  # API, personal data
    assert_hardened(client.get(f"{API}/unknown", headers=auth))  # API problem
    assert_hardened(client.get(API))  # 401
    malformed = {**auth, "Content-Type": "application/json"}
    assert_hardened(client.post(API, content=b"{", headers=malformed))  # 400
    assert_hardened(client.get("/healthz"))
    assert_hardened(client.get("/static/app.css"), cacheable=True)
    assert_hardened(client.get("/employees", follow_redirects=False))  # redirect to sign in
    sign_in(client, "mhr_a@example.com")
    assert_hardened(client.get("/employees"))


def test_an_unexpected_error_carries_the_security_headers(settings: Settings) -> None:
    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/api/v1/boom", boom)
    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/api/v1/boom", "/boom"):
            response = client.get(path)
            assert response.status_code == 500
            assert_hardened(response)


def test_docs_get_their_own_policy_and_pages_allow_nothing_inline(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        response = client.get(path)
        assert response.status_code == 200
        policy = directives(response.headers["content-security-policy"])
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self'" in policy  # assets vendored: tests/api/test_api_docs.py
        assert "style-src 'self' 'unsafe-inline'" in policy  # the docs' own, not the pages'
        assert response.headers["x-frame-options"] == "DENY"
    assert "unsafe-inline" not in client.get("/login").headers["content-security-policy"]


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline script"),
    (re.compile(r"<style\b", re.I), "style element"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "event handler attribute"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
    (re.compile(r"\bhx-on", re.I), "hx-on (evaluated)"),
    (re.compile(r"""hx-(vals|vars|headers)\s*=\s*['"]\s*(js|javascript):""", re.I), "htmx eval"),
]


def assert_no_inline_code(html: str, where: str) -> None:
    for pattern, what in INLINE:
        match = pattern.search(html)
        assert match is None, f"{where}: {what} {match.group(0) if match else ''!r}"


def test_pages_need_no_inline_script_or_style(client: TestClient, world: World) -> None:
    """The CSP forbids inline code: every page must do without, or it breaks in the browser."""
    employee = hire(client, world.mhr_a)
    assert_no_inline_code(client.get("/login").text, "/login")
    sign_in(client, "mhr_a@example.com")
    paths = [
        "/employees",
        "/employees/new",
        f"/employees/{employee['id']}",
        "/settings/interfaces/lms",
        "/sync",
        "/employees/unknown",  # the error page
    ]
    for path in paths:
        response = client.get(path)
        assert response.status_code in (200, 404), path
        assert_no_inline_code(response.text, path)
    base = client.get("/employees").text
    # htmx 2 injects an inline <style> for its indicators unless told not to.
    assert '"includeIndicatorStyles": false' in base


def test_trailing_slash_redirect_does_not_point_at_the_requests_host(client: TestClient) -> None:
    response = client.get(f"{API}/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code in (307, 308)
    assert response.headers["location"] == API


# --- body size limit ----------------------------------------------------------------------

LIMIT = 2048


@pytest.fixture
def small_client(settings: Settings) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"max_body_bytes": LIMIT})
    with TestClient(create_app(limited), raise_server_exceptions=False) as c:
        yield c


def big_hire_body() -> bytes:
    return b'{"employee_number": "' + b"9" * 5000 + b'"}'


class Chunks:
    """A streamed body (no Content-Length) that counts how much of it the server read."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk, self.count, self.read = chunk, count, 0

    def stream(self) -> Iterator[bytes]:
        # A generator: the test client hands it to the app a chunk per receive().
        for _ in range(self.count):
            self.read += 1
            yield self.chunk


def count_employees(engine: Engine) -> int:
    with transaction(make_session_factory(engine)) as s:
        return s.scalar(select(func.count()).select_from(Employee)) or 0


def assert_413_problem(response: Any) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 413
    assert body["type"] == "/problems/413"
    assert "2 KB" in body["detail"]
    assert_hardened(response)


def test_body_over_the_limit_with_content_length_is_refused_unread(
    small_client: TestClient, world: World, engine: Engine
) -> None:
    headers = {**World.auth(world.mhr_a), "Content-Type": "application/json"}
    response = small_client.post(API, content=big_hire_body(), headers=headers)
    assert_413_problem(response)
    # Declared too large: refused before a byte of it is read.
    body = Chunks(b"x" * 1024, 100)
    declared = {**headers, "Content-Length": str(100 * 1024)}
    assert_413_problem(small_client.post(API, content=body.stream(), headers=declared))
    assert body.read == 0
    assert count_employees(engine) == 0


def post_streamed(app: Any, path: str, body: Chunks, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST ``body`` to the ASGI app a chunk per receive(), without Content-Length (the test
    client would read a streamed body whole before the app sees it)."""
    chunks = body.stream()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    with ThreadPoolExecutor(1) as pool:  # a loop of its own (Playwright may run one here)
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_streamed_body_is_cut_off_once_past_the_limit(
    small_client: TestClient, world: World, engine: Engine
) -> None:
    headers = {**World.auth(world.mhr_a), "Content-Type": "application/json"}
    body = Chunks(b" " * 512, 10_000)  # 5 MB, announced by no Content-Length
    status, answer = post_streamed(small_client.app, API, body, headers)
    assert status == 413
    assert json.loads(answer)["type"] == "/problems/413"
    assert body.read <= LIMIT // 512 + 1  # stopped reading at the limit, not at the end
    form = Chunks(b"password=" + b"x" * 500, 10_000)
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, answer = post_streamed(small_client.app, "/login", form, form_headers)
    assert status == 413
    assert b"larger than the limit" in answer
    assert form.read <= LIMIT // 509 + 1
    # The same through the test client (which sends it chunked): the answer is a problem.
    assert_413_problem(
        small_client.post(API, content=Chunks(b" " * 512, 100).stream(), headers=headers)
    )
    csv = b"employee_number,first_name,last_name\n" + b"E,A,B\n" * 1000
    upload = small_client.post(
        f"{API}/import", files={"file": ("e.csv", csv)}, headers=World.auth(world.mhr_a)
    )
    assert_413_problem(upload)
    assert count_employees(engine) == 0


def test_body_over_the_limit_on_a_page_is_a_short_page(small_client: TestClient) -> None:
    response = small_client.post("/login", data={"email": "a@example.com", "password": "x" * 5000})
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "larger than the limit" in response.text
    assert_hardened(response)
    streamed = small_client.post(
        "/login",
        content=Chunks(b"password=" + b"x" * 1000, 100).stream(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert streamed.headers["content-type"].startswith("text/html")


def test_body_under_the_limit_is_served(small_client: TestClient, world: World) -> None:
    response = small_client.post(API, json=zoe(), headers=World.auth(world.mhr_a))
    assert response.status_code == 201, response.text


# --- next links ---------------------------------------------------------------------------


def test_next_link_is_relative_and_ignores_the_host_header(
    client: TestClient, world: World
) -> None:
    for number in ("E-1", "E-2"):
        hire(client, world.mhr_a, employee_number=number)
    headers = {**World.auth(world.mhr_a), "Host": "evil.example"}
    page = client.get(f"{API}?q=Ng&limit=1", headers=headers).json()
    link = urlsplit(page["next"])
    assert (link.scheme, link.netloc, link.path) == ("", "", API)
    assert parse_qs(link.query) == {"q": ["Ng"], "limit": ["1"], "offset": ["1"]}
    second = client.get(page["next"], headers=World.auth(world.mhr_a)).json()
    assert second["offset"] == 1
    assert second["next"] is None


def test_next_link_uses_the_public_url(settings: Settings, world: World) -> None:
    public = settings.model_copy(update={"public_url": "https://lms-sync.example.com/"})
    with TestClient(create_app(public)) as client:
        for number in ("E-1", "E-2"):
            hire(client, world.mhr_a, employee_number=number)
        headers = {**World.auth(world.mhr_a), "Host": "evil.example"}
        page = client.get(f"{API}?limit=1", headers=headers).json()
    link = urlsplit(page["next"])
    assert (link.scheme, link.netloc, link.path) == ("https", "lms-sync.example.com", API)
    assert parse_qs(link.query) == {"limit": ["1"], "offset": ["1"]}


# --- bounded offsets ----------------------------------------------------------------------


@pytest.mark.parametrize("path", [API, "/api/v1/lms/runs", "/api/v1/accounts"])
def test_huge_offset_is_a_field_error_not_a_500(
    client: TestClient, world: World, path: str
) -> None:
    token = world.operator if path == "/api/v1/accounts" else world.mhr_a
    for offset in (2**63, 2**64, 1_000_001):
        response = client.get(f"{path}?offset={offset}", headers=World.auth(token))
        assert response.status_code == 422, (offset, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["offset"]
    assert client.get(f"{path}?offset=1000000", headers=World.auth(token)).status_code == 200


def test_huge_offset_on_a_runs_outcomes_is_a_field_error(client: TestClient, world: World) -> None:
    response = client.get(
        f"/api/v1/lms/runs/unknown?offset={2**63}", headers=World.auth(world.mhr_a)
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["offset"]


def test_huge_offset_on_the_pages_shows_an_empty_page_not_a_500(
    client: TestClient, world: World
) -> None:
    sign_in(client, "mhr_a@example.com")
    for path in ("/employees", "/sync"):
        response = client.get(f"{path}?offset={2**63}")
        assert response.status_code == 200, (path, response.status_code)


# --- idempotency keys per account ---------------------------------------------------------


def test_idempotency_key_never_replays_across_two_accounts_of_one_login(
    client: TestClient, world: World, engine: Engine
) -> None:
    with transaction(make_session_factory(engine)) as s:
        person = accounts.create_user(s, email="both@example.com", password="correct horse")
        for account_id in (world.account_a, world.account_b):
            accounts.set_membership(s, person, s.get_one(Account, account_id), "MHR")
        token_a = accounts.create_token(s, person, account_id=world.account_a).token
        token_b = accounts.create_token(s, person, account_id=world.account_b).token
    key = {"Idempotency-Key": "hire-zoe-1"}
    in_a = client.post(API, json=zoe(), headers={**World.auth(token_a), **key})
    in_b = client.post(API, json=zoe(), headers={**World.auth(token_b), **key})
    assert in_a.status_code == in_b.status_code == 201, in_b.text
    assert "idempotent-replayed" not in in_b.headers
    assert in_a.json()["id"] != in_b.json()["id"]
    for token in (token_a, token_b):
        listed = client.get(API, headers=World.auth(token)).json()
        assert listed["total"] == 1
    # Within one account the key still answers with the first result.
    again = client.post(API, json=zoe(), headers={**World.auth(token_b), **key})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == in_b.json()["id"]
    assert count_employees(engine) == 2


# --- control characters in the address ---------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/employees/%00",
        "/api/v1/employees?q=%00",
        "/api/v1/employees?q=a%00b",
        "/api/v1/lms/runs/x?action=%01",
        "/api/v1/accounts/%00",
    ],
)
def test_a_control_character_in_the_address_is_a_400_not_a_500(
    client: TestClient, world: World, path: str
) -> None:
    # PostgreSQL refuses NUL in text: these reached the database and answered 500 there.
    response = client.get(path, headers=World.auth(world.mhr_a))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "control character" in response.json()["detail"]


def test_a_control_character_in_an_interface_text_field_is_a_field_error(
    client: TestClient, world: World
) -> None:
    body = {"base_url": "https://lms.example.com/scim/v2", "username": "a\u0000b"}
    response = client.put("/api/v1/lms/interface", json=body, headers=World.auth(world.mhr_a))
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["username"]
