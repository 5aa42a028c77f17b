"""``/api/v1/employees``: hire, read, edit, exclude, terminate, rehire and import employees."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from pydantic import BaseModel
from sqlalchemy.orm import Session

from lmsync.domain.employees import (
    CancelTerminationIn,
    EmployeeCreateIn,
    EmployeePatchIn,
    EmployeeStatus,
    RehireIn,
    TerminateIn,
    TerminationChangeIn,
)
from lmsync.hr import csv_import, employees, imports
from lmsync.storage.tables import Employee
from lmsync.sync.service import LmsStateName, employees_with_state
from lmsync.web.deps import Caller, Paging, State, paged
from lmsync.web.idempotency import IdempotencyKey, fingerprint, run_once
from lmsync.web.problems import PROBLEM_RESPONSES
from lmsync.web.schemas import (
    EmployeeEventOut,
    EmployeeOut,
    FieldMessageOut,
    ImportDetailOut,
    ImportedRowOut,
    ImportReportOut,
    ImportStatusOut,
    ListedEmployeeOut,
    Paged,
    RejectedRowOut,
    created,
    with_location,
)

router = APIRouter(prefix="/api/v1/employees", tags=["employees"], responses=PROBLEM_RESPONSES)


@router.post(
    "",
    status_code=201,
    response_model=EmployeeOut,
    summary="Hire an employee",
    responses={201: created("employee")},
)
def hire_employee(
    body: EmployeeCreateIn,
    state: State,
    caller: Caller,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create an active employee. Unless `lms_excluded` is true, the employee becomes due for the
    LMS in the same transaction."""
    account_id = caller.writable_account()

    def action(session: Session) -> tuple[int, str]:
        employee = employees.hire(session, caller, account_id, body.model_dump(exclude_none=True))
        return 201, EmployeeOut.model_validate(employee).model_dump_json()

    print_ = fingerprint(request.url.path, body.model_dump_json())
    response = with_location(
        run_once(state, caller, idempotency_key, print_, action), router.prefix
    )
    state.sync.changed()
    return response


@router.get("", response_model=Paged[ListedEmployeeOut], summary="List employees")
def list_employees(
    state: State,
    caller: Caller,
    page: Paging,
    request: Request,
    status: Annotated[
        EmployeeStatus | None,
        Query(
            description="As of now: `active` includes the employees leaving later; `leaving` "
            "only those whose termination has not taken effect yet."
        ),
    ] = None,
    excluded: Annotated[bool | None, Query(description="Only excluded (true) or included.")] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Text in name, email or number.")
    ] = None,
    lms_state: Annotated[
        LmsStateName | None,
        Query(description="Only the employees in this LMS state (as `lms_state` says it)."),
    ] = None,
) -> Paged[ListedEmployeeOut]:
    """Sorted by last name, first name; each with its LMS state, as the employees page shows it."""
    account_id = caller.account()
    with state.uow() as session:
        rows, total = employees_with_state(
            session,
            account_id,
            text=q,
            status=status,
            excluded=excluded,
            lms_state=lms_state,
            limit=page.limit,
            offset=page.offset,
        )
        items = [
            ListedEmployeeOut(**EmployeeOut.model_validate(e).model_dump(), lms_state=lms)
            for e, lms in rows
        ]
    return paged(request, page, items, total)


@router.post(
    "/import",
    response_model=ImportReportOut,
    summary="Import employees from CSV",
    description="A CSV file whose header names the JSON fields (`employee_number`, `first_name`, "
    "`last_name` required; comma, semicolon or tab separated; UTF-8). Valid rows are hired, "
    "invalid rows are reported with their line number and field messages. With `dry_run=true` "
    f"nothing is written. A file of up to {imports.SYNC_ROWS:,} rows is imported at once (200 "
    "and the report); a larger one is imported in the background, "
    f"{imports.CHUNK_ROWS} rows a transaction (202, `Location` of the import to follow). An "
    "unreadable file is refused as a whole (422) either way; an account has one background "
    "import at a time (409 while one is unfinished).",
    responses={
        202: {
            "model": ImportStatusOut,
            "description": "Queued: follow `Location` (`GET /api/v1/employees/imports/{id}`).",
        }
    },
)
def import_employees(
    state: State,
    caller: Caller,
    request: Request,
    file: Annotated[UploadFile, File(description="The CSV file.")],
    dry_run: Annotated[bool, Query()] = False,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    account_id = caller.writable_account()
    content = file.file.read(csv_import.MAX_BYTES + 1)
    total = csv_import.count_rows(content)  # an unreadable file is a 422 before anything is kept

    def now(session: Session) -> tuple[int, str]:
        report = csv_import.import_employees(session, caller, account_id, content, dry_run=dry_run)
        out = ImportReportOut(
            dry_run=report.dry_run,
            imported_count=len(report.imported),
            rejected_count=len(report.rejected),
            imported=[
                ImportedRowOut(
                    line=r.line, employee_number=r.employee_number, employee_id=r.employee_id
                )
                for r in report.imported
            ],
            rejected=[
                RejectedRowOut(
                    line=r.line,
                    employee_number=r.employee_number,
                    errors=FieldMessageOut.of(r.errors),
                )
                for r in report.rejected
            ],
        )
        return 200, out.model_dump_json()

    def later(session: Session) -> tuple[int, str]:
        imports.ensure_none_unfinished(session, account_id)
        row = imports.queue(session, caller, account_id, content, total_rows=total, dry_run=dry_run)
        return 202, ImportStatusOut.model_validate(row).model_dump_json()

    key = None if dry_run else idempotency_key
    print_ = fingerprint(request.url.path, str(dry_run), content)
    response = run_once(state, caller, key, print_, now if total <= imports.SYNC_ROWS else later)
    if response.status_code == 202:
        import_id = json.loads(bytes(response.body))["id"]
        response.headers["Location"] = f"{router.prefix}/imports/{import_id}"
        state.imports.wake()
    else:
        state.sync.changed()
    return response


@router.get("/imports", response_model=Paged[ImportStatusOut], summary="List CSV imports")
def list_imports(
    state: State, caller: Caller, page: Paging, request: Request
) -> Paged[ImportStatusOut]:
    """The account's background imports, newest first. Files of up to 1,000 rows, imported
    within their request, are not listed."""
    account_id = caller.account()
    with state.uow() as session:
        rows, total = imports.list_imports(
            session, account_id, limit=page.limit, offset=page.offset
        )
        items = [ImportStatusOut.model_validate(r) for r in rows]
    return paged(request, page, items, total)


@router.get(
    "/imports/{import_id}",
    response_model=ImportDetailOut,
    summary="A CSV import: status, progress, counts and rejected rows",
)
def get_import(import_id: str, state: State, caller: Caller) -> ImportDetailOut:
    with state.uow() as session:
        row = imports.get_import(session, caller.account(), import_id)
        status = ImportStatusOut.model_validate(row)
        return ImportDetailOut(
            **status.model_dump(),
            rejected=[RejectedRowOut.model_validate(r) for r in imports.rejected_rows(row)],
        )


@router.get("/{employee_id}", response_model=EmployeeOut, summary="Read an employee")
def get_employee(employee_id: str, state: State, caller: Caller) -> EmployeeOut:
    with state.uow() as session:
        return EmployeeOut.model_validate(
            employees.get_employee(session, caller.account(), employee_id)
        )


@router.patch(
    "/{employee_id}",
    response_model=EmployeeOut,
    summary="Edit an employee (incl. excluding from or including in the LMS)",
)
def patch_employee(
    employee_id: str, body: EmployeePatchIn, state: State, caller: Caller
) -> EmployeeOut:
    account_id = caller.writable_account()
    with state.uow() as session:
        employee, _ = employees.update(
            session, caller, account_id, employee_id, body.model_dump(exclude_unset=True)
        )
        out = EmployeeOut.model_validate(employee)
    state.sync.changed()
    return out


@router.post(
    "/{employee_id}/terminate", response_model=EmployeeOut, summary="Terminate an employee"
)
def terminate_employee(
    employee_id: str, body: TerminateIn, state: State, caller: Caller
) -> EmployeeOut:
    """Record a termination; `termination_date` is the last day worked. Dated before today (in
    the account's time zone), or `effective_immediately`: the LMS user is deactivated within
    seconds. Dated today or later: the employee stays active, `leaving_on` that date, and the LMS
    user is deactivated within seconds after that day ends. 409 when a termination is already
    recorded (change or cancel it instead)."""
    return _lifecycle(employees.terminate, employee_id, body, state, caller)


@router.patch(
    "/{employee_id}/termination",
    response_model=EmployeeOut,
    summary="Change a scheduled termination",
)
def change_termination(
    employee_id: str, body: TerminationChangeIn, state: State, caller: Caller
) -> EmployeeOut:
    """Change the last day worked, the reason or `effective_immediately` of a termination that
    has not taken effect yet (only the fields sent change). 409 once it took effect: cancel it
    (recorded by mistake) or rehire."""
    return _lifecycle(employees.change_termination, employee_id, body, state, caller)


@router.post(
    "/{employee_id}/cancel-termination",
    response_model=EmployeeOut,
    summary="Cancel a termination (scheduled, or recorded by mistake)",
)
def cancel_termination(
    employee_id: str, body: CancelTerminationIn, state: State, caller: Caller
) -> EmployeeOut:
    """Undo the employee's termination, whether it took effect or not: the employment goes on
    with the same hire date (unlike a rehire, which starts a new period of employment). A
    deactivated LMS user is reactivated; a scheduled termination changes nothing in the LMS."""
    return _lifecycle(employees.cancel_termination, employee_id, body, state, caller)


@router.post("/{employee_id}/rehire", response_model=EmployeeOut, summary="Rehire an employee")
def rehire_employee(employee_id: str, body: RehireIn, state: State, caller: Caller) -> EmployeeOut:
    return _lifecycle(employees.rehire, employee_id, body, state, caller)


def _lifecycle(
    step: Callable[[Session, Caller, str, str, Any], Employee],
    employee_id: str,
    body: BaseModel,
    state: State,
    caller: Caller,
) -> EmployeeOut:
    """One lifecycle step (terminate, change or cancel a termination, rehire) in its own
    transaction; the worker looks at once after the commit."""
    account_id = caller.writable_account()
    with state.uow() as session:
        out = EmployeeOut.model_validate(step(session, caller, account_id, employee_id, body))
    state.sync.changed()
    return out


@router.get(
    "/{employee_id}/events",
    response_model=list[EmployeeEventOut],
    summary="The employee's history (hired, updated, excluded, terminated, termination changed "
    "or cancelled, rehired)",
)
def employee_events(employee_id: str, state: State, caller: Caller) -> list[EmployeeEventOut]:
    with state.uow() as session:
        return [
            EmployeeEventOut.model_validate(e)
            for e in employees.list_events(session, caller.account(), employee_id)
        ]
