"""Employees: the list, the hiring form, the employee file (Profile, Employment, Security and
Access), terminate and rehire with a confirmation step, and "Sync this employee now"."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from lmsync.domain.employees import EmployeeCreateIn, RehireIn, TerminateIn
from lmsync.domain.errors import Conflict, FieldError, ValidationFailed
from lmsync.hr import employees
from lmsync.hr.csv_import import pydantic_field_errors
from lmsync.hr.sessions import BrowserSession
from lmsync.sync.service import LMS_STATES, employees_with_state
from lmsync.web.deps import MAX_OFFSET, State
from lmsync.web.pages.common import (
    Browser,
    FlashCode,
    FormData,
    Writer,
    redirect,
    render,
    require_writer,
)

router = APIRouter(include_in_schema=False)
PAGE = 50
PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "work_email",
    "language",
    "job_title",
    "company_name",
    "home_phone",
    "cell_phone",
    "address",
    "city",
    "province",
    "country",
    "postal_code",
)


def _form(form: dict[str, str]) -> dict[str, str]:
    return {k: v.strip() for k, v in form.items() if k != "csrf_token"}


def _errors(errors: list[FieldError]) -> dict[str, str]:
    out: dict[str, str] = {}
    for error in errors:
        out.setdefault(error.field, error.message)
    return out


@router.get("/", response_class=HTMLResponse)
def home(browser: Browser) -> Response:
    if browser.principal.account_id is None and browser.principal.is_operator:
        return redirect("/operator/accounts")
    return redirect("/employees")


@router.get("/employees", response_class=HTMLResponse)
def employee_list(
    request: Request,
    state: State,
    browser: Browser,
    q: str | None = None,
    status: str | None = None,
    excluded: str | None = None,
    lms: str | None = None,
    offset: int = 0,
) -> Response:
    account_id = browser.principal.account()
    offset = min(max(offset, 0), MAX_OFFSET)
    with state.uow() as session:
        rows, total = employees_with_state(
            session,
            account_id,
            text=(q or "")[:200] or None,
            status=status if status in ("active", "terminated") else None,
            excluded={"true": True, "false": False}.get(excluded or ""),
            lms_state=lms if lms in LMS_STATES else None,
            limit=PAGE,
            offset=offset,
        )
    params = {
        k: v for k, v in {"q": q, "status": status, "excluded": excluded, "lms": lms}.items() if v
    }
    next_url = (
        "/employees?" + urlencode({**params, "offset": offset + PAGE})
        if offset + PAGE < total
        else None
    )
    prev_url = (
        "/employees?" + urlencode({**params, "offset": max(offset - PAGE, 0)}) if offset else None
    )
    return render(
        request,
        state,
        browser,
        "employees.html",
        rows=[{"employee": e, "state": s} for e, s in rows],
        total=total,
        q=q,
        status=status,
        excluded=excluded,
        lms=lms,
        lms_states=LMS_STATES,
        next_url=next_url,
        prev_url=prev_url,
    )


@router.get("/employees/new", response_class=HTMLResponse)
def new_employee(request: Request, state: State, browser: Browser) -> Response:
    require_writer(browser)
    return render(request, state, browser, "employee_form.html", values={}, errors={})


@router.post("/employees/new", response_class=HTMLResponse)
def create_employee(request: Request, state: State, browser: Writer, form: FormData) -> Response:
    account_id = require_writer(browser)
    values = _form(form)
    raw: dict[str, Any] = {k: v for k, v in values.items() if v}
    raw["lms_excluded"] = values.get("lms_excluded") == "true"
    try:
        typed = EmployeeCreateIn.model_validate(raw).model_dump(exclude_none=True)
        with state.uow() as session:
            employee = employees.hire(session, browser.principal, account_id, typed)
            employee_id = employee.id
    except ValidationError as exc:
        errors = _errors(pydantic_field_errors(exc))
    except ValidationFailed as exc:
        errors = _errors(exc.errors)
    else:
        state.sync.changed()
        return redirect(f"/employees/{employee_id}?tab=security", "hired")
    values["lms_excluded"] = "true" if raw["lms_excluded"] else ""
    return render(
        request, state, browser, "employee_form.html", status_code=422, values=values, errors=errors
    )


def _file(
    request: Request,
    state: State,
    browser: BrowserSession,
    employee_id: str,
    tab: str,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    account_id = browser.principal.account()
    with state.uow() as session:
        employee = employees.get_employee(session, account_id, employee_id)
        lms = state.sync.employee_state(session, account_id, employee_id)
    if values is None:
        values = {name: getattr(employee, name) for name in PROFILE_FIELDS}
    return render(
        request,
        state,
        browser,
        "employee_file.html",
        status_code=status_code,
        employee=employee,
        tab=tab if tab in ("profile", "employment", "security") else "profile",
        lms=lms,
        values=values,
        errors=errors or {},
    )


@router.get("/employees/{employee_id}", response_class=HTMLResponse)
def employee_file(
    request: Request, state: State, browser: Browser, employee_id: str, tab: str = "profile"
) -> Response:
    return _file(request, state, browser, employee_id, tab)


@router.post("/employees/{employee_id}/profile", response_class=HTMLResponse)
def save_profile(
    request: Request, state: State, browser: Writer, form: FormData, employee_id: str
) -> Response:
    account_id = require_writer(browser)
    values = _form(form)
    patch = {name: values.get(name) or None for name in PROFILE_FIELDS}
    try:
        with state.uow() as session:
            employees.update(session, browser.principal, account_id, employee_id, patch)
    except ValidationFailed as exc:
        return _file(
            request,
            state,
            browser,
            employee_id,
            "profile",
            values=values,
            errors=_errors(exc.errors),
            status_code=422,
        )
    state.sync.changed()
    return redirect(f"/employees/{employee_id}?tab=profile", "saved")


@router.post("/employees/{employee_id}/exclusion")
def save_exclusion(
    request: Request, state: State, browser: Writer, form: FormData, employee_id: str
) -> Response:
    account_id = require_writer(browser)
    values = _form(form)
    excluded = values.get("lms_excluded") == "true"
    with state.uow() as session:
        employees.update(
            session, browser.principal, account_id, employee_id, {"lms_excluded": excluded}
        )
    state.sync.changed()
    done: FlashCode = "excluded" if excluded else "included"
    return redirect(f"/employees/{employee_id}?tab=security", done)


def _confirm(
    request: Request,
    state: State,
    browser: BrowserSession,
    employee_id: str,
    verb: str,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    account_id = require_writer(browser)
    with state.uow() as session:
        employee = employees.get_employee(session, account_id, employee_id)
        name = f"{employee.first_name} {employee.last_name}"
    if verb == "terminate":
        question = (
            f"Terminate {name}? Their LMS user will be deactivated at once "
            "(unless they are excluded from the LMS interface)."
        )
        fields = [("termination_date", "Termination date", "date"), ("reason", "Reason", "text")]
    else:
        question = f"Rehire {name}? Their LMS user will be reactivated."
        fields = [("hire_date", "New hire date", "date")]
    return render(
        request,
        state,
        browser,
        "confirm.html",
        status_code=status_code,
        title=f"{verb.capitalize()} {name}",
        question=question,
        fields=fields,
        values=values or {},
        errors=errors or {},
        action=f"/employees/{employee_id}/{verb}",
        confirm_label=f"Yes, {verb}",
        danger=verb == "terminate",
        cancel_url=f"/employees/{employee_id}?tab=employment",
    )


@router.get("/employees/{employee_id}/terminate", response_class=HTMLResponse)
def terminate_page(request: Request, state: State, browser: Browser, employee_id: str) -> Response:
    return _confirm(request, state, browser, employee_id, "terminate")


@router.get("/employees/{employee_id}/rehire", response_class=HTMLResponse)
def rehire_page(request: Request, state: State, browser: Browser, employee_id: str) -> Response:
    return _confirm(request, state, browser, employee_id, "rehire")


@router.post("/employees/{employee_id}/{verb}", response_class=HTMLResponse)
def lifecycle(
    request: Request, state: State, browser: Writer, form: FormData, employee_id: str, verb: str
) -> Response:
    if verb not in ("terminate", "rehire"):
        return render(
            request,
            state,
            browser,
            "error.html",
            status_code=404,
            title="Not found",
            message="This page does not exist.",
        )
    account_id = require_writer(browser)
    values = _form(form)
    try:
        with state.uow() as session:
            if verb == "terminate":
                data = TerminateIn.model_validate(
                    {
                        "termination_date": values.get("termination_date") or None,
                        "reason": values.get("reason") or None,
                    }
                )
                employees.terminate(session, browser.principal, account_id, employee_id, data)
            else:
                rehire = RehireIn.model_validate({"hire_date": values.get("hire_date") or None})
                employees.rehire(session, browser.principal, account_id, employee_id, rehire)
    except ValidationError as exc:
        errors = _errors(pydantic_field_errors(exc))
    except ValidationFailed as exc:
        errors = _errors(exc.errors)
    except Conflict as exc:
        errors = {"": exc.message}
    else:
        state.sync.changed()
        done: FlashCode = "terminated" if verb == "terminate" else "rehired"
        return redirect(f"/employees/{employee_id}?tab=security", done)
    return _confirm(
        request, state, browser, employee_id, verb, values=values, errors=errors, status_code=422
    )


@router.post("/employees/{employee_id}/lms/sync")
def sync_employee(state: State, browser: Writer, employee_id: str) -> Response:
    account_id = require_writer(browser)
    state.sync.sync_employee(account_id, employee_id, browser.principal.user_id)
    return redirect(f"/employees/{employee_id}?tab=security", "sync_started")
