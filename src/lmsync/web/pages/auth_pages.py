"""Sign in and out.

The sign-in form is protected against login CSRF (another site signing the browser into an
account of its choosing) by a double-submit cookie: ``GET /login`` gives the browser a random
pre-session value in an HttpOnly, SameSite=Lax cookie and puts its HMAC (a key only the server
has) in the form; ``POST /login`` is refused unless the two match.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lmsync.hr import sessions
from lmsync.hr.sessions import LoginRefused, LoginThrottled
from lmsync.i18n import _
from lmsync.security import same_secret
from lmsync.web.deps import AppState, State
from lmsync.web.pages.common import COOKIE, Writer, redirect, render

router = APIRouter(include_in_schema=False)
LOGIN_COOKIE = "lmsync_login"
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
LOGIN_FORM_EXPIRED = _(
    "This sign-in form has expired or was not sent from lmsync's sign-in page. "
    "Nothing was done: sign in again below."
)


def safe_next(url: str | None) -> str:
    """Only same-site paths: never send a user to another host after signing in."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def _login_token(state: AppState, nonce: str) -> str:
    return state.secrets.mac("login-csrf", nonce)


def _login_form(
    request: Request,
    state: AppState,
    *,
    next_url: str | None,
    email: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """The sign-in page, with a form token matching the browser's pre-session cookie (kept when
    it has a valid one, so that two open sign-in tabs both work)."""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not _NONCE.fullmatch(nonce):
        nonce = secrets.token_urlsafe(32)
    response = render(
        request,
        state,
        None,
        "login.html",
        status_code=status_code,
        next_url=safe_next(next_url),
        email=email,
        error=error,
        login_csrf=_login_token(state, nonce),
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, state: State, next: str | None = None) -> Response:
    return _login_form(request, state, next_url=next)


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    state: State,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not csrf_token or not same_secret(csrf_token, _login_token(state, nonce)):
        # Not a password guess: neither checked nor counted towards throttling.
        return _login_form(
            request, state, next_url=next, email=email, error=LOGIN_FORM_EXPIRED, status_code=403
        )
    ip = request.client.host if request.client else "unknown"
    try:
        with state.uow() as session:
            browser = sessions.login(session, email, password, ip)
    except (LoginRefused, LoginThrottled) as exc:
        status = 429 if isinstance(exc, LoginThrottled) else 401
        if isinstance(exc, LoginRefused):
            with state.uow() as session:
                sessions.record_failure(session, email, ip)
        return _login_form(
            request, state, next_url=next, email=email, error=exc.message, status_code=status
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        browser.token,
        max_age=int(sessions.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(state: State, browser: Writer) -> Response:
    with state.uow() as session:
        sessions.logout(session, browser.token)
    response = redirect("/login")
    response.delete_cookie(COOKIE, path="/")
    return response
