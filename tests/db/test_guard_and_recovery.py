"""The deactivation guard over a sliding window, held sets, decisions under concurrency, the
sync lock's fencing, and the recovery of runs whose server stopped (fake LMS, both databases)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from lmsync.domain.employees import RehireIn, TerminateIn
from lmsync.domain.errors import Conflict
from lmsync.hr import employees
from lmsync.lms.base import Connector, RemoteUser
from lmsync.storage.database import transaction
from lmsync.storage.tables import LmsInterface, LmsLink, LmsState, SyncRun, utcnow
from lmsync.sync import guard, lease
from lmsync.sync.engine import RunOptions, SyncEngine, has_ready_work
from lmsync.sync.guard import GuardSettings, WindowState
from lmsync.sync.lease import LeaseLost
from lmsync.sync.service import SyncService
from tests.db.test_engine import Setup


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> Iterator[Setup]:
    s = Setup(engine, tmp_path)
    yield s
    s.service.close()


def linked(setup: Setup, n: int, *, minimum: int = 5, percent: int = 10) -> list[str]:
    ids = [setup.hire(i) for i in range(n)]
    assert setup.run().counts == {"create": n}
    with transaction(setup.sessions) as s:
        interface = s.get_one(LmsInterface, setup.account_id)
        interface.guard_minimum, interface.guard_percent = minimum, percent
    return ids


def terminate(setup: Setup, *ids: str) -> None:
    with transaction(setup.sessions) as s:
        for employee_id in ids:
            employees.terminate(
                s,
                None,
                setup.account_id,
                employee_id,
                TerminateIn.model_validate({"termination_date": "2026-11-01"}),
            )


def inactive(setup: Setup) -> int:
    return sum(1 for u in setup.lms.users.values() if not u["active"])


def wait_status(setup: Setup, run_id: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with setup.sessions() as s:
            status = s.get_one(SyncRun, run_id).status
        if status not in ("queued", "running"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still {status}")


# -- the guard's decision (pure) ----------------------------------------------------------------

HOUR = GuardSettings(percent=10, minimum=20, window=timedelta(hours=1))


@pytest.mark.parametrize(
    ("done", "linked_active", "open_hold", "planned", "hold", "join", "threshold"),
    [
        (0, 1000, None, 0, False, None, 100),  # nothing planned
        (0, 1000, None, 100, False, None, 100),  # exactly the threshold passes
        (0, 1000, None, 101, True, None, 100),
        (90, 910, None, 10, False, None, 100),  # 90 done this hour + 10: at the threshold
        (90, 910, None, 11, True, None, 100),  # ... one more is held
        (0, 50, None, 20, False, None, 20),  # small accounts: the minimum
        (0, 50, None, 21, True, None, 20),
        (0, 1000, "run-1", 1, True, "run-1", 100),  # a hold is open: even one joins it
    ],
)
def test_guard_decision(
    done: int,
    linked_active: int,
    open_hold: str | None,
    planned: int,
    hold: bool,
    join: str | None,
    threshold: int,
) -> None:
    decision = guard.decide(HOUR, WindowState(done, linked_active, open_hold), planned)
    assert (decision.hold, decision.join, decision.threshold) == (hold, join, threshold)


# -- across runs ------------------------------------------------------------------------------


def test_small_runs_cannot_walk_around_the_guard(world: Setup) -> None:
    ids = linked(world, 100)  # threshold: max(5, 10% of 100) = 10 within the hour
    for batch in (ids[0:4], ids[4:8]):
        terminate(world, *batch)
        assert world.run().counts == {"deactivate": 4}
    terminate(world, *ids[8:12])
    third = world.run()
    assert third.status == "held"
    assert third.counts == {"held": 4}
    assert "4 deactivations planned and 8 carried out" in (third.message or "")
    assert inactive(world) == 8
    with world.sessions() as s:
        assert not has_ready_work(s, world.account_id, utcnow())  # no held run every poll
        assert s.get_one(LmsState, ids[9]).outcome == "held"
    state = world.service
    with world.sessions() as s:
        shown = state.employee_state(s, world.account_id, ids[9])
    assert shown.state == "held"
    assert "approves" in shown.next_action_when


def test_deactivations_outside_the_window_do_not_count(world: Setup) -> None:
    ids = linked(world, 100)
    terminate(world, *ids[0:8])
    assert world.run().counts == {"deactivate": 8}
    with transaction(world.sessions) as s:  # those 8 were carried out two hours ago
        s.execute(
            update(LmsInterface)
            .where(LmsInterface.account_id == world.account_id)
            .values(guard_window_minutes=60)
        )
        from lmsync.storage.tables import SyncOutcome

        s.execute(update(SyncOutcome).values(at=utcnow() - timedelta(hours=2)))
    terminate(world, *ids[8:16])
    assert world.run().counts == {"deactivate": 8}


def test_terminations_while_held_join_the_held_set_and_approval_covers_them(
    world: Setup,
) -> None:
    ids = linked(world, 100)
    terminate(world, *ids[0:11])
    held = world.run()
    assert held.status == "held"
    terminate(world, ids[11])  # one more, well under the threshold alone
    later = world.run()
    assert later.status == "succeeded"
    assert later.counts == {"held": 1}
    assert "joined" in (later.message or "")
    assert inactive(world) == 0
    hire = world.hire(500)  # other work of a change run is not held
    assert world.run().counts == {"create": 1}
    with world.sessions() as s:
        assert s.get_one(SyncRun, held.run_id).counts["held"] == 12
        assert len(guard.held_employee_ids(s, held.run_id)) == 12
        assert s.get(LmsLink, hire) is not None
    approval = world.service.decide_held(world.account_id, held.run_id, approve=True, actor="u")
    assert approval is not None
    assert wait_status(world, approval) == "succeeded"
    assert inactive(world) == 12
    with world.sessions() as s:
        assert s.get_one(SyncRun, approval).counts == {"deactivate": 12}
        assert s.get_one(SyncRun, approval).approved_run_id == held.run_id
        assert s.get_one(LmsState, ids[11]).outcome == "ok"
    # Approved ones count in the window: 12 done, so the next termination is held again.
    terminate(world, ids[12])
    assert world.run().status == "held"


def test_a_rehire_while_held_goes_through_and_is_not_deactivated_by_the_approval(
    world: Setup,
) -> None:
    ids = linked(world, 100)
    terminate(world, *ids[0:11])
    held = world.run()
    with transaction(world.sessions) as s:
        employees.rehire(
            s, None, world.account_id, ids[0], RehireIn.model_validate({"hire_date": "2026-11-20"})
        )
    assert world.run().counts == {"none": 1}  # its record changed: ready again, nothing to do
    approval = world.service.decide_held(world.account_id, held.run_id, approve=True, actor="u")
    assert approval is not None
    assert wait_status(world, approval) == "succeeded"
    assert inactive(world) == 10


def test_rejection_writes_nothing_and_says_so(world: Setup) -> None:
    ids = linked(world, 100)
    terminate(world, *ids[0:11])
    held = world.run()
    assert (
        world.service.decide_held(world.account_id, held.run_id, approve=False, actor="u") is None
    )
    assert inactive(world) == 0
    with world.sessions() as s:
        assert "rejected" in s.get_one(LmsState, ids[0]).reason
        assert not has_ready_work(s, world.account_id, utcnow())
    again = world.run(full=True, trigger="hourly")  # proposed again at the next full pass
    assert again.status == "held"
    assert inactive(world) == 0


def race(action: Callable[[], Any], clicks: int = 4) -> list[Any]:
    """``action`` from ``clicks`` threads released at once; each one's result or Conflict."""
    results: list[Any] = []
    barrier = threading.Barrier(clicks)

    def click() -> None:
        barrier.wait()
        try:
            results.append(action())
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=click) for _ in range(clicks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_approvals_create_one_run(world: Setup) -> None:
    ids = linked(world, 100)
    terminate(world, *ids[0:11])
    held = world.run()
    results = race(
        lambda: world.service.decide_held(world.account_id, held.run_id, approve=True, actor="u")
    )
    run_ids = [r for r in results if isinstance(r, str)]
    assert len(run_ids) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, str))
    assert wait_status(world, run_ids[0]) == "succeeded"
    with world.sessions() as s:
        approvals = s.scalar(
            select(func.count()).select_from(SyncRun).where(SyncRun.trigger == "approval")
        )
    assert approvals == 1
    assert inactive(world) == 11


def test_concurrent_activations_create_one_run(world: Setup) -> None:
    with transaction(world.sessions) as s:
        s.get_one(LmsInterface, world.account_id).active = False
    world.hire(1)
    holder = SyncEngine(world.sessions, world.secrets, connector_factory=world.factory)
    claim = lease.acquire(world.sessions, world.account_id, holder.owner, holder.lock_lease)
    assert claim is not None  # keeps the activation queued while the clicks arrive
    results = race(lambda: world.service.activate(world.account_id, dry_run=False, actor=None))
    lease.release(world.sessions, claim)
    assert len(set(results)) == 1, results
    assert wait_status(world, results[0]) == "succeeded"
    with world.sessions() as s:
        count = s.scalar(
            select(func.count()).select_from(SyncRun).where(SyncRun.trigger == "activation")
        )
    assert count == 1


# -- fencing --------------------------------------------------------------------------------


def test_a_claim_taken_over_can_neither_renew_nor_write(world: Setup) -> None:
    first = lease.acquire(world.sessions, world.account_id, "one", timedelta(seconds=30))
    assert first is not None
    first.check()
    with transaction(world.sessions) as s:  # its lease ran out (a server frozen too long)
        s.get_one(LmsInterface, world.account_id).lock_until = utcnow() - timedelta(seconds=1)
    second = lease.acquire(world.sessions, world.account_id, "two", timedelta(seconds=30))
    assert second is not None
    assert second.fence == first.fence + 1
    with world.sessions() as s, s.begin(), pytest.raises(LeaseLost):
        first.renew(s.connection())
    with pytest.raises(LeaseLost):
        first.check()
    with world.sessions() as s, s.begin():
        second.renew(s.connection())


def test_the_local_deadline_stops_writes_of_a_frozen_server(world: Setup) -> None:
    claim = lease.acquire(world.sessions, world.account_id, "one", timedelta(seconds=3))
    assert claim is not None
    claim.check()
    claim.valid_until = time.monotonic() - 0.001  # as after a SIGSTOP longer than 2/3 lease
    with pytest.raises(LeaseLost):
        claim.check()


class Stealing:
    """A connector that, at its 3rd create, lets another server take the account's lock."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.creates = 0

    def __call__(self, interface: LmsInterface, secret: str | None, dry_run: bool) -> Connector:
        lms = self.setup.lms
        real = lms.create

        def create(fields: Mapping[str, Any], create_only: Mapping[str, Any]) -> RemoteUser:
            self.creates += 1
            if self.creates == 3:
                with transaction(self.setup.sessions) as s:
                    s.execute(
                        update(LmsInterface)
                        .where(LmsInterface.account_id == self.setup.account_id)
                        .values(
                            lock_owner="thief",
                            lock_fence=LmsInterface.lock_fence + 1,
                            lock_until=utcnow() + timedelta(minutes=1),
                        )
                    )
            return real(fields, create_only)

        lms.create = create  # type: ignore[method-assign]
        return lms


def test_a_run_that_lost_its_lock_records_nothing_more_and_ends_interrupted(
    world: Setup,
) -> None:
    ids = [world.hire(i) for i in range(6)]
    stealing = SyncEngine(world.sessions, world.secrets, connector_factory=Stealing(world))
    with transaction(world.sessions) as s:
        s.get_one(LmsInterface, world.account_id).options = {"max_concurrency": 1}
    summary = stealing.run(world.account_id, RunOptions(trigger="manual"))
    assert summary.status == "interrupted"
    with world.sessions() as s:
        run = s.get_one(SyncRun, summary.run_id)
        assert run.status == "interrupted"
        assert s.scalar(select(func.count()).select_from(LmsLink)) == 0  # batch refused
        assert s.get_one(LmsInterface, world.account_id).lock_owner == "thief"  # untouched
    # The thief's lease ends; the next run converges without a duplicate LMS user.
    with transaction(world.sessions) as s:
        s.get_one(LmsInterface, world.account_id).lock_until = utcnow() - timedelta(seconds=1)
    world.lms.create = type(world.lms).create.__get__(world.lms)  # type: ignore[method-assign]
    after = world.run(trigger="manual")
    assert after.status == "succeeded"
    assert len(world.lms.users) == 6
    with world.sessions() as s:
        assert s.scalar(select(func.count()).select_from(LmsLink)) == len(ids)


# -- recovery -------------------------------------------------------------------------------


def test_recovery_ends_stale_runs_and_carries_out_queued_ones(world: Setup) -> None:
    world.hire(1)
    later = utcnow() + timedelta(minutes=10)  # time is injected: the heartbeats are stale then
    with transaction(world.sessions) as s:
        dead_change = SyncRun(
            account_id=world.account_id, trigger="change", status="running", owner="dead"
        )
        dead_manual = SyncRun(
            account_id=world.account_id,
            trigger="manual",
            full=True,
            status="running",
            owner="dead",
            options=RunOptions(trigger="manual").stored(),
        )
        queued = SyncRun(
            account_id=world.account_id,
            trigger="manual",
            status="queued",
            owner="dead",
            heartbeat_at=utcnow(),
            options=RunOptions(trigger="manual").stored(),
        )
        s.add_all([dead_change, dead_manual, queued])
        s.flush()
        ids = dead_change.id, dead_manual.id, queued.id
    other = SyncService(world.sessions, world.secrets, world.engine)
    try:
        assert other.recover().interrupted == []  # fresh heartbeats: nothing to do
        swept = other.recover(now=later)
        assert sorted(swept.interrupted) == sorted(ids[:2])
        assert swept.adopted == [ids[2]]
        assert len(swept.resumed) == 1
        assert wait_status(world, ids[2]) == "succeeded"
        assert wait_status(world, swept.resumed[0]) == "succeeded"
        with world.sessions() as s:
            change = s.get_one(SyncRun, ids[0])
            manual = s.get_one(SyncRun, ids[1])
            resumed = s.get_one(SyncRun, swept.resumed[0])
            assert change.status == manual.status == "interrupted"
            assert "still due" in (change.message or "")
            assert swept.resumed[0] in (manual.message or "")
            assert (resumed.trigger, resumed.full) == ("manual", True)
        assert len(world.lms.users) == 1
        assert other.recover(now=later + timedelta(minutes=10)).interrupted == []
    finally:
        other.close()


def test_a_queued_run_taken_over_is_not_run_twice(world: Setup) -> None:
    world.hire(1)
    holder = SyncEngine(world.sessions, world.secrets, connector_factory=world.factory)
    claim = lease.acquire(world.sessions, world.account_id, holder.owner, holder.lock_lease)
    assert claim is not None
    run_id = world.service.sync(world.account_id, dry_run=False, full=False, actor=None)
    assert isinstance(run_id, str)
    with transaction(world.sessions) as s:  # another server took it over meanwhile
        s.get_one(SyncRun, run_id).status = "interrupted"
    lease.release(world.sessions, claim)
    time.sleep(0.8)
    with world.sessions() as s:
        assert s.get_one(SyncRun, run_id).status == "interrupted"
    assert world.lms.users == {}
