"""Refuses a request whose path or query carries a control character (NUL above all).

No id, filter or search lmsync accepts contains one, and PostgreSQL refuses NUL in text outright:
without this check a ``%00`` in an id or a search would reach the database and end as a 500.
Checked once at the edge for every route, as a pure ASGI middleware, with a 400 that says why.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_plus

from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lmsync.web.problems import is_api_path, problem

MESSAGE = "the address contains a control character"


def has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def _refusal(path: str) -> Response:
    if is_api_path(path):
        return problem(400, MESSAGE)
    return PlainTextResponse("Invalid request: " + MESSAGE + ".", status_code=400)


class AddressCheckMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            query = unquote_plus(scope.get("query_string", b"").decode("latin-1"))
            if has_control(path) or has_control(query):
                await _refusal(path)(scope, receive, send)
                return
        await self.app(scope, receive, send)
