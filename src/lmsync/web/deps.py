"""What every request needs: the database, the calling principal, paging parameters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from lmsync.hr.accounts import TokenExpired, principal_for_token
from lmsync.hr.imports import ImportService
from lmsync.hr.principal import Principal
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage.database import transaction
from lmsync.sync.service import SyncService
from lmsync.web.schemas import Paged

T = TypeVar("T")


@dataclass
class AppState:
    settings: Settings
    sessions: sessionmaker[Session]
    secrets: SecretBox
    sync: SyncService
    imports: ImportService

    @contextmanager
    def uow(self) -> Iterator[Session]:
        """One transaction: committed when the block ends normally, rolled back otherwise."""
        with transaction(self.sessions) as session:
            yield session


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.lmsync
    return state


State = Annotated[AppState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="An API token from `lmsync token create`.")


def get_principal(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required", headers=challenge)
    try:
        with state.uow() as session:
            principal = principal_for_token(session, credentials.credentials)
    except TokenExpired as exc:
        raise HTTPException(401, exc.message, headers=challenge) from exc
    if principal is None:
        raise HTTPException(401, "the token is unknown or revoked", headers=challenge)
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


# Far past any real list, far below a database integer's 2**63 (which would be a 500).
MAX_OFFSET = 1_000_000


def get_page(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page (max 200).")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description=f"Items to skip (max {MAX_OFFSET:,}).")
    ] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


Paging = Annotated[Page, Depends(get_page)]


def paged(request: Request, page: Page, items: list[T], total: int) -> Paged[T]:
    """One page of a list, with the link to the next page (null on the last one)."""
    following = None
    if page.offset + page.limit < total:
        following = next_link(
            request, get_state(request).settings.public_url, page.offset + page.limit, page.limit
        )
    return Paged[T](items=items, total=total, limit=page.limit, offset=page.offset, next=following)


def next_link(request: Request, public_url: str | None, offset: int, limit: int) -> str:
    """The request's path and query with ``offset`` and ``limit`` replaced: under ``public_url``
    when it is set, else relative. Never built from the request's Host header, which the client
    chooses (a forged Host would otherwise travel in the links, and in any cache in front)."""
    query = request.url.include_query_params(offset=offset, limit=limit).query
    path: str = request.scope["path"]
    if public_url is None:
        return f"{path}?{query}"
    # public_url stands for the root path a proxy may have put in front of the routes.
    root: str = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return f"{public_url.rstrip('/')}{path}?{query}"
