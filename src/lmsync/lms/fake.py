"""An in-memory connector for unit tests and the engine-only benchmark (no network, no latency)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Mapping
from typing import Any

from lmsync.lms.base import (
    AlreadyExistsError,
    ConnectionReport,
    DryRunWriteError,
    LmsError,
    NotFoundError,
    RemoteUser,
    UserPage,
)


class FakeLms:
    """Users keyed by id; emails compared case-insensitively; counts every call."""

    def __init__(self, *, dry_run: bool = False) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.dry_run = dry_run
        self.calls: dict[str, int] = {}
        self.fail_next: list[LmsError] = []  # raised, in order, by the next write calls
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- helpers for tests ------------------------------------------------------------------
    def add_user(self, email: str, *, active: bool = True, **fields: Any) -> str:
        user_id = f"u{next(self._ids)}"
        self.users[user_id] = {"email": email, "active": active, **fields}
        return user_id

    def writes(self) -> int:
        return sum(self.calls.get(k, 0) for k in ("create", "update"))

    # -- Connector -----------------------------------------------------------------------------
    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def _write(self, name: str) -> None:
        if self.dry_run:
            raise DryRunWriteError(f"{name} refused: dry run")
        self._count(name)
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _remote(self, user_id: str) -> RemoteUser:
        data = self.users[user_id]
        email = data.get("email")
        return RemoteUser(
            id=user_id,
            active=bool(data.get("active", True)),
            email_key=email.strip().casefold() if isinstance(email, str) else None,
            fields={k: v for k, v in data.items() if k != "active"},
        )

    def find_by_email(self, email: str) -> list[RemoteUser]:
        self._count("find_by_email")
        key = email.strip().casefold()
        return [self._remote(i) for i in self.users if self._remote(i).email_key == key]

    def find_by_external_id(self, external_id: str) -> RemoteUser | None:
        self._count("find_by_external_id")
        for user_id, data in self.users.items():
            if data.get("external_id") == external_id:
                return self._remote(user_id)
        return None

    def list_page(self, start_index: int, count: int) -> UserPage:
        self._count("list_page")
        ids = list(self.users)
        page = ids[start_index - 1 : start_index - 1 + count]
        return UserPage(users=[self._remote(i) for i in page], total=len(ids))

    def get(self, user_id: str) -> RemoteUser:
        self._count("get")
        if user_id not in self.users:
            raise NotFoundError(f"user {user_id} not found")
        return self._remote(user_id)

    def create(self, fields: Mapping[str, Any], create_only: Mapping[str, Any]) -> RemoteUser:
        self._write("create")
        key = str(fields.get("email", "")).casefold()
        with self._lock:
            if any(str(u.get("email", "")).casefold() == key for u in self.users.values()):
                raise AlreadyExistsError("userName already taken")
            user_id = f"u{next(self._ids)}"
            self.users[user_id] = {**fields, **create_only, "active": True}
        return self._remote(user_id)

    def update(
        self,
        user_id: str,
        fields: Mapping[str, Any],
        changed: Collection[str],
        active: bool | None = None,
    ) -> None:
        self._write("update")
        if user_id not in self.users:
            raise NotFoundError(f"user {user_id} not found")
        data = self.users[user_id]
        for name in changed:
            data[name] = fields.get(name)
        if active is not None:
            data["active"] = active

    def test(self) -> ConnectionReport:
        report = ConnectionReport()
        report.add("ok", "in-memory LMS")
        return report

    def close(self) -> None:
        return None
