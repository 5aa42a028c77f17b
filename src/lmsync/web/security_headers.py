"""Security headers on every response: a strict Content-Security-Policy, no framing, no sniffing,
no caching of personal data; and no redirect that points at whatever Host the client sent.

A pure ASGI middleware: it rewrites the ``http.response.start`` message and never touches the
body, so streamed responses stay streamed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The pages load only their own scripts, styles and images; no inline script, style or event
# handler (htmx's indicator styles are turned off in base.html for this reason).
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)

# The API docs (/docs Swagger UI, /redoc ReDoc; lmsync/web/api_docs.py) load only the bundles
# vendored in static/api-docs and start from a static script. ReDoc builds its styles at run time
# (<style> elements, so 'unsafe-inline' for styles only) and runs its search in a blob: worker.
# These pages hold no personal data and need no login.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)

_COMMON: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)

# Static files (the stylesheet, htmx) may be cached; everything else may carry personal data.
_CACHEABLE_PREFIX = "/static/"


def security_headers(path: str, docs_paths: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The headers a response to ``path`` gets (a response's own values win)."""
    policy = DOCS_POLICY if path in set(docs_paths) else PAGE_POLICY
    headers = [("content-security-policy", policy), *_COMMON]
    if not path.startswith(_CACHEABLE_PREFIX):
        headers.append(("cache-control", "no-store"))
    return headers


def add_security_headers(
    headers: MutableHeaders, path: str, docs_paths: Iterable[str] = ()
) -> None:
    """Set the security headers on a response built outside the middleware (the 500 handler)."""
    for name, value in security_headers(path, docs_paths):
        headers.setdefault(name, value)


def _relative_location(location: str, scope: Scope) -> str:
    """``location`` without scheme and authority when it points at the request's own Host.

    Starlette's trailing-slash redirect builds an absolute URL from the Host header; answering
    with a path keeps a forged Host out of the redirect (and out of any cache in front of us).
    """
    host = Headers(scope=scope).get("host")
    if not host:
        return location
    for scheme in ("http", "https"):
        origin = f"{scheme}://{host}"
        if location == origin:
            return "/"
        if location.startswith(origin) and location[len(origin)] in "/?#":
            rest = location[len(origin) :]
            return rest if rest.startswith("/") else "/" + rest
    return location


class SecurityHeadersMiddleware:
    """Adds :func:`security_headers` to every HTTP response; ``docs_paths`` get the docs policy."""

    def __init__(self, app: ASGIApp, docs_paths: Iterable[str | None] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(p for p in docs_paths if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_headers(message, path, self.docs_paths, scope)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _with_headers(
    message: Message, path: str, docs_paths: frozenset[str], scope: Scope
) -> dict[str, Any]:
    raw: list[tuple[bytes, bytes]] = list(message.get("headers", []))
    present = {name.lower() for name, _ in raw}
    for i, (raw_name, raw_value) in enumerate(raw):
        if raw_name.lower() == b"location":
            location = _relative_location(raw_value.decode("latin-1"), scope)
            raw[i] = (raw_name, location.encode("latin-1"))
    for name, value in security_headers(path, docs_paths):
        if name.encode() not in present:
            raw.append((name.encode(), value.encode()))
    return {**message, "headers": raw}
