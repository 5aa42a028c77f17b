"""The LMS users linked to no employee, kept from each full pass's listing of the LMS: what an
HR manager reviews after the first activation (accounts of people HR does not know, test users,
former staff) without asking the LMS again."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from lmsync.hr.employees import contains
from lmsync.lms.base import RemoteUser
from lmsync.storage.tables import LmsLink, UnlinkedLmsUser

CHUNK = 1000


def record(
    sessions: sessionmaker[Session],
    account_id: str,
    listed: Mapping[str, RemoteUser],
    now: datetime,
) -> int:
    """Replace the account's unlinked LMS users with those of ``listed`` that no link holds
    now; returns how many."""
    with sessions() as session, session.begin():
        linked = set(
            session.scalars(select(LmsLink.lms_user_id).where(LmsLink.account_id == account_id))
        )
        rows = [
            {
                "account_id": account_id,
                "lms_user_id": user.id,
                "email": user.fields.get("email"),
                "first_name": user.fields.get("first_name"),
                "last_name": user.fields.get("last_name"),
                "active": user.active,
                "seen_at": now,
            }
            for user in listed.values()
            if user.id not in linked
        ]
        session.execute(delete(UnlinkedLmsUser).where(UnlinkedLmsUser.account_id == account_id))
        for start in range(0, len(rows), CHUNK):
            session.execute(insert(UnlinkedLmsUser), rows[start : start + CHUNK])
    return len(rows)


def page(
    session: Session, account_id: str, *, text: str | None, limit: int, offset: int
) -> tuple[list[UnlinkedLmsUser], int]:
    """A page of the account's unlinked LMS users (by email), filtered by ``text``."""
    query = select(UnlinkedLmsUser).where(UnlinkedLmsUser.account_id == account_id)
    if text:
        query = query.where(
            contains(
                text, UnlinkedLmsUser.email, UnlinkedLmsUser.last_name, UnlinkedLmsUser.first_name
            )
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(UnlinkedLmsUser.email, UnlinkedLmsUser.lms_user_id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total)


def all_rows(session: Session, account_id: str) -> list[UnlinkedLmsUser]:
    return list(
        session.scalars(
            select(UnlinkedLmsUser)
            .where(UnlinkedLmsUser.account_id == account_id)
            .order_by(UnlinkedLmsUser.email, UnlinkedLmsUser.lms_user_id)
        )
    )
