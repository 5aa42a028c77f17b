"""Browser logins: password check with throttling, server-side sessions, CSRF tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from lmsync.domain.errors import DomainError
from lmsync.hr.accounts import principal_of
from lmsync.hr.principal import Principal
from lmsync.i18n import _
from lmsync.security import hash_api_token, verify_password
from lmsync.storage.tables import LoginFailure, Membership, User, WebSession, utcnow

SESSION_LIFETIME = timedelta(hours=12)
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_IP = 20


class LoginRefused(DomainError):
    """Wrong email or password (deliberately not saying which)."""


class LoginThrottled(DomainError):
    """Too many failed attempts recently."""


@dataclass(frozen=True)
class BrowserSession:
    token: str  # the cookie's value; only its hash is stored
    principal: Principal
    csrf_token: str


def _throttled(session: Session, email_key: str, ip: str) -> bool:
    since = utcnow() - THROTTLE_WINDOW
    by_email = session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.email_key == email_key, LoginFailure.at >= since)
    )
    by_ip = session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.ip == ip, LoginFailure.at >= since)
    )
    return (by_email or 0) >= MAX_FAILURES_PER_EMAIL or (by_ip or 0) >= MAX_FAILURES_PER_IP


def login(session: Session, email: str, password: str, ip: str) -> BrowserSession:
    """Check the password and open a session in the user's first account (operators: none)."""
    email_key = email.strip().casefold()
    if _throttled(session, email_key, ip):
        raise LoginThrottled(
            _("too many failed sign-in attempts; wait 15 minutes or ask an administrator")
        )
    user = session.scalar(select(User).where(User.email_key == email_key))
    # Always one argon2 verification, also for an unknown email or a login without a password:
    # otherwise the time taken tells whether an email has a login.
    if not verify_password(user.password_hash if user else None, password) or user is None:
        raise LoginRefused(_("wrong email or password"))
    session.execute(delete(LoginFailure).where(LoginFailure.email_key == email_key))
    membership = session.scalars(
        select(Membership).where(Membership.user_id == user.id).order_by(Membership.created_at)
    ).first()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        WebSession(
            token_hash=hash_api_token(token),
            user_id=user.id,
            account_id=membership.account_id if membership else None,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    principal = principal_of(session, user.id, membership.account_id if membership else None)
    assert principal is not None  # the user and the membership were just read
    return BrowserSession(token=token, principal=principal, csrf_token=csrf)


def record_failure(session: Session, email: str, ip: str) -> None:
    """Count a failed attempt (in its own transaction: the refused login rolls back)."""
    session.add(LoginFailure(email_key=email.strip().casefold()[:254], ip=ip[:64]))


def resolve(session: Session, token: str) -> BrowserSession | None:
    record = session.get(WebSession, hash_api_token(token))
    if record is None or record.expires_at <= utcnow():
        return None
    principal = principal_of(session, record.user_id, record.account_id)
    if principal is None:
        return None
    return BrowserSession(token=token, principal=principal, csrf_token=record.csrf_token)


def logout(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == hash_api_token(token)))
