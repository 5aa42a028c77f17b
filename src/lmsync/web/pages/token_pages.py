"""API tokens: who holds which, when each was last used and when it expires; an HR manager
creates one for themselves (shown once) and revokes any of the account's; a viewer sees only
their own, read-only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from lmsync.domain.errors import FieldError, ValidationFailed
from lmsync.hr import accounts
from lmsync.hr.accounts import TokenLifetime
from lmsync.hr.sessions import BrowserSession
from lmsync.i18n import _
from lmsync.settings import Settings
from lmsync.storage.tables import Account, User
from lmsync.web import api_tokens
from lmsync.web.deps import AppState, State
from lmsync.web.pages.common import (
    Browser,
    FormData,
    Writer,
    redirect,
    render,
    require_writer,
)

pages = APIRouter(include_in_schema=False)
PAGE = 50


def token_lifetime(settings: Settings) -> TokenLifetime:
    return TokenLifetime(default_days=settings.token_default_days, max_days=settings.token_max_days)


def _tokens_page(
    request: Request,
    state: AppState,
    browser: BrowserSession,
    *,
    offset: int = 0,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    new_token: str | None = None,
    status_code: int = 200,
) -> Response:
    offset = max(offset, 0)
    with state.uow() as session:
        tokens, total = accounts.list_tokens(session, browser.principal, limit=PAGE, offset=offset)
        account = session.get(Account, browser.principal.account_id or "")
        tz = account.timezone if account is not None else "UTC"  # an operator has no account
    response = render(
        request,
        state,
        browser,
        "tokens.html",
        status_code=status_code,
        tokens=tokens,
        tz=tz,
        values=values or {"name": "", "days": str(state.settings.token_default_days)},
        errors=errors or {},
        new_token=new_token,
        max_days=state.settings.token_max_days,
        next_url=f"/tokens?offset={offset + PAGE}" if offset + PAGE < total else None,
        prev_url=f"/tokens?offset={max(offset - PAGE, 0)}" if offset else None,
    )
    if new_token is not None:
        response.headers["Cache-Control"] = "no-store"  # the one time the token is shown
    return response


@pages.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, state: State, browser: Browser, offset: int = 0) -> Response:
    return _tokens_page(request, state, browser, offset=offset)


@pages.post("/tokens", response_class=HTMLResponse)
def create_token(request: Request, state: State, browser: Writer, form: FormData) -> Response:
    """A token for the signed-in HR manager, in their account; shown on the answer, once."""
    account_id = require_writer(browser)
    values = {"name": form.get("name", "").strip(), "days": form.get("days", "").strip()}
    try:
        if not values["days"].isdigit():
            raise ValidationFailed([FieldError("days", _("a whole number of days, such as 90"))])
        with state.uow() as session:
            issued = accounts.create_token(
                session,
                session.get_one(User, browser.principal.user_id),
                account_id=account_id,
                name=values["name"],
                days=int(values["days"]),
                lifetime=token_lifetime(state.settings),
            )
            token = issued.token
    except ValidationFailed as exc:
        errors = {error.field: error.message for error in exc.errors}
        return _tokens_page(request, state, browser, values=values, errors=errors, status_code=422)
    return _tokens_page(request, state, browser, new_token=token)


@pages.get("/tokens/{token_id}/revoke", response_class=HTMLResponse)
def revoke_page(request: Request, state: State, browser: Browser, token_id: str) -> Response:
    require_writer(browser)
    with state.uow() as session:
        token = accounts.get_token(session, browser.principal, token_id)
    if token.name:
        question = _(
            "Revoke the token “{name}” ({prefix}…) of {owner}? Every program using it is refused "
            "from now on. This cannot be undone.",
            name=token.name,
            prefix=token.prefix,
            owner=token.owner_email,
        )
    else:
        question = _(
            "Revoke the token ({prefix}…) of {owner}? Every program using it is refused from now "
            "on. This cannot be undone.",
            prefix=token.prefix,
            owner=token.owner_email,
        )
    return render(
        request,
        state,
        browser,
        "confirm.html",
        title=_("Revoke an API token"),
        question=question,
        fields=[],
        values={},
        errors={},
        action=f"/tokens/{token_id}/revoke",
        confirm_label=_("Yes, revoke"),
        danger=True,
        cancel_url="/tokens",
    )


@pages.post("/tokens/{token_id}/revoke")
def revoke(state: State, browser: Writer, token_id: str) -> Response:
    with state.uow() as session:
        accounts.revoke_token_by_id(session, browser.principal, token_id)
    return redirect("/tokens", "token_revoked")


# What the app includes: these pages and the JSON API for the same tokens.
router = APIRouter()
router.include_router(pages)
router.include_router(api_tokens.router)
