"""When employment ends, as HR practises it: pure functions of (termination, time zone, now).

The termination date is the employee's last day worked. Access ends when that day ends: 00:00
the next day in the account's time zone. A termination "effective immediately" (a dismissal) ends
access when it is recorded, whatever its date. Until access ends the employee is active and
"leaving on <date>"; from then on, terminated. Everything is decided "as of now", with ``now``
passed in, so that a date boundary is a table test and not a sleep.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

EmploymentStatus = Literal["active", "leaving", "terminated"]


def end_of_day(day: date, timezone: str) -> datetime:
    """The instant (UTC) at which ``day`` ends in ``timezone``: 00:00 of the next day there."""
    local = datetime.combine(day + timedelta(days=1), time(0), ZoneInfo(timezone))
    return local.astimezone(UTC)


def access_ends_at(
    termination_date: date, timezone: str, *, immediate: bool, recorded_at: datetime
) -> datetime:
    """When the employee's access ends for a termination recorded at ``recorded_at``."""
    ends = end_of_day(termination_date, timezone)
    return min(ends, recorded_at) if immediate else ends


def status_as_of(access_ends: datetime | None, now: datetime) -> EmploymentStatus:
    """``active`` (no termination), ``leaving`` (access ends later) or ``terminated``."""
    if access_ends is None:
        return "active"
    return "leaving" if access_ends > now else "terminated"


def is_active(access_ends: datetime | None, now: datetime) -> bool:
    """Active for the LMS: employed, or under notice until the end of the last day worked."""
    return access_ends is None or access_ends > now


def local_today(timezone: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(timezone)).date()
