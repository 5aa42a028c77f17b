"""lmsync.lms.remote_text, and the SCIM connector's errors made by it: what an LMS answered, or
how reaching it failed, shown without the credentials, without bodies, bounded and by category."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from lmsync.lms.base import LmsError, MisconfiguredError, RejectedError, TransientError
from lmsync.lms.remote_text import (
    CANNOT_CONNECT,
    ECHOED,
    MAX_LENGTH,
    REDACTED,
    TIMED_OUT,
    TLS_FAILED,
    RemoteText,
)
from lmsync.lms.scim import ScimConnector, ScimSettings

SECRET = 'Zq9/Kp+2 Lm"&x'  # characters that every encoding changes
USER = "svc-lms"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
TEXT = RemoteText(SECRET, USER)


def secret_forms() -> list[str]:
    """The secret as an echoing server may send it back."""
    basic = f"{USER}:{SECRET}".encode()
    return [
        SECRET,
        f"Bearer {SECRET}",
        base64.b64encode(basic).decode(),
        base64.b64encode(basic).decode().rstrip("="),
        base64.urlsafe_b64encode(basic).decode(),
        base64.b64encode(SECRET.encode()).decode(),
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
    ]


def assert_no_secret(text: str) -> None:
    for form in secret_forms():
        assert form not in text
    assert SECRET[:6] not in text  # not even part of it


# --- clean -------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", secret_forms())
def test_every_form_of_the_secret_is_redacted(form: str) -> None:
    cleaned = TEXT.clean(f"you sent Authorization: {form} and more")

    assert_no_secret(cleaned)
    assert REDACTED in cleaned
    assert cleaned.startswith("you sent Authorization:")


@pytest.mark.parametrize("joiner", ["\x00", "\u200b", "\u202e", "\x1b"])
def test_a_secret_split_by_invisible_characters_is_still_redacted(joiner: str) -> None:
    split = SECRET[:4] + joiner + SECRET[4:]

    assert_no_secret(TEXT.clean(f"token={split}"))


def test_control_characters_and_newlines_go() -> None:
    cleaned = TEXT.clean("line one\r\nline\ttwo\x1b[31m red\x07 \u202eevil\u200b")

    assert cleaned == "line one line two[31m red evil"


def test_length_is_bounded_after_redaction() -> None:
    text = "x" * (MAX_LENGTH - 5) + SECRET + "y" * 500

    cleaned = TEXT.clean(text)

    assert len(cleaned) <= MAX_LENGTH
    assert cleaned.endswith("…")
    assert_no_secret(cleaned)


def test_a_non_ascii_password_is_redacted_in_its_basic_auth_form() -> None:
    password = "pä:ss wörd"
    encoded = base64.b64encode(f"{USER}:{password}".encode()).decode()

    cleaned = RemoteText(password, USER).clean(f"Authorization: Basic {encoded}; {password}")

    assert cleaned == f"Authorization: Basic {REDACTED}; {REDACTED}"


def test_without_a_secret_nothing_is_redacted() -> None:
    assert RemoteText(None).clean("Bearer abc") == "Bearer abc"
    assert RemoteText("").clean("Bearer abc") == "Bearer abc"


# --- describing answers ---------------------------------------------------------------------------


def answer(status: int, body: bytes | str, content_type: str | None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, content=content, headers=headers)


ECHO = f"GET /Users HTTP/1.1\nAuthorization: Bearer {SECRET}\nX-Internal: hello"


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/html; charset=utf-8", f"<pre>{ECHO}</pre>", "content type text/html"),
        ("text/plain", ECHO, "content type text/plain"),
        (None, ECHO, "content type none"),
        ("text/html<script>", ECHO, "content type unknown"),
        ("application/json", json.dumps({"headers": ECHO}), "not a SCIM error document"),
        ("application/json", json.dumps([ECHO]), "not a SCIM error document"),
        ("application/json", json.dumps({"detail": ECHO}), "not a SCIM error document"),
        ("application/scim+json", "{not json " + ECHO, "not a SCIM error document"),
    ],
)
def test_an_answer_that_is_no_scim_error_is_described_by_its_category(
    content_type: str | None, body: str, expected: str
) -> None:
    described = TEXT.response(answer(502, body, content_type))

    assert described.startswith("HTTP status 502")
    assert expected in described
    assert "X-Internal" not in described
    assert "hello" not in described
    assert_no_secret(described)


def test_a_scim_error_is_quoted_sanitized() -> None:
    document = {
        "schemas": [ERROR_URN],
        "status": "400",
        "scimType": "invalidValue",
        "detail": "phone\r\nis not E.164\u202e " + "x" * 500,
    }

    described = TEXT.response(answer(400, json.dumps(document), "application/scim+json"))

    assert described.startswith("HTTP status 400: phone is not E.164 xxx")
    assert described.endswith("… (scimType invalidValue)")
    assert len(described) < MAX_LENGTH


@pytest.mark.parametrize("form", secret_forms())
def test_a_scim_error_that_repeats_the_credentials_is_not_quoted(form: str) -> None:
    document = {
        "schemas": [ERROR_URN],
        "scimType": "invalidValue",
        "detail": f"bad request; you sent X-Internal: hello, Authorization: {form}",
    }

    described = TEXT.response(answer(400, json.dumps(document), "application/scim+json"))

    assert described == (f"HTTP status 400: {ECHOED} (scimType invalidValue)")


def test_a_scim_type_that_is_no_token_is_left_out() -> None:
    document = {"schemas": [ERROR_URN], "scimType": f"Bearer {SECRET}", "detail": "no"}

    described = TEXT.response(answer(400, json.dumps(document), "application/json"))

    assert described == "HTTP status 400: no"


def test_a_long_scim_detail_is_bounded() -> None:
    document = {"schemas": [ERROR_URN], "detail": "d" * 5000}

    described = TEXT.response(answer(400, json.dumps(document), "application/scim+json"))

    assert len(described) < MAX_LENGTH


def test_a_huge_json_body_is_not_read() -> None:
    document = {"schemas": [ERROR_URN], "detail": "x", "padding": "p" * 100_000}

    described = TEXT.response(answer(400, json.dumps(document), "application/scim+json"))

    assert described == "HTTP status 400 (not a SCIM error document)"


# --- describing failed exchanges ----------------------------------------------------------------

REQUEST = httpx.Request(
    "GET", "https://lms.example.test/Users", headers={"Authorization": f"Bearer {SECRET}"}
)


def _tls_error() -> httpx.ConnectError:
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as inner:
            raise httpx.ConnectError("[SSL] certificate verify failed", request=REQUEST) from inner
    except httpx.ConnectError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused", request=REQUEST), CANNOT_CONNECT),
        (httpx.ConnectError("[Errno -2] Name or service not known"), CANNOT_CONNECT),
        (httpx.ConnectError("[Errno 113] No route to host"), CANNOT_CONNECT),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), CANNOT_CONNECT),
        (httpx.RemoteProtocolError("Server disconnected without a response"), CANNOT_CONNECT),
        (httpx.RemoteProtocolError("illegal status line: b'SSH-2.0-OpenSSH_9.6'"), CANNOT_CONNECT),
        (httpx.ConnectTimeout("timed out"), TIMED_OUT),
        (httpx.ReadTimeout("timed out"), TIMED_OUT),
        (_tls_error(), TLS_FAILED),
    ],
)
def test_failures_are_told_by_category_only(error: httpx.RequestError, expected: str) -> None:
    assert TEXT.transport(error) == expected


def test_the_chained_cause_keeps_no_request() -> None:
    error = httpx.ConnectError(f"refused; Bearer {SECRET}", request=REQUEST)

    cause = TEXT.cause(error)

    assert type(cause) is httpx.ConnectError
    with pytest.raises(RuntimeError):
        _ = cause.request  # httpx raises when an exception has no request
    assert_no_secret(str(cause))
    assert CANNOT_CONNECT in str(cause)


# --- the connector's errors all go through it -------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def connect() -> Iterator[Callable[..., ScimConnector]]:
    opened: list[ScimConnector] = []

    def make(handler: Handler, **settings: Any) -> ScimConnector:
        base: dict[str, Any] = {"base_url": "https://lms.example.test/scim/v2", "secret": SECRET}
        connector = ScimConnector(
            ScimSettings(**{**base, **settings}), transport=httpx.MockTransport(handler)
        )
        opened.append(connector)
        return connector

    yield make
    for connector in opened:
        connector.close()


def echo(status: int, kind: str) -> Handler:
    """A server answering with what it received: the request's headers and body."""

    def handler(request: httpx.Request) -> httpx.Response:
        received = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
        received += "\n" + request.content.decode()
        if kind == "html":
            return answer(status, f"<html><pre>{received}</pre></html>", "text/html")
        document = {"schemas": [ERROR_URN], "detail": received, "scimType": "invalidValue"}
        return answer(status, json.dumps(document), "application/scim+json")

    return handler


AUTHS: list[dict[str, Any]] = [
    {"auth_type": "bearer"},
    {"auth_type": "api_key", "auth_header": "X-Lms-Key"},
    {"auth_type": "basic", "username": USER},
]


@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize("status", [400, 401, 404, 409, 500])
@pytest.mark.parametrize("kind", ["html", "scim"])
def test_echoed_credentials_never_reach_an_error_message(
    connect: Callable[..., ScimConnector], auth: dict[str, Any], status: int, kind: str
) -> None:
    connector = connect(echo(status, kind), **auth)

    with pytest.raises(LmsError) as info:
        connector.update("u-1", {"first_name": "A", "last_name": "B"}, {"first_name"})

    assert_no_secret(info.value.message)
    assert_no_secret(str(info.value))
    assert "givenName" not in info.value.message  # nor our body, nor our other headers
    assert "User-Agent" not in info.value.message
    assert len(info.value.message) <= MAX_LENGTH
    assert f"HTTP status {status}" in info.value.message


@pytest.mark.parametrize("auth", AUTHS)
def test_connection_check_findings_never_show_echoed_credentials(
    connect: Callable[..., ScimConnector], auth: dict[str, Any]
) -> None:
    for kind in ("html", "scim"):
        report = connect(echo(401, kind), **auth).test()

        assert report.ok is False
        for finding in report.findings:
            assert_no_secret(finding.message)
            assert "<pre>" not in finding.message


def test_transport_failures_name_no_port_state(connect: Callable[..., ScimConnector]) -> None:
    messages = set()
    for error in (
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ConnectError("[Errno -2] Name or service not known"),
    ):

        def handler(request: httpx.Request, error: Exception = error) -> httpx.Response:
            raise error

        with pytest.raises(TransientError) as info:
            connect(handler).get("u-1")
        messages.add(info.value.message)
        assert isinstance(info.value.__cause__, type(error))

    assert messages == {f"GET /Users/u-1: {CANNOT_CONNECT}"}


def test_a_non_json_success_says_not_scim_without_the_body(
    connect: Callable[..., ScimConnector],
) -> None:
    connector = connect(lambda request: answer(200, f"<p>{ECHO}</p>", "text/html"))

    with pytest.raises(MisconfiguredError) as info:
        connector.list_page(1, 10)

    assert "not a SCIM server (content type text/html)" in info.value.message
    assert "X-Internal" not in info.value.message


def test_an_echoed_total_results_is_not_quoted(connect: Callable[..., ScimConnector]) -> None:
    body = {"Resources": [], "totalResults": ECHO}
    connector = connect(lambda request: answer(200, json.dumps(body), "application/scim+json"))

    with pytest.raises(MisconfiguredError) as info:
        connector.list_page(1, 10)

    assert info.value.message == "/Users: totalResults is not a number"
    assert info.value.__cause__ is None


def test_a_malformed_user_is_rejected_without_quoting_it(
    connect: Callable[..., ScimConnector],
) -> None:
    user = {"id": "u-1", "name": ECHO, "emails": [{"value": "a@example.com"}]}
    connector = connect(lambda request: answer(200, json.dumps(user), "application/scim+json"))

    with pytest.raises(RejectedError) as info:
        connector.get("u-1")

    assert "does not follow RFC 7643" in info.value.message
    assert info.value.__cause__ is None


def test_malformed_discovery_documents_give_findings_not_crashes(
    connect: Callable[..., ScimConnector],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/ServiceProviderConfig"):
            body: Any = {"patch": ECHO, "filter": [ECHO]}
        elif path.endswith("/Users"):
            body = {"Resources": [], "totalResults": 0}
        else:
            body = {"Resources": [{"id": ECHO, "attributes": ECHO, "schemaExtensions": 3}]}
        return answer(200, json.dumps(body), "application/scim+json")

    report = connect(handler).test()

    assert report.ok is False
    assert any("core User schema" in f.message for f in report.findings)
    for finding in report.findings:
        assert_no_secret(finding.message)
