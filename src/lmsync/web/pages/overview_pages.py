"""The overview: the home page of an HR manager (what needs them, the LMS's health, the employees
by LMS state, the runs held and the last runs)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from lmsync.sync import overview
from lmsync.web.deps import State
from lmsync.web.pages.common import Browser, render

router = APIRouter(include_in_schema=False)

# The counts the page shows, in order, with the employee list each one links to.
COUNTS = (
    ("linked", "Linked", "/employees?lms=linked"),
    ("to_create", "To create", "/employees?lms=not_linked&status=active"),
    ("not_linked", "Not linked", "/employees?lms=not_linked"),
    ("deactivated", "Deactivated", "/employees?lms=deactivated"),
    ("leaving_soon", "Leaving soon", "/employees?status=leaving"),
    ("excluded", "Excluded", "/employees?lms=excluded"),
    ("skipped", "Skipped", "/employees?lms=skipped"),
    ("conflict", "Conflict", "/employees?lms=conflict"),
    ("error", "Error", "/employees?lms=error"),
    ("held", "Held: awaiting approval", "/employees?lms=held"),
)


@router.get("/overview", response_class=HTMLResponse)
def overview_page(request: Request, state: State, browser: Browser) -> Response:
    account_id = browser.principal.account()
    down_after = timedelta(minutes=state.settings.alert_lms_down_minutes)
    with state.uow() as session:
        seen = overview.overview(session, account_id, state.sync.engine.clock(), down_after)
    return render(
        request,
        state,
        browser,
        "overview.html",
        seen=seen,
        count_links=COUNTS,
        down_minutes=state.settings.alert_lms_down_minutes,
    )
