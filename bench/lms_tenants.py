"""The embedded LMS, one per tenant, in one process: ``/t/<tenant>/v2`` is a SCIM server of its own.

Each lmsync account of the queue benchmarks gets its own LMS, as in production: an hourly full
pass reads every user of *its* LMS, so one LMS shared by 200 accounts would make each pass read
every account's users. Each tenant is ``lmsync.lms.embedded.build_app`` (scim2-server in memory
behind the embedded LMS's middleware: token, statistics, latency), created at its first request.

``/_bench`` endpoints (no token, no latency; the server listens on loopback only):

* ``POST /_bench/latency`` ``{"ms": 200}``: every tenant answers that much later from now on
  (set-up runs at 0 ms, the measurement far away).
* ``POST /_bench/watch`` ``{"keys": ["<tenant>/<user id>", ...]}``: after each ``PATCH``/``PUT`` of
  a watched user, the LMS reads the user back and, the first time it is inactive, records the
  wall-clock time (``time.time()``); ``GET /_bench/watch`` answers ``{"inactive_at": {key: t},
  "arrived_at": {key: t}}`` (``arrived_at``: when that write reached the LMS, before its
  latency). The moment a deactivation lands in the LMS, without polling it.
* ``GET /_bench/user/<tenant>/<user id>``: the user as stored, without latency.
* ``GET /_bench/stats``, ``POST /_bench/stats/reset``: the tenants' SCIM statistics, summed.

    python bench/lms_tenants.py --port 0 --token T [--latency-ms 200]   # prints "ready <root>"
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import time
from collections import Counter
from http import HTTPStatus
from typing import Any

from scim2_server.requests import ScimRequest

import lmsync.lms.embedded as embedded

_TENANT = re.compile(r"^/t/([A-Za-z0-9_.-]{1,64})(/.*)?$")
_USER = re.compile(r"^(?:/v2)?/Users/([^/?]+)/?$")


class TenantRouter:
    """ASGI: ``/t/<tenant>/...`` to that tenant's embedded LMS, ``/_bench/...`` to itself."""

    def __init__(self, token: str | None, latency: float) -> None:
        self.token = token
        self.latency = latency
        self.tenants: dict[str, embedded.LmsMiddleware] = {}
        self.watched: set[str] = set()
        self.inactive_at: dict[str, float] = {}
        self.arrived_at: dict[str, float] = {}  # when the write that deactivated it arrived

    def tenant(self, name: str) -> embedded.LmsMiddleware:
        app = self.tenants.get(name)
        if app is None:
            app = self.tenants[name] = embedded.build_app(self.token, latency=self.latency)
        return app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/_bench/"):
            await self._bench(scope, path.removeprefix("/_bench"), receive, send)
            return
        match = _TENANT.match(path)
        if match is None:
            await embedded._read_body(receive)
            await embedded._send_json(send, HTTPStatus.NOT_FOUND, {"detail": "no tenant"})
            return
        name, rest = match.group(1), match.group(2) or "/"
        app = self.tenant(name)
        method = str(scope["method"]).upper()
        key, arrived = "", 0.0
        if method in ("PATCH", "PUT") and self.watched:
            user = _USER.match(rest)
            key = f"{name}/{user.group(1)}" if user else ""
            arrived = time.time()
        # ASGI: ``path`` keeps the root path; scim2-server and the middleware strip it.
        await app(dict(scope, root_path=f"/t/{name}"), receive, send)
        if key in self.watched and key not in self.inactive_at:
            stored = await self._user(app, key.partition("/")[2])
            if stored is not None and stored.get("active") is False:
                self.inactive_at[key] = time.time()
                self.arrived_at[key] = arrived

    @staticmethod
    async def _user(app: embedded.LmsMiddleware, user_id: str) -> dict[str, Any] | None:
        request = ScimRequest(
            method="GET",
            base_url=f"http://{embedded.HOST}/v2",
            path=f"/Users/{user_id}",
            headers={"Accept": embedded.SCIM_MEDIA_TYPE},
        )
        response = await app.scim.serve(request)
        if response.status != HTTPStatus.OK or not isinstance(response.body, dict):
            return None
        return dict(response.body)

    def stats(self) -> dict[str, Any]:
        requests: Counter[str] = Counter()
        writes = 0
        for app in self.tenants.values():
            requests.update(app.requests)
            writes += app.writes
        return {"tenants": len(self.tenants), "requests": dict(requests), "writes": writes}

    async def _bench(self, scope: Any, route: str, receive: Any, send: Any) -> None:
        body = await embedded._read_body(receive)
        method = str(scope["method"]).upper()
        answer: Any
        if route == "/latency" and method == "POST":
            self.latency = float(json.loads(body)["ms"]) / 1000
            for app in self.tenants.values():
                app.latency = self.latency
            answer = {"ms": self.latency * 1000}
        elif route == "/watch" and method == "POST":
            self.watched.update(str(key) for key in json.loads(body)["keys"])
            answer = {"watched": len(self.watched)}
        elif route == "/watch" and method == "GET":
            answer = {"inactive_at": self.inactive_at, "arrived_at": self.arrived_at}
        elif route == "/stats" and method == "GET":
            answer = self.stats()
        elif route == "/stats/reset" and method == "POST":
            for app in self.tenants.values():
                app.reset_stats()
            answer = self.stats()
        elif route.startswith("/user/") and method == "GET":
            name, _, user_id = route.removeprefix("/user/").partition("/")
            tenant = self.tenants.get(name)
            answer = None if tenant is None else await self._user(tenant, user_id)
            if answer is None:
                await embedded._send_json(send, HTTPStatus.NOT_FOUND, {"detail": "no such user"})
                return
        else:
            await embedded._send_json(send, HTTPStatus.NOT_FOUND, {"detail": f"no {route}"})
            return
        await embedded._send_json(send, HTTPStatus.OK, answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    sock = embedded._listen(args.port)
    port = int(sock.getsockname()[1])

    def announce() -> None:
        print(f"ready http://{embedded.HOST}:{port}", flush=True)

    signal.signal(signal.SIGTERM, embedded._exit_on_sigterm)
    router = TenantRouter(args.token, args.latency_ms / 1000)
    server = embedded._Server(embedded._config(router, port), on_ready=announce)  # type: ignore[arg-type]
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


if __name__ == "__main__":
    main()
