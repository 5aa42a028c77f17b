"""Accounts (tenants), logins, memberships and API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from lmsync.domain.accounts import AccountCreateIn, AccountPatchIn, Role
from lmsync.domain.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from lmsync.domain.normalize import NormalizationError, normalize_email
from lmsync.hr.employees import reschedule_for_timezone
from lmsync.hr.principal import Principal
from lmsync.i18n import _
from lmsync.jobs.due_hook import note_due
from lmsync.security import hash_api_token, hash_password, new_api_token, password_problem
from lmsync.storage.tables import Account, ApiToken, Employee, Membership, User, utcnow


def create_account(session: Session, data: AccountCreateIn) -> Account:
    account = Account(
        name=data.name,
        company_name=data.company_name,
        default_language=data.default_language,
        timezone=data.timezone,
        user_sync_enabled=False,
    )
    session.add(account)
    session.flush()
    return account


def get_account(session: Session, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(_("account not found"))
    return account


def list_accounts(session: Session, *, limit: int, offset: int) -> tuple[list[Account], int]:
    total = session.scalar(select(func.count()).select_from(Account)) or 0
    rows = session.scalars(
        select(Account).order_by(Account.name, Account.id).limit(limit).offset(offset)
    )
    return list(rows), total


def update_account(
    session: Session,
    principal: Principal,
    account_id: str,
    patch: AccountPatchIn,
    now: datetime | None = None,
) -> Account:
    """Change an account: the platform operator's job (the seed's "contact a product expert")."""
    principal.require_operator()
    now = now or utcnow()
    fields = patch.model_dump(exclude_unset=True)
    account = get_account(session, account_id)
    timezone, was_enabled = account.timezone, account.user_sync_enabled
    for name, value in fields.items():
        if value is None:
            raise ValidationFailed([FieldError(name, _("must not be null"))])
        setattr(account, name, value)
    if account.timezone != timezone:
        reschedule_for_timezone(session, account, now)
    if account.user_sync_enabled and not was_enabled:
        # Switching synchronization on makes every employee of the account due at once (one due
        # later, at a scheduled termination, is brought forward: it may have been edited).
        session.execute(
            update(Employee)
            .where(
                Employee.account_id == account_id,
                or_(Employee.lms_due_at.is_(None), Employee.lms_due_at > now),
            )
            .values(lms_due_at=now)
            .execution_options(synchronize_session=False)
        )
        note_due(session, account_id)
    session.flush()
    return account


def _email_key(email: str) -> tuple[str, str]:
    try:
        return normalize_email(email)
    except NormalizationError as exc:
        raise ValidationFailed([FieldError("email", exc.message)]) from exc


def create_user(
    session: Session,
    *,
    email: str,
    password: str | None,
    is_operator: bool = False,
) -> User:
    stored, key = _email_key(email)
    if session.scalar(select(User).where(User.email_key == key)) is not None:
        raise Conflict(_("a user with email {email} already exists", email=stored))
    if password is not None and (problem := password_problem(password, email=stored)):
        raise ValidationFailed([FieldError("password", problem)])
    user = User(
        email=stored,
        email_key=key,
        password_hash=hash_password(password) if password is not None else None,
        is_operator=is_operator,
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, email: str) -> User:
    _stored, key = _email_key(email)
    user = session.scalar(select(User).where(User.email_key == key))
    if user is None:
        raise NotFound(_("no user with email {email}", email=email))
    return user


def set_membership(session: Session, user: User, account: Account, role: Role) -> Membership:
    membership = session.get(Membership, (user.id, account.id))
    if membership is None:
        membership = Membership(user_id=user.id, account_id=account.id, role=role)
        session.add(membership)
    else:
        membership.role = role
    session.flush()
    return membership


class TokenExpired(DomainError):
    """A known, unrevoked API token past its expiry."""


@dataclass(frozen=True)
class TokenLifetime:
    """How long a new API token lasts when none is asked for, and the longest one may ask for
    (the defaults are those of ``Settings.token_default_days`` and ``token_max_days``)."""

    default_days: int = 90
    max_days: int = 365


@dataclass(frozen=True)
class IssuedToken:
    token: str
    record: ApiToken


def create_token(
    session: Session,
    user: User,
    *,
    account_id: str | None = None,
    name: str = "",
    days: int | None = None,
    lifetime: TokenLifetime | None = None,
) -> IssuedToken:
    """Issue a token for ``user`` acting in ``account_id`` (their only account when omitted),
    valid for ``days`` (the lifetime's default when omitted, never more than its maximum)."""
    lifetime = lifetime or TokenLifetime()
    days = lifetime.default_days if days is None else days
    if days < 1:
        raise ValidationFailed([FieldError("days", _("a token lasts at least 1 day"))])
    if days > lifetime.max_days:
        raise ValidationFailed(
            [
                FieldError(
                    "days",
                    _(
                        "a token lasts at most {days} days; ask for {days} or fewer",
                        days=lifetime.max_days,
                    ),
                )
            ]
        )
    name = name.strip()
    if len(name) > 100:
        raise ValidationFailed([FieldError("name", _("at most {count} characters", count=100))])
    memberships = list(session.scalars(select(Membership).where(Membership.user_id == user.id)))
    if account_id is None and len(memberships) == 1:
        account_id = memberships[0].account_id
    if account_id is None and not user.is_operator:
        raise ValidationFailed(
            [FieldError("account", _("this user belongs to several accounts or none; name one"))]
        )
    if account_id is not None and account_id not in {m.account_id for m in memberships}:
        raise ValidationFailed(
            [FieldError("account", _("the user is not a member of this account"))]
        )
    token, digest = new_api_token()
    now = utcnow()
    record = ApiToken(
        user_id=user.id,
        account_id=account_id,
        name=name,
        token_hash=digest,
        prefix=token[:10],
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(record)
    session.flush()
    return IssuedToken(token=token, record=record)


def revoke_token(session: Session, token: str) -> None:
    """Revoke a token given as issued; it stops working at once."""
    record = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_api_token(token)))
    if record is None:
        raise NotFound(_("no such token"))
    record.revoked_at = record.revoked_at or utcnow()


TokenStatus = Literal["active", "expired", "revoked"]


@dataclass(frozen=True)
class TokenView:
    """A token as listed: never the token itself, only its first characters."""

    id: str
    name: str
    prefix: str
    owner_email: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def status(self) -> TokenStatus:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is None or self.expires_at <= utcnow():
            return "expired"
        return "active"


def list_tokens(
    session: Session, principal: Principal, *, limit: int, offset: int
) -> tuple[list[TokenView], int]:
    """The tokens acting in the principal's account, newest first: an HR manager (MHR) sees
    everyone's; anyone else only their own."""
    query = select(ApiToken, User.email).join(User, User.id == ApiToken.user_id)
    if principal.account_id is None:
        query = query.where(ApiToken.account_id.is_(None))
    else:
        query = query.where(ApiToken.account_id == principal.account_id)
    if principal.role != "MHR" or principal.account_id is None:
        query = query.where(ApiToken.user_id == principal.user_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(
        query.order_by(ApiToken.created_at.desc(), ApiToken.id).limit(limit).offset(offset)
    )
    views = [
        TokenView(
            id=token.id,
            name=token.name,
            prefix=token.prefix,
            owner_email=email,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )
        for token, email in rows
    ]
    return views, total


def get_token(session: Session, principal: Principal, token_id: str) -> TokenView:
    """One token the principal may see (another account's, or for a viewer another login's,
    is not found)."""
    record = session.get(ApiToken, token_id)
    if record is None or record.account_id is None or record.account_id != principal.account_id:
        raise NotFound(_("token not found"))
    if principal.role != "MHR" and record.user_id != principal.user_id:
        raise NotFound(_("token not found"))
    owner = session.get_one(User, record.user_id)
    return TokenView(
        id=record.id,
        name=record.name,
        prefix=record.prefix,
        owner_email=owner.email,
        created_at=record.created_at,
        last_used_at=record.last_used_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
    )


def revoke_token_by_id(session: Session, principal: Principal, token_id: str) -> None:
    """An HR manager revokes any token of their account; it stops working at once."""
    account_id = principal.writable_account()
    record = session.get(ApiToken, token_id)
    if record is None or record.account_id != account_id:
        raise NotFound(_("token not found"))
    record.revoked_at = record.revoked_at or utcnow()


def principal_of(session: Session, user_id: str, account_id: str | None) -> Principal | None:
    """The principal of a login acting in ``account_id``; None when the login or its
    membership there is gone."""
    user = session.get(User, user_id)
    if user is None:
        return None
    role = None
    language = user.ui_language
    if account_id is not None:
        membership = session.get(Membership, (user.id, account_id))
        if membership is None:
            return None
        role = membership.role
        if language is None:
            account = session.get(Account, account_id)
            language = account.ui_language if account is not None else None
    return Principal(
        user_id=user.id,
        email=user.email,
        is_operator=user.is_operator,
        account_id=account_id,
        role=role,
        ui_language=language,
    )


def principal_for_token(session: Session, token: str) -> Principal | None:
    """The principal a bearer token stands for, or None when unknown or revoked; raises
    TokenExpired past its expiry (a token without one, which migration 0004 leaves none of,
    counts as expired)."""
    record = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_api_token(token)))
    if record is None or record.revoked_at is not None:
        return None
    now = utcnow()
    if record.expires_at is None or record.expires_at <= now:
        raise TokenExpired(_("the token has expired"))
    principal = principal_of(session, record.user_id, record.account_id)
    if principal is not None and (
        record.last_used_at is None or (now - record.last_used_at).total_seconds() > 60
    ):
        record.last_used_at = now
    return principal
