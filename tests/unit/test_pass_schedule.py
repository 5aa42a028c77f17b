"""When the hourly pass is a full sweep: a table of dates, time zones and what is known."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from lmsync.sync.worker import hourly_options, next_sweep


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("last", "hour", "minute", "zone", "expected"),
    [
        # Never swept: at once.
        (None, 3, 7, "UTC", "0001-01-01T00:00:00"),
        # Swept at its time: the same time the next day.
        ("2026-12-02T03:07:00", 3, 7, "UTC", "2026-12-03T03:07:00"),
        # Swept by hand in the afternoon: the next night still.
        ("2026-12-02T15:00:00", 3, 7, "UTC", "2026-12-03T03:07:00"),
        # Swept by hand just before the night's time: not twice within half an hour.
        ("2026-12-02T02:50:00", 3, 7, "UTC", "2026-12-03T03:07:00"),
        ("2026-12-02T02:30:00", 3, 7, "UTC", "2026-12-02T03:07:00"),
        # The account's time zone: 03:07 in Toronto is 08:07 UTC in winter...
        ("2026-12-02T09:00:00", 3, 7, "America/Toronto", "2026-12-03T08:07:00"),
        # ...and 07:07 UTC in summer; across the change of time the wall clock holds.
        ("2026-03-07T08:07:00", 3, 7, "America/Toronto", "2026-03-08T07:07:00"),
        # The night the clocks go back, 01:45 happens twice: one sweep, at the first.
        ("2026-11-01T05:45:00", 1, 45, "America/Toronto", "2026-11-02T06:45:00"),
        ("2026-10-31T05:45:00", 1, 45, "America/Toronto", "2026-11-01T05:45:00"),
        # An unknown zone falls back to UTC.
        ("2026-12-02T03:07:00", 3, 7, "Nowhere/Land", "2026-12-03T03:07:00"),
    ],
)
def test_next_sweep(last: str | None, hour: int, minute: int, zone: str, expected: str) -> None:
    assert next_sweep(utc(last) if last else None, hour, minute, zone) == utc(expected)


def _row(**values: object) -> SimpleNamespace:
    base: dict[str, object] = {
        "last_sweep_at": utc("2026-12-02T03:07:00"),
        "sweep_hour": 3,
        "minute_of_hour": 7,
        "timezone": "UTC",
        "lms_changes_since": utc("2026-12-02T12:05:00"),
        "modified_filter": True,
    }
    return SimpleNamespace(**{**base, **values})


@pytest.mark.parametrize(
    ("row", "now", "full"),
    [
        (_row(), "2026-12-02T13:07:00", False),  # an ordinary hour: incremental
        (_row(), "2026-12-03T03:07:00", True),  # the night's sweep
        (_row(), "2026-12-03T03:06:59", False),  # a second before it
        (_row(last_sweep_at=None), "2026-12-02T13:07:00", True),  # never swept
        # Where to start reading is unknown, the filter maybe there: sweep (it sets both).
        (_row(lms_changes_since=None, modified_filter=None), "2026-12-02T13:07:00", True),
        # No filter: the hourly pass does HR's changes only; the LMS waits for the sweep.
        (_row(lms_changes_since=None, modified_filter=False), "2026-12-02T13:07:00", False),
    ],
)
def test_hourly_options(row: SimpleNamespace, now: str, full: bool) -> None:
    options = hourly_options(row, utc(now))
    assert options.trigger == "hourly"
    assert options.full is full
    assert options.incremental is not full
