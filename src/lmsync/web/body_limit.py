"""A request body size limit, enforced before and while the body is read (never buffered whole).

A declared ``Content-Length`` over the limit is refused before the application runs, so not a
byte of the body is read. A body without one (chunked, streamed) is counted as it arrives: the
read that passes the limit raises :class:`BodyTooLarge`, an HTTP 413 that the application's
error handlers turn into problem details (API) or the error page; if something in between
turned it into another answer, that answer is replaced by the 413.
"""

from __future__ import annotations

import html

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmsync.web.problems import is_api_path, problem


class BodyTooLarge(HTTPException):
    """The request body passed the limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


def _detail(limit: int) -> str:
    return f"the request body is larger than the limit of {_size(limit)}"


def _size(limit: int) -> str:
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MB"
    if limit >= 1024 and limit % 1024 == 0:
        return f"{limit // 1024} KB"
    return f"{limit} bytes"


def too_large(path: str, limit: int) -> Response:
    """The 413 answer: problem details for the API, a short page for the pages."""
    if is_api_path(path):
        return problem(413, _detail(limit), headers={"Connection": "close"})
    detail = _detail(limit)
    message = html.escape(detail[0].upper() + detail[1:])
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Too large · lmsync</title>"
        '<link rel="stylesheet" href="/static/app.css"></head>'
        f'<body><main id="main"><h1>Too large</h1><p>{message}.</p>'
        '<p><a href="/">Home</a></p></main></body></html>'
    )
    return HTMLResponse(page, status_code=413, headers={"Connection": "close"})


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.strip().isdigit():
        return None  # the server refuses a malformed length; the count below still applies
    return int(value)


class BodyLimitMiddleware:
    """Refuses with 413 a request whose body is larger than ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        path: str = scope["path"]
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await too_large(path, limit)(scope, receive, send)
            return

        received = 0
        exceeded = False
        started = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                if exceeded and message["status"] != 413:
                    replaced = True
                    await too_large(path, limit)(scope, receive, send)
                    return
            if replaced:
                return  # the rest of the answer we replaced
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
            await too_large(path, limit)(scope, receive, send)
