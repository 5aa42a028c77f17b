"""Employees: the list, the hiring form, the employee file (Profile, Employment, Security and
Access), the lifecycle steps with a confirmation page (terminate, change or cancel a termination,
rehire), and "Sync this employee now"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from functools import cache
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import phonenumbers
import pycountry
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from lmsync import i18n
from lmsync.domain.employees import (
    CancelTerminationIn,
    EmployeeCreateIn,
    RehireIn,
    TerminateIn,
    TerminationChangeIn,
)
from lmsync.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from lmsync.domain.normalize import fold
from lmsync.hr import employees
from lmsync.hr.csv_import import pydantic_field_errors
from lmsync.hr.sessions import BrowserSession
from lmsync.i18n import Msg, _
from lmsync.storage.tables import Account, Employee, LmsInterface, SyncOutcome, SyncRun, User
from lmsync.sync import manual_link
from lmsync.sync.service import LMS_STATES, employees_with_state
from lmsync.web.deps import MAX_OFFSET, State
from lmsync.web.pages import field_labels
from lmsync.web.pages.common import (
    Browser,
    FlashCode,
    FormData,
    Writer,
    not_possible,
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
# The languages the form's list offers (any BCP 47 tag may still be typed).
COMMON_LANGUAGES = (
    "en", "en-CA", "en-US", "en-GB", "fr", "fr-CA", "fr-FR", "es", "es-MX", "pt", "pt-BR",
    "de", "it", "nl", "pl", "uk", "ru", "ar", "fa", "hi", "pa", "ur", "fil", "vi", "zh-Hans",
    "zh-Hant", "ja", "ko", "ht", "iu", "cr",
)  # fmt: skip
PROVINCE_COUNTRIES = ("CA", "US")


@dataclass(frozen=True)
class Choices:
    """The searchable lists of the employee forms: (code, name in the page's language)."""

    countries: list[tuple[str, str]]
    provinces: list[tuple[str, str]]
    languages: list[tuple[str, str]]


@cache
def _choices(language: i18n.Language) -> Choices:
    with i18n.using(language):
        countries = [
            (str(c.alpha_2), i18n.country_name(str(c.alpha_2))) for c in pycountry.countries
        ]
        provinces = [
            (str(s.code), f"{i18n.subdivision_name(str(s.code))} ({i18n.country_name(country)})")
            for country in PROVINCE_COUNTRIES
            for s in pycountry.subdivisions.get(country_code=country) or []  # type: ignore[no-untyped-call]
        ]
        languages = [(tag, i18n.language_name(tag)) for tag in COMMON_LANGUAGES]
    return Choices(
        countries=sorted(countries, key=lambda pair: fold(pair[1])),
        provinces=sorted(provinces, key=lambda pair: fold(pair[1])),
        languages=sorted(languages, key=lambda pair: fold(pair[1])),
    )


def choices() -> Choices:
    """The lists in the current language (computed once per language)."""
    return _choices(i18n.current())


def _international(e164: str | None) -> str | None:
    """A stored E.164 number as people write it across borders ("+1 514-555-0199")."""
    if not e164:
        return None
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))


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
    return redirect("/overview")


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
            status=status if status in ("active", "leaving", "terminated") else None,
            excluded={"true": True, "false": False}.get(excluded or ""),
            lms_state=lms if lms in LMS_STATES else None,
            limit=PAGE,
            offset=offset,
        )
        interface = session.get(LmsInterface, account_id)
        automatic = bool(interface and interface.active and interface.hourly_transfer)
    pending = automatic and any(e.lms_due_at is not None for e, _ in rows)
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
        pending=pending,
        self_url="/employees?" + urlencode({**params, "offset": offset}),
        next_url=next_url,
        prev_url=prev_url,
    )


@router.get("/employees/new", response_class=HTMLResponse)
def new_employee(request: Request, state: State, browser: Browser) -> Response:
    require_writer(browser)
    return render(
        request, state, browser, "employee_form.html", values={}, errors={}, choices=choices()
    )


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
        request,
        state,
        browser,
        "employee_form.html",
        status_code=422,
        values=values,
        errors=errors,
        choices=choices(),
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
    query: str | None = None,
) -> Response:
    account_id = browser.principal.account()
    found: list[manual_link.Candidate] | None = None
    search_error = None
    if query and tab == "security" and browser.principal.role == "MHR":
        try:
            found = manual_link.candidates(state.sync, account_id, employee_id, query[:200])
        except (Conflict, NotFound) as exc:
            search_error = exc.message
    with state.uow() as session:
        employee = employees.get_employee(session, account_id, employee_id)
        lms = state.sync.employee_state(session, account_id, employee_id)
        colleagues = _sharing_email(session, employee) if lms.state == "conflict" else []
        timezone = session.get_one(Account, account_id).timezone
        history = _history(session, account_id, employee_id)
        timeline = _timeline(session, account_id, employee_id, history) if tab == "history" else []
    if values is None:
        values = {name: getattr(employee, name) for name in PROFILE_FIELDS}
    return render(
        request,
        state,
        browser,
        "employee_file.html",
        status_code=status_code,
        employee=employee,
        tab=tab if tab in ("profile", "employment", "security", "history") else "profile",
        lms=lms,
        history=history,
        timeline=timeline,
        q=query,
        candidates=found,
        search_error=search_error,
        colleagues=colleagues,
        timezone=timezone,
        values=values,
        errors=errors or {},
        choices=choices(),
        phones={
            "home_phone": _international(employee.home_phone_e164),
            "cell_phone": _international(employee.cell_phone_e164),
        },
    )


_EVENT_LABELS = {
    "hired": _("Hired"),
    "updated": _("Profile changed"),
    "excluded": _("Excluded from the LMS interface"),
    "included": _("Included in the LMS interface"),
    "terminated": _("Termination recorded"),
    "termination_changed": _("Termination changed"),
    "termination_cancelled": _("Termination cancelled"),
    "rehired": _("Rehired"),
    "lms_linked": _("Linked by hand to an LMS user"),
    "lms_unlinked": _("Unlinked from its LMS user"),
}
NO_ACTOR = _("lmsync (import or command line)")


def _history(session: Session, account_id: str, employee_id: str) -> list[dict[str, Any]]:
    """The employee's history, newest first: when (UTC; the page says it in the account's time
    zone), what (and its details), and who."""
    events = employees.list_events(session, account_id, employee_id)
    actors = {e.actor_user_id for e in events if e.actor_user_id}
    rows = session.execute(select(User.id, User.email).where(User.id.in_(sorted(actors))))
    emails = {str(row[0]): str(row[1]) for row in rows}
    return [
        {
            "at": event.at,
            "what": _EVENT_LABELS.get(event.kind, event.kind),
            "details": _event_details(event.details),
            "who": emails.get(event.actor_user_id or "", NO_ACTOR),
        }
        for event in reversed(events)
    ]


_LMS_ACTIONS = {
    "create": _("LMS user created"),
    "link": _("Linked to the LMS user with the same email"),
    "update": _("LMS user updated"),
    "deactivate": _("LMS user deactivated"),
    "reactivate": _("LMS user reactivated"),
    "skip": _("Skipped"),
    "conflict": _("Conflict"),
    "none": _("Checked"),
}
_LMS_OUTCOMES = {
    "failed": _("failed"),
    "held": _("held: awaiting approval"),
    "planned": _("planned"),
}
_RUN_ACTORS = {
    "change": _("lmsync (change run)"),
    "hourly": _("lmsync (hourly run)"),
    "manual": _("lmsync (manual run)"),
    "activation": _("lmsync (activation run)"),
    "approval": _("lmsync (approval run)"),
}
TIMELINE_LMS_ROWS = 200


def _timeline(
    session: Session, account_id: str, employee_id: str, history: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The HR events (``history``, from :func:`_history`) and the LMS outcomes of one employee,
    newest first."""
    items: list[dict[str, Any]] = [{**event, "source": "hr", "run_id": None} for event in history]
    outcomes = session.execute(
        select(SyncOutcome, SyncRun.trigger)
        .join(SyncRun, SyncRun.id == SyncOutcome.run_id)
        .where(
            SyncOutcome.account_id == account_id,
            SyncOutcome.employee_id == employee_id,
            SyncRun.dry_run.is_(False),
        )
        .order_by(SyncOutcome.at.desc())
        .limit(TIMELINE_LMS_ROWS)
    ).all()
    for outcome, trigger in outcomes:
        fields = []
        if outcome.after and outcome.action in ("update", "link", "reactivate"):
            # The LMS attributes written, by their labels in the reader's language.
            fields = [field_labels.field_list(sorted(k for k in outcome.after if k != "active"))]
        items.append(
            {
                "at": outcome.at,
                "source": "lms",
                "what": _LMS_ACTIONS.get(outcome.action, outcome.action),
                "outcome": _LMS_OUTCOMES.get(outcome.outcome or ""),
                "details": fields,
                "reason": field_labels.reason(outcome.reason),
                "who": _RUN_ACTORS.get(trigger) or _("lmsync ({trigger} run)", trigger=trigger),
                "run_id": outcome.run_id,
            }
        )
    items.sort(key=lambda item: item["at"], reverse=True)
    return items


def _event_details(details: dict[str, Any]) -> list[Msg]:
    """What an event's details say, one short phrase each ("last day worked Dec 2, 2026")."""
    if "after" in details:  # a change of termination: before → after
        before, after = details["before"], details["after"]
        return [
            _(
                "last day worked {before} → {after}",
                before=field_labels.day(before.get("termination_date")),
                after=field_labels.day(after.get("termination_date")),
            )
        ]
    parts = []
    if details.get("termination_date"):
        parts.append(_("last day worked {day}", day=field_labels.day(details["termination_date"])))
    if details.get("effective_immediately"):
        parts.append(_("effective immediately"))
    if details.get("hire_date"):
        parts.append(_("hire date {day}", day=field_labels.day(details["hire_date"])))
    if details.get("lms_user_id"):
        parts.append(_("LMS user {id}", id=details["lms_user_id"]))
    if details.get("reason"):
        parts.append(_("reason: {text}", text=details["reason"]))
    if details.get("note"):
        parts.append(_("note: {text}", text=details["note"]))
    return parts


@router.get("/employees/{employee_id}", response_class=HTMLResponse)
def employee_file(
    request: Request,
    state: State,
    browser: Browser,
    employee_id: str,
    tab: str = "profile",
    q: str | None = None,
) -> Response:
    return _file(request, state, browser, employee_id, tab, query=q)


def _sharing_email(session: Session, employee: Employee) -> list[Employee]:
    """The other employees of the account with the same work email (a conflict's colleagues)."""
    if not employee.work_email_key:
        return []
    return list(
        session.scalars(
            select(Employee)
            .where(
                Employee.account_id == employee.account_id,
                Employee.work_email_key == employee.work_email_key,
                Employee.id != employee.id,
            )
            .order_by(Employee.last_name, Employee.first_name)
            .limit(20)
        )
    )


@router.get("/employees/{employee_id}/lms-panel", response_class=HTMLResponse)
def lms_panel(request: Request, state: State, browser: Browser, employee_id: str) -> Response:
    """The LMS panel alone: what the employee file polls while lmsync is about to act."""
    account_id = browser.principal.account()
    with state.uow() as session:
        employee = employees.get_employee(session, account_id, employee_id)
        lms = state.sync.employee_state(session, account_id, employee_id)
    return render(request, state, browser, "lms_panel.html", employee=employee, lms=lms)


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


@dataclass(frozen=True)
class _Step:
    """One lifecycle step of the employment tab: its question, fields and what it does."""

    title: Msg
    question: Msg
    fields: list[tuple[str, Msg, str]]  # (name, label, type)
    confirm: Msg
    danger: bool
    done: FlashCode


def _step(verb: str, employee: Employee) -> _Step | None:
    name = f"{employee.first_name} {employee.last_name}"
    last_day = ("termination_date", _("Last day worked"), "date")
    immediate = ("effective_immediately", _("Effective immediately (e.g. a dismissal)"), "checkbox")
    reason = ("reason", _("Reason"), "text")
    if verb == "terminate":
        return _Step(
            _("Terminate {name}", name=name),
            _(
                "Terminate {name}? The termination date is the last day worked: the LMS user "
                "stays active until that day ends, then is deactivated within seconds (at once "
                "for a date in the past, or when effective immediately). Excluded employees are "
                "left alone.",
                name=name,
            ),
            [last_day, reason, immediate],
            _("Yes, terminate"),
            True,
            "terminated",
        )
    if verb == "change-termination":
        return _Step(
            _("Change the termination of {name}", name=name),
            _(
                "{name} is leaving on {day}. Change the last day worked, the reason, or make it "
                "effective immediately.",
                name=name,
                day=i18n.format_date(employee.termination_date),
            ),
            [last_day, reason, immediate],
            _("Save the termination"),
            False,
            "termination_changed",
        )
    if verb == "cancel-termination":
        day = i18n.format_date(employee.termination_date)
        question = (
            _(
                "Cancel the termination of {name} (last day worked {day})? Use this when it was "
                "recorded by mistake: the employment goes on with the same hire date and the LMS "
                "user is reactivated. To start a new period of employment, rehire instead.",
                name=name,
                day=day,
            )
            if employee.leaving_on is None
            else _(
                "Cancel the termination of {name} (last day worked {day})? The employee stays "
                "active and nothing changes in the LMS.",
                name=name,
                day=day,
            )
        )
        return _Step(
            _("Cancel the termination of {name}", name=name),
            question,
            [("note", _("Note (why)"), "text")],
            _("Yes, cancel the termination"),
            False,
            "termination_cancelled",
        )
    if verb == "rehire":
        return _Step(
            _("Rehire {name}", name=name),
            _(
                "Rehire {name}? A new period of employment starts; their LMS user is reactivated.",
                name=name,
            ),
            [("hire_date", _("New hire date"), "date")],
            _("Yes, rehire"),
            False,
            "rehired",
        )
    return None


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
        step = _step(verb, employee)
        if values is None and verb == "change-termination":
            values = {
                "termination_date": str(employee.termination_date or ""),
                "reason": employee.termination_reason or "",
                "effective_immediately": "true" if employee.termination_immediate else "",
            }
        elif values is None and verb == "terminate":
            # Today where the account is (the app's clock: tests drive it), a common answer.
            zone = ZoneInfo(session.get_one(Account, account_id).timezone)
            now = state.sync.engine.clock()
            today = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(zone).date()
            values = {"termination_date": today.isoformat()}
    if step is None:
        return _not_found(request, state, browser)
    return render(
        request,
        state,
        browser,
        "confirm.html",
        status_code=status_code,
        title=step.title,
        question=step.question,
        fields=step.fields,
        values=values or {},
        errors=errors or {},
        action=f"/employees/{employee_id}/{verb}",
        confirm_label=step.confirm,
        danger=step.danger,
        cancel_url=f"/employees/{employee_id}?tab=employment",
    )


def _not_found(request: Request, state: State, browser: BrowserSession) -> Response:
    return render(
        request,
        state,
        browser,
        "error.html",
        status_code=404,
        title=_("Not found"),
        message=_("This page does not exist."),
    )


@router.get("/employees/{employee_id}/{verb}", response_class=HTMLResponse)
def lifecycle_page(
    request: Request, state: State, browser: Browser, employee_id: str, verb: str
) -> Response:
    return _confirm(request, state, browser, employee_id, verb)


def _carry_out(
    session: Session, browser: BrowserSession, employee_id: str, verb: str, v: dict[str, str]
) -> FlashCode | None:
    """Do ``verb``; returns the flash to show, or None for an unknown verb."""
    principal, account_id = browser.principal, require_writer(browser)
    immediate = v.get("effective_immediately") == "true"
    if verb == "terminate":
        data = TerminateIn.model_validate(
            {
                "termination_date": v.get("termination_date") or None,
                "reason": v.get("reason") or None,
                "effective_immediately": immediate,
            }
        )
        employee = employees.terminate(session, principal, account_id, employee_id, data)
        return "leaving" if employee.leaving_on is not None else "terminated"
    if verb == "change-termination":
        change = TerminationChangeIn.model_validate(
            {
                "termination_date": v.get("termination_date") or None,
                "reason": v.get("reason") or None,
                "effective_immediately": immediate,
            }
        )
        employee = employees.change_termination(session, principal, account_id, employee_id, change)
        return "termination_changed" if employee.leaving_on is not None else "terminated"
    if verb == "cancel-termination":
        cancel = CancelTerminationIn.model_validate({"note": v.get("note") or None})
        employees.cancel_termination(session, principal, account_id, employee_id, cancel)
        return "termination_cancelled"
    if verb == "rehire":
        rehire = RehireIn.model_validate({"hire_date": v.get("hire_date") or None})
        employees.rehire(session, principal, account_id, employee_id, rehire)
        return "rehired"
    return None


@router.post("/employees/{employee_id}/{verb}", response_class=HTMLResponse)
def lifecycle(
    request: Request, state: State, browser: Writer, form: FormData, employee_id: str, verb: str
) -> Response:
    values = _form(form)
    try:
        with state.uow() as session:
            done = _carry_out(session, browser, employee_id, verb, values)
    except ValidationError as exc:
        errors = _errors(pydantic_field_errors(exc))
    except ValidationFailed as exc:
        errors = _errors(exc.errors)
    except Conflict as exc:
        errors = {"": exc.message}
    else:
        if done is None:
            return _not_found(request, state, browser)
        state.sync.changed()
        return redirect(f"/employees/{employee_id}?tab=employment", done)
    return _confirm(
        request, state, browser, employee_id, verb, values=values, errors=errors, status_code=422
    )


@router.post("/employees/{employee_id}/lms/link", response_class=HTMLResponse)
def link_by_hand(
    request: Request, state: State, browser: Writer, form: FormData, employee_id: str
) -> Response:
    account_id = require_writer(browser)
    chosen = (form.get("lms_user_id") or "").strip()[:200]
    try:
        manual_link.link(state.sync, account_id, employee_id, chosen, browser.principal.user_id)
    except ValidationFailed as exc:
        return not_possible(request, state, browser, exc.errors[0].message)
    except Conflict as exc:
        return not_possible(request, state, browser, exc.message)
    return redirect(f"/employees/{employee_id}?tab=security", "lms_linked")


@router.post("/employees/{employee_id}/lms/unlink", response_class=HTMLResponse)
def unlink_by_hand(request: Request, state: State, browser: Writer, employee_id: str) -> Response:
    account_id = require_writer(browser)
    try:
        manual_link.unlink(state.sync, account_id, employee_id, browser.principal.user_id)
    except Conflict as exc:
        return not_possible(request, state, browser, exc.message)
    return redirect(f"/employees/{employee_id}?tab=security", "lms_unlinked")


@router.post("/employees/{employee_id}/lms/sync")
def sync_employee(state: State, browser: Writer, employee_id: str) -> Response:
    account_id = require_writer(browser)
    state.sync.sync_employee(account_id, employee_id, browser.principal.user_id)
    return redirect(f"/employees/{employee_id}?tab=security", "sync_started")
