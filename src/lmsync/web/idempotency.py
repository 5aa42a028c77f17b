"""``Idempotency-Key`` on creating POSTs: a retry gets the first answer, not a second object."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import Header, Response
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lmsync.domain.errors import Conflict
from lmsync.hr.principal import Principal
from lmsync.storage.tables import IdempotencyRecord, utcnow
from lmsync.web.deps import AppState

# How long a key answers with its first result (as payment APIs do); older records are deleted
# when the same login sends its next keyed request, so the table does not grow without end.
KEY_LIFETIME = timedelta(hours=24)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Any unique string; a retry with the same key returns the first result.",
    ),
]


def fingerprint(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


def _json(status: int, body: str, *, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _scope(principal: Principal) -> str:
    """The account a key belongs to: a login's keys in one account never answer in another
    (one person may hold tokens for two accounts; "" for an operator's account-less token)."""
    return principal.account_id or ""


def _replay(session: Session, principal: Principal, key: str, print_: str) -> Response | None:
    record = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == principal.user_id,
            IdempotencyRecord.account_id == _scope(principal),
            IdempotencyRecord.key == key,
            IdempotencyRecord.created_at >= utcnow() - KEY_LIFETIME,
        )
    )
    if record is None:
        return None
    if record.fingerprint != print_:
        raise Conflict("this Idempotency-Key was already used for a different request")
    return _json(record.status_code, record.body, replayed=True)


def run_once(
    state: AppState,
    principal: Principal,
    key: str | None,
    print_: str,
    action: Callable[[Session], tuple[int, str]],
) -> Response:
    """Run ``action`` (returning status and JSON body) at most once per key, in one transaction."""
    if key is None:
        with state.uow() as session:
            status, body = action(session)
        return _json(status, body)
    try:
        with state.uow() as session:
            replay = _replay(session, principal, key, print_)
            if replay is not None:
                return replay
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.user_id == principal.user_id,
                    IdempotencyRecord.created_at < utcnow() - KEY_LIFETIME,
                )
            )
            status, body = action(session)
            session.add(
                IdempotencyRecord(
                    user_id=principal.user_id,
                    account_id=_scope(principal),
                    key=key,
                    fingerprint=print_,
                    status_code=status,
                    body=body,
                )
            )
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its result.
        with state.uow() as session:
            replay = _replay(session, principal, key, print_)
        if replay is None:
            raise
        return replay
    return _json(status, body)
