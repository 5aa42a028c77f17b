"""An embedded SCIM 2.0 LMS (scim2-server, in memory) for the demo and the integration tests.

The SCIM endpoints are served under ``/v2`` (the prefix is optional, as in scim2-server): Users
(core User, enterprise extension and the LMS extension below), Groups, ``/Bulk``, ``/.search`` and
the discovery endpoints. A small ASGI middleware adds what a test of an LMS connector needs:

* a static bearer token, when one is given (``GET /ServiceProviderConfig`` stays open);
* ``GET /_admin/stats`` and ``POST /_admin/stats/reset``: the SCIM requests served, per method, and
  the write requests among them;
* ``GET``/``POST``/``DELETE /_admin/faults``: the next ``count`` matching SCIM requests answer an
  injected error (429, 500, 503...) without reaching the SCIM application; a rule with a
  ``bulk_match`` fails single operations of ``POST /Bulk`` requests instead (see
  :class:`FaultRule`);
* ``POST /_admin/users``: load a JSON list of SCIM users at once (seeding), outside the stats;
* with a ``portal`` (opt-in), a multi-portal LMS: every SCIM request must name that portal, in
  the ``X-Portal-Id`` header or as the path segment after ``/v2`` (``/v2/<portal>/Users``,
  percent-encoded); any other request answers 404 (counted as ``wrong_portal``);
* without ``modified_filter`` (opt-out), an LMS that cannot filter on ``meta.lastModified``: a
  search of ``/Users`` whose filter names it answers 400 ``invalidFilter``.

The ``/_admin`` endpoints need no token: the server only listens on the loopback interface.
Run it with ``python -m lmsync.lms.embedded --port P [--token T]``, or in a thread of the current
process with :class:`EmbeddedLms`.
"""

import argparse
import asyncio
import hmac
import json
import signal
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from types import FrameType, TracebackType
from typing import Any, NoReturn, Self, TypeGuard

import uvicorn
from scim2_models import (
    URN,
    AuthenticationScheme,
    EnterpriseUser,
    Extension,
    External,
    Group,
    Reference,
    ResourceType,
    ScimProvider,
    User,
)
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage, InMemoryStorage
from scim2_server.requests import ScimRequest
from scim2_server.utils import load_default_service_provider_config

from lmsync.lms.email_index import EmailIndexedStorage

__all__ = [
    "LMS_EXTENSION_URN",
    "EmbeddedLms",
    "FaultRule",
    "LmsMiddleware",
    "LmsUser",
    "LmsUserExtension",
    "build_app",
    "build_provider",
    "main",
]

LMS_EXTENSION_URN = "urn:ietf:params:scim:schemas:extension:lms:2.0:User"
SCIM_ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
BULK_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
SCIM_MEDIA_TYPE = "application/scim+json"
HOST = "127.0.0.1"
ADMIN_PREFIX = "/_admin"
PORTAL_HEADER = "X-Portal-Id"

_MAX_ADMIN_BODY = 64 * 1024 * 1024
_USER_SEARCHES = {("GET", "/Users"), ("POST", "/Users/.search")}
_WWW_AUTHENTICATE = 'Bearer realm="SCIM"'

# The ASGI types, as scim2-server's ASGIApplication declares them.
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


class LmsUserExtension(Extension):
    """The LMS attributes of a user, under :data:`LMS_EXTENSION_URN`."""

    __schema__ = URN(LMS_EXTENSION_URN)

    registration_date: datetime | None = None
    """When the user was registered in the LMS (``registrationDate``)."""

    expiration_date: datetime | None = None
    """When the user's LMS access ends (``expirationDate``)."""

    notifications_enabled: bool | None = None
    """Whether the LMS sends notifications to the user (``notificationsEnabled``)."""

    access_mode: str | None = None
    """The user's access mode in the LMS (``accessMode``)."""


LmsUser = User[EnterpriseUser | LmsUserExtension]
"""The user model the embedded LMS serves: core User with both extensions."""

_BEARER_SCHEME = AuthenticationScheme(
    type=AuthenticationScheme.Type.oauthbearertoken,
    name="OAuth Bearer Token",
    description="A static bearer token: 'Authorization: Bearer <token>'",
    spec_uri=Reference[External]("https://datatracker.ietf.org/doc/html/rfc6750"),
    primary=True,
)


def build_provider(*, bearer: bool) -> ScimProvider:
    """Describe the service: User (enterprise and LMS extensions) and Group."""
    config = load_default_service_provider_config()
    if bearer:
        config.authentication_schemes = [_BEARER_SCHEME]
    return ScimProvider(
        models=[User, Group, EnterpriseUser, LmsUserExtension],
        resource_types=[
            ResourceType.from_resource(LmsUser),
            ResourceType.from_resource(Group),
        ],
        config=config,
    )


def build_app(
    token: str | None,
    *,
    email_index: bool = True,
    latency: float = 0.0,
    portal: str | None = None,
    modified_filter: bool = True,
) -> "LmsMiddleware":
    """The ASGI application of the embedded LMS: scim2-server in memory, behind the middleware.

    With a ``token``, every SCIM request but ``GET /ServiceProviderConfig`` must carry
    ``Authorization: Bearer <token>``. ``email_index``: answer ``emails.value eq`` and
    ``meta.lastModified gt|ge`` searches from indexes, as a real LMS would (see
    ``email_index.py``); False serves scim2-server's stock search, which walks every user. With a
    ``portal``, every SCIM request must name it (see the module's documentation).
    ``modified_filter=False``: refuse any ``/Users`` search filtering on ``meta.lastModified``
    (400 ``invalidFilter``), as an LMS without that filter does.
    """
    if token == "":
        raise ValueError("the bearer token must not be empty (pass None to disable it)")
    if portal == "":
        raise ValueError("the portal must not be empty (pass None to disable it)")
    storage = AsyncInMemoryStorage(EmailIndexedStorage() if email_index else InMemoryStorage())
    scim = ASGIApplication(storage, build_provider(bearer=token is not None))
    return LmsMiddleware(scim, token, latency, portal=portal, modified_filter=modified_filter)


@dataclass
class FaultRule:
    """The next ``remaining`` SCIM requests whose method is in ``methods`` answer ``status``.

    With a ``bulk_match``, the rule matches no request but the next ``remaining`` operations of
    ``POST /Bulk`` requests whose method is in ``methods`` and whose ``data.userName`` (POST) or
    ``path`` (PUT, PATCH, DELETE) contains ``bulk_match``: each is taken out of the request and
    answers ``status`` in the bulk response.
    """

    status: int
    remaining: int
    retry_after: int | str | None = None
    methods: frozenset[str] | None = None  # None: every method
    bulk_match: str | None = None

    def matches(self, method: str) -> bool:
        return (
            self.remaining > 0
            and self.bulk_match is None
            and (self.methods is None or method in self.methods)
        )

    def matches_operation(self, method: str, target: str) -> bool:
        """Whether the rule fails a bulk operation of ``method`` on ``target`` (see above)."""
        return (
            self.remaining > 0
            and self.bulk_match is not None
            and self.bulk_match in target
            and (self.methods is None or method in self.methods)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "count": self.remaining,
            "retry_after": self.retry_after,
            "methods": None if self.methods is None else sorted(self.methods),
            "bulk_match": self.bulk_match,
        }

    @classmethod
    def from_json(cls, data: object) -> "FaultRule":
        """Read ``{"status": 503, "count": 2, "retry_after": null, "methods": ["POST"]}``.

        ``count`` defaults to 1, ``retry_after`` (seconds, or an HTTP date), ``methods`` and
        ``bulk_match`` (a non-empty string; no ``retry_after`` then) to none. Raises
        :class:`ValueError` on anything else.
        """
        if not isinstance(data, dict):
            raise ValueError("a JSON object is expected")
        unknown = set(data) - {"status", "count", "retry_after", "methods", "bulk_match"}
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        status = data.get("status")
        if not _is_int(status) or not 400 <= status <= 599:
            raise ValueError("'status' must be an HTTP error status (400-599)")
        count = data.get("count", 1)
        if not _is_int(count) or count < 1:
            raise ValueError("'count' must be a positive integer")
        retry_after = data.get("retry_after")
        if not (
            retry_after is None
            or (_is_int(retry_after) and retry_after >= 0)
            or (isinstance(retry_after, str) and retry_after.strip())
        ):
            raise ValueError("'retry_after' must be null, a number of seconds or an HTTP date")
        methods = data.get("methods")
        if methods is not None and (
            not isinstance(methods, list)
            or not methods
            or not all(isinstance(m, str) and m for m in methods)
        ):
            raise ValueError("'methods' must be null or a non-empty list of HTTP methods")
        bulk_match = data.get("bulk_match")
        if bulk_match is not None and not (isinstance(bulk_match, str) and bulk_match):
            raise ValueError("'bulk_match' must be null or a non-empty string")
        if bulk_match is not None and retry_after is not None:
            # A bulk operation's result has no headers to carry it.
            raise ValueError("'retry_after' cannot apply to a bulk operation ('bulk_match')")
        return cls(
            status=status,
            remaining=count,
            retry_after=retry_after,
            methods=None if methods is None else frozenset(m.upper() for m in methods),
            bulk_match=bulk_match,
        )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _scim_error(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"schemas": [SCIM_ERROR_URN], "status": str(status)}
    if scim_type is not None:
        error["scimType"] = scim_type
    error["detail"] = detail
    return error


def _fault_detail(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"{phrase} (fault injected by the embedded LMS)"


def _is_admin(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(f"{ADMIN_PREFIX}/")


def _scim_path(path: str) -> str:
    """The path relative to the SCIM root, without ``/v2``, ``.scim`` and a trailing slash."""
    return ASGIApplication.split_path(path).rstrip("/")


def _without_portal(scope: Scope, portal: str) -> Scope | None:
    """The request's scope with its portal taken out of the path; None when it names another
    portal or none (in the ``X-Portal-Id`` header, or as the path segment after ``/v2``)."""
    header = PORTAL_HEADER.lower().encode()
    values = [bytes(v) for name, v in scope["headers"] if bytes(name).lower() == header]
    if values:
        return scope if values == [portal.encode()] else None
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    version = b"/v2" if raw == b"/v2" or raw.startswith(b"/v2/") else b""
    segment, _, rest = raw[len(version) :].removeprefix(b"/").partition(b"/")
    if urllib.parse.unquote(segment.decode("ascii", "replace")) != portal:
        return None
    path = version + b"/" + rest
    return {**scope, "raw_path": path, "path": urllib.parse.unquote(path.decode("ascii"))}


def _is_write(method: str, path: str) -> bool:
    if method == "POST":
        return not _scim_path(path).endswith("/.search")
    return method in {"PUT", "PATCH", "DELETE"}


def _field(obj: dict[str, Any], name: str) -> str | None:
    """The key of ``obj`` naming the attribute ``name`` (SCIM names ignore letter case)."""
    lowered = name.lower()
    return next((key for key in obj if isinstance(key, str) and key.lower() == lowered), None)


def _get(obj: object, name: str) -> Any:
    if not isinstance(obj, dict):
        return None
    key = _field(obj, name)
    return None if key is None else obj[key]


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return data if isinstance(data, dict) else None


def _filters_on_modified(scope: Scope, body: bytes | None) -> bool:
    """Whether a search (query string, or the ``.search`` ``body``) filters on lastModified."""
    if body is None:
        query = urllib.parse.parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
        filters = [value for name, value in query if name == "filter"]
    else:
        filters = [_get(_json_object(body), "filter")]
    return any(isinstance(f, str) and "meta.lastmodified" in f.lower() for f in filters)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` giving ``body`` at once, then what ``receive`` gives (the disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_content_length(headers: Headers, length: int) -> Headers:
    """``headers`` with their Content-Length, if any, set to ``length``."""
    return [
        (name, str(length).encode() if bytes(name).lower() == b"content-length" else value)
        for name, value in headers
    ]


def _merge_bulk_results(
    kept: list[Any], outcomes: list[Any], injected: dict[int, dict[str, Any]]
) -> list[Any]:
    """The results of a bulk request in its order: ``injected`` ones at their positions, the
    ``outcomes`` of the ``kept`` operations (those that ran, in order) at theirs."""
    complete = len(outcomes) == len(kept)  # else failOnErrors stopped it: match them up
    merged: list[Any] = []
    remaining = iter(kept)
    position = 0
    for index in range(len(kept) + len(injected)):
        if index in injected:
            merged.append(injected[index])
            continue
        operation = next(remaining)
        if position < len(outcomes) and (
            complete or _same_operation(operation, outcomes[position])
        ):
            merged.append(outcomes[position])
            position += 1
    return merged + outcomes[position:]


def _same_operation(operation: object, outcome: object) -> bool:
    method, bulk_id = _get(operation, "method"), _get(operation, "bulkId")
    return (
        isinstance(method, str)
        and str(_get(outcome, "method")).upper() == method.upper()
        and _get(outcome, "bulkId") == bulk_id
    )


class _CapturedResponse:
    """An ASGI ``send`` that keeps the response instead of sending it."""

    def __init__(self) -> None:
        self.start: Message = {}
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))


async def _read_body(receive: Receive, limit: int | None = None) -> bytes:
    """Read the whole request body; raise :class:`ValueError` past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if limit is None or size <= limit:
            chunks.append(chunk)
        more_body = bool(message.get("more_body", False))
    if limit is not None and size > limit:
        raise ValueError(f"the body exceeds {limit} bytes")
    return b"".join(chunks)


async def _send_json(
    send: Send,
    status: int,
    body: object,
    *,
    content_type: str = "application/json",
    headers: Headers | None = None,
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-cache"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class LmsMiddleware:
    """Bearer token, request statistics, fault injection and seeding around the SCIM app.

    Everything runs on the server's event loop, so plain attributes are enough.
    """

    def __init__(
        self,
        scim: ASGIApplication,
        token: str | None,
        latency: float = 0.0,
        *,
        portal: str | None = None,
        modified_filter: bool = True,
    ) -> None:
        self.scim = scim
        self._token = None if token is None else token.encode()
        self.portal = portal  # None: one portal, nothing to name
        self.modified_filter = modified_filter  # False: meta.lastModified filters answer 400
        # Added before every SCIM answer, without holding the event loop: an LMS across a
        # network (the benchmarks' "LMS 30 ms away").
        self.latency = latency
        self.requests: Counter[str] = Counter()  # SCIM requests served, per method
        self.writes = 0  # the write requests among them, whatever their answer
        self.faulted = 0  # SCIM requests, and bulk operations, answered by an injected fault
        self.unauthorized = 0  # SCIM requests refused for a missing or wrong token
        self.wrong_portal = 0  # SCIM requests refused for naming another portal or none
        self.faults: list[FaultRule] = []

    # -- statistics --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "writes": self.writes,
            "faulted": self.faulted,
            "unauthorized": self.unauthorized,
            "wrong_portal": self.wrong_portal,
        }

    def reset_stats(self) -> None:
        self.requests.clear()
        self.writes = self.faulted = self.unauthorized = self.wrong_portal = 0

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.scim(scope, receive, send)
            return
        method = str(scope["method"]).upper()
        path = ASGIApplication.get_path(scope)
        if _is_admin(path):
            await self._admin(scope, method, path, receive, send)
            return
        if self.latency:
            await asyncio.sleep(self.latency)

        if self.portal is not None:
            portal_scope = _without_portal(scope, self.portal)
            if portal_scope is None:
                self.wrong_portal += 1
                await _read_body(receive)
                await _send_json(
                    send,
                    HTTPStatus.NOT_FOUND,
                    _scim_error(404, "Unknown portal"),
                    content_type=SCIM_MEDIA_TYPE,
                )
                return
            scope, path = portal_scope, ASGIApplication.get_path(portal_scope)

        if not self._authorized(scope, method, path):
            self.unauthorized += 1
            await _read_body(receive)
            await _send_json(
                send,
                HTTPStatus.UNAUTHORIZED,
                _scim_error(401, "Missing or invalid bearer token"),
                content_type=SCIM_MEDIA_TYPE,
                headers=[(b"www-authenticate", _WWW_AUTHENTICATE.encode())],
            )
            return

        fault = next((rule for rule in self.faults if rule.matches(method)), None)
        if fault is not None:
            fault.remaining -= 1
            self.faults = [rule for rule in self.faults if rule.remaining > 0]
            self.faulted += 1
            await _read_body(receive)
            await self._send_fault(send, fault)
            return

        self.requests[method] += 1
        if _is_write(method, path):
            self.writes += 1
        route = _scim_path(path)
        if not self.modified_filter and (method, route) in _USER_SEARCHES:
            body = await _read_body(receive) if method == "POST" else None
            if body is not None:
                receive = _replay(body, receive)
            if _filters_on_modified(scope, body):
                await _send_json(
                    send,
                    HTTPStatus.BAD_REQUEST,
                    _scim_error(
                        400,
                        "This LMS does not support filtering on meta.lastModified",
                        "invalidFilter",
                    ),
                    content_type=SCIM_MEDIA_TYPE,
                )
                return
        if method == "POST" and route == "/Bulk" and any(r.bulk_match for r in self.faults):
            await self._bulk(scope, receive, send)
            return
        await self.scim(scope, receive, send)

    async def _bulk(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``POST /Bulk``, taking out the operations that a ``bulk_match`` rule fails."""
        body = await _read_body(receive)
        request = _json_object(body)
        key = None if request is None else _field(request, "Operations")
        if request is None or key is None or not isinstance(request[key], list):
            await self.scim(scope, _replay(body, receive), send)  # scim2-server says what's wrong
            return
        injected: dict[int, dict[str, Any]] = {}
        kept: list[Any] = []
        base_url = ASGIApplication.get_base_url(scope)
        for index, operation in enumerate(request[key]):
            result = self._bulk_fault(operation, base_url)
            if result is None:
                kept.append(operation)
            else:
                injected[index] = result
        if not injected:
            await self.scim(scope, _replay(body, receive), send)
            return
        self.faults = [rule for rule in self.faults if rule.remaining > 0]
        if not kept:
            results = [injected[index] for index in sorted(injected)]
            await _send_json(
                send,
                HTTPStatus.OK,
                {"schemas": [BULK_RESPONSE_URN], "Operations": results},
                content_type=SCIM_MEDIA_TYPE,
            )
            return

        rewritten = json.dumps({**request, key: kept}).encode()
        scope = {**scope, "headers": _with_content_length(scope["headers"], len(rewritten))}
        captured = _CapturedResponse()
        await self.scim(scope, _replay(rewritten, receive), captured.send)
        start, payload = captured.start, b"".join(captured.chunks)
        response = _json_object(payload) if start.get("status") == HTTPStatus.OK else None
        outcomes_key = None if response is None else _field(response, "Operations")
        if response is not None and outcomes_key is not None:
            outcomes = response[outcomes_key]
            if isinstance(outcomes, list):
                response[outcomes_key] = _merge_bulk_results(kept, outcomes, injected)
                payload = json.dumps(response).encode()
        headers = [
            (name, value)
            for name, value in start.get("headers", [])
            if bytes(name).lower() != b"content-length"
        ]
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _bulk_fault(self, operation: object, base_url: str) -> dict[str, Any] | None:
        """The injected result of a bulk operation that a rule fails, or None."""
        method = _get(operation, "method")
        if not isinstance(method, str):
            return None
        method = method.upper()
        path = _get(operation, "path")
        target = _get(_get(operation, "data"), "userName") if method == "POST" else path
        if not isinstance(target, str):
            return None
        rule = next((r for r in self.faults if r.matches_operation(method, target)), None)
        if rule is None:
            return None
        rule.remaining -= 1
        self.faulted += 1
        result: dict[str, Any] = {"method": method}
        bulk_id = _get(operation, "bulkId")
        if bulk_id is not None:
            result["bulkId"] = bulk_id
        if method != "POST":  # as scim2-server: every result but a failed POST has a location
            result["location"] = f"{base_url.rstrip('/')}/{str(path).lstrip('/')}"
        result["status"] = str(rule.status)
        result["response"] = _scim_error(rule.status, _fault_detail(rule.status))
        return result

    def _authorized(self, scope: Scope, method: str, path: str) -> bool:
        if self._token is None:
            return True
        if method == "GET" and _scim_path(path) == "/ServiceProviderConfig":
            return True  # RFC 7643 §5: the configuration is readable without authentication
        values = [value for name, value in scope["headers"] if name.lower() == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, credentials = bytes(values[0]).strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(credentials.strip(), self._token)

    @staticmethod
    async def _send_fault(send: Send, fault: FaultRule) -> None:
        headers: Headers = []
        if fault.retry_after is not None:
            headers.append((b"retry-after", str(fault.retry_after).encode()))
        await _send_json(
            send,
            fault.status,
            _scim_error(fault.status, _fault_detail(fault.status)),
            content_type=SCIM_MEDIA_TYPE,
            headers=headers,
        )

    # -- /_admin -----------------------------------------------------------------------------

    async def _admin(
        self, scope: Scope, method: str, path: str, receive: Receive, send: Send
    ) -> None:
        route = path.rstrip("/")
        allowed = {
            f"{ADMIN_PREFIX}/stats": {"GET"},
            f"{ADMIN_PREFIX}/stats/reset": {"POST"},
            f"{ADMIN_PREFIX}/faults": {"GET", "POST", "DELETE"},
            f"{ADMIN_PREFIX}/users": {"POST"},
        }.get(route)
        try:
            body = await _read_body(receive, _MAX_ADMIN_BODY)
        except ValueError as exc:
            await _send_json(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"detail": str(exc)})
            return
        if allowed is None:
            await _send_json(send, HTTPStatus.NOT_FOUND, {"detail": f"no admin endpoint {path}"})
            return
        if method not in allowed:
            await _send_json(
                send,
                HTTPStatus.METHOD_NOT_ALLOWED,
                {"detail": f"{method} is not allowed on {route}"},
                headers=[(b"allow", ", ".join(sorted(allowed)).encode())],
            )
            return

        if route.endswith("/stats"):
            await _send_json(send, HTTPStatus.OK, self.stats())
        elif route.endswith("/stats/reset"):
            self.reset_stats()
            await _send_json(send, HTTPStatus.OK, self.stats())
        elif route.endswith("/faults"):
            await self._admin_faults(method, body, send)
        else:
            await self._admin_users(scope, body, send)

    async def _admin_faults(self, method: str, body: bytes, send: Send) -> None:
        if method == "POST":
            try:
                self.faults.append(FaultRule.from_json(json.loads(body)))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                await _send_json(send, HTTPStatus.BAD_REQUEST, {"detail": str(exc)})
                return
        elif method == "DELETE":
            self.faults.clear()
        await _send_json(send, HTTPStatus.OK, {"faults": [rule.to_json() for rule in self.faults]})

    async def _admin_users(self, scope: Scope, body: bytes, send: Send) -> None:
        """Create each user of a JSON list through the SCIM application, outside the stats."""
        try:
            users = json.loads(body)
        except ValueError as exc:
            await _send_json(send, HTTPStatus.BAD_REQUEST, {"detail": str(exc)})
            return
        if not isinstance(users, list):
            await _send_json(
                send, HTTPStatus.BAD_REQUEST, {"detail": "a JSON list of SCIM users is expected"}
            )
            return
        created, errors = await self.load_users(users, ASGIApplication.get_base_url(scope))
        if errors:
            await _send_json(send, HTTPStatus.BAD_REQUEST, {"created": created, "errors": errors})
        else:
            await _send_json(send, HTTPStatus.OK, {"created": created})

    async def load_users(
        self, users: list[Any], base_url: str = f"http://{HOST}/v2"
    ) -> tuple[int, list[dict[str, Any]]]:
        """POST each user to the SCIM application directly; return the count and the failures.

        Each user is validated as a ``POST /Users`` would be (uniqueness included); a failure
        does not stop the others.
        """
        created = 0
        errors: list[dict[str, Any]] = []
        for index, user in enumerate(users):
            if not isinstance(user, dict):
                errors.append({"index": index, "status": 400, "detail": "not a JSON object"})
                continue
            request = ScimRequest(
                method="POST",
                base_url=base_url,
                path="/Users",
                headers={"Content-Type": SCIM_MEDIA_TYPE},
                body=json.dumps(user).encode(),
            )
            response = await self.scim.serve(request)
            if response.status == HTTPStatus.CREATED:
                created += 1
            else:
                detail = (response.body or {}).get("detail")
                errors.append({"index": index, "status": int(response.status), "detail": detail})
        return created, errors


# -- serving ---------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """A uvicorn server that calls ``on_ready`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()


def _listen(port: int) -> socket.socket:
    """A listening TCP socket on the loopback interface; port 0 picks a free port.

    The socket is handed over to uvicorn, so no other process can take the port in between.
    """
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP;
    # without it every response waits ~40 ms for Nagle and the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def _config(app: LmsMiddleware, port: int, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=5,
        **options,
    )


class EmbeddedLms:
    """The embedded LMS served by uvicorn in a background thread of the current process.

    >>> with EmbeddedLms(token="secret") as lms:
    ...     lms.base_url  # doctest: +SKIP
    'http://127.0.0.1:41234/v2'
    """

    def __init__(
        self,
        port: int = 0,
        token: str | None = None,
        *,
        email_index: bool = True,
        latency: float = 0.0,
        portal: str | None = None,
        modified_filter: bool = True,
    ) -> None:
        self.requested_port = port
        self.token = token
        self.email_index = email_index
        self.latency = latency
        self.portal = portal
        self.modified_filter = modified_filter
        self.app: LmsMiddleware | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the embedded LMS is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The SCIM root, such as ``http://127.0.0.1:41234/v2``."""
        return f"http://{HOST}:{self.port}/v2"

    @property
    def admin_url(self) -> str:
        """The root of the admin endpoints, such as ``http://127.0.0.1:41234/_admin``."""
        return f"http://{HOST}:{self.port}{ADMIN_PREFIX}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Listen on 127.0.0.1 and return once requests are served."""
        if self._thread is not None:
            raise RuntimeError("the embedded LMS is already started")
        app = build_app(
            self.token,
            email_index=self.email_index,
            latency=self.latency,
            portal=self.portal,
            modified_filter=self.modified_filter,
        )
        sock = _listen(self.requested_port)
        port = int(sock.getsockname()[1])
        ready = threading.Event()
        # log_config=None: leave the host process's logging configuration alone.
        server = _Server(_config(app, port, log_config=None), on_ready=ready.set)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"embedded-lms-{port}",
            daemon=True,
        )
        self.app, self._server, self._thread, self._socket = app, server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.02):
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the embedded LMS did not start on port {port}")
        self._port = port

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread; does nothing when not started."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        self._port = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    """Serve the embedded LMS in the foreground; print ``ready <base url>`` once listening."""
    parser = argparse.ArgumentParser(
        prog="python -m lmsync.lms.embedded",
        description="Serve an in-memory SCIM 2.0 LMS on 127.0.0.1 (for the demo and the tests).",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: a free port)"
    )
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (default: none)")
    parser.add_argument(
        "--stock-search",
        action="store_true",
        help="serve scim2-server's own search, which walks every user for an email or a "
        "lastModified lookup (default: indexes of both, as a real LMS has)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="wait this long before answering each SCIM request, as an LMS across a network "
        "would (default 0)",
    )
    parser.add_argument(
        "--portal",
        help=f"serve one portal of a multi-portal LMS: every SCIM request must name it, in the "
        f"{PORTAL_HEADER} header or as the path segment after /v2 (default: none)",
    )
    parser.add_argument(
        "--no-modified-filter",
        action="store_true",
        help="answer 400 invalidFilter to any /Users search filtering on meta.lastModified, as "
        "an LMS without that filter does (default: the filter is served)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.token == "":
        parser.error("--token must not be empty")
    if not 0 <= args.latency_ms <= 60_000:
        parser.error("--latency-ms must be between 0 and 60000")
    if args.portal == "":
        parser.error("--portal must not be empty")
    try:
        sock = _listen(args.port)
    except OSError as exc:
        parser.error(f"cannot listen on {HOST}:{args.port}: {exc}")
    port = int(sock.getsockname()[1])

    def announce() -> None:
        print(f"ready http://{HOST}:{port}/v2", flush=True)

    # uvicorn handles SIGINT/SIGTERM itself (graceful shutdown), restores these handlers and
    # raises the signal again: exit with status 0 instead of dying from it.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app = build_app(
        args.token,
        email_index=not args.stock_search,
        latency=args.latency_ms / 1000,
        portal=args.portal,
        modified_filter=not args.no_modified_filter,
    )
    server = _Server(_config(app, port), on_ready=announce)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


if __name__ == "__main__":
    main()
