"""The signed-in user's own preferences: the language of lmsync's pages."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from lmsync import i18n
from lmsync.storage.tables import User
from lmsync.web.deps import State
from lmsync.web.pages.auth_pages import safe_next
from lmsync.web.pages.common import FormData, Writer, redirect

router = APIRouter(include_in_schema=False)


@router.post("/preferences/language")
def choose_language(state: State, browser: Writer, form: FormData) -> RedirectResponse:
    """Remember the user's language ("" = follow the account, else the browser) and go back."""
    choice = i18n.supported(form.get("language")) if form.get("language") else None
    with state.uow() as session:
        user = session.get(User, browser.principal.user_id)
        if user is not None:
            user.ui_language = choice
    return redirect(safe_next(form.get("next")))
