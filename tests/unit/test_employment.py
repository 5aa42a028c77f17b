"""Dated terminations as table tests on an injected clock: when access ends (the last day worked
ends at 00:00 the next day in the account's time zone, or at once when effective immediately),
the status "as of now", and the one action the rules then take for the LMS user."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from lmsync.domain.employment import (
    access_ends_at,
    end_of_day,
    is_active,
    local_today,
    status_as_of,
)
from lmsync.sync.rules import EmployeeView, Kind, LinkView, Scope, decide

IN_SCOPE = Scope(user_sync_enabled=True, interface_active=True)
FIELDS = {"external_id": "e1", "first_name": "Ann", "last_name": "Lee", "email": "a@x.ca"}
LINKED = LinkView(lms_user_id="u1", lms_active=True, written=FIELDS)
TORONTO = "America/Toronto"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("day", "timezone", "ends"),
    [
        (date(2026, 12, 31), "UTC", "2027-01-01T00:00:00+00:00"),
        (date(2026, 12, 31), TORONTO, "2027-01-01T05:00:00+00:00"),  # EST, UTC-5
        (date(2026, 7, 15), TORONTO, "2026-07-16T04:00:00+00:00"),  # EDT, UTC-4
        # The night the clocks go forward (2027-03-14 02:00 local): midnight is still EST.
        (date(2027, 3, 13), TORONTO, "2027-03-14T05:00:00+00:00"),
        (date(2027, 3, 14), TORONTO, "2027-03-15T04:00:00+00:00"),
        (date(2026, 12, 31), "Pacific/Kiritimati", "2026-12-31T10:00:00+00:00"),  # UTC+14
        (date(2026, 12, 31), "Pacific/Pago_Pago", "2027-01-01T11:00:00+00:00"),  # UTC-11
    ],
)
def test_access_ends_when_the_last_day_worked_ends_in_the_accounts_time_zone(
    day: date, timezone: str, ends: str
) -> None:
    assert end_of_day(day, timezone) == at(ends)


NOW = at("2026-12-02T15:00:00-05:00")  # a Wednesday afternoon in Toronto
TODAY = date(2026, 12, 2)


@pytest.mark.parametrize(
    ("case", "last_day", "immediate", "status", "action"),
    [
        ("dated in the past", TODAY - timedelta(days=3), False, "terminated", Kind.DEACTIVATE),
        ("dated yesterday", TODAY - timedelta(days=1), False, "terminated", Kind.DEACTIVATE),
        ("dated today: works until tonight", TODAY, False, "leaving", Kind.NONE),
        ("dated in two months", TODAY + timedelta(days=60), False, "leaving", Kind.NONE),
        ("dismissal dated today", TODAY, True, "terminated", Kind.DEACTIVATE),
        ("dismissal dated later", TODAY + timedelta(days=30), True, "terminated", Kind.DEACTIVATE),
        (
            "dismissal dated earlier",
            TODAY - timedelta(days=30),
            True,
            "terminated",
            Kind.DEACTIVATE,
        ),
    ],
)
def test_a_termination_takes_effect_as_of_now(
    case: str, last_day: date, immediate: bool, status: str, action: Kind
) -> None:
    ends = access_ends_at(last_day, TORONTO, immediate=immediate, recorded_at=NOW)
    assert status_as_of(ends, NOW) == status, case
    view = EmployeeView("e1", is_active(ends, NOW), False, "a@x.ca", False, FIELDS)
    assert decide(view, LINKED, IN_SCOPE).kind == action, case


def test_a_dismissal_ends_access_when_it_is_recorded() -> None:
    ends = access_ends_at(TODAY + timedelta(days=30), TORONTO, immediate=True, recorded_at=NOW)
    assert ends == NOW


@pytest.mark.parametrize(
    ("now", "status"),
    [
        (at("2026-12-02T23:59:59.999999-05:00"), "leaving"),  # the last second of the last day
        (at("2026-12-03T00:00:00-05:00"), "terminated"),  # midnight: access has ended
        (at("2026-12-03T04:59:59+00:00"), "leaving"),  # same instants, seen from UTC
        (at("2026-12-03T05:00:00+00:00"), "terminated"),
    ],
)
def test_the_boundary_is_midnight_local_time(now: datetime, status: str) -> None:
    ends = access_ends_at(TODAY, TORONTO, immediate=False, recorded_at=NOW)
    assert status_as_of(ends, now) == status


def test_no_termination_is_active_and_a_cancelled_one_is_active_again() -> None:
    assert status_as_of(None, NOW) == "active"
    assert is_active(None, NOW)
    # Cancelling clears the end of access, before or after it took effect.
    view = EmployeeView("e1", is_active(None, NOW), False, "a@x.ca", False, FIELDS)
    deactivated = LinkView(lms_user_id="u1", lms_active=False, written=FIELDS)
    assert decide(view, deactivated, IN_SCOPE).kind == Kind.REACTIVATE
    assert decide(view, LINKED, IN_SCOPE).kind == Kind.NONE


@pytest.mark.parametrize(
    ("change_to", "status"),
    [
        (TODAY - timedelta(days=1), "terminated"),  # brought forward into the past: at once
        (TODAY + timedelta(days=10), "leaving"),  # pushed back
        (TODAY, "leaving"),
    ],
)
def test_a_change_of_the_date_moves_the_end_of_access(change_to: date, status: str) -> None:
    first = access_ends_at(TODAY + timedelta(days=5), TORONTO, immediate=False, recorded_at=NOW)
    changed = access_ends_at(change_to, TORONTO, immediate=False, recorded_at=NOW)
    assert status_as_of(first, NOW) == "leaving"
    assert status_as_of(changed, NOW) == status
    assert changed == end_of_day(change_to, TORONTO)


def test_an_employee_under_notice_who_is_not_linked_is_still_created() -> None:
    ends = access_ends_at(TODAY + timedelta(days=14), TORONTO, immediate=False, recorded_at=NOW)
    view = EmployeeView("e1", is_active(ends, NOW), False, "a@x.ca", False, FIELDS)
    assert decide(view, None, IN_SCOPE).kind == Kind.CORRELATE  # then link or create
    assert decide(view, None, IN_SCOPE, matches=()).kind == Kind.CREATE
    gone = access_ends_at(TODAY - timedelta(days=1), TORONTO, immediate=False, recorded_at=NOW)
    view = EmployeeView("e1", is_active(gone, NOW), False, "a@x.ca", False, FIELDS)
    assert decide(view, None, IN_SCOPE).kind == Kind.NONE  # a leaver is never created


def test_the_local_date_is_the_accounts() -> None:
    late_evening_in_toronto = at("2026-12-02T23:30:00-05:00")
    assert local_today(TORONTO, late_evening_in_toronto) == date(2026, 12, 2)
    assert local_today("UTC", late_evening_in_toronto) == date(2026, 12, 3)
