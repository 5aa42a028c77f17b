"""The database tables (SQLAlchemy 2 declarative); the schema is created only by migrations."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lmsync.domain.employment import is_active, status_as_of


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone, so naive UTC is stored)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class, typed (``__table__`` is a ``FromClause`` to mypy)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def new_id() -> str:
    return str(uuid.uuid4())


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    company_name: Mapped[str] = mapped_column(String(200))
    default_language: Mapped[str] = mapped_column(String(35), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    user_sync_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # lmsync's own language for this account's pages and emails ("en" | "fr_CA"); null: each
    # browser's. Not the employees' default_language, which is written to the LMS.
    ui_language: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    ui_language: Mapped[str | None] = mapped_column(String(16), default=None)  # null: account's
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    account_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # NULL only for tokens made before expiries existed (migration 0004 gives them one).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Employee(Base):
    __tablename__ = "employees"
    __table_args__ = (
        UniqueConstraint("account_id", "employee_number", name="uq_employees_account_number"),
        Index("ix_employees_account_email", "account_id", "work_email_key"),
        Index("ix_employees_account_name", "account_id", "last_name", "first_name"),
        Index("ix_employees_lms_due", "account_id", "lms_due_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    employee_number: Mapped[str] = mapped_column(String(50))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(35))
    work_email: Mapped[str | None] = mapped_column(String(254))
    work_email_key: Mapped[str | None] = mapped_column(String(254))
    company_name: Mapped[str | None] = mapped_column(String(200))
    job_title: Mapped[str | None] = mapped_column(String(200))
    home_phone: Mapped[str | None] = mapped_column(String(50))
    home_phone_e164: Mapped[str | None] = mapped_column(String(20))
    cell_phone: Mapped[str | None] = mapped_column(String(50))
    cell_phone_e164: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(300))
    city: Mapped[str | None] = mapped_column(String(100))
    province: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(2))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    hire_date: Mapped[date] = mapped_column(Date)
    # The last day worked, when a termination is recorded (scheduled or in effect).
    termination_date: Mapped[date | None] = mapped_column(Date)
    termination_reason: Mapped[str | None] = mapped_column(String(500))
    termination_immediate: Mapped[bool] = mapped_column(Boolean, default=False)
    # When access ends (the end of the last day worked in the account's time zone, or the time a
    # termination "effective immediately" was recorded). The status is decided as of now from it
    # (domain.employment): NULL active, later than now leaving, earlier terminated.
    access_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lms_excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set (to the time of the change) in the same transaction as every change that matters to
    # the LMS; the sync engine clears it once it has acted, or moves it to ``access_ends_at``
    # while that is ahead, so that the worker wakes when the termination takes effect.
    # NULL = nothing due.
    lms_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    # For display (pages, API): as of the wall clock. The sync decides with its own clock.
    @property
    def status(self) -> str:
        """``active`` (employed, possibly leaving later) or ``terminated``."""
        return "active" if is_active(self.access_ends_at, utcnow()) else "terminated"

    @property
    def leaving_on(self) -> date | None:
        """The last day worked of a termination that has not taken effect yet."""
        leaving = status_as_of(self.access_ends_at, utcnow()) == "leaving"
        return self.termination_date if leaving else None


class EmployeeEvent(Base):
    """The employee's history: who hired, changed, excluded, terminated or rehired, and when."""

    __tablename__ = "employee_events"
    __table_args__ = (Index("ix_employee_events_employee", "employee_id", "at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    employee_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("employees.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_user_id: Mapped[str | None] = mapped_column(String(36))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IdempotencyRecord(Base):
    """The first response to a POST sent with an ``Idempotency-Key``, replayed on a retry."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint("user_id", "account_id", "key", name="uq_idempotency_user_account_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    # The account the request acted in ("" for a platform operator's account-less requests):
    # one login's keys never replay across two of its accounts.
    account_id: Mapped[str] = mapped_column(String(36), default="", server_default="")
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LmsInterface(Base):
    """An account's LMS interface: the connector's configuration and the three switches."""

    __tablename__ = "lms_interfaces"

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    connector: Mapped[str] = mapped_column(String(32), default="scim")
    base_url: Mapped[str] = mapped_column(String(500), default="")
    auth_type: Mapped[str] = mapped_column(String(16), default="bearer")
    auth_header: Mapped[str] = mapped_column(String(100), default="X-API-Key")
    username: Mapped[str | None] = mapped_column(String(200))
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    portal_id: Mapped[str | None] = mapped_column(String(200))
    hourly_transfer: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_users: Mapped[bool] = mapped_column(Boolean, default=True)
    deactivate_terminated: Mapped[bool] = mapped_column(Boolean, default=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    guard_percent: Mapped[int] = mapped_column(Integer, default=10)
    guard_minimum: Mapped[int] = mapped_column(Integer, default=20)
    # The guard counts deactivations over this sliding window, across runs.
    guard_window_minutes: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    minute_of_hour: Mapped[int] = mapped_column(Integer, default=0)
    # The last hourly pass (incremental or a full sweep), and the last full sweep (every LMS
    # user read: deletions and servers that cannot filter on meta.lastModified).
    last_full_pass_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_sweep_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The hour, in the account's time zone, of the daily full sweep.
    sweep_hour: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    # An incremental pass reads the LMS users changed after this time (the LMS's own clock).
    lms_changes_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Whether the LMS filters on meta.lastModified; None: not probed yet.
    modified_filter: Mapped[bool | None] = mapped_column(Boolean)
    lock_owner: Mapped[str | None] = mapped_column(String(64))
    lock_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Fencing number: incremented at each acquisition of the lock; a run writes and records
    # only while the lock still carries its number.
    lock_fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class LmsLink(Base):
    """Employee ↔ LMS user, recorded once; the values lmsync last wrote, for diffs."""

    __tablename__ = "lms_links"
    __table_args__ = (
        UniqueConstraint("account_id", "lms_user_id", name="uq_lms_links_account_user"),
    )

    employee_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    lms_user_id: Mapped[str] = mapped_column(String(200))
    made_by: Mapped[str] = mapped_column(String(16))  # "created" | "matched"
    lms_active: Mapped[bool] = mapped_column(Boolean, default=True)
    written: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LmsState(Base):
    """The employee's last LMS outcome, shown on the employee file, and when to try again."""

    __tablename__ = "lms_states"

    employee_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    action: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | skipped | conflict | error | held
    reason: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A permanent rejection is retried only after the employee record changes past this time.
    rejected_record_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    run_id: Mapped[str | None] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_account_started", "account_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    trigger: Mapped[str] = mapped_column(String(16))  # hourly|manual|change|activation|approval
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="running")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    approved_run_id: Mapped[str | None] = mapped_column(String(36))
    decided_by: Mapped[str | None] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Who works on the run (a process's id), since when it last said so, the lock's fencing
    # number it holds, and what it was asked (employee ids, approved...) so another process
    # can take a queued run over.
    owner: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fence: Mapped[int | None] = mapped_column(Integer)
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SyncOutcome(Base):
    __tablename__ = "sync_outcomes"
    __table_args__ = (
        Index("ix_sync_outcomes_run", "run_id", "action"),
        Index("ix_sync_outcomes_employee", "employee_id", "at"),
        Index("ix_sync_outcomes_account_action", "account_id", "action", "at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("sync_runs.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(String(36))
    employee_id: Mapped[str] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))  # done | planned | failed | none | held
    reason: Mapped[str] = mapped_column(Text, default="")
    lms_user_id: Mapped[str | None] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EmployeeImport(Base):
    """A CSV import running in the background: the file, its progress and its report."""

    __tablename__ = "employee_imports"
    __table_args__ = (Index("ix_employee_imports_account", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    actor_user_id: Mapped[str | None] = mapped_column(String(36))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    # queued | running | succeeded | failed | interrupted
    status: Mapped[str] = mapped_column(String(16), default="queued")
    content: Mapped[bytes | None] = mapped_column(LargeBinary)  # dropped once finished
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    done_rows: Mapped[int] = mapped_column(Integer, default=0)
    imported_count: Mapped[int] = mapped_column(Integer, default=0)
    rejected_count: Mapped[int] = mapped_column(Integer, default=0)
    # {"imported": [...], "rejected": [...]}, filled chunk by chunk
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A browser login: the cookie holds a random token, only its hash is kept."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    account_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoginFailure(Base):
    """Failed logins, for throttling (by email and by client address)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_email", "email_key", "at"),
        Index("ix_login_failures_ip", "ip", "at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email_key: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Notification(Base):
    """One email about one event (a held run, an LMS outage, a day's digest) to an account's HR
    managers. The unique key makes "one email per event" hold across servers: whoever inserts
    the row sends it."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("account_id", "kind", "key", name="uq_notifications_event"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))  # held | lms_down | digest
    key: Mapped[str] = mapped_column(String(100))  # the event: a run id, an outage, a day
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)


class UnlinkedLmsUser(Base):
    """An LMS user linked to no employee, as the last full pass read it (replaced at each one)."""

    __tablename__ = "unlinked_lms_users"
    __table_args__ = (Index("ix_unlinked_lms_users_account", "account_id", "email"),)

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    lms_user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
