"""Sign in and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lmsync.hr import sessions
from lmsync.hr.sessions import LoginRefused, LoginThrottled
from lmsync.web.deps import State
from lmsync.web.pages.common import COOKIE, Writer, redirect, render

router = APIRouter(include_in_schema=False)


def _safe_next(url: str | None) -> str:
    """Only same-site paths: never send a user to another host after signing in."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, state: State, next: str | None = None) -> Response:
    return render(
        request, state, None, "login.html", next_url=_safe_next(next), email="", error=None
    )


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    state: State,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    ip = request.client.host if request.client else "unknown"
    try:
        with state.uow() as session:
            browser = sessions.login(session, email, password, ip)
    except (LoginRefused, LoginThrottled) as exc:
        status = 429 if isinstance(exc, LoginThrottled) else 401
        if isinstance(exc, LoginRefused):
            with state.uow() as session:
                sessions.record_failure(session, email, ip)
        return render(
            request,
            state,
            None,
            "login.html",
            status_code=status,
            next_url=_safe_next(next),
            email=email,
            error=exc.message,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
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
