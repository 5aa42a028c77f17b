"""What every page needs: the browser session, CSRF checks, templates, the top bar's sections
and flash messages.

A flash message travels in the redirect's URL as a code (``?flash=saved``) that the next page
looks up in FLASH_MESSAGES; unknown codes show nothing. The URL never carries the text itself:
a link could otherwise put any words in lmsync's own message banner.

Why the URL and not a one-shot cookie: it works without JavaScript and without server state,
and a page's background refreshes (htmx) cannot swallow a message meant for the page. The
drawback, a message shown again on reload, is undone by static/app.js, which takes the code
out of the address bar (``history.replaceState``) once the page is shown; only a browser
without JavaScript shows it again on reload.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session

from lmsync import i18n
from lmsync.domain.errors import Forbidden
from lmsync.hr import sessions
from lmsync.hr.principal import Principal
from lmsync.hr.sessions import BrowserSession
from lmsync.i18n import Msg, _
from lmsync.storage.tables import Account, User
from lmsync.sync import overview
from lmsync.web import i18n_web
from lmsync.web.deps import AppState, State
from lmsync.web.pages import field_labels

COOKIE = "lmsync_session"
TEMPLATES = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
)
i18n_web.install(TEMPLATES.env)
# Pages name fields, actions, outcomes and stored reasons through these, in the reader's language.
TEMPLATES.env.globals["labels"] = field_labels
# The same words as lmsync.domain.employees.EXCLUDE_LABEL (the API's description), said here so
# that the page can say them in French.
TEMPLATES.env.globals["EXCLUDE_LABEL"] = _(
    "Check this box to exclude this employee from the Learning Management System (LMS) interface"
)


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
FLASH_MESSAGES: dict[str, Msg] = {
    "hired": _("Employee hired."),
    "lms_linked": _("Linked to the LMS user: its fields are written within seconds."),
    "lms_unlinked": _("Unlinked: the LMS user is left as it is."),
    "saved": _("Saved."),
    "excluded": _("Excluded from the LMS interface."),
    "included": _("Included in the LMS interface."),
    "terminated": _("Terminated: the LMS user is deactivated within seconds."),
    "leaving": _("Termination recorded: the employee stays active until the last day worked ends."),
    "termination_changed": _("Termination changed."),
    "termination_cancelled": _("Termination cancelled: the employment goes on."),
    "rehired": _("Rehired."),
    "sync_started": _("Sync started."),
    "interface_saved": _("LMS interface saved."),
    "confirm_to_activate": _("Tick the confirmation box to activate."),
    "activation_started": _("Activation started."),
    "run_rejected": _("Rejected: nothing was written."),
    "run_approved": _("Approved: the run has started."),
    "token_revoked": _("Token revoked: it no longer works."),
}
ROLE_LABELS: dict[str, Msg] = {"MHR": _("HR manager"), "viewer": _("viewer")}


@dataclass(frozen=True)
class Section:
    """A link of the top bar; ``current`` when the page belongs to it (aria-current)."""

    href: str
    label: Msg
    current: bool


def sections(principal: Principal, path: str) -> list[Section]:
    """The top bar's sections this principal may open, the one ``path`` belongs to marked."""
    wanted: list[tuple[str, Msg, tuple[str, ...]]] = []
    if principal.account_id is not None:
        wanted += [
            ("/employees", _("Employees"), ("/employees",)),
            ("/overview", _("Overview"), ("/overview", "/lms")),
            ("/sync", _("Sync history"), ("/sync",)),
            ("/settings/interfaces/lms", _("Settings"), ("/settings",)),
        ]
    wanted.append(("/tokens", _("API tokens"), ("/tokens",)))
    if principal.is_operator:
        wanted.append(("/operator/accounts", _("Platform operator"), ("/operator",)))
    return [
        Section(href, label, any(path == p or path.startswith(p + "/") for p in prefixes))
        for href, label, prefixes in wanted
    ]


def here(request: Request) -> str:
    """This page's path and query without the flash code: where the language switcher returns."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "flash"]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


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
    """A page, with what the layout needs (who is signed in, the CSRF token, the role, the
    sections, the user's own language choice) and the flash message the URL's code names; a
    page that answers a form itself may pass ``flash``."""
    code = request.query_params.get("flash")
    base: dict[str, Any] = {"browser": browser, "flash": FLASH_MESSAGES.get(code or "")}
    if browser is not None:
        principal = browser.principal
        base["sections"] = sections(principal, request.url.path)
        base["here"] = here(request)
        base["role_label"] = ROLE_LABELS.get(principal.role or "", principal.role)
        with state.uow() as session:
            base["account_name"] = account_name(session, browser)
            user = session.get(User, principal.user_id)
            base["my_language"] = (user.ui_language if user else None) or ""
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
        title=_("Not possible now"),
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
