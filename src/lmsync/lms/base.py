"""The connector interface every LMS protocol implements, and its few typed errors.

HTTP statuses and protocol quirks are turned into these errors at the connector's edge; nothing
deeper knows about HTTP (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class RemoteUser:
    """An LMS user as the connector sees it. ``fields`` use LMS-neutral names
    (``lmsync.sync.mapping``)."""

    id: str
    active: bool
    email_key: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    linked_to: str | None = None  # the employee already linked to it, if any


class LmsError(Exception):
    """Base error: a readable message, the offending payload (never secrets), the chained cause.

    ``message`` is shown to people and kept (findings, run outcomes, LMS states, logs): a
    connector makes it with ``remote_text.RemoteText``, so it never holds the credentials nor a
    body the LMS answered. ``payload`` is what we sent (for code only: never put in a message, a
    response or a log). The chained cause never holds our request: the SCIM connector chains a
    stand-in without it (httpx keeps the request, and its headers, on its exceptions).
    """

    def __init__(self, message: str, payload: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.payload = payload


class TransientError(LmsError):
    """Timeouts, connection failures, 429, 5xx: worth retrying, after ``retry_after`` seconds."""

    def __init__(self, message: str, payload: Any = None, retry_after: float | None = None) -> None:
        super().__init__(message, payload)
        self.retry_after = retry_after


class NotFoundError(LmsError):
    """The LMS user does not exist (any more)."""


class AlreadyExistsError(LmsError):
    """Creating would clash with an existing LMS user (e.g. the login is taken)."""


class RejectedError(LmsError):
    """The LMS refused the data (validation); retried only after the record changes."""


class ConflictError(RejectedError):
    """Found at write time: the employee cannot get an LMS user without a person deciding (e.g.
    the login lmsync would give is held by another LMS user). Recorded as a conflict."""


class FilterUnsupportedError(RejectedError):
    """The LMS cannot answer "the users changed since": it does not filter on their time of last
    modification."""


class MisconfiguredError(LmsError):
    """Wrong URL, credentials or schema: nothing will work until the configuration is fixed."""


class DryRunWriteError(LmsError):
    """A write was attempted in dry-run mode; the transport refuses it."""


@dataclass(frozen=True)
class Finding:
    level: str  # "ok" | "warning" | "error"
    message: str


@dataclass
class ConnectionReport:
    findings: list[Finding] = field(default_factory=list)
    # Whether the LMS answers "the users changed since" (None: not checked); remembered by the
    # interface for the incremental hourly pass.
    modified_filter: bool | None = None

    @property
    def ok(self) -> bool:
        return all(f.level != "error" for f in self.findings)

    def add(self, level: str, message: str) -> None:
        self.findings.append(Finding(level, message))


@dataclass(frozen=True)
class UserPage:
    users: list[RemoteUser]
    total: int


class Connector(Protocol):
    """One LMS protocol. Fields use LMS-neutral names (see ``lmsync.sync.mapping``)."""

    def find_by_email(self, email: str) -> list[RemoteUser]:
        """Users whose email equals ``email`` (trimmed, case-insensitive), whatever the server's
        filter does with case."""
        ...

    def find_by_external_id(self, external_id: str) -> RemoteUser | None: ...

    def list_page(self, start_index: int, count: int) -> UserPage:
        """One page of all users (1-based ``start_index``, as in SCIM)."""
        ...

    def get(self, user_id: str) -> RemoteUser: ...

    def create(self, fields: Mapping[str, Any], create_only: Mapping[str, Any]) -> RemoteUser: ...

    def update(
        self,
        user_id: str,
        fields: Mapping[str, Any],
        changed: Collection[str],
        active: bool | None = None,
    ) -> None:
        """Write the ``changed`` names of ``fields`` (all maintained fields, for protocols that
        write groups such as addresses whole) and, unless None, the active flag, in one request."""
        ...

    def test(self) -> ConnectionReport: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class UpdateRequest:
    """One ``Connector.update`` call, for ``BatchConnector.update_many``."""

    user_id: str
    fields: Mapping[str, Any]
    changed: Collection[str]
    active: bool | None = None


@runtime_checkable
class BatchConnector(Connector, Protocol):
    """A connector that writes several users per request (the engine hands it up to
    ``batch_size`` writes at once). One user's error never fails the others: each gets its own
    result, in order. ``MisconfiguredError`` and ``TransientError`` of the whole request are
    raised instead (the engine retries a transient one)."""

    batch_size: int

    def create_many(
        self, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[RemoteUser | LmsError]:
        """``create(fields, create_only)`` for each item: the user made, or why not."""
        ...

    def update_many(self, items: Sequence[UpdateRequest]) -> list[LmsError | None]:
        """``update`` for each item: None when done, or why not."""
        ...


@runtime_checkable
class MixedBatchConnector(BatchConnector, Protocol):
    """A batch connector whose requests may mix creations and updates (SCIM Bulk)."""

    def write_many(
        self,
        creates: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
        updates: Sequence[UpdateRequest],
    ) -> tuple[list[RemoteUser | LmsError], list[LmsError | None]]:
        """``create_many(creates)`` and ``update_many(updates)`` in the same requests."""
        ...


@dataclass(frozen=True)
class ChangedUsers:
    """The LMS users modified after a time, and the LMS's own clock when it answered (None when
    it did not say): the next read starts from there."""

    users: list[RemoteUser]
    server_time: datetime | None


@runtime_checkable
class Pingable(Protocol):
    """A connector with a cheap authenticated request: an hourly pass that has nothing to read
    from the LMS still finds out whether it can reach it (the overview's health, the alerts)."""

    def ping(self) -> None:
        """One cheap request; raises ``LmsError`` when the LMS is unreachable or refuses."""
        ...


@runtime_checkable
class ChangeReader(Protocol):
    """A connector that can read only the users changed since a time (SCIM's
    ``filter=meta.lastModified gt``), for the incremental hourly pass."""

    def changed_since(self, since: datetime) -> ChangedUsers:
        """Every user modified after ``since`` (the LMS's clock). Raises
        ``FilterUnsupportedError`` when the LMS refuses the question."""
        ...

    def server_time(self) -> datetime | None:
        """The LMS's clock at its first answer to this connector (its ``Date``), if it said."""
        ...
