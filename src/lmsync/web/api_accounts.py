"""``/api/v1/accounts`` (platform operator) and ``/api/v1/me``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from lmsync.domain.accounts import AccountCreateIn, AccountPatchIn
from lmsync.domain.errors import NotFound
from lmsync.hr import accounts
from lmsync.web.deps import Caller, Paging, State, paged
from lmsync.web.idempotency import IdempotencyKey, fingerprint, run_once
from lmsync.web.problems import PROBLEM_RESPONSES
from lmsync.web.schemas import AccountOut, MeOut, Paged, created, with_location

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=PROBLEM_RESPONSES)
ACCOUNTS = f"{router.prefix}/accounts"


@router.get("/me", response_model=MeOut, summary="Who the token belongs to")
def me(caller: Caller) -> MeOut:
    return MeOut(
        user_id=caller.user_id,
        email=caller.email,
        is_operator=caller.is_operator,
        account_id=caller.account_id,
        role=caller.role,
    )


@router.post(
    "/accounts",
    status_code=201,
    response_model=AccountOut,
    summary="Create an account (operator)",
    responses={201: created("account")},
)
def create_account(
    body: AccountCreateIn,
    state: State,
    caller: Caller,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    caller.require_operator()

    def action(session: Session) -> tuple[int, str]:
        account = accounts.create_account(session, body)
        return 201, AccountOut.model_validate(account).model_dump_json()

    print_ = fingerprint(request.url.path, body.model_dump_json())
    return with_location(run_once(state, caller, idempotency_key, print_, action), ACCOUNTS)


@router.get("/accounts", response_model=Paged[AccountOut], summary="List accounts (operator)")
def list_accounts(
    state: State, caller: Caller, page: Paging, request: Request
) -> Paged[AccountOut]:
    caller.require_operator()
    with state.uow() as session:
        rows, total = accounts.list_accounts(session, limit=page.limit, offset=page.offset)
        items = [AccountOut.model_validate(a) for a in rows]
    return paged(request, page, items, total)


@router.get("/accounts/{account_id}", response_model=AccountOut, summary="Read an account")
def get_account(account_id: str, state: State, caller: Caller) -> AccountOut:
    """An operator reads any account; a member reads its own."""
    if not caller.is_operator and caller.account_id != account_id:
        raise NotFound("account not found")
    with state.uow() as session:
        return AccountOut.model_validate(accounts.get_account(session, account_id))


@router.patch(
    "/accounts/{account_id}",
    response_model=AccountOut,
    summary="Change an account, incl. switching user synchronization (operator)",
)
def patch_account(
    account_id: str, body: AccountPatchIn, state: State, caller: Caller
) -> AccountOut:
    """Switching user synchronization on makes every employee of the account due at once."""
    with state.uow() as session:
        out = AccountOut.model_validate(accounts.update_account(session, caller, account_id, body))
    state.sync.changed()  # committed: the worker looks at once
    return out
