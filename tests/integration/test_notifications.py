"""Email notifications to HR managers, through a real SMTP server (aiosmtpd) started by the test:
one email per event and language, to the account's HR managers only, each in their language,
sent again after a failure, never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from lmsync import i18n
from lmsync.hr import accounts
from lmsync.i18n import Msg
from lmsync.notify import notifier as notifier_module
from lmsync.notify.mail import Mailer
from lmsync.notify.notifier import Notifier
from lmsync.storage.database import make_session_factory
from lmsync.storage.tables import (
    Account,
    Employee,
    LmsInterface,
    LmsState,
    Notification,
    SyncRun,
)
from tests.conftest import World
from tests.smtp_peer import SmtpServer, smtp  # noqa: F401

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SECRET = "s3cr3t-token-never-mailed"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def notifier(engine: Engine, smtp: SmtpServer, clock: Clock) -> Notifier:  # noqa: F811
    return Notifier(
        make_session_factory(engine),
        Mailer("127.0.0.1", smtp.port, "none", sender="lmsync <lmsync@example.com>"),
        clock=clock,
        down_after=timedelta(minutes=15),
        digest_hour=7,
        public_url="https://lmsync.example.com",
    )


def interface(engine: Engine, world: World) -> None:
    with Session(engine) as s, s.begin():
        s.add(
            LmsInterface(
                account_id=world.account_a,
                connector="scim",
                base_url="https://lms.example.com/scim/v2",
                auth_type="bearer",
                auth_header="X-API-Key",
                active=True,
                activated_at=NOON - timedelta(days=3),
                hourly_transfer=False,
                minute_of_hour=0,
                options={},
            )
        )


def run(
    engine: Engine, world: World, run_id: str, status: str, at: datetime, **extra: object
) -> None:
    with Session(engine) as s, s.begin():
        s.add(
            SyncRun(
                id=run_id,
                account_id=world.account_a,
                trigger="change",
                status=status,
                started_at=at,
                finished_at=at + timedelta(seconds=2),
                **extra,
            )
        )


def test_a_held_run_is_mailed_once_to_the_hr_managers(
    engine: Engine,
    world: World,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    interface(engine, world)
    run(engine, world, "run-held", "held", NOON - timedelta(minutes=3), counts={"held": 42})
    clock = Clock(NOON)
    notes = notifier(engine, smtp, clock)
    assert notes.tick() == 1
    [mail] = smtp.inbox.wait_for(1)
    assert mail["To"] == "mhr_a@example.com"  # the account's HR manager, not its viewer
    assert mail["Subject"] == "[lmsync] 42 LMS deactivations wait for your approval (A)"
    assert mail["Content-Language"] == "en"  # the account chose no language: English
    body = mail.get_content()
    assert "https://lmsync.example.com/sync/run-held" in body
    assert "held a run started Dec 2, 2026, 11:57\u202fAM (UTC)" in body  # the account's zone
    assert notes.tick() == 0  # one email per event
    clock.now += timedelta(hours=1)
    assert notes.tick() == 0
    # Approved: nothing more about it.
    with Session(engine) as s, s.begin():
        s.execute(update(SyncRun).where(SyncRun.id == "run-held").values(status="approved"))
    assert notes.tick() == 0
    assert len(smtp.inbox.received()) == 1


def test_an_lms_outage_is_mailed_after_the_threshold_and_each_new_outage_again(
    engine: Engine,
    world: World,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    interface(engine, world)
    run(engine, world, "ok-1", "succeeded", NOON - timedelta(hours=2))
    message = "GET /Users: the LMS refused the credentials (HTTP status 401)"
    run(engine, world, "bad-1", "failed", NOON - timedelta(minutes=10), message=message)
    clock = Clock(NOON)
    notes = notifier(engine, smtp, clock)
    assert notes.tick() == 0  # failing for 10 minutes: under the 15-minute threshold
    clock.now = NOON + timedelta(minutes=6)
    assert notes.tick() == 1
    [mail] = smtp.inbox.wait_for(1)
    assert (
        mail["Subject"] == "[lmsync] The LMS has been failing since Dec 2, 2026, 11:50\u202fAM (A)"
    )
    body = mail.get_content()
    assert message in body
    assert "https://lmsync.example.com/settings/interfaces/lms" in body
    assert notes.tick() == 0
    # Back, then down again: a new outage, a new email.
    run(engine, world, "ok-2", "succeeded", NOON + timedelta(minutes=20))
    run(engine, world, "bad-2", "failed", NOON + timedelta(minutes=30), message="cannot connect")
    clock.now = NOON + timedelta(minutes=50)
    assert notes.tick() == 1
    assert "cannot connect" in smtp.inbox.wait_for(2)[1].get_content()


def test_the_daily_digest_lists_new_conflicts_and_errors(
    engine: Engine,
    world: World,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    interface(engine, world)
    with Session(engine) as s, s.begin():
        for n, outcome in enumerate(("conflict", "error", "ok")):
            employee = Employee(
                account_id=world.account_a,
                employee_number=f"D-{n}",
                first_name="Zoë",
                last_name=f"Ngô {n}",
                work_email=f"d{n}@example.com",
                work_email_key=f"d{n}@example.com",
                hire_date=NOON.date(),
            )
            s.add(employee)
            s.flush()
            s.add(
                LmsState(
                    employee_id=employee.id,
                    account_id=world.account_a,
                    action="create",
                    outcome=outcome,
                    reason=f"reason {n}",
                    at=NOON - timedelta(hours=5),
                )
            )
    clock = Clock(NOON.replace(hour=6))
    notes = notifier(engine, smtp, clock)
    assert notes.tick() == 0  # before the digest hour
    clock.now = NOON.replace(hour=7, minute=1)
    assert notes.tick() == 1
    [mail] = smtp.inbox.wait_for(1)
    assert mail["Subject"] == "[lmsync] 1 new conflicts and 1 errors in the LMS sync (A)"
    body = mail.get_content()
    assert "Zoë Ngô 0 (D-0): conflict, reason 0" in body
    assert "Zoë Ngô 1 (D-1): error, reason 1" in body
    assert "Ngô 2" not in body
    clock.now = NOON.replace(hour=18)
    assert notes.tick() == 0  # one digest a day


def test_a_failed_send_is_tried_again_and_keeps_no_secret(
    engine: Engine,
    world: World,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    interface(engine, world)
    run(engine, world, "run-held", "held", NOON, counts={"held": 30}, message="held by the guard")
    smtp.stop()
    clock = Clock(NOON)
    notes = Notifier(
        make_session_factory(engine),
        Mailer("127.0.0.1", smtp.port, "none", username=None, password=SECRET),
        clock=clock,
        down_after=timedelta(minutes=15),
    )
    assert notes.tick() == 0
    with Session(engine) as s:
        [row] = s.scalars(select(Notification)).all()
        assert (row.sent_at, row.attempts) == (None, 1)
        assert row.error
        assert SECRET not in row.error
    smtp.start()
    assert notes.tick() == 0  # claimed a moment ago: not before the retry delay
    clock.now += timedelta(minutes=3)
    assert notes.tick() == 1
    [mail] = smtp.inbox.wait_for(1)
    assert SECRET not in mail.as_string()
    assert "/sync/run-held (in lmsync)" in mail.get_content()  # no public URL configured
    with Session(engine) as s:
        [row] = s.scalars(select(Notification)).all()
        assert row.sent_at is not None
        assert row.attempts == 2


def test_an_account_in_french_gets_its_alert_email_in_french_in_its_time_zone(
    engine: Engine,
    world: World,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    interface(engine, world)
    with Session(engine) as s, s.begin():
        s.execute(
            update(Account)
            .where(Account.id == world.account_a)
            .values(ui_language="fr_CA", timezone="America/Toronto")
        )
    run(engine, world, "run-held", "held", NOON - timedelta(minutes=3), counts={"held": 42})
    assert notifier(engine, smtp, Clock(NOON)).tick() == 1
    [mail] = smtp.inbox.wait_for(1)
    assert mail["Content-Language"] == "fr-CA"
    with i18n.using("fr_CA"):
        subject = i18n.text(Msg(notifier_module.HELD_SUBJECT, count=42, account="A"))
        action = i18n.text(Msg(notifier_module.HELD_ACTION))
        started = i18n.format_datetime(NOON - timedelta(minutes=3), "America/Toronto")
    assert mail["Subject"] == subject
    body = mail.get_content()
    assert action in body
    assert f"{started} (America/Toronto)" in body
    assert "2 déc. 2026" in started  # French dates (CLDR), whatever the catalogue holds
    assert "6 h 57" in started  # 11:57 UTC is 06:57 in Toronto
    # The catalogue translates the subject and the body: the email is really French.
    assert mail["Subject"] != "[lmsync] 42 LMS deactivations wait for your approval (A)"
    assert "approbation" in mail["Subject"]
    assert "Examinez les désactivations" in body


def test_each_hr_manager_reads_the_alert_in_their_own_language(
    engine: Engine,
    world: World,
    smtp: SmtpServer,  # noqa: F811
) -> None:
    """An English account with a French-speaking HR manager: one event, one email per language,
    each to the managers who read it; the event is still sent once."""
    interface(engine, world)
    with Session(engine) as s, s.begin():
        account = s.get_one(Account, world.account_a)
        for email, language in (("marie@example.com", "fr_CA"), ("zed@example.com", None)):
            user = accounts.create_user(s, email=email, password=None)
            user.ui_language = language
            accounts.set_membership(s, user, account, "MHR")
    run(engine, world, "run-held", "held", NOON - timedelta(minutes=3), counts={"held": 42})
    notes = notifier(engine, smtp, Clock(NOON))

    assert notes.tick() == 2  # two emails for one event
    mails = {m["Content-Language"]: m for m in smtp.inbox.wait_for(2)}
    assert set(mails) == {"en", "fr-CA"}
    assert mails["fr-CA"]["To"] == "marie@example.com"
    assert "approbation" in mails["fr-CA"]["Subject"]
    assert "Examinez les désactivations" in mails["fr-CA"].get_content()
    assert mails["en"]["To"] == "mhr_a@example.com, zed@example.com"  # the account's language
    assert mails["en"]["Subject"] == "[lmsync] 42 LMS deactivations wait for your approval (A)"
    assert notes.tick() == 0
    with Session(engine) as s:
        rows = s.scalars(select(Notification).where(Notification.kind == "held")).all()
    assert [(r.key, r.sent_at is not None) for r in rows] == [("run-held", True)]
