"""Settings → Interfaces → LMS (configure, test, preview, activate), the sync history, a run's
page with live progress and approval, and the platform operator's accounts page."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from lmsync import csv_safe
from lmsync.domain.accounts import AccountPatchIn
from lmsync.domain.errors import Conflict, FieldError, LmsCheckFailed, NotFound, ValidationFailed
from lmsync.domain.interface import InterfaceIn, MoodleOptionsIn, ScimOptionsIn
from lmsync.hr import accounts
from lmsync.hr.csv_import import pydantic_field_errors
from lmsync.hr.sessions import BrowserSession
from lmsync.i18n import _
from lmsync.jobs import stats as jobs_stats
from lmsync.storage.tables import Account, Employee, LmsInterface, SyncOutcome
from lmsync.sync.engine import RunSummary
from lmsync.sync.mapping import CREATE_ONLY_FIELDS, MAINTAINED_FIELDS
from lmsync.sync.service import InterfaceSaved, employees_by_id
from lmsync.web.deps import MAX_OFFSET, State
from lmsync.web.pages import field_labels
from lmsync.web.pages.common import (
    Browser,
    FormData,
    Writer,
    not_possible,
    redirect,
    render,
    require_writer,
)

router = APIRouter(include_in_schema=False)
SETTINGS = "/settings/interfaces/lms"
PAGE = 100
# The deactivation guard's settings (the form's "Safety" section).
GUARDS = ("guard_percent", "guard_minimum", "guard_window_minutes")
# The interface's numbers the form edits: the guard's, and the hour of the daily full sweep.
NUMBERS = (*GUARDS, "sweep_hour")
# The interface options the form edits, by connector (the others keep their stored values).
FORM_OPTIONS = ("portal_id_in", "portal_id_header")
MOODLE_FORM_OPTIONS = ("auth_method", "languages", "job_title_field")


def _moodle_values(options: dict[str, Any]) -> dict[str, Any]:
    """The Moodle options as the form shows them (languages as one comma-separated field)."""
    defaults = MoodleOptionsIn()
    return {
        "auth_method": options.get("auth_method") or defaults.auth_method,
        "languages": ", ".join(options.get("languages") or defaults.languages),
        "job_title_field": options.get("job_title_field") or "",
    }


def _moodle_options(form: FormData) -> dict[str, Any]:
    """The Moodle options the form sent (a field it lacks keeps the stored value)."""
    out: dict[str, Any] = {}
    if "auth_method" in form:
        out["auth_method"] = form["auth_method"].strip() or MoodleOptionsIn().auth_method
    if "languages" in form:
        codes = [c.strip() for c in form["languages"].replace(";", ",").split(",") if c.strip()]
        out["languages"] = codes or MoodleOptionsIn().languages
    if "job_title_field" in form:
        out["job_title_field"] = form["job_title_field"].strip() or None
    return out


def _interface_values(interface: LmsInterface | None) -> dict[str, Any]:
    if interface is None:
        return {
            "connector": "scim",
            "auth_type": "bearer",
            "hourly_transfer": True,
            "sync_users": True,
            "deactivate_terminated": True,
            **{name: InterfaceIn.model_fields[name].default for name in NUMBERS},
            **{name: ScimOptionsIn.model_fields[name].default for name in FORM_OPTIONS},
            "use_bulk": True,
            **_moodle_values({}),
        }
    options = interface.options or {}
    moodle = interface.connector == "moodle"
    return {
        "connector": interface.connector,
        "auth_type": interface.auth_type,
        "base_url": interface.base_url,
        "portal_id": interface.portal_id,
        "username": interface.username,
        "auth_header": interface.auth_header,
        "hourly_transfer": interface.hourly_transfer,
        "sync_users": interface.sync_users,
        "deactivate_terminated": interface.deactivate_terminated,
        **{name: getattr(interface, name) for name in NUMBERS},
        "use_bulk": options.get("use_bulk", True) is not False,
        **{
            name: (None if moodle else options.get(name))
            or ScimOptionsIn.model_fields[name].default
            for name in FORM_OPTIONS
        },
        **_moodle_values(options if moodle else {}),
    }


def _settings_page(
    request: Request,
    state: State,
    browser: BrowserSession,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    saved: InterfaceSaved | None = None,
    refused: LmsCheckFailed | None = None,
) -> Response:
    """The settings page; after a save, with its connection test and what the switches hold
    back (``saved``); after a refused activation, with the test's findings (``refused``)."""
    account_id = browser.principal.account()
    with state.uow() as session:
        account = session.get_one(Account, account_id)
        interface = session.get(LmsInterface, account_id)
        context: dict[str, Any] = {
            "sync_enabled": account.user_sync_enabled,
            "configured": interface is not None,
            "active": bool(interface and interface.active),
            "activated_at": interface.activated_at if interface else None,
            "hourly": bool(interface and interface.hourly_transfer),
            "minute": interface.minute_of_hour if interface else 0,
            "sweep_hour": interface.sweep_hour if interface else 3,
            "timezone": account.timezone,
            "last_sweep_at": interface.last_sweep_at if interface else None,
            "modified_filter": interface.modified_filter if interface else None,
            "secret_set": bool(interface and interface.secret_encrypted),
        }
        if values is None:
            values = _interface_values(interface)
    if saved is not None:
        context["flash"] = _("LMS interface saved.")
    return render(
        request,
        state,
        browser,
        "lms_settings.html",
        status_code=status_code,
        values=values,
        errors=errors or {},
        saved=saved,
        refused=refused,
        **context,
    )


@router.get(SETTINGS, response_class=HTMLResponse)
def settings_page(request: Request, state: State, browser: Browser) -> Response:
    return _settings_page(request, state, browser)


@router.post(SETTINGS, response_class=HTMLResponse)
def save_settings(request: Request, state: State, browser: Writer, form: FormData) -> Response:
    account_id = require_writer(browser)
    values: dict[str, Any] = dict(form)
    for switch in ("hourly_transfer", "sync_users", "deactivate_terminated"):
        values[switch] = values.get(switch) == "true"
    connector = values.get("connector") or "scim"
    with state.uow() as session:
        existing = session.get(LmsInterface, account_id)
        # Another connector's options mean nothing to this one: they are not carried over.
        same = existing is not None and existing.connector == connector
        options = (existing.options or {}) if existing is not None and same else {}
        stored = {name: getattr(existing, name) for name in NUMBERS} if existing else {}
    if connector == "moodle":
        sent = _moodle_options(form)
    else:
        # A form without the field (an older page) keeps the stored value; empty: default.
        sent = {
            name: form[name].strip() or ScimOptionsIn.model_fields[name].default
            for name in FORM_OPTIONS
            if name in form
        }
        if "use_bulk_shown" in form:  # the checkbox was on the page: unticked means off
            sent["use_bulk"] = form.get("use_bulk") == "true"
            values["use_bulk"] = sent["use_bulk"]
    data: dict[str, Any] = {
        "connector": connector,
        "base_url": values.get("base_url") or "",
        "auth_type": values.get("auth_type") or "bearer",
        "auth_header": values.get("auth_header") or "X-API-Key",
        "username": values.get("username") or None,
        "portal_id": (values.get("portal_id") or None) if connector != "moodle" else None,
        "secret": values.get("secret") or None,  # empty: keep the stored secret
        "hourly_transfer": values["hourly_transfer"],
        "sync_users": values["sync_users"],
        "deactivate_terminated": values["deactivate_terminated"],
        "options": {**options, **sent},
    }
    for name in NUMBERS:
        # A form without the field (an older page) keeps the stored value, not the default.
        if name in form:
            data[name] = form[name].strip()
        elif name in stored:
            data[name] = stored[name]
    try:
        parsed = InterfaceIn.model_validate(data)
        saved = state.sync.save_interface(account_id, parsed)
    except ValidationError as exc:
        return _refused(request, state, browser, values, pydantic_field_errors(exc))
    except ValidationFailed as exc:
        return _refused(request, state, browser, values, exc.errors)
    # Answered with the page itself: the test's findings and the counts cannot travel in a URL.
    return _settings_page(request, state, browser, saved=saved)


def _refused(
    request: Request,
    state: State,
    browser: BrowserSession,
    values: dict[str, Any],
    field_errors: list[FieldError],
) -> Response:
    """The form again, with each message next to its field; the secret is never sent back."""
    errors: dict[str, str] = {}
    for error in field_errors:
        # An option's message goes next to its own field (``options.portal_id_header``).
        errors.setdefault(error.field.removeprefix("options.").split(".")[0], error.message)
    values.pop("secret", None)
    return _settings_page(request, state, browser, values=values, errors=errors, status_code=422)


@router.post(f"{SETTINGS}/test", response_class=HTMLResponse)
def test_connection(request: Request, state: State, browser: Writer) -> Response:
    report = state.sync.test_interface(require_writer(browser))
    return render(request, state, browser, "test_result.html", report=report)


@router.post(f"{SETTINGS}/preview", response_class=HTMLResponse)
def preview(request: Request, state: State, browser: Writer) -> Response:
    account_id = require_writer(browser)
    try:
        summary = state.sync.activate(account_id, dry_run=True, actor=browser.principal.user_id)
    except LmsCheckFailed as exc:
        return _settings_page(request, state, browser, refused=exc, status_code=409)
    assert isinstance(summary, RunSummary)
    return render(
        request,
        state,
        browser,
        "preview.html",
        counts=summary.counts,
        run_id=summary.run_id,
        create_only=state.sync.create_only_preview(account_id),
    )


@router.post(f"{SETTINGS}/activate")
def activate(request: Request, state: State, browser: Writer, form: FormData) -> Response:
    account_id = require_writer(browser)
    if form.get("confirm") != "yes":
        return redirect(SETTINGS, "confirm_to_activate")
    try:
        run_id = state.sync.activate(account_id, dry_run=False, actor=browser.principal.user_id)
    except LmsCheckFailed as exc:
        return _settings_page(request, state, browser, refused=exc, status_code=409)
    return redirect(f"/sync/{run_id}", "activation_started")


@router.post("/sync/now")
def sync_now(request: Request, state: State, browser: Writer, form: FormData) -> Response:
    account_id = require_writer(browser)
    try:
        result = state.sync.sync(
            account_id,
            dry_run=False,
            full=form.get("full") == "true",
            actor=browser.principal.user_id,
        )
    except Conflict as exc:
        return not_possible(request, state, browser, exc.message)
    return redirect(f"/sync/{result}", "sync_started")


def _timezone(session: Session, account_id: str) -> str:
    return session.get_one(Account, account_id).timezone


@router.get("/sync", response_class=HTMLResponse)
def runs_page(request: Request, state: State, browser: Browser, offset: int = 0) -> Response:
    account_id = browser.principal.account()
    offset = min(max(offset, 0), MAX_OFFSET)
    with state.uow() as session:
        runs, total = state.sync.list_runs(session, account_id, limit=PAGE, offset=offset)
        tz = _timezone(session, account_id)
    return render(
        request,
        state,
        browser,
        "runs.html",
        runs=runs,
        tz=tz,
        next_url=f"/sync?offset={offset + PAGE}" if offset + PAGE < total else None,
        prev_url=f"/sync?offset={max(offset - PAGE, 0)}" if offset else None,
    )


# A run's counts (SyncRun.counts) tally its employees by result: the action done or planned,
# except that a failure counts as "failed", a deactivation waiting for approval as "held" and an
# excluded employee as "excluded" (sync.recording, and sync.engine for a plan). The run page
# filters its rows (SyncOutcome) by the same keys, so that a count and its rows agree. A real
# run keeps no row for an employee with nothing to do ("none", unless the LMS changed it on its
# side) nor for an excluded one: the page says so next to those counts.
RESULTS = tuple(field_labels.RESULT_LABELS)
_APART = ("failed", "held")  # counted by outcome, whatever the action
EXCLUDED_REASON = "excluded from the LMS interface"  # sync.rules.decide's, stored as written
NO_ROWS_KEPT = ("none", "excluded")


def _result_is(key: str) -> ColumnElement[bool]:
    """The rows of one result key (see RESULTS); another value filters on the action itself."""
    if key in _APART:
        return SyncOutcome.outcome == key
    done = SyncOutcome.outcome.not_in(_APART)
    if key == "excluded":
        return and_(done, SyncOutcome.action == "none", SyncOutcome.reason == EXCLUDED_REASON)
    if key == "none":
        return and_(done, SyncOutcome.action == "none", SyncOutcome.reason != EXCLUDED_REASON)
    if key in RESULTS:
        return and_(done, SyncOutcome.action == key)
    return SyncOutcome.action == key


def row_counts(session: Session, run_id: str) -> dict[str, int]:
    """The run's rows by result key: for a count of SyncRun.counts, the rows its filter shows."""
    counts: dict[str, int] = {}
    for action, outcome, n in session.execute(
        select(SyncOutcome.action, SyncOutcome.outcome, func.count())
        .where(SyncOutcome.run_id == run_id)
        .group_by(SyncOutcome.action, SyncOutcome.outcome)
    ):
        key = outcome if outcome in _APART else action
        counts[key] = counts.get(key, 0) + int(n)
    excluded = int(
        session.scalar(
            select(func.count())
            .select_from(SyncOutcome)
            .where(SyncOutcome.run_id == run_id, _result_is("excluded"))
        )
        or 0
    )
    if excluded:
        counts["none"] = counts.get("none", 0) - excluded
        counts["excluded"] = excluded
    return {k: n for k, n in counts.items() if n}


@router.get("/sync/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    state: State,
    browser: Browser,
    run_id: str,
    action: str | None = None,
    outcome: str | None = None,
    offset: int = 0,
) -> Response:
    """One run: its status and counts, and its rows, filtered by result (``action``: a key of
    the counts; ``outcome``: done | failed | planned | held | none, for older links)."""
    account_id = browser.principal.account()
    offset = min(max(offset, 0), MAX_OFFSET)
    with state.uow() as session:
        run = state.sync.get_run(session, account_id, run_id)
        # A held run opens on what waits for approval (the planned deactivations); "Any" (an
        # empty value) shows the rest.
        held_only = run.status == "held" and action is None and outcome is None
        if held_only:
            action = "held"
        where = [
            *([_result_is(action)] if action else []),
            *([SyncOutcome.outcome == outcome] if outcome else []),
        ]
        outcomes, total = state.sync.list_outcomes(
            session, run_id, where=where, limit=PAGE, offset=offset
        )
        ids = [o.employee_id for o in outcomes]
        names = {
            e.id: f"{e.first_name} {e.last_name}"
            for e in employees_by_id(session, account_id, ids).values()
        }
        rows_by_result = row_counts(session, run_id)
        tz = _timezone(session, account_id)
    query = urlencode([(k, v) for k, v in (("action", action), ("outcome", outcome)) if v])
    base = f"/sync/{run_id}?{query}{'&' if query else ''}offset="
    # Every key of the counts, and any other the rows hold, can be filtered on.
    keys = [k for k in RESULTS if k in run.counts or k in rows_by_result]
    keys += sorted({*run.counts, *rows_by_result} - {*keys})
    if action and action not in keys and action in field_labels.ACTION_LABELS:
        keys.append(action)  # an action of its own ("correlate"), from a link
    return render(
        request,
        state,
        browser,
        "run.html",
        run=run,
        tz=tz,
        outcomes=outcomes,
        total=total,
        names=names,
        action=action,
        outcome=outcome,
        held_only=held_only,
        results=keys,
        rows_by_result=rows_by_result,
        no_rows_kept=NO_ROWS_KEPT,
        next_url=f"{base}{offset + PAGE}" if offset + PAGE < total else None,
        prev_url=f"{base}{max(offset - PAGE, 0)}" if offset else None,
    )


@router.get("/sync/{run_id}/status", response_class=HTMLResponse)
def run_status(request: Request, state: State, browser: Browser, run_id: str) -> Response:
    account_id = browser.principal.account()
    with state.uow() as session:
        run = state.sync.get_run(session, account_id, run_id)
        tz = _timezone(session, account_id)
    response = render(
        request, state, browser, "run_status.html", run=run, tz=tz, no_rows_kept=NO_ROWS_KEPT
    )
    if request.headers.get("HX-Request") and run.status not in ("queued", "running"):
        # Finished while the page watched: reload it whole (outcomes, approval controls).
        response.headers["HX-Refresh"] = "true"
    return response


@router.get("/sync/{run_id}/plan.csv")
def plan_csv(state: State, browser: Browser, run_id: str) -> Response:
    """The whole plan (or outcome) of a run, one employee a row, with every LMS field the row
    writes (a creation: the create-only fields too; an update: the changed fields)."""
    account_id = browser.principal.account()
    out = io.StringIO()
    writer = csv_safe.writer(out)
    fields = [*MAINTAINED_FIELDS, *CREATE_ONLY_FIELDS]
    writer.writerow(
        [
            "employee_number",
            "first_name",
            "last_name",
            "work_email",
            "action",
            "outcome",
            "reason",
            "lms_user_id",
            *(f"lms.{name}" for name in fields),
        ]
    )
    with state.uow() as session:
        state.sync.get_run(session, account_id, run_id)
        rows = session.execute(
            select(SyncOutcome, Employee)
            .join(Employee, Employee.id == SyncOutcome.employee_id)
            .where(SyncOutcome.run_id == run_id)
            .order_by(Employee.last_name, Employee.first_name)
        ).all()
        for outcome, employee in rows:
            written = outcome.after or {}
            writer.writerow(
                [
                    employee.employee_number,
                    employee.first_name,
                    employee.last_name,
                    employee.work_email or "",
                    outcome.action,
                    outcome.outcome,
                    outcome.reason,
                    outcome.lms_user_id or "",
                    *(_cell(written.get(name)) for name in fields),
                ]
            )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="lmsync-plan-{run_id}.csv"'},
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


@router.post("/sync/{run_id}/{decision}")
def decide(request: Request, state: State, browser: Writer, run_id: str, decision: str) -> Response:
    if decision not in ("approve", "reject"):
        raise NotFound(_("page not found"))
    account_id = require_writer(browser)
    try:
        new_id = state.sync.decide_held(
            account_id, run_id, approve=decision == "approve", actor=browser.principal.user_id
        )
    except Conflict as exc:
        return not_possible(request, state, browser, exc.message)
    if new_id is None:
        return redirect(f"/sync/{run_id}", "run_rejected")
    return redirect(f"/sync/{new_id}", "run_approved")


@router.get("/operator/accounts", response_class=HTMLResponse)
def operator_accounts(request: Request, state: State, browser: Browser) -> Response:
    browser.principal.require_operator()
    return _operator_page(request, state, browser)


def _operator_page(
    request: Request, state: State, browser: BrowserSession, flash: str | None = None
) -> Response:
    """The accounts, their switch and (with the job queue) their jobs."""
    with state.uow() as session:
        rows, _ = accounts.list_accounts(session, limit=500, offset=0)
        queue = jobs_stats.by_account(session) if state.sync.deferrer is not None else None
    extra: dict[str, Any] = {"flash": flash} if flash else {}
    return render(request, state, browser, "operator.html", accounts=rows, queue=queue, **extra)


@router.post("/operator/accounts/{account_id}/sync")
def operator_toggle(
    request: Request, state: State, browser: Writer, form: FormData, account_id: str
) -> Response:
    enabled = form.get("enabled") == "true"
    with state.uow() as session:
        account = accounts.update_account(
            session, browser.principal, account_id, AccountPatchIn(user_sync_enabled=enabled)
        )
        name = account.name
    state.sync.changed()
    if enabled:
        flash = _("User synchronization switched on for {name}.", name=name)
    else:
        flash = _("User synchronization switched off for {name}.", name=name)
    # The message names the account: the page answers with it instead of a redirect, since a
    # flash in a URL is only ever a code from the fixed catalogue.
    return _operator_page(request, state, browser, flash=flash)
