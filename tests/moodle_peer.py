"""The real Moodle 5.0 of the Moodle connector's integration tests and of benchmark B6:
``../shared/peers/moodle/start.sh`` (see its README), started once per test session.

Without the peer (no ``shared/`` next to the checkout, or it cannot start) the tests fail under
CI (``CI`` set) and are skipped, with the reason, elsewhere. ``MoodleSite`` talks to the site as
its administrator would (through the same web services, apart from lmsync's connector): to seed
users and to look at what lmsync did.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

PEER = Path(__file__).resolve().parents[2] / "shared" / "peers" / "moodle"
IN_CI = bool(os.environ.get("CI"))
LANGUAGES = ["en", "fr", "fr_ca", "es", "de"]  # the packs the peer has


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the Moodle peer is required in CI: {reason}", pytrace=False)
    pytest.skip(f"Moodle peer not available: {reason}")


def form(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            form(f"{prefix}[{key}]", item, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            form(f"{prefix}[{index}]", item, out)
    else:
        out.append((prefix, str(value)))


@dataclass
class MoodleSite:
    """The peer, with its URL, token and environment (for ``reset.sh``)."""

    url: str
    token: str
    env: dict[str, str]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60))

    def call(self, function: str, **params: Any) -> Any:
        body: list[tuple[str, str]] = [("wstoken", self.token)]
        for key, value in params.items():
            form(key, value, body)
        response = self.http.post(
            f"{self.url}/webservice/rest/server.php",
            params={"wsfunction": function, "moodlewsrestformat": "json"},
            data=dict(body),
        )
        response.raise_for_status()
        answer = response.json()
        if isinstance(answer, dict) and "exception" in answer:
            raise AssertionError(f"{function}: {answer}")
        return answer

    def reset(self) -> None:
        """Back to the pristine site: the three built-in users only."""
        subprocess.run(
            ["bash", str(PEER / "reset.sh")], env=self.env, check=True, capture_output=True
        )

    def add_user(self, email: str, first: str = "Pre", last: str = "Existing", **extra: Any) -> int:
        user = {
            "username": extra.pop("username", email.lower()),
            "email": email,
            "firstname": first,
            "lastname": last,
            "auth": "manual",
            "createpassword": 1,
            **extra,
        }
        [made] = self.call("core_user_create_users", users=[user])
        return int(made["id"])

    def users(self) -> list[dict[str, Any]]:
        """Every user but the built-in ones (guest, admin, the web-service user)."""
        answer = self.call("core_user_get_users", criteria=[{"key": "email", "value": "%"}])
        return [u for u in answer["users"] if u["username"] not in ("guest", "admin", "wsuser")]

    def by_email(self, email: str) -> list[dict[str, Any]]:
        return [u for u in self.users() if u["email"].casefold() == email.casefold()]

    def user(self, user_id: int | str) -> dict[str, Any]:
        answer = self.call("core_user_get_users", criteria=[{"key": "id", "value": user_id}])
        [found] = answer["users"]
        return dict(found)

    def sql(self, statement: str) -> list[list[str]]:
        """A statement on the site's database (what the web services cannot show or do)."""
        command = [
            "psql",
            "-h",
            f"{self.env['MOODLE_STATE_DIR']}/pgrun",
            "-p",
            self.env["MOODLE_PG_PORT"],
            "-d",
            "moodle",
            "-AtF",
            "\t",
            "-c",
            statement,
        ]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        else:
            command[1:1] = ["-U", "postgres"]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return [line.split("\t") for line in done.stdout.splitlines()]

    def custom(self, user: dict[str, Any]) -> dict[str, Any]:
        return {c["shortname"]: c["value"] for c in user.get("customfields") or []}


@pytest.fixture(scope="session")
def moodle_site() -> Iterator[MoodleSite]:
    if not (PEER / "start.sh").exists():
        _unavailable(f"{PEER} not found")
    try:
        done = subprocess.run(
            ["bash", str(PEER / "start.sh")], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"start.sh: {exc}")
    if done.returncode != 0:
        _unavailable(f"start.sh exited {done.returncode}: {done.stderr[-500:]}")
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    env = {**os.environ, **values}
    site = MoodleSite(values["MOODLE_URL"], values["MOODLE_TOKEN"], env)
    yield site
    site.http.close()
    # Left running: start.sh answers at once next time, and CI's machine is thrown away.


@pytest.fixture
def moodle(moodle_site: MoodleSite) -> MoodleSite:
    """The peer, reset to its pristine state for this test."""
    moodle_site.reset()
    return moodle_site
