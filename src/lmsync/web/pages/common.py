"""What every page needs: the browser session, CSRF checks, templates and flash messages.

A flash message travels in the redirect's URL as a code (``?flash=saved``) that the next page
looks up in FLASH_MESSAGES; unknown codes show nothing. The URL never carries the text itself:
a link could otherwise put any words in lmsync's own message banner.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session

from lmsync import i18n
from lmsync.domain.employees import EXCLUDE_LABEL
from lmsync.domain.errors import Forbidden
from lmsync.hr import sessions
from lmsync.hr.sessions import BrowserSession
from lmsync.storage.tables import Account
from lmsync.sync import overview
from lmsync.web import i18n_web
from lmsync.web.deps import AppState, State

COOKIE = "lmsync_session"
TEMPLATES = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
)
i18n_web.install(TEMPLATES.env)
TEMPLATES.env.globals["EXCLUDE_LABEL"] = EXCLUDE_LABEL


class LoginRequired(Exception):
    """No (valid) browser session: go to the login page, then come back."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRejected(Exception):
    """A form arrived without the session's CSRF token."""


def get_browser(request: Request, state: State) -> BrowserSession:
    token = request.cookies.get(COOKIE)
    browser = None
    if token:
        with state.uow() as session:
            browser = sessions.resolve(session, token)
    if browser is None:
        raise LoginRequired(
            request.url.path + (f"?{request.url.query}" if request.url.query else "")
        )
    # This runs in a worker thread: ``choose`` updates the request's box, which the endpoint
    # and its template see (the thread's context is a copy, the box is shared).
    i18n.choose(
        i18n.resolve(browser.principal.ui_language, None, request.headers.get("accept-language"))
    )
    return browser


Browser = Annotated[BrowserSession, Depends(get_browser)]


async def posted_form(request: Request) -> dict[str, str]:
    """The form's text fields, read here (awaiting the body is the only async work): the page
    handlers are plain functions, run in the thread pool, so their database work never blocks
    the event loop."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


FormData = Annotated[dict[str, str], Depends(posted_form)]


def check_csrf(request: Request, browser: Browser, form: FormData) -> BrowserSession:
    """Every state-changing page request must carry the session's CSRF token."""
    sent = request.headers.get("X-CSRF-Token") or form.get("csrf_token")
    if not sent or not hmac.compare_digest(sent, browser.csrf_token):
        raise CsrfRejected()
    return browser


Writer = Annotated[BrowserSession, Depends(check_csrf)]


FlashCode = Literal[
    "hired",
    "lms_linked",
    "lms_unlinked",
    "saved",
    "excluded",
    "included",
    "terminated",
    "leaving",
    "termination_changed",
    "termination_cancelled",
    "rehired",
    "sync_started",
    "interface_saved",
    "confirm_to_activate",
    "activation_started",
    "run_rejected",
    "run_approved",
    "token_revoked",
]
FLASH_MESSAGES: dict[str, str] = {
    "hired": "Employee hired.",
    "lms_linked": "Linked to the LMS user: its fields are written within seconds.",
    "lms_unlinked": "Unlinked: the LMS user is left as it is.",
    "saved": "Saved.",
    "excluded": "Excluded from the LMS interface.",
    "included": "Included in the LMS interface.",
    "terminated": "Terminated: the LMS user is deactivated within seconds.",
    "leaving": "Termination recorded: the employee stays active until the last day worked ends.",
    "termination_changed": "Termination changed.",
    "termination_cancelled": "Termination cancelled: the employment goes on.",
    "rehired": "Rehired.",
    "sync_started": "Sync started.",
    "interface_saved": "LMS interface saved.",
    "confirm_to_activate": "Tick the confirmation box to activate.",
    "activation_started": "Activation started.",
    "run_rejected": "Rejected: nothing was written.",
    "run_approved": "Approved: the run has started.",
    "token_revoked": "Token revoked: it no longer works.",
}


def account_name(session: Session, browser: BrowserSession) -> str:
    if browser.principal.account_id is None:
        return ""
    account = session.get(Account, browser.principal.account_id)
    return account.name if account else ""


def render(
    request: Request,
    state: AppState,
    browser: BrowserSession | None,
    template: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page, with what the layout needs (who is signed in, the CSRF token, the role) and the
    flash message the URL's code names; a page that answers a form itself may pass ``flash``."""
    code = request.query_params.get("flash")
    base: dict[str, Any] = {"browser": browser, "flash": FLASH_MESSAGES.get(code or "")}
    if browser is not None:
        principal = browser.principal
        with state.uow() as session:
            base["account_name"] = account_name(session, browser)
            if principal.account_id is not None:
                down_after = timedelta(minutes=state.settings.alert_lms_down_minutes)
                now = state.sync.engine.clock()
                base["alerts"] = overview.alerts(session, principal.account_id, now, down_after)
        base["csrf_token"] = browser.csrf_token
        base["can_write"] = principal.role == "MHR"
        base["is_operator"] = principal.is_operator
    return TEMPLATES.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )


def not_possible(
    request: Request, state: AppState, browser: BrowserSession, message: str
) -> HTMLResponse:
    """A refusal (409) whose reason is the domain's own words: said on a page, where a redirect
    could only carry a code."""
    return render(
        request,
        state,
        browser,
        "error.html",
        status_code=409,
        title="Not possible now",
        message=message,
    )


def redirect(url: str, flash: FlashCode | None = None) -> RedirectResponse:
    """A redirect after a form (303), with the code of the message the next page shows."""
    if flash:
        url += ("&" if "?" in url else "?") + "flash=" + quote(flash)
    return RedirectResponse(url, status_code=303)


def require_writer(browser: BrowserSession) -> str:
    """The account an MHR may change; a viewer is refused (the pages show no write controls)."""
    return browser.principal.writable_account()


def login_redirect(exc: LoginRequired) -> RedirectResponse:
    return RedirectResponse("/login?next=" + quote(exc.next_url), status_code=303)


__all__ = ["Forbidden"]
