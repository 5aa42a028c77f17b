"""The real SCIM LMS peer of the integration and browser tests: ``python -m lmsync.lms.embedded``
(scim2-server) in its own process, with its admin endpoints."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmsync.lms.embedded import PORTAL_HEADER

LMS_TOKEN = "lms-test-token"


@dataclass
class LmsProcess:
    """The SCIM server in its own process, and its admin endpoints."""

    base_url: str
    admin_url: str
    token: str
    portal: str | None = None  # the one portal it serves (``--portal``), named in a header

    def _http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}
        if self.portal is not None:
            headers[PORTAL_HEADER] = self.portal
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def users(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with self._http() as http:
            start = 1
            while True:
                body = http.get("/Users", params={"startIndex": start, "count": 1000}).json()
                out.extend(body.get("Resources", []))
                start += len(body.get("Resources", []))
                if not body.get("Resources") or start > body["totalResults"]:
                    return out

    def by_email(self, email: str) -> list[dict[str, Any]]:
        key = email.casefold()
        return [
            u
            for u in self.users()
            if any(e["value"].casefold() == key for e in u.get("emails", []))
        ]

    def delete(self, user_id: str) -> None:
        with self._http() as http:
            assert http.delete(f"/Users/{user_id}").status_code == 204

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.admin_url}/stats").json()
        return result

    def reset_stats(self) -> None:
        httpx.post(f"{self.admin_url}/stats/reset").raise_for_status()

    def fault(self, **rule: Any) -> None:
        httpx.post(f"{self.admin_url}/faults", json=rule).raise_for_status()

    def load(self, users: list[dict[str, Any]]) -> None:
        response = httpx.post(f"{self.admin_url}/users", json=users, timeout=120)
        assert response.status_code == 200, response.text


def scim_user(
    email: str, first: str = "Pre", last: str = "Existing", **extra: Any
) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": first, "familyName": last},
        "emails": [{"value": email, "type": "work", "primary": True}],
        "active": True,
        **extra,
    }


@contextmanager
def running_lms(
    tmp_path: Path,
    *extra: str,
    name: str = "lms",
    portal: str | None = None,
    modified_filter: bool = True,
) -> Iterator[LmsProcess]:
    """``python -m lmsync.lms.embedded`` with ``extra`` arguments (e.g. ``--latency-ms 50``),
    serving only ``portal`` if given, refusing ``meta.lastModified`` filters without
    ``modified_filter``, stopped on exit; its log is ``tmp_path/<name>.log``."""
    log = (tmp_path / f"{name}.log").open("w")
    if portal is not None:
        extra = (*extra, "--portal", portal)
    if not modified_filter:
        extra = (*extra, "--no-modified-filter")
    with subprocess.Popen(
        [sys.executable, "-m", "lmsync.lms.embedded", "--port", "0", "--token", LMS_TOKEN, *extra],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line.startswith("ready "), line
            base = line.removeprefix("ready ")
            yield LmsProcess(
                base_url=base,
                admin_url=base.removesuffix("/v2") + "/_admin",
                token=LMS_TOKEN,
                portal=portal,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


@pytest.fixture
def lms(tmp_path: Path) -> Iterator[LmsProcess]:
    with running_lms(tmp_path) as process:
        yield process
