"""The language of each request: the browser's Accept-Language to start with (the page
session's lookup may then switch it to the user's or the account's choice, see
``pages.common.get_browser``); the answer says which one it spoke (Content-Language).

A pure ASGI middleware, so the context variable it sets is the one the endpoint runs in.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmsync import i18n


class LocaleMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        box = i18n.begin(i18n.negotiate(Headers(scope=scope).get("accept-language")))

        async def send_with_language(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-language", box.language.replace("_", "-"))
                headers.add_vary_header("Accept-Language")
            await send(message)

        await self.app(scope, receive, send_with_language)
