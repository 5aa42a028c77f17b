"""``/api/v1/lms``: the LMS interface (configure, test, activate), syncs, runs and approvals."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from lmsync.domain.interface import InterfaceIn
from lmsync.lms.base import ConnectionReport
from lmsync.storage.tables import Employee, SyncOutcome
from lmsync.sync import manual_link, overview, unlinked
from lmsync.sync.engine import RunSummary
from lmsync.sync.service import InterfaceSaved, employees_by_id
from lmsync.web.deps import Caller, Paging, State, paged
from lmsync.web.problems import LMS_CHECK_409, PROBLEM_RESPONSES
from lmsync.web.schemas import (
    ConnectionReportOut,
    EmployeeLmsOut,
    FindingOut,
    InterfaceOut,
    MoodleOptionsOut,
    OutcomeOut,
    Paged,
    PreviewOut,
    RunDetailOut,
    RunOut,
    RunStartedOut,
    ScimOptionsOut,
)

router = APIRouter(prefix="/api/v1", tags=["lms"], responses=PROBLEM_RESPONSES)


class ActivateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dry_run: bool = True


class SyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dry_run: bool = False
    full: bool = False


class InterfaceSavedOut(InterfaceOut):
    """The interface as saved, with the connection test run after the save and what its
    switches hold back."""

    connection_test: ConnectionReportOut = Field(
        description="Test connection, run once the save was committed; the save is kept "
        "whatever it finds (activation is refused while it reports an error)."
    )
    held_back: dict[str, int] = Field(
        description="For each switch that is off (hourly_transfer, sync_users, "
        "deactivate_terminated), how many employees it holds back now. sync_users: included "
        "employees active as of now who are not linked or whose LMS user would be updated or "
        "reactivated; deactivate_terminated: included terminated employees whose LMS user is "
        "active; hourly_transfer: included employees with changes due now. Zero while the "
        "interface is not active.",
        examples=[{"deactivate_terminated": 3}],
    )
    caught_up: dict[str, int] = Field(
        description="For each switch this save turned back on, how many employees it had "
        "held back and are due now (the LMS follows within seconds when automatic transfer "
        "is on).",
        examples=[{"sync_users": 2}],
    )


def _report_out(report: ConnectionReport) -> ConnectionReportOut:
    return ConnectionReportOut(
        ok=report.ok,
        findings=[FindingOut(level=f.level, message=f.message) for f in report.findings],
    )


def _saved_out(saved: InterfaceSaved) -> InterfaceSavedOut:
    return InterfaceSavedOut(
        **_interface_out(saved.interface).model_dump(),
        connection_test=_report_out(saved.connection_test),
        held_back=saved.held_back,
        caught_up=saved.caught_up,
    )


def _interface_out(interface: object) -> InterfaceOut:
    return InterfaceOut.model_validate(
        {
            **{
                k: getattr(interface, k) for k in InterfaceOut.model_fields if hasattr(interface, k)
            },
            "secret_set": bool(getattr(interface, "secret_encrypted", None)),
            "options": (
                MoodleOptionsOut
                if getattr(interface, "connector", None) == "moodle"
                else ScimOptionsOut
            ).model_validate(getattr(interface, "options", {}) or {}),
        }
    )


def _started(run_id: str) -> JSONResponse:
    return JSONResponse(
        RunStartedOut(run_id=run_id, status="queued").model_dump(),
        status_code=202,
        headers={"Location": f"/api/v1/lms/runs/{run_id}"},
    )


def _preview(summary: RunSummary, create_only: dict[str, object]) -> PreviewOut:
    counts = dict(summary.counts)
    known = {
        "link": "to_link",
        "create": "to_create",
        "skip": "skipped_no_email",
        "conflict": "conflicts",
        "excluded": "excluded",
        "none": "nothing_to_do",
    }
    values = {name: counts.pop(kind, 0) for kind, name in known.items()}
    return PreviewOut(run_id=summary.run_id, other=counts, create_only=create_only, **values)


class HealthOut(BaseModel):
    last_success_at: datetime | None = Field(
        description="When the last run that reached the LMS ended (none yet: null)."
    )
    failing_since: datetime | None = Field(
        description="When the first failed run after it started: the LMS has been failing "
        "since then (null: it is not failing)."
    )
    last_error: str | None = Field(description="The last failed run's message.")
    down: bool = Field(
        description="Failing for at least LMSYNC_ALERT_LMS_DOWN_MINUTES (the alert is raised)."
    )


class AlertOut(BaseModel):
    kind: str = Field(description="held | lms_down | conflicts")
    message: str
    action: str = Field(description="What to do about it.")
    url: str = Field(description="The page where to do it.")


class OverviewOut(BaseModel):
    configured: bool
    active: bool
    connector: str | None
    health: HealthOut
    counts: dict[str, int] = Field(
        description="Employees by LMS state (not_linked, linked, deactivated, skipped, conflict, "
        "error, held, excluded), plus to_create (active, with a work email, not linked) and "
        "leaving_soon (a termination ahead)."
    )
    held_runs: list[RunOut] = Field(description="Runs waiting for an HR manager's approval.")
    last_runs: list[RunOut] = Field(description="The ten latest runs, newest first.")
    alerts: list[AlertOut] = Field(description="What needs an HR manager now.")
    unlinked: int = Field(
        description="LMS users linked to no employee at the last full pass (`/lms/unlinked-users`)."
    )


@router.get("/lms/overview", response_model=OverviewOut, summary="What needs attention")
def get_overview(state: State, caller: Caller) -> OverviewOut:
    """The LMS connection's health, the employees by LMS state, the runs held for approval, the
    last runs and the alerts: what the overview page shows."""
    down_after = timedelta(minutes=state.settings.alert_lms_down_minutes)
    with state.uow() as session:
        seen = overview.overview(session, caller.account(), state.sync.engine.clock(), down_after)
    return OverviewOut.model_validate(seen, from_attributes=True)


@router.get("/lms/interface", response_model=InterfaceOut, summary="The LMS interface")
def get_interface(state: State, caller: Caller) -> InterfaceOut:
    with state.uow() as session:
        return _interface_out(state.sync.get_interface(session, caller.account()))


@router.put(
    "/lms/interface", response_model=InterfaceSavedOut, summary="Configure the LMS interface"
)
def put_interface(body: InterfaceIn, state: State, caller: Caller) -> InterfaceSavedOut:
    """The secret is write-only: omit it to keep the stored one, send "" to clear it. Once
    saved, the connection is tested (`connection_test`); a switch turned back on makes what it
    held back due at once (`caught_up`), and each switch that is off says how many employees it
    holds back (`held_back`)."""
    return _saved_out(state.sync.save_interface(caller.writable_account(), body))


@router.post(
    "/lms/interface/test",
    response_model=ConnectionReportOut,
    summary="Test connection (reads discovery documents; never writes)",
)
def test_interface(state: State, caller: Caller) -> ConnectionReportOut:
    return _report_out(state.sync.test_interface(caller.writable_account()))


@router.post(
    "/lms/interface/activate",
    summary="Activate the interface (dry_run: the preview; otherwise starts the first run)",
    responses={200: {"model": PreviewOut}, 202: {"model": RunStartedOut}, **LMS_CHECK_409},
)
def activate(body: ActivateIn, state: State, caller: Caller) -> JSONResponse:
    """Both the preview and the activation run the connection test first: when it reports an
    error, the answer is a 409 listing its `findings`, and nothing is written (no run, the
    interface stays inactive)."""
    account_id = caller.writable_account()
    result = state.sync.activate(account_id, dry_run=body.dry_run, actor=caller.user_id)
    if isinstance(result, RunSummary):
        return JSONResponse(
            _preview(result, state.sync.create_only_preview(account_id)).model_dump()
        )
    return _started(result)


@router.post(
    "/lms/sync",
    summary="Sync now (dry_run answers with the finished run; otherwise 202 and the run id)",
    responses={200: {"model": RunOut}, 202: {"model": RunStartedOut}},
)
def sync_now(body: SyncIn, state: State, caller: Caller) -> JSONResponse:
    account_id = caller.writable_account()
    result = state.sync.sync(account_id, dry_run=body.dry_run, full=body.full, actor=caller.user_id)
    if isinstance(result, RunSummary):
        with state.uow() as session:
            run = state.sync.get_run(session, account_id, result.run_id)
            return JSONResponse(RunOut.model_validate(run).model_dump(mode="json"))
    return _started(result)


@router.get("/lms/runs", response_model=Paged[RunOut], summary="Sync history")
def list_runs(state: State, caller: Caller, page: Paging, request: Request) -> Paged[RunOut]:
    with state.uow() as session:
        rows, total = state.sync.list_runs(
            session, caller.account(), limit=page.limit, offset=page.offset
        )
        return paged(request, page, [RunOut.model_validate(r) for r in rows], total)


@router.get("/lms/runs/{run_id}", response_model=RunDetailOut, summary="One run and its outcomes")
def get_run(
    run_id: str,
    state: State,
    caller: Caller,
    page: Paging,
    request: Request,
    action: Annotated[str | None, Query(max_length=16)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
) -> RunDetailOut:
    with state.uow() as session:
        run = state.sync.get_run(session, caller.account(), run_id)
        where = [
            *([SyncOutcome.action == action] if action else []),
            *([SyncOutcome.outcome == outcome] if outcome else []),
        ]
        rows, total = state.sync.list_outcomes(
            session, run_id, where=where, limit=page.limit, offset=page.offset
        )
        found = employees_by_id(session, caller.account(), [o.employee_id for o in rows])
        items = [_outcome_out(o, found.get(o.employee_id)) for o in rows]
        return RunDetailOut(
            run=RunOut.model_validate(run), outcomes=paged(request, page, items, total)
        )


def _outcome_out(outcome: SyncOutcome, employee: Employee | None) -> OutcomeOut:
    out = OutcomeOut.model_validate(outcome)
    if employee is not None:
        out.employee_number = employee.employee_number
        out.employee_name = f"{employee.first_name} {employee.last_name}"
    return out


@router.post(
    "/lms/runs/{run_id}/approve",
    status_code=202,
    response_model=RunStartedOut,
    summary="Approve a run held by the deactivation guard (runs it again, past the guard)",
)
def approve_run(run_id: str, state: State, caller: Caller) -> JSONResponse:
    account_id = caller.writable_account()
    new_id = state.sync.decide_held(account_id, run_id, approve=True, actor=caller.user_id)
    assert new_id is not None
    return _started(new_id)


@router.post(
    "/lms/runs/{run_id}/reject",
    response_model=RunOut,
    summary="Reject a held run (nothing is written)",
)
def reject_run(run_id: str, state: State, caller: Caller) -> RunOut:
    account_id = caller.writable_account()
    state.sync.decide_held(account_id, run_id, approve=False, actor=caller.user_id)
    with state.uow() as session:
        return RunOut.model_validate(state.sync.get_run(session, account_id, run_id))


@router.get(
    "/employees/{employee_id}/lms",
    response_model=EmployeeLmsOut,
    tags=["employees"],
    summary="The employee's LMS state, the reason, and what happens next and when",
)
def employee_lms(employee_id: str, state: State, caller: Caller) -> EmployeeLmsOut:
    with state.uow() as session:
        info = state.sync.employee_state(session, caller.account(), employee_id)
    return EmployeeLmsOut.model_validate(info, from_attributes=True)


@router.post(
    "/employees/{employee_id}/lms/sync",
    status_code=202,
    response_model=RunStartedOut,
    tags=["employees"],
    summary="Sync this employee now",
)
def sync_employee(employee_id: str, state: State, caller: Caller) -> JSONResponse:
    account_id = caller.writable_account()
    return _started(state.sync.sync_employee(account_id, employee_id, caller.user_id))


class CandidateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The LMS user's id.")
    email: str | None
    first_name: str | None
    last_name: str | None
    active: bool
    linked_to: str | None = Field(description="The employee already linked to it, if any.")
    linked_to_name: str | None


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lms_user_id: str = Field(min_length=1, max_length=200, description="The chosen LMS user.")


@router.get(
    "/employees/{employee_id}/lms/candidates",
    response_model=list[CandidateOut],
    tags=["employees"],
    summary="Look LMS users up, to link the employee by hand",
)
def lms_candidates(
    employee_id: str,
    state: State,
    caller: Caller,
    q: Annotated[
        str,
        Query(
            min_length=1, max_length=200, description="An email, an LMS user id or part of a name."
        ),
    ],
) -> list[CandidateOut]:
    """The LMS users an HR manager may link the employee to: those with this email (any letter
    case), this id, or (SCIM and Moodle) a name containing the text; each says whether another
    employee is linked to it already."""
    found = manual_link.candidates(state.sync, caller.account(), employee_id, q)
    return [CandidateOut.model_validate(c) for c in found]


@router.put(
    "/employees/{employee_id}/lms/link",
    status_code=204,
    tags=["employees"],
    summary="Link the employee to an LMS user by hand",
)
def link_employee(employee_id: str, body: LinkIn, state: State, caller: Caller) -> Response:
    """Conflict repair: the LMS user must exist and be linked to no other employee (409); the
    employee must not be excluded (409). Recorded in the employee's history; the next change run
    writes the maintained fields."""
    account_id = caller.writable_account()
    manual_link.link(state.sync, account_id, employee_id, body.lms_user_id, caller.user_id)
    return Response(status_code=204)


@router.delete(
    "/employees/{employee_id}/lms/link",
    status_code=204,
    tags=["employees"],
    summary="Unlink the employee from its LMS user",
)
def unlink_employee(employee_id: str, state: State, caller: Caller) -> Response:
    """The LMS user is left as it is; the rules decide again at the next run (an employee whose
    email matches exactly one LMS user is linked to it again: exclude them to keep them out)."""
    account_id = caller.writable_account()
    manual_link.unlink(state.sync, account_id, employee_id, caller.user_id)
    return Response(status_code=204)


class UnlinkedUserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    lms_user_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    active: bool
    seen_at: datetime = Field(description="When the full pass that listed it ran.")


@router.get(
    "/lms/unlinked-users",
    response_model=Paged[UnlinkedUserOut],
    summary="LMS users linked to no employee",
)
def unlinked_users(
    state: State,
    caller: Caller,
    page: Paging,
    request: Request,
    q: Annotated[
        str | None, Query(max_length=200, description="Part of an email or a name.")
    ] = None,
) -> Paged[UnlinkedUserOut]:
    """The LMS users no employee is linked to, as the last full pass (the activation or an hourly
    pass) read them: accounts HR does not know of, test users, former staff."""
    with state.uow() as session:
        rows, total = unlinked.page(
            session, caller.account(), text=q, limit=page.limit, offset=page.offset
        )
        return paged(request, page, [UnlinkedUserOut.model_validate(r) for r in rows], total)
