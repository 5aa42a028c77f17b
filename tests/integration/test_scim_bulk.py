"""SCIM Bulk against the real scim2-server: one bulk answer with every kind of result, each
mapped to the employee's outcome as a single request's would be; and the same run without Bulk."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lmsync.domain.employees import TerminateIn
from lmsync.hr import employees
from lmsync.settings import Settings
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import LmsLink, LmsState
from lmsync.sync.engine import RunOptions, SyncEngine
from tests.conftest import World
from tests.integration.conftest import LmsProcess, direct


def _set_up(
    engine: Engine, settings: Settings, world: World, lms: LmsProcess, **options: Any
) -> tuple[SyncEngine, dict[str, str]]:
    """An active interface (one request in flight, so that the writes make one chunk) and
    four new hires; their ids by email's local part."""
    made = direct(engine, settings, world, lms, max_concurrency=1, **options)
    ids = {}
    with transaction(made.sessions) as session:
        made.service.get_interface(session, world.account_a).active = True
        for n, name in enumerate(["fine", "retry", "bad", "dup"]):
            hired = employees.hire(
                session,
                None,
                world.account_a,
                {
                    "employee_number": f"B{n}",
                    "first_name": "Bulk",
                    "last_name": name.title(),
                    "work_email": f"{name}@example.com",
                    "hire_date": "2024-01-01",
                },
            )
            ids[name] = hired.id
    made.service.close()
    return made.sync, ids


def _state(engine: Engine, employee_id: str) -> LmsState:
    with Session(engine) as session:
        state = session.get(LmsState, employee_id)
        assert state is not None
        session.expunge(state)
        return state


def _link(engine: Engine, employee_id: str) -> str | None:
    with Session(engine) as session:
        return session.scalar(select(LmsLink.lms_user_id).where(LmsLink.employee_id == employee_id))


def test_one_bulk_answer_with_every_kind_of_result(
    engine: Engine, settings: Settings, world: World, lms: LmsProcess
) -> None:
    sync, ids = _set_up(engine, settings, world, lms)
    # "dup": made in the LMS by an earlier attempt that never recorded it (no email on it, so
    # the lookup before the run cannot see it): its creation answers 409, then it is linked.
    lms.load(
        [
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "dup@example.com",
                "externalId": ids["dup"],
            }
        ]
    )
    (existing,) = lms.users()
    lms.fault(status=503, bulk_match="retry@", count=1)  # that operation only, once
    lms.fault(status=400, bulk_match="bad@", count=10)  # refused each time
    lms.reset_stats()

    summary = sync.run(world.account_a, RunOptions(trigger="manual"))

    assert summary.status == "partial", summary
    assert summary.counts == {"create": 2, "link": 1, "failed": 1}
    stats = lms.stats()
    assert stats["faulted"] == 2  # one 503 for "retry", one 400 for "bad": "bad" is not retried
    by_email = {u["userName"]: u for u in lms.users()}
    assert sorted(by_email) == ["dup@example.com", "fine@example.com", "retry@example.com"]
    assert _link(engine, ids["fine"]) == by_email["fine@example.com"]["id"]
    assert _link(engine, ids["retry"]) == by_email["retry@example.com"]["id"]
    assert _link(engine, ids["dup"]) == existing["id"]
    assert _link(engine, ids["bad"]) is None
    bad = _state(engine, ids["bad"])
    assert bad.outcome == "error"
    assert "refused the data" in bad.reason
    assert "HTTP status 400" in bad.reason
    assert bad.rejected_record_at is not None  # tried again once the record changes
    assert bad.next_attempt_at is None
    # One bulk request for the four, one more for the retried operation; "dup" is looked up
    # and linked one by one (its 409 says nothing of where the user is).
    assert stats["requests"]["POST"] == 2


def test_without_bulk_the_same_run_sends_one_request_per_user(
    engine: Engine, settings: Settings, world: World, lms: LmsProcess
) -> None:
    sync, _ids = _set_up(engine, settings, world, lms, use_bulk=False)
    lms.reset_stats()
    summary = sync.run(world.account_a, RunOptions(trigger="manual"))
    assert summary.status == "succeeded", summary
    assert summary.counts == {"create": 4}
    assert lms.stats()["requests"]["POST"] == 4
    assert len(lms.users()) == 4


@pytest.mark.parametrize("bulk", [True, False])
def test_deactivations_and_updates_go_in_bulk(
    engine: Engine, settings: Settings, world: World, lms: LmsProcess, bulk: bool
) -> None:
    sync, ids = _set_up(engine, settings, world, lms, use_bulk=bulk)
    assert sync.run(world.account_a, RunOptions(trigger="manual")).counts == {"create": 4}
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        for name in ("fine", "bad"):
            leaving = TerminateIn(termination_date=date(2024, 6, 1), effective_immediately=True)
            employees.terminate(session, None, world.account_a, ids[name], leaving)
        employees.update(session, None, world.account_a, ids["dup"], {"job_title": "Lead"})
    lms.reset_stats()
    summary = sync.run(world.account_a, RunOptions(trigger="change"))
    assert summary.counts == {"deactivate": 2, "update": 1}, summary
    stats = lms.stats()["requests"]
    if bulk:
        assert stats.get("POST") == 1
        assert "PATCH" not in stats
    else:
        assert stats.get("PATCH") == 3
        assert "POST" not in stats
    users = {u["userName"]: u for u in lms.users()}
    assert users["fine@example.com"]["active"] is False
    assert users["bad@example.com"]["active"] is False
    assert users["dup@example.com"]["title"] == "Lead"
    assert users["retry@example.com"]["active"] is True
