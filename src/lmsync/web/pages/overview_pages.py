"""The overview: the home page of an HR manager (what needs them, the LMS's health, the employees
by LMS state, the runs held and the last runs)."""

from __future__ import annotations

import io
from datetime import timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from lmsync import csv_safe
from lmsync.i18n import _
from lmsync.storage.tables import Account
from lmsync.sync import overview, unlinked
from lmsync.web.deps import MAX_OFFSET, State
from lmsync.web.pages.common import Browser, render

router = APIRouter(include_in_schema=False)
PAGE = 100

# The counts the page shows, in order, with the employee list each one links to.
COUNTS = (
    ("linked", _("Linked"), "/employees?lms=linked"),
    ("to_create", _("To create"), "/employees?lms=not_linked&status=active"),
    ("not_linked", _("Not linked"), "/employees?lms=not_linked"),
    ("deactivated", _("Deactivated"), "/employees?lms=deactivated"),
    ("leaving_soon", _("Leaving soon"), "/employees?status=leaving"),
    ("excluded", _("Excluded"), "/employees?lms=excluded"),
    ("skipped", _("Skipped"), "/employees?lms=skipped"),
    ("conflict", _("Conflict"), "/employees?lms=conflict"),
    ("error", _("Error"), "/employees?lms=error"),
    ("held", _("Held: awaiting approval"), "/employees?lms=held"),
)


@router.get("/overview", response_class=HTMLResponse)
def overview_page(request: Request, state: State, browser: Browser) -> Response:
    account_id = browser.principal.account()
    down_after = timedelta(minutes=state.settings.alert_lms_down_minutes)
    with state.uow() as session:
        seen = overview.overview(session, account_id, state.sync.engine.clock(), down_after)
        tz = session.get_one(Account, account_id).timezone
    return render(
        request,
        state,
        browser,
        "overview.html",
        seen=seen,
        tz=tz,
        count_links=COUNTS,
        down_minutes=state.settings.alert_lms_down_minutes,
    )


@router.get("/lms/unlinked", response_class=HTMLResponse)
def unlinked_page(
    request: Request, state: State, browser: Browser, q: str | None = None, offset: int = 0
) -> Response:
    account_id = browser.principal.account()
    offset = min(max(offset, 0), MAX_OFFSET)
    with state.uow() as session:
        rows, total = unlinked.page(
            session, account_id, text=(q or "")[:200] or None, limit=PAGE, offset=offset
        )
    params = {"q": q} if q else {}
    return render(
        request,
        state,
        browser,
        "unlinked.html",
        rows=rows,
        total=total,
        q=q,
        next_url=f"/lms/unlinked?{urlencode({**params, 'offset': offset + PAGE})}"
        if offset + PAGE < total
        else None,
        prev_url=f"/lms/unlinked?{urlencode({**params, 'offset': max(offset - PAGE, 0)})}"
        if offset
        else None,
    )


@router.get("/lms/unlinked.csv")
def unlinked_csv(state: State, browser: Browser) -> Response:
    """Every unlinked LMS user, for a spreadsheet (formula cells neutralised)."""
    out = io.StringIO()
    writer = csv_safe.writer(out)
    writer.writerow(["lms_user_id", "email", "first_name", "last_name", "active", "seen_at"])
    with state.uow() as session:
        for row in unlinked.all_rows(session, browser.principal.account()):
            writer.writerow(
                [
                    row.lms_user_id,
                    row.email or "",
                    row.first_name or "",
                    row.last_name or "",
                    "yes" if row.active else "no",
                    row.seen_at.isoformat(),
                ]
            )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="unlinked-lms-users.csv"'},
    )
