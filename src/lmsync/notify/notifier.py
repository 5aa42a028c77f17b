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

Each HR manager reads an event in their language: their own choice (``users.ui_language``),
else the account's (``accounts.ui_language``), else English; the managers who read one language
get one email together. Dates and times are in the account's time zone; stored reasons and run
messages are said again in that language where the catalogue knows them
(``sync.reasons.stored``).
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

from lmsync import i18n
from lmsync.i18n import N_, Msg
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
from lmsync.sync import overview, reasons

log = structlog.get_logger("lmsync.notify")

MAX_ATTEMPTS = 5
RETRY_AFTER = timedelta(minutes=2)
DIGEST_LINES = 30

# The emails' sentences (said in the account's language: ``i18n.text(Msg(TEMPLATE, ...))``).
HELD_SUBJECT = N_("[lmsync] {count} LMS deactivations wait for your approval ({account})")
HELD_BODY = N_(
    "The deactivation guard held a run started {started} ({timezone}): {count} LMS users would "
    "be deactivated at once, more than the guard lets through without an HR manager."
)
HELD_ACTION = N_("Review the deactivations, then approve or reject the run:")
DOWN_SUBJECT = N_("[lmsync] The LMS has been failing since {since} ({account})")
DOWN_BODY = N_(
    "lmsync cannot keep the LMS in step with HR: every run since {since} ({timezone}) failed. "
    "Terminated employees may still have access to the LMS."
)
DOWN_ERROR = N_("Last error: {error}")
DOWN_UNKNOWN = N_("unknown")
DOWN_ACTION = N_("Check the LMS interface and test the connection:")
DIGEST_SUBJECT = N_(
    "[lmsync] {conflicts} new conflicts and {errors} errors in the LMS sync ({account})"
)
DIGEST_BODY = N_("In the last 24 hours, these employees could not be synchronized with the LMS:")
DIGEST_LINE = N_("{name} ({number}): {outcome}, {reason}")
DIGEST_MORE = N_("and {count} more")
DIGEST_CONFLICTS = N_("Conflicts: {url}")
DIGEST_ERRORS = N_("Errors: {url}")
OUTSIDE_LINK = N_("{path} (in lmsync)")
_OUTCOMES = {"conflict": N_("conflict"), "error": N_("error")}


def _say(template: str, **params: object) -> str:
    """``template`` filled in, in the current language."""
    return i18n.text(Msg(template, **params))


@dataclass(frozen=True)
class Notice:
    account_id: str
    kind: str
    key: str
    subject: str
    body: str
    language: i18n.Language = i18n.DEFAULT  # what the subject and the body are written in


@dataclass(frozen=True)
class Letter:
    """One event said in one language, to the HR managers who read it."""

    notice: Notice
    recipients: list[str]


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
        events: list[list[Letter]] = []
        with self.sessions() as session:
            for account_id in session.scalars(select(LmsInterface.account_id)).all():
                events.extend(self._letters(session, account_id, now))
        return sum(self._send(letters, now) for letters in events)

    def _letters(self, session: Session, account_id: str, now: datetime) -> list[list[Letter]]:
        """The account's events due now, each as one letter per language its HR managers read."""
        by_language = self._recipients(session, account_id)
        events: dict[tuple[str, str], list[Letter]] = {}
        for language, emails in by_language.items():
            for notice in self.notices(session, account_id, now, language):
                events.setdefault((notice.kind, notice.key), []).append(Letter(notice, emails))
        return list(events.values())

    def link(self, path: str) -> str:
        """The page at ``path``, for an email (in the current language without a public URL)."""
        return f"{self.public_url}{path}" if self.public_url else _say(OUTSIDE_LINK, path=path)

    def notices(
        self,
        session: Session,
        account_id: str,
        now: datetime,
        language: i18n.Language | None = None,
    ) -> list[Notice]:
        """The account's emails due now, written in ``language`` (default: the account's)."""
        account = session.get_one(Account, account_id)
        language = language or i18n.supported(account.ui_language) or i18n.DEFAULT
        with i18n.using(language):
            return self._notices(session, account, now, language)

    def _notices(
        self, session: Session, account: Account, now: datetime, language: i18n.Language
    ) -> list[Notice]:
        account_id, name, zone = account.id, account.name, account.timezone
        out: list[Notice] = []
        for run in overview.held_runs(session, account_id):
            held = run.counts.get("held", 0)
            started = i18n.format_datetime(run.started_at, zone)
            paragraphs = [
                _say(HELD_BODY, started=started, timezone=zone, count=held),
                i18n.text(reasons.stored(run.message)),
                _say(HELD_ACTION) + "\n" + self.link(f"/sync/{run.id}"),
            ]
            out.append(
                Notice(
                    account_id,
                    "held",
                    run.id,
                    _say(HELD_SUBJECT, count=held, account=name),
                    "\n\n".join(p for p in paragraphs if p) + "\n",
                    language,
                )
            )
        interface = session.get(LmsInterface, account_id)
        if interface is not None and interface.active:
            health = overview.health(session, account_id, now, self.down_after)
            if health.down and health.failing_since is not None:
                since = i18n.format_datetime(health.failing_since, zone)
                error = i18n.text(reasons.stored(health.last_error)) or _say(DOWN_UNKNOWN)
                paragraphs = [
                    _say(DOWN_BODY, since=since, timezone=zone),
                    _say(DOWN_ERROR, error=error),
                    _say(DOWN_ACTION) + "\n" + self.link("/settings/interfaces/lms"),
                ]
                out.append(
                    Notice(
                        account_id,
                        "lms_down",
                        health.failing_since.isoformat(),
                        _say(DOWN_SUBJECT, since=since, account=name),
                        "\n\n".join(paragraphs) + "\n",
                        language,
                    )
                )
        if now.hour >= self.digest_hour:
            digest = self._digest(session, account_id, name, now, language)
            if digest is not None:
                out.append(digest)
        return out

    def _digest(
        self,
        session: Session,
        account_id: str,
        name: str,
        now: datetime,
        language: i18n.Language = i18n.DEFAULT,
    ) -> Notice | None:
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
            "- "
            + _say(
                DIGEST_LINE,
                name=f"{r.first_name} {r.last_name}",
                number=r.employee_number,
                outcome=i18n.gettext(_OUTCOMES.get(r.outcome, r.outcome)),
                reason=i18n.text(reasons.stored(r.reason)),
            )
            for r in rows[:DIGEST_LINES]
        ]
        if len(rows) > DIGEST_LINES:
            lines.append("- " + _say(DIGEST_MORE, count=len(rows) - DIGEST_LINES))
        links = [
            _say(DIGEST_CONFLICTS, url=self.link("/employees?lms=conflict")),
            _say(DIGEST_ERRORS, url=self.link("/employees?lms=error")),
        ]
        return Notice(
            account_id,
            "digest",
            now.date().isoformat(),
            _say(DIGEST_SUBJECT, conflicts=conflicts, errors=errors, account=name),
            _say(DIGEST_BODY) + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(links) + "\n",
            language,
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

    @staticmethod
    def _recipients(session: Session, account_id: str) -> dict[i18n.Language, list[str]]:
        """The account's HR managers' emails, by the language each reads."""
        account = session.get_one(Account, account_id)
        fallback = i18n.supported(account.ui_language) or i18n.DEFAULT
        out: dict[i18n.Language, list[str]] = {}
        for email, own in session.execute(
            select(User.email, User.ui_language)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.account_id == account_id, Membership.role == "MHR")
            .order_by(User.email)
        ):
            out.setdefault(i18n.supported(own) or fallback, []).append(email)
        return out

    def _send(self, letters: list[Letter], now: datetime) -> int:
        """Send one event's letters (one per language) once; how many went out. A failure is
        kept on the event's row and the event tried again later (all its letters)."""
        if not letters:
            return 0
        first = letters[0].notice
        row_id = self._claim(first, now)
        if row_id is None:
            return 0
        errors: list[str] = []
        sent = 0
        for letter in letters:
            notice = letter.notice
            try:
                self.mailer.send(
                    letter.recipients, notice.subject, notice.body, language=notice.language
                )
                sent += 1
            except Exception as exc:  # any SMTP or network failure: kept, tried again later
                errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")
                log.warning("notification not sent", kind=notice.kind, error=errors[-1])
        error = "; ".join(errors)[:600] or None
        with self.sessions() as session, session.begin():
            values: dict[str, object] = (
                {"sent_at": self.clock(), "error": None} if error is None else {"error": error}
            )
            session.execute(update(Notification).where(Notification.id == row_id).values(values))
        if error is None:
            recipients = sum(len(letter.recipients) for letter in letters)
            log.info("notification sent", kind=first.kind, recipients=recipients, emails=sent)
        return sent


def pending_count(session: Session) -> int:
    """Notifications not sent yet (for tests and the operator)."""
    return int(
        session.scalar(
            select(func.count()).select_from(Notification).where(Notification.sent_at.is_(None))
        )
        or 0
    )
