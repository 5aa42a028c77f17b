"""Dated terminations end to end on the database and the fake LMS, on a driven clock: the LMS
user stays active while the employee is leaving and is deactivated by the first run after the
last day worked ends; changes, cancellations (before and after), rehires, the guard, the worker's
wake-up and the account's time zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from lmsync.domain.accounts import AccountPatchIn
from lmsync.domain.employees import (
    CancelTerminationIn,
    RehireIn,
    TerminateIn,
    TerminationChangeIn,
)
from lmsync.domain.errors import Conflict, ValidationFailed
from lmsync.hr import employees
from lmsync.hr.accounts import update_account
from lmsync.hr.principal import Principal
from lmsync.storage.database import transaction
from lmsync.storage.tables import Account, Employee, EmployeeEvent, LmsInterface, LmsLink
from lmsync.sync.engine import has_ready_work, next_due
from lmsync.sync.worker import SyncWorker
from tests.db.test_engine import Setup

TORONTO = "America/Toronto"
# Wednesday 2026-12-02, 15:00 in Toronto (EST, UTC-5).
START = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
TODAY = date(2026, 12, 2)
TONIGHT = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)  # 00:00 on the 3rd in Toronto
HR = Principal(
    user_id="hr-1", email="hr@example.com", is_operator=False, account_id=None, role=None
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Dated(Setup):
    """The engine's setup, with the account in Toronto and a clock the test drives."""

    def __init__(self, engine: Engine, tmp_path: Path) -> None:
        super().__init__(engine, tmp_path)
        self.clock = Clock(START)
        self.engine.clock = self.clock
        with transaction(self.sessions) as s:
            s.get_one(Account, self.account_id).timezone = TORONTO

    def linked(self, n: int) -> str:
        employee_id = self.hire(n)
        assert self.run().counts == {"create": 1}
        return employee_id

    def act(self, fn: Any, employee_id: str, data: Any) -> Employee:
        with transaction(self.sessions) as s:
            employee: Employee = fn(s, HR, self.account_id, employee_id, data, now=self.clock.now)
            s.expunge(employee)
            return employee

    def terminate(self, employee_id: str, day: date, **extra: Any) -> Employee:
        data = TerminateIn.model_validate({"termination_date": day.isoformat(), **extra})
        return self.act(employees.terminate, employee_id, data)

    def lms_active(self, employee_id: str) -> bool:
        with self.sessions() as s:
            link = s.get_one(LmsLink, employee_id)
        return bool(self.lms.users[link.lms_user_id]["active"])

    def employee(self, employee_id: str) -> Employee:
        with self.sessions() as s:
            employee = s.get_one(Employee, employee_id)
            s.expunge(employee)
            return employee

    def ready(self) -> bool:
        with self.sessions() as s:
            return has_ready_work(s, self.account_id, self.clock.now)

    def events(self, employee_id: str) -> list[EmployeeEvent]:
        with self.sessions() as s:
            rows = s.scalars(
                select(EmployeeEvent)
                .where(EmployeeEvent.employee_id == employee_id)
                .order_by(EmployeeEvent.at, EmployeeEvent.id)
            )
            return list(rows)


@pytest.fixture
def dated(engine: Engine, tmp_path: Path) -> Iterator[Dated]:
    d = Dated(engine, tmp_path)
    yield d
    d.service.close()


def test_a_termination_dated_today_keeps_the_lms_user_until_the_day_ends(dated: Dated) -> None:
    employee_id = dated.linked(1)
    leaving = dated.terminate(employee_id, TODAY, reason="Resignation")
    assert leaving.access_ends_at == TONIGHT
    assert employees.status_of(leaving, dated.clock.now) == "leaving"
    run = dated.run()
    assert run.counts.get("deactivate") is None
    assert dated.lms_active(employee_id)
    # Due again exactly when access ends, and not before.
    assert dated.employee(employee_id).lms_due_at == TONIGHT
    assert not dated.ready()
    dated.clock.now = TONIGHT - timedelta(microseconds=1)
    assert not dated.ready()
    dated.clock.now = TONIGHT
    assert dated.ready()
    assert dated.run().counts == {"deactivate": 1}
    assert not dated.lms_active(employee_id)
    assert dated.employee(employee_id).lms_due_at is None


def test_a_termination_dated_in_two_months_waits_and_one_in_the_past_does_not(
    dated: Dated,
) -> None:
    later, earlier = dated.linked(1), dated.linked(2)
    dated.terminate(later, TODAY + timedelta(days=60))
    dated.terminate(earlier, TODAY - timedelta(days=1))
    assert dated.run().counts == {"deactivate": 1, "none": 1}
    assert dated.lms_active(later)
    assert not dated.lms_active(earlier)


def test_effective_immediately_deactivates_whatever_the_date(dated: Dated) -> None:
    employee_id = dated.linked(1)
    dismissed = dated.terminate(employee_id, TODAY + timedelta(days=30), effective_immediately=True)
    assert employees.status_of(dismissed, dated.clock.now) == "terminated"
    assert dated.run().counts == {"deactivate": 1}
    assert not dated.lms_active(employee_id)


def test_changing_the_date_moves_the_deactivation(dated: Dated) -> None:
    employee_id = dated.linked(1)
    dated.terminate(employee_id, TODAY + timedelta(days=30))
    dated.run()
    later = dated.act(
        employees.change_termination,
        employee_id,
        TerminationChangeIn(termination_date=TODAY + timedelta(days=31)),
    )
    assert later.access_ends_at == datetime(2027, 1, 3, 5, 0, tzinfo=UTC)
    dated.run()
    assert dated.employee(employee_id).lms_due_at == later.access_ends_at
    assert dated.lms_active(employee_id)
    # Brought forward into the past: it takes effect at once.
    dated.act(
        employees.change_termination,
        employee_id,
        TerminationChangeIn(termination_date=TODAY - timedelta(days=1)),
    )
    assert dated.run().counts == {"deactivate": 1}
    changed = [e for e in dated.events(employee_id) if e.kind == "termination_changed"]
    assert [e.actor_user_id for e in changed] == ["hr-1", "hr-1"]
    assert changed[0].details["before"]["termination_date"] == "2027-01-01"
    assert changed[0].details["after"]["termination_date"] == "2027-01-02"


def test_a_termination_that_took_effect_cannot_be_changed_only_cancelled(dated: Dated) -> None:
    employee_id = dated.linked(1)
    dated.terminate(employee_id, TODAY)
    dated.clock.now = TONIGHT + timedelta(hours=1)
    with pytest.raises(Conflict, match="took effect"):
        dated.act(
            employees.change_termination,
            employee_id,
            TerminationChangeIn(termination_date=TODAY + timedelta(days=5)),
        )
    with pytest.raises(Conflict, match="already terminated"):
        dated.terminate(employee_id, TODAY)


def test_cancelling_before_it_takes_effect_changes_nothing_in_the_lms(dated: Dated) -> None:
    employee_id = dated.linked(1)
    dated.terminate(employee_id, TODAY)
    dated.run()
    writes = dated.lms.writes()
    back = dated.act(
        employees.cancel_termination, employee_id, CancelTerminationIn(note="Withdrawn")
    )
    assert (back.termination_date, back.access_ends_at, back.hire_date) == (
        None,
        None,
        date(2024, 1, 1),
    )
    dated.run()
    dated.clock.now = TONIGHT + timedelta(hours=1)  # the old boundary passes: nothing happens
    assert not dated.ready()
    dated.run()
    assert dated.lms.writes() == writes
    assert dated.lms_active(employee_id)
    cancelled = dated.events(employee_id)[-1]
    assert cancelled.kind == "termination_cancelled"
    assert cancelled.actor_user_id == "hr-1"
    assert cancelled.details["note"] == "Withdrawn"
    assert cancelled.details["status"] == "leaving"


def test_cancelling_after_it_took_effect_reactivates_with_the_same_hire_date(
    dated: Dated,
) -> None:
    employee_id = dated.linked(1)
    dated.terminate(employee_id, TODAY - timedelta(days=2), reason="Recorded by mistake")
    dated.run()
    assert not dated.lms_active(employee_id)
    back = dated.act(employees.cancel_termination, employee_id, CancelTerminationIn())
    assert back.hire_date == date(2024, 1, 1)  # the same period of employment goes on
    assert dated.run().counts == {"reactivate": 1}
    assert dated.lms_active(employee_id)
    assert dated.events(employee_id)[-1].details["status"] == "terminated"
    with pytest.raises(Conflict, match="no termination to cancel"):
        dated.act(employees.cancel_termination, employee_id, CancelTerminationIn())


def test_rehire_after_a_dated_termination_starts_a_new_period(dated: Dated) -> None:
    employee_id = dated.linked(1)
    dated.terminate(employee_id, TODAY)
    with pytest.raises(Conflict, match="cancel the termination instead"):
        dated.act(employees.rehire, employee_id, RehireIn(hire_date=TODAY))
    dated.clock.now = TONIGHT
    dated.run()
    assert not dated.lms_active(employee_id)
    with pytest.raises(ValidationFailed):
        dated.act(employees.rehire, employee_id, RehireIn(hire_date=TODAY - timedelta(days=1)))
    rehired = dated.act(employees.rehire, employee_id, RehireIn(hire_date=TODAY + timedelta(1)))
    assert rehired.hire_date == TODAY + timedelta(days=1)
    assert dated.run().counts == {"reactivate": 1}
    assert dated.lms_active(employee_id)


def test_an_employee_under_notice_not_linked_yet_is_still_created(dated: Dated) -> None:
    employee_id = dated.hire(1)
    dated.terminate(employee_id, TODAY + timedelta(days=10))
    assert dated.run().counts == {"create": 1}
    assert dated.lms_active(employee_id)
    assert dated.employee(employee_id).lms_due_at == datetime(2026, 12, 13, 5, tzinfo=UTC)


def test_year_end_terminations_go_through_the_guard_when_they_take_effect(dated: Dated) -> None:
    ids = [dated.hire(n) for n in range(30)]
    dated.run()
    with transaction(dated.sessions) as s:
        interface = s.get_one(LmsInterface, dated.account_id)
        interface.guard_minimum, interface.guard_percent = 5, 10
    for employee_id in ids[:8]:
        dated.terminate(employee_id, date(2026, 12, 31))
    dated.run()  # recorded in December: nothing to deactivate yet, nothing held
    assert all(dated.lms_active(i) for i in ids)
    dated.clock.now = datetime(2027, 1, 1, 5, 0, tzinfo=UTC)  # midnight, New Year's Day
    held = dated.run()
    assert held.status == "held"
    assert all(dated.lms_active(i) for i in ids)


def test_the_worker_wakes_when_the_next_termination_takes_effect(dated: Dated) -> None:
    employee_id = dated.linked(1)
    dated.terminate(employee_id, TODAY)
    dated.run()
    with dated.sessions() as s:
        assert next_due(s, dated.account_id, dated.clock.now) == TONIGHT
    worker = SyncWorker(dated.engine, dated.sessions, poll_seconds=86400)
    worker.tick()
    assert worker._pause() == (TONIGHT - START).total_seconds()
    dated.clock.now = TONIGHT - timedelta(seconds=3)
    assert worker._pause() == 3
    dated.clock.now = TONIGHT
    assert worker.tick() >= 1  # the change run (and the hourly pass, on this clock)
    assert not dated.lms_active(employee_id)


def test_a_new_time_zone_moves_the_scheduled_terminations(dated: Dated) -> None:
    employee_id, dismissed = dated.linked(1), dated.linked(2)
    dated.terminate(employee_id, TODAY)
    dated.terminate(dismissed, TODAY, effective_immediately=True)
    operator = Principal(user_id="op", email="op@x", is_operator=True, account_id=None, role=None)
    with transaction(dated.sessions) as s:
        patch = AccountPatchIn(timezone="America/Vancouver")
        update_account(s, operator, dated.account_id, patch, now=dated.clock.now)
    moved = dated.employee(employee_id)
    assert moved.access_ends_at == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)  # PST, UTC-8
    assert dated.employee(dismissed).access_ends_at == START  # a dismissal does not move


def test_lists_and_filters_follow_the_clock(dated: Dated) -> None:
    leaving, staying = dated.hire(1), dated.hire(2)
    dated.terminate(leaving, TODAY)
    with dated.sessions() as s:

        def numbers(status: str, now: datetime) -> list[str]:
            rows, _ = employees.list_employees(
                s,
                dated.account_id,
                employees.EmployeeFilter(status=status),
                limit=10,
                offset=0,
                now=now,
            )
            return sorted(e.employee_number for e in rows)

        assert numbers("active", START) == ["1", "2"]
        assert numbers("leaving", START) == ["1"]
        assert numbers("terminated", START) == []
        assert numbers("active", TONIGHT) == ["2"]
        assert numbers("leaving", TONIGHT) == []
        assert numbers("terminated", TONIGHT) == ["1"]
    assert staying
