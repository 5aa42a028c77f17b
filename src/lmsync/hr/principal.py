"""Who is acting: a login, the account it acts in and its role there; the permission checks."""

from __future__ import annotations

from dataclasses import dataclass

from lmsync.domain.errors import Forbidden
from lmsync.i18n import _


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    is_operator: bool
    account_id: str | None
    role: str | None
    # The language the pages speak to this login: its own choice, else its account's (null:
    # the browser's Accept-Language decides).
    ui_language: str | None = None

    def account(self) -> str:
        """The account this principal reads in; raises when it acts in none."""
        if self.account_id is None:
            raise Forbidden(_("this token is not bound to an account"))
        return self.account_id

    def writable_account(self) -> str:
        """The account this principal may change (role MHR)."""
        account_id = self.account()
        if self.role != "MHR":
            raise Forbidden(_("the viewer role is read-only; an HR manager (MHR) can make changes"))
        return account_id

    def require_operator(self) -> None:
        if not self.is_operator:
            raise Forbidden(_("only a platform operator can do this"))
