"""``/api/v1/tokens``: the API tokens acting in the caller's account (an HR manager sees
everyone's, anyone else their own) and revoking one (HR manager)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from lmsync.hr import accounts
from lmsync.web.deps import Caller, Paging, State, paged
from lmsync.web.problems import PROBLEM_RESPONSES
from lmsync.web.schemas import Paged

router = APIRouter(prefix="/api/v1", tags=["tokens"], responses=PROBLEM_RESPONSES)


class TokenOut(BaseModel):
    """A token as listed: never the token itself, only its first characters."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "5b0e7a52-3f0c-4f4e-9d55-0d6f1c0b9a11",
                    "name": "payroll export",
                    "prefix": "lms_Xq3v9a",
                    "owner_email": "hr@acme.example",
                    "created_at": "2026-01-05T14:03:00Z",
                    "last_used_at": "2026-03-01T08:00:12Z",
                    "expires_at": "2026-04-05T14:03:00Z",
                    "revoked_at": None,
                    "status": "active",
                }
            ]
        },
    )

    id: str
    name: str
    prefix: str = Field(description="The token's first characters, to recognize it by.")
    owner_email: str = Field(description="The login the token acts as.")
    created_at: datetime
    last_used_at: datetime | None = Field(description="To the minute; null if never used.")
    expires_at: datetime | None
    revoked_at: datetime | None
    status: Literal["active", "expired", "revoked"]


@router.get("/tokens", response_model=Paged[TokenOut], summary="List API tokens")
def list_tokens(state: State, caller: Caller, page: Paging, request: Request) -> Paged[TokenOut]:
    """Newest first. An HR manager (MHR) sees every token of the account; anyone else only
    their own."""
    with state.uow() as session:
        rows, total = accounts.list_tokens(session, caller, limit=page.limit, offset=page.offset)
    return paged(request, page, [TokenOut.model_validate(row) for row in rows], total)


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    summary="Revoke an API token (MHR)",
    response_class=Response,
)
def revoke_token(token_id: str, state: State, caller: Caller) -> Response:
    """The token stops working at once. Revoking an already revoked token changes nothing;
    another account's token is a 404."""
    with state.uow() as session:
        accounts.revoke_token_by_id(session, caller, token_id)
    return Response(status_code=204)
