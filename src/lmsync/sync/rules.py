"""The rules of docs/rules.md as a pure function: (employee, link, scope, correlation) → one action.

No I/O. The engine gathers the inputs, asks ``decide`` (twice for an unlinked employee: once to
learn that a correlation by email is needed, once with its result) and carries the action out.

An action's ``reason`` is stored (run outcomes, LMS states) in English and shown later in the
reader's language: the fixed ones are marked ``N_`` for the catalogue (``i18n.gettext(reason)``
or ``sync.reasons.stored`` says them again, also those with a parameter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lmsync.i18n import N_
from lmsync.lms.base import RemoteUser

WORK_EMAIL_REQUIRED = N_("work email required")
DUPLICATE_HR_EMAIL = N_("duplicate work email in HR")
# Why a switch of the interface holds an employee back (sync.held_back counts those employees,
# and makes them due when the switch is turned back on).
SYNC_USERS_OFF = N_("LMS user synchronization is switched off")
DEACTIVATION_OFF = N_("terminated; deactivation of LMS users is switched off")
MATCHED_BY_EMAIL = N_("matched by email")
# Reasons with a parameter: stored English, said again by ``sync.reasons.stored``.
SEVERAL_USERS = N_("several LMS users have this email ({ids})")
LINKED_ELSEWHERE = N_("the LMS user with this email is already linked to employee {employee}")
CHANGED = N_("changed: {fields}")

FieldValues = Mapping[str, Any]


class Kind(StrEnum):
    NONE = "none"
    SKIP = "skip"
    CONFLICT = "conflict"
    CORRELATE = "correlate"  # not final: the engine must look the email up and ask again
    CREATE = "create"
    LINK = "link"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"


WRITES = frozenset({Kind.CREATE, Kind.UPDATE, Kind.DEACTIVATE, Kind.REACTIVATE, Kind.LINK})


@dataclass(frozen=True)
class Scope:
    """The account's switches. ``interface_active``: the LMS interface was activated."""

    user_sync_enabled: bool
    interface_active: bool
    sync_users: bool = True  # "Synchronize LMS users": create, link, update, reactivate
    deactivate_terminated: bool = True  # "Deactivate LMS users of terminated employees"


@dataclass(frozen=True)
class EmployeeView:
    id: str
    active: bool  # False once terminated
    excluded: bool
    email_key: str | None  # trimmed, case-folded work email
    email_shared: bool  # another employee of the account has the same work email
    desired: FieldValues  # the maintained LMS fields (docs/field-mapping.md), LMS-neutral names


@dataclass(frozen=True)
class LinkView:
    lms_user_id: str
    lms_active: bool
    written: FieldValues  # values lmsync last wrote (or read at link time)
    gone: bool = False  # the LMS answered 404 for this user
    remote: RemoteUser | None = None  # the user as read now (full pass), for drift


@dataclass(frozen=True)
class LinkRefresh:
    """What the link should record after a full pass read the LMS user, when no write is needed
    but the record is stale (the user was reactivated or deactivated in the LMS by hand, or the
    record lags behind values the LMS already holds)."""

    lms_active: bool
    written: FieldValues | None = None  # None: keep the recorded values


@dataclass(frozen=True)
class Action:
    kind: Kind
    reason: str = ""
    lms_user_id: str | None = None
    changes: FieldValues = field(default_factory=dict)  # fields to write (all of them on create)
    reactivate: bool = False  # LINK/UPDATE of a deactivated user of an active employee
    drop_link: bool = False  # the linked user is gone: forget it before acting
    refresh: LinkRefresh | None = None  # no write, but the link's record follows the LMS

    @property
    def writes(self) -> bool:
        return self.kind in WRITES and (
            self.kind != Kind.LINK or bool(self.changes) or self.reactivate
        )


def none(reason: str) -> Action:
    return Action(Kind.NONE, reason)


def _same(name: str, a: Any, b: Any) -> bool:
    if name == "email" and isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()  # LMSs often lower-case domains
    return bool(a == b)


def diff(desired: FieldValues, current: FieldValues) -> dict[str, Any]:
    """The desired values that differ from ``current`` (a missing key counts as different)."""
    if desired.items() <= current.items():  # the usual case, checked in C
        return {}
    return {k: v for k, v in desired.items() if k not in current or not _same(k, v, current[k])}


def decide(
    employee: EmployeeView,
    link: LinkView | None,
    scope: Scope,
    matches: tuple[RemoteUser, ...] | None = None,
) -> Action:
    """The one action that brings the LMS in line with the employee; ``matches`` is the result of
    looking the work email up (None: not looked up yet)."""
    if employee.excluded:
        return none(N_("excluded from the LMS interface"))
    if not scope.user_sync_enabled:
        return none(N_("user synchronization is not enabled for this account"))
    if not scope.interface_active:
        return none(N_("the LMS interface is not active"))

    if link is not None and not link.gone:
        return _linked(employee, link, scope)

    drop = link is not None  # linked, but the LMS user is gone: correlate again
    if not employee.active:
        return Action(Kind.NONE, N_("terminated; never created in the LMS"), drop_link=drop)
    if not scope.sync_users:
        return Action(Kind.NONE, SYNC_USERS_OFF, drop_link=drop)
    if employee.email_key is None:
        return Action(Kind.SKIP, WORK_EMAIL_REQUIRED, drop_link=drop)
    if employee.email_shared:
        return Action(Kind.CONFLICT, DUPLICATE_HR_EMAIL, drop_link=drop)
    if matches is None:
        return Action(Kind.CORRELATE, drop_link=drop)
    if not matches:
        return Action(
            Kind.CREATE, N_("no LMS user has this email"), changes=employee.desired, drop_link=drop
        )
    if len(matches) > 1:
        ids = ", ".join(sorted(m.id for m in matches))
        return Action(Kind.CONFLICT, SEVERAL_USERS.format(ids=ids), drop_link=drop)
    match = matches[0]
    if match.linked_to is not None and match.linked_to != employee.id:
        return Action(
            Kind.CONFLICT,
            LINKED_ELSEWHERE.format(employee=match.linked_to),
            drop_link=drop,
        )
    return Action(
        Kind.LINK,
        MATCHED_BY_EMAIL,
        lms_user_id=match.id,
        changes=diff(employee.desired, match.fields),
        reactivate=not match.active,
        drop_link=drop,
    )


def _linked(employee: EmployeeView, link: LinkView, scope: Scope) -> Action:
    remote_active = link.remote.active if link.remote is not None else link.lms_active
    if not employee.active:
        if not remote_active:
            stale = link.lms_active  # the LMS user was deactivated by hand, or in a lost run
            return Action(
                Kind.NONE,
                N_("terminated; LMS user already deactivated"),
                refresh=LinkRefresh(False) if stale else None,
            )
        if not scope.deactivate_terminated:
            return none(DEACTIVATION_OFF)
        return Action(Kind.DEACTIVATE, N_("terminated"), lms_user_id=link.lms_user_id)
    if not scope.sync_users:
        return none(SYNC_USERS_OFF)
    # A field the LMS does not show (Moodle hides phone numbers unless configured to show them)
    # is taken as last written.
    current = {**link.written, **link.remote.fields} if link.remote is not None else link.written
    changes = diff(employee.desired, current)
    if not remote_active:
        return Action(
            Kind.REACTIVATE,
            N_("active in HR, deactivated in the LMS"),
            lms_user_id=link.lms_user_id,
            changes=changes,
            reactivate=True,
        )
    if changes:
        return Action(
            Kind.UPDATE,
            CHANGED.format(fields=", ".join(sorted(changes))),
            lms_user_id=link.lms_user_id,
            changes=changes,
        )
    stale = link.remote is not None and (
        not link.lms_active or bool(diff(employee.desired, link.written))
    )
    # The LMS holds the employee's values (up to letter case): record those, as a write would.
    return Action(
        Kind.NONE, N_("up to date"), refresh=LinkRefresh(True, employee.desired) if stale else None
    )


def duplicate_email_keys(employees: list[tuple[str | None, bool, bool]]) -> set[str]:
    """Work emails (keys) held by more than one employee who would be synchronized.

    Each item is (email_key, active, excluded). Excluded and terminated employees do not claim an
    email, so a leaver's address can be reused by a newcomer without a conflict.
    """
    seen: set[str] = set()
    shared: set[str] = set()
    for key, active, excluded in employees:
        if key is None or excluded or not active:
            continue
        if key in seen:
            shared.add(key)
        seen.add(key)
    return shared
