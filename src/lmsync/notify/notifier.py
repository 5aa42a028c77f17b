"""What to tell an account's HR managers by email, and telling it once.

Each event is one email to all the account's HR managers (never one per employee):

- ``held``: a run the deactivation guard held for approval (key: the run);
- ``lms_down``: the LMS failing longer than ``alert_lms_down_minutes`` (key: when the outage
  began, so a new outage is a new email);
- ``digest``: once a day from ``digest_hour_utc``, the conflicts and errors of the last 24 hours,
  when there are any (key: the day).

The ``notifications`` row is inserted before sending: whoever inserts it sends it, so several
servers never send one event twice. A failed send is tried again (up to ``MAX_ATTEMPTS``) by the
next look that claims the row. Emails hold what the pages show (run messages are made safe by
the connectors' ``RemoteText``), never a secret.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lmsync.notify.mail import Mailer
from lmsync.storage.tables import (
    Account,
    Employee,
    LmsInterface,
    LmsState,
    Membership,
    Notification,
    User,
)
from lmsync.sync import overview

log = structlog.get_logger("lmsync.notify")

MAX_ATTEMPTS = 5
RETRY_AFTER = timedelta(minutes=2)
DIGEST_LINES = 30


@dataclass(frozen=True)
class Notice:
    account_id: str
    kind: str
    key: str
    subject: str
    body: str


class Notifier:
    """Looks for events every ``poll_seconds`` (a thread of ``lmsync serve``) and emails them."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        mailer: Mailer,
        *,
        clock: Callable[[], datetime],
        down_after: timedelta,
        digest_hour: int = 7,
        public_url: str | None = None,
        poll_seconds: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.mailer = mailer
        self.clock = clock
        self.down_after = down_after
        self.digest_hour = digest_hour
        self.public_url = (public_url or "").rstrip("/")
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lmsync-notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.tick()
            except Exception:  # a bad look must not end the notifications
                log.exception("notification look failed")

    # -- one look ---------------------------------------------------------------------------------
    def tick(self) -> int:
        """Send what is due now; returns how many emails went out."""
        now = self.clock()
        with self.sessions() as session:
            accounts = session.scalars(select(LmsInterface.account_id)).all()
            notices = [n for account_id in accounts for n in self.notices(session, account_id, now)]
        sent = 0
        for notice in notices:
            if self._send(notice, now):
                sent += 1
        return sent

    def link(self, path: str) -> str:
        return f"{self.public_url}{path}" if self.public_url else f"{path} (in lmsync)"

    def notices(self, session: Session, account_id: str, now: datetime) -> list[Notice]:
        account = session.get_one(Account, account_id)
        name = account.name
        out: list[Notice] = []
        for run in overview.held_runs(session, account_id):
            held = run.counts.get("held", 0)
            out.append(
                Notice(
                    account_id,
                    "held",
                    run.id,
                    f"[lmsync] {held} LMS deactivations wait for your approval ({name})",
                    f"The deactivation guard held a run started {run.started_at:%Y-%m-%d %H:%M} "
                    f"UTC: {held} LMS users would be deactivated at once, more than the "
                    f"guard lets through without an HR manager.\n\n{run.message or ''}\n\n"
                    f"Review the deactivations, then approve or reject the run:\n"
                    f"{self.link(f'/sync/{run.id}')}\n",
                )
            )
        interface = session.get(LmsInterface, account_id)
        if interface is not None and interface.active:
            health = overview.health(session, account_id, now, self.down_after)
            if health.down and health.failing_since is not None:
                out.append(
                    Notice(
                        account_id,
                        "lms_down",
                        health.failing_since.isoformat(),
                        f"[lmsync] The LMS has been failing since "
                        f"{health.failing_since:%Y-%m-%d %H:%M} UTC ({name})",
                        "lmsync cannot keep the LMS in step with HR: every run since "
                        f"{health.failing_since:%Y-%m-%d %H:%M} UTC failed. Terminated "
                        "employees may still have access to the LMS.\n\n"
                        f"Last error: {health.last_error or 'unknown'}\n\n"
                        "Check the LMS interface and test the connection:\n"
                        f"{self.link('/settings/interfaces/lms')}\n",
                    )
                )
        if now.hour >= self.digest_hour:
            digest = self._digest(session, account_id, name, now)
            if digest is not None:
                out.append(digest)
        return out

    def _digest(self, session: Session, account_id: str, name: str, now: datetime) -> Notice | None:
        rows = session.execute(
            select(
                LmsState.outcome,
                LmsState.reason,
                Employee.first_name,
                Employee.last_name,
                Employee.employee_number,
            )
            .join(Employee, Employee.id == LmsState.employee_id)
            .where(
                LmsState.account_id == account_id,
                LmsState.outcome.in_(("conflict", "error")),
                LmsState.at >= now - timedelta(days=1),
            )
            .order_by(LmsState.outcome, Employee.last_name, Employee.first_name)
        ).all()
        if not rows:
            return None
        conflicts = sum(1 for r in rows if r.outcome == "conflict")
        errors = len(rows) - conflicts
        lines = [
            f"- {r.first_name} {r.last_name} ({r.employee_number}): {r.outcome}, {r.reason}"
            for r in rows[:DIGEST_LINES]
        ]
        if len(rows) > DIGEST_LINES:
            lines.append(f"- and {len(rows) - DIGEST_LINES} more")
        return Notice(
            account_id,
            "digest",
            now.date().isoformat(),
            f"[lmsync] {conflicts} new conflicts and {errors} errors in the LMS sync ({name})",
            "In the last 24 hours, these employees could not be synchronized with the LMS:\n\n"
            + "\n".join(lines)
            + "\n\nConflicts: "
            + self.link("/employees?lms=conflict")
            + "\nErrors: "
            + self.link("/employees?lms=error")
            + "\n",
        )

    # -- sending once -----------------------------------------------------------------------------
    def _claim(self, notice: Notice, now: datetime) -> str | None:
        """The notification row's id when this look is the one to send it; None otherwise."""
        with self.sessions() as session:
            try:
                with session.begin():
                    row = Notification(
                        account_id=notice.account_id,
                        kind=notice.kind,
                        key=notice.key,
                        created_at=now,
                        claimed_at=now,
                        attempts=1,
                    )
                    session.add(row)
                    session.flush()
                    return row.id
            except IntegrityError:
                pass
            with session.begin():
                # Known already: sent, being sent, or failed and worth another try.
                return session.execute(
                    update(Notification)
                    .where(
                        Notification.account_id == notice.account_id,
                        Notification.kind == notice.kind,
                        Notification.key == notice.key,
                        Notification.sent_at.is_(None),
                        Notification.attempts < MAX_ATTEMPTS,
                        or_(
                            Notification.claimed_at.is_(None),
                            Notification.claimed_at < now - RETRY_AFTER,
                        ),
                    )
                    .values(attempts=Notification.attempts + 1, claimed_at=now)
                    .returning(Notification.id)
                ).scalar_one_or_none()

    def _recipients(self, account_id: str) -> list[str]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(User.email)
                    .join(Membership, Membership.user_id == User.id)
                    .where(Membership.account_id == account_id, Membership.role == "MHR")
                    .order_by(User.email)
                )
            )

    def _send(self, notice: Notice, now: datetime) -> bool:
        recipients = self._recipients(notice.account_id)
        if not recipients:
            return False
        row_id = self._claim(notice, now)
        if row_id is None:
            return False
        error: str | None = None
        try:
            self.mailer.send(recipients, notice.subject, notice.body)
        except Exception as exc:  # any SMTP or network failure: kept, tried again later
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.warning("notification not sent", kind=notice.kind, error=error)
        with self.sessions() as session, session.begin():
            values: dict[str, object] = (
                {"sent_at": self.clock(), "error": None} if error is None else {"error": error}
            )
            session.execute(update(Notification).where(Notification.id == row_id).values(values))
        if error is None:
            log.info("notification sent", kind=notice.kind, recipients=len(recipients))
        return error is None


def pending_count(session: Session) -> int:
    """Notifications not sent yet (for tests and the operator)."""
    return int(
        session.scalar(
            select(func.count()).select_from(Notification).where(Notification.sent_at.is_(None))
        )
        or 0
    )
