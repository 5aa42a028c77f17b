"""The engine against the in-memory fake LMS: retries, rejections, locking, dry runs, guard."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.accounts import AccountCreateIn
from lmsync.domain.employees import TerminateIn
from lmsync.domain.interface import InterfaceIn
from lmsync.hr import accounts, employees
from lmsync.lms.base import (
    Connector,
    LmsError,
    MisconfiguredError,
    RejectedError,
    RemoteUser,
    TransientError,
    UpdateRequest,
)
from lmsync.lms.fake import FakeLms
from lmsync.security import SecretBox
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import (
    Account,
    Employee,
    LmsInterface,
    LmsLink,
    LmsState,
    SyncOutcome,
    SyncRun,
    utcnow,
)
from lmsync.sync import guard, lease
from lmsync.sync.engine import RunOptions, SyncBusy, SyncEngine, has_ready_work
from lmsync.sync.lease import Claim
from lmsync.sync.mapping import desired_fields
from lmsync.sync.service import SyncService


class Setup:
    def __init__(self, engine: Engine, tmp_path: Path) -> None:
        self.sessions: sessionmaker[Session] = make_session_factory(engine)
        self.secrets = SecretBox.from_settings(None, tmp_path)
        self.lms = FakeLms()
        self.dry_lms = FakeLms(dry_run=True)
        self.dry_lms.users = self.lms.users  # the same LMS, seen through a dry-run transport
        self.engine = SyncEngine(
            self.sessions, self.secrets, connector_factory=self.factory, retry_attempts=2
        )
        self.service = SyncService(self.sessions, self.secrets, self.engine)
        with transaction(self.sessions) as s:
            account = accounts.create_account(s, AccountCreateIn(name="A", company_name="A inc."))
            account.user_sync_enabled = True
            self.account_id = account.id
            self.service.put_interface(
                s, account.id, InterfaceIn.model_validate({"base_url": "http://fake.example"})
            )
            self.service.get_interface(s, account.id).active = True

    def factory(self, interface: LmsInterface, secret: str | None, dry_run: bool) -> Connector:
        return self.dry_lms if dry_run else self.lms

    def hire(self, n: int, email: str | None = None, **extra: Any) -> str:
        with transaction(self.sessions) as s:
            employee = employees.hire(
                s,
                None,
                self.account_id,
                {
                    "employee_number": str(n),
                    "first_name": "F",
                    "last_name": f"L{n}",
                    "work_email": email if email is not None else f"p{n}@example.com",
                    "hire_date": "2024-01-01",
                    **extra,
                },
                now=self.engine.clock(),  # due as of the engine's clock (a test may drive it)
            )
            return employee.id

    def run(self, **options: Any) -> Any:
        return self.engine.run(
            self.account_id, RunOptions(trigger=options.pop("trigger", "change"), **options)
        )

    def state(self, employee_id: str) -> LmsState:
        with self.sessions() as s:
            return s.get_one(LmsState, employee_id)

    def due(self, employee_id: str) -> bool:
        with self.sessions() as s:
            return s.get_one(Employee, employee_id).lms_due_at is not None


@pytest.fixture
def setup(engine: Engine, tmp_path: Path) -> Iterator[Setup]:
    s = Setup(engine, tmp_path)
    yield s
    s.service.close()


def test_creates_and_second_run_writes_nothing(setup: Setup) -> None:
    ids = [setup.hire(n) for n in range(3)]
    summary = setup.run()
    assert summary.counts == {"create": 3}
    assert not any(setup.due(i) for i in ids)
    writes = setup.lms.writes()
    again = setup.run(full=True, trigger="hourly")
    assert again.status == "succeeded"
    assert setup.lms.writes() == writes


def test_rejection_waits_for_a_record_change(setup: Setup) -> None:
    employee_id = setup.hire(1)
    setup.lms.fail_next.append(RejectedError("the LMS refused the data: bad name"))
    summary = setup.run()
    assert summary.counts.get("failed") == 1
    state = setup.state(employee_id)
    assert (state.outcome, state.reason) == ("error", "the LMS refused the data: bad name")
    assert state.rejected_record_at is not None
    with setup.sessions() as s:
        assert not has_ready_work(s, setup.account_id, utcnow())
    assert setup.run().counts == {}  # not retried while the record is the same
    with transaction(setup.sessions) as s:
        employees.update(s, None, setup.account_id, employee_id, {"last_name": "Fixed"})
    with setup.sessions() as s:
        assert has_ready_work(s, setup.account_id, utcnow())
    assert setup.run().counts == {"create": 1}
    assert setup.state(employee_id).outcome == "ok"


def test_a_run_whose_every_write_failed_failed_with_the_commonest_reason(setup: Setup) -> None:
    ids = [setup.hire(n) for n in range(3)]
    setup.lms.fail_next.extend(
        [
            RejectedError("the LMS refused the data: bad name"),
            RejectedError("the LMS refused the data: no such language"),
            RejectedError("the LMS refused the data: bad name"),
        ]
    )
    summary = setup.run()
    assert summary.status == "failed"
    assert summary.counts == {"failed": 3}
    assert summary.message == (
        "no write went through (3 failed); most often: the LMS refused the data: bad name"
    )
    assert all(setup.state(i).outcome == "error" for i in ids)
    nothing_to_do = setup.run()  # the same records are not retried: nothing failed this time
    assert nothing_to_do.status == "succeeded"


def test_transient_failure_is_retried_then_scheduled(setup: Setup) -> None:
    employee_id = setup.hire(1)
    setup.lms.fail_next.append(TransientError("503", retry_after=0))
    assert setup.run().counts == {"create": 1}  # retried within the run
    other = setup.hire(2)
    setup.lms.fail_next.extend([TransientError("503", retry_after=0)] * 2)
    summary = setup.run()
    assert summary.status == "failed"  # the run's only write failed
    assert summary.message == "no write went through (1 failed); most often: 503"
    state = setup.state(other)
    assert state.outcome == "error"
    assert state.attempts == 1
    assert state.next_attempt_at is not None
    assert state.next_attempt_at > utcnow() + timedelta(seconds=30)
    assert setup.due(other)  # still due: the worker tries again later
    assert setup.state(employee_id).outcome == "ok"


def test_misconfiguration_fails_the_run_and_keeps_work_due(setup: Setup) -> None:
    employee_id = setup.hire(1)
    setup.lms.fail_next.append(MisconfiguredError("401: the LMS refused the credentials"))
    summary = setup.run()
    assert summary.status == "failed"
    assert "credentials" in (summary.message or "")
    assert setup.due(employee_id)


def take(engine: SyncEngine, account_id: str) -> Claim | None:
    """Take the account's sync lock as ``engine`` would for a run."""
    return lease.acquire(engine.sessions, account_id, engine.owner, engine.lock_lease)


def test_one_sync_per_account(setup: Setup) -> None:
    mine = take(setup.engine, setup.account_id)
    assert mine is not None
    with pytest.raises(SyncBusy):
        setup.run()
    lease.release(setup.sessions, mine)
    other = SyncEngine(setup.sessions, setup.secrets, connector_factory=setup.factory)
    theirs = take(other, setup.account_id)
    assert theirs is not None
    assert take(setup.engine, setup.account_id) is None
    assert theirs.fence > mine.fence  # every acquisition carries a new fencing number
    lease.release(setup.sessions, theirs)


def test_dry_run_plans_without_writing(setup: Setup) -> None:
    ids = [setup.hire(n) for n in range(4)]
    summary = setup.run(dry_run=True, trigger="manual")
    assert summary.counts == {"create": 4}
    assert setup.lms.users == {}
    assert all(setup.due(i) for i in ids)
    with setup.sessions() as s:
        planned = list(s.scalars(select(SyncOutcome).where(SyncOutcome.run_id == summary.run_id)))
        assert {o.outcome for o in planned} == {"planned"}
        assert s.scalars(select(LmsLink)).first() is None


def test_deactivation_guard_uses_the_minimum_and_the_percentage(setup: Setup) -> None:
    ids = [setup.hire(n) for n in range(30)]
    setup.run()
    with transaction(setup.sessions) as s:
        interface = s.get_one(LmsInterface, setup.account_id)
        interface.guard_minimum = 5
        interface.guard_percent = 10
        for employee_id in ids[:6]:
            employees.terminate(
                s,
                None,
                setup.account_id,
                employee_id,
                TerminateIn.model_validate({"termination_date": "2026-11-01"}),
            )
    held = setup.run()
    assert held.status == "held"
    assert sum(1 for u in setup.lms.users.values() if not u["active"]) == 0
    with setup.sessions() as s:
        held_ids = guard.held_employee_ids(s, held.run_id)
    assert sorted(held_ids) == sorted(ids[:6])
    approved = setup.run(approved=True, trigger="approval", employee_ids=held_ids)
    assert approved.counts == {"deactivate": 6}


def test_a_queued_run_waits_for_the_running_one(setup: Setup) -> None:
    setup.hire(1)
    other = SyncEngine(setup.sessions, setup.secrets, connector_factory=setup.factory)
    held = take(other, setup.account_id)  # e.g. the worker's run
    assert held is not None
    run_id = setup.service.sync(setup.account_id, dry_run=False, full=False, actor=None)
    assert isinstance(run_id, str)
    time.sleep(0.6)
    with setup.sessions() as s:
        assert s.get_one(SyncRun, run_id).status == "queued"
    lease.release(setup.sessions, held)
    deadline = time.monotonic() + 10
    status = "queued"
    while status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
        with setup.sessions() as s:
            status = s.get_one(SyncRun, run_id).status
    assert status == "succeeded"
    assert setup.lms.writes() == 1


def test_paging_stops_when_a_server_repeats_page_one(setup: Setup) -> None:
    for n in range(3):
        setup.hire(n)
    setup.run()
    real = setup.lms.list_page
    calls: list[int] = []

    def repeating(start_index: int, count: int) -> Any:
        calls.append(start_index)
        page = real(1, count)  # always page 1, and a total that never ends
        return type(page)(users=page.users, total=10**9)

    setup.lms.list_page = repeating  # type: ignore[method-assign]
    summary = setup.run(full=True, trigger="hourly")
    assert summary.status == "succeeded"
    assert summary.counts == {"none": 3}
    assert len(calls) == 2  # page 1, then page 1 again: nothing new, stop


def test_activation_makes_the_interface_active_under_its_lock(setup: Setup) -> None:
    from lmsync.sync.worker import SyncWorker

    with transaction(setup.sessions) as s:
        s.get_one(LmsInterface, setup.account_id).active = False
    setup.hire(1)
    holder = SyncEngine(setup.sessions, setup.secrets, connector_factory=setup.factory)
    held = take(holder, setup.account_id)
    assert held is not None
    run_id = setup.service.activate(setup.account_id, dry_run=False, actor=None)
    assert isinstance(run_id, str)
    worker = SyncWorker(setup.engine, setup.sessions)
    time.sleep(0.3)
    with setup.sessions() as s:
        assert s.get_one(LmsInterface, setup.account_id).active is False
    assert worker.tick() == 0  # no change run can overtake the queued activation
    lease.release(setup.sessions, held)
    deadline = time.monotonic() + 10
    status = "queued"
    while status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
        with setup.sessions() as s:
            run = s.get_one(SyncRun, run_id)
            status, counts = run.status, dict(run.counts)
    assert status == "succeeded"
    assert counts == {"create": 1}
    with setup.sessions() as s:
        assert s.get_one(LmsInterface, setup.account_id).active is True


def test_many_writes_in_chunks_are_each_recorded_once(setup: Setup) -> None:
    """300 writes over 2 worker threads go in chunks; every result lands, in one row each."""
    with transaction(setup.sessions) as s:
        interface = s.get_one(LmsInterface, setup.account_id)
        interface.options = {**interface.options, "max_concurrency": 2}
    ids = [setup.hire(n) for n in range(300)]
    for n in range(0, 300, 3):
        setup.lms.add_user(f"P{n}@Example.com", first_name="F", last_name=f"L{n}")
    setup.lms.fail_next.append(TransientError("503 once"))
    summary = setup.run(trigger="activation", full=True)
    assert summary.counts == {"create": 200, "link": 100}
    with setup.sessions() as s:
        run = s.get_one(SyncRun, summary.run_id)
        assert (run.progress_done, run.progress_total) == (300, 300)
        links = {link.employee_id: link for link in s.scalars(select(LmsLink))}
        states = list(s.scalars(select(LmsState)))
        outcomes = list(s.scalars(select(SyncOutcome).where(SyncOutcome.run_id == run.id)))
        due = s.scalars(select(Employee.id).where(Employee.lms_due_at.is_not(None))).all()
    assert set(links) == set(ids)
    assert len({link.lms_user_id for link in links.values()}) == 300
    assert sum(link.made_by == "matched" for link in links.values()) == 100
    assert sorted(state.employee_id for state in states) == sorted(ids)
    assert {state.outcome for state in states} == {"ok"}
    assert sorted(o.employee_id for o in outcomes) == sorted(ids)
    assert due == []
    assert len(setup.lms.users) == 300


def _link(setup: Setup, employee_id: str) -> LmsLink:
    with setup.sessions() as s:
        return s.get_one(LmsLink, employee_id)


def test_full_pass_records_what_it_reads_without_writing_to_the_lms(setup: Setup) -> None:
    """Drift that needs no write still reaches the link: the employee file tells the truth."""
    kept, stale = setup.hire(1), setup.hire(2)
    setup.run()
    with transaction(setup.sessions) as s:
        s.get_one(LmsInterface, setup.account_id).deactivate_terminated = False
        employees.terminate(
            s,
            None,
            setup.account_id,
            kept,
            TerminateIn.model_validate({"termination_date": "2026-11-01"}),
        )
        s.get_one(LmsLink, stale).written = {}  # a record that lags behind the LMS
    setup.run()
    assert _link(setup, kept).lms_active  # the switch is off: lmsync left the user active
    setup.lms.users[_link(setup, kept).lms_user_id]["active"] = False  # an admin, by hand
    writes = setup.lms.writes()

    summary = setup.run(full=True, trigger="hourly")

    assert summary.status == "succeeded"
    assert setup.lms.writes() == writes
    assert not _link(setup, kept).lms_active
    with setup.sessions() as s:
        seen = s.scalars(select(SyncOutcome).where(SyncOutcome.run_id == summary.run_id)).all()
    # The hand deactivation is in the run's history; the lagging record alone is not news.
    assert [(o.employee_id, o.action, o.before, o.after) for o in seen] == [
        (kept, "none", {"active": True}, {"active": False})
    ]
    refreshed = _link(setup, stale)
    assert refreshed.written["email"] == "p2@example.com"
    assert refreshed.written["last_name"] == "L2"
    synced = (_link(setup, kept).synced_at, refreshed.synced_at)
    setup.run(full=True, trigger="hourly")
    assert (_link(setup, kept).synced_at, _link(setup, stale).synced_at) == synced
    assert setup.lms.writes() == writes


def test_links_of_deleted_lms_users_are_dropped_without_a_write(setup: Setup) -> None:
    """A leaver's (or an email-less employee's) LMS user deleted in the LMS: the full pass
    forgets the link instead of failing, and writes nothing."""
    leaver, no_email = setup.hire(1), setup.hire(2)
    setup.run()
    with transaction(setup.sessions) as s:
        employees.terminate(
            s,
            None,
            setup.account_id,
            leaver,
            TerminateIn.model_validate({"termination_date": "2026-11-01"}),
        )
    setup.run()
    with transaction(setup.sessions) as s:
        employees.update(s, None, setup.account_id, no_email, {"work_email": None})
    setup.run()
    for employee_id in (leaver, no_email):
        del setup.lms.users[_link(setup, employee_id).lms_user_id]  # an LMS admin deletes it
    writes = setup.lms.writes()

    summary = setup.run(full=True, trigger="hourly")

    assert summary.status == "succeeded", summary.message
    assert setup.lms.writes() == writes
    with setup.sessions() as s:
        assert s.get(LmsLink, leaver) is None
        assert s.get(LmsLink, no_email) is None
    assert setup.state(no_email).outcome == "skipped"


def test_a_match_that_needs_no_write_is_linked_active_with_its_values(setup: Setup) -> None:
    employee_id = setup.hire(1)
    with setup.sessions() as s:
        employee = s.get_one(Employee, employee_id)
        account = s.get_one(Account, setup.account_id)
        desired = desired_fields(employee, account)
    setup.lms.add_user(str(desired["email"]), **{k: v for k, v in desired.items() if k != "email"})

    summary = setup.run()

    assert summary.counts == {"link": 1}
    assert setup.lms.writes() == 0
    link = _link(setup, employee_id)
    assert (link.made_by, link.lms_active, link.written) == ("matched", True, desired)


def test_an_lms_user_found_at_write_time_is_never_linked_twice(setup: Setup) -> None:
    """The LMS says "exists" on create and the user it finds is another employee's: refused."""
    first = setup.hire(1)
    setup.run()
    taken = _link(setup, first).lms_user_id
    setup.lms.users[taken]["email"] = "p2@example.com"  # an LMS admin edits the email
    real_lookup = setup.lms.find_by_email
    lookups: list[str] = []

    def lookup_before_the_edit(email: str) -> list[Any]:
        lookups.append(email)
        return [] if len(lookups) == 1 else real_lookup(email)  # the plan saw no match

    setup.lms.find_by_email = lookup_before_the_edit  # type: ignore[method-assign]
    second = setup.hire(2)

    summary = setup.run()

    assert summary.status == "failed"  # its only write failed
    assert summary.counts == {"failed": 1}
    state = setup.state(second)
    assert state.outcome == "error"
    assert state.reason == f"the LMS user with this email is already linked to employee {first}"
    with setup.sessions() as s:
        assert s.get(LmsLink, second) is None
    assert _link(setup, first).lms_user_id == taken


def test_an_unexpected_error_ends_the_run_as_failed_and_frees_the_account(setup: Setup) -> None:
    setup.hire(1)

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug in a connector")

    setup.lms.create = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError):
        setup.run()
    with setup.sessions() as s:
        run = s.scalars(select(SyncRun)).one()
        assert (run.status, run.message) == ("failed", "internal error (RuntimeError)")
        assert run.finished_at is not None
    del setup.lms.create  # the class's method again
    assert setup.run().counts == {"create": 1}


class _SlowLms(FakeLms):
    """Creates take a while; records how many were in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0
        self._flight = threading.Lock()

    def create(self, fields: Any, create_only: Any) -> Any:
        with self._flight:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.02)
            return super().create(fields, create_only)
        finally:
            with self._flight:
                self.in_flight -= 1


@pytest.mark.parametrize("limit", [1, 3])
def test_the_interface_caps_requests_in_flight(setup: Setup, limit: int) -> None:
    setup.lms = _SlowLms()
    with transaction(setup.sessions) as s:
        interface = s.get_one(LmsInterface, setup.account_id)
        interface.options = {**interface.options, "max_concurrency": limit}
    for n in range(24):
        setup.hire(n)
    assert setup.run().counts == {"create": 24}
    assert 1 <= setup.lms.most_in_flight <= limit


class _BatchLms(FakeLms):
    """A batch connector that cannot mix creations and updates (as Moodle's web services):
    its first ``update_fails`` update batches fail transiently as a whole."""

    batch_size = 50

    def __init__(self, update_fails: int) -> None:
        super().__init__()
        self.update_fails = update_fails
        self.create_batches = 0
        self.update_batches = 0

    def create_many(
        self, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[RemoteUser | LmsError]:
        self.create_batches += 1
        return [self.create(fields, extra) for fields, extra in items]

    def update_many(self, items: Sequence[UpdateRequest]) -> list[LmsError | None]:
        self.update_batches += 1
        if self.update_fails:
            self.update_fails -= 1
            raise TransientError("HTTP status 503")
        for item in items:
            self.update(item.user_id, item.fields, item.changed, item.active)
        return [None] * len(items)


def test_a_failed_update_batch_never_sends_the_creations_again(setup: Setup) -> None:
    """Creations and updates of one chunk go in separate requests for such a connector: they
    are retried apart, so a failing update never repeats (or loses) the creations."""
    lms = _BatchLms(update_fails=1)
    setup.lms = lms
    setup.engine.concurrency = 1  # one chunk
    with transaction(setup.sessions) as s:
        setup.service.get_interface(s, setup.account_id).options = {"max_concurrency": 1}
    first = [setup.hire(n) for n in range(3)]
    assert setup.run().counts == {"create": 3}
    with transaction(setup.sessions) as s:
        employees.update(s, None, setup.account_id, first[0], {"job_title": "Chef"})
    new = [setup.hire(n) for n in range(10, 13)]
    lms.create_batches = lms.update_batches = 0

    summary = setup.run()

    assert summary.counts == {"create": 3, "update": 1}, summary
    assert lms.create_batches == 1  # not again when the update batch failed
    assert lms.update_batches == 2  # failed once, then went through
    assert len(lms.users) == 6
    assert not any(setup.due(i) for i in [*first, *new])
