"""``lmsync demo``: a ready-to-try account with employees and logins, served on loopback."""

from __future__ import annotations

import secrets
from datetime import date

import typer
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session

from lmsync.domain.accounts import AccountCreateIn
from lmsync.hr import accounts, employees
from lmsync.log_config import configure
from lmsync.security import hash_password
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Account, Employee, User

DEMO_ACCOUNT = "lmsync demo"
MANAGER = "hr.manager@demo.example"

_PEOPLE: list[dict[str, object]] = [
    {"first_name": "Zoë", "last_name": "Lévesque-Ngô", "language": "fr-CA", "province": "Québec"},
    {"first_name": "Jean", "last_name": "Tremblay", "language": "fr", "province": "QC"},
    {"first_name": "Amélie", "last_name": "Gagnon", "language": "fr-CA", "province": "QC"},
    {"first_name": "Liam", "last_name": "Smith", "language": "en", "province": "Ontario"},
    {"first_name": "Olivia", "last_name": "Brown", "language": "en", "province": "ON"},
    {"first_name": "Noah", "last_name": "Wilson", "language": "en-CA", "province": "BC"},
    {"first_name": "Chloé", "last_name": "Roy", "language": "fr", "province": "QC"},
    {"first_name": "Mohamed", "last_name": "Haddad", "language": "fr", "province": "QC"},
    {"first_name": "Sofia", "last_name": "Rossi", "language": "en", "province": "Alberta"},
    {"first_name": "Hiroshi", "last_name": "Tanaka", "language": "en", "province": "ON"},
    {"first_name": "Fatou", "last_name": "Diop", "language": "fr", "province": "QC"},
    {"first_name": "Lucas", "last_name": "Martin", "language": "fr-CA", "province": "QC"},
]


def _seed(session: Session) -> Account:
    account = session.scalar(select(Account).where(Account.name == DEMO_ACCOUNT))
    if account is None:
        account = accounts.create_account(
            session,
            AccountCreateIn(
                name=DEMO_ACCOUNT,
                company_name="Démo Cangaroo inc.",
                default_language="fr-CA",
                timezone="America/Toronto",
            ),
        )
    if session.scalar(select(Employee.id).where(Employee.account_id == account.id)) is None:
        for n, person in enumerate(_PEOPLE, start=1):
            first = str(person["first_name"]).lower().replace("ë", "e").replace("é", "e")
            employees.hire(
                session,
                None,
                account.id,
                {
                    **person,
                    "employee_number": f"E-{n:04d}",
                    # one employee without a work email, one excluded: both kept out of the LMS
                    "work_email": None if n == 4 else f"{first}.{n}@demo.example",
                    "lms_excluded": n == 5,
                    "country": "Canada",
                    "cell_phone": f"514 555-01{n:02d}",
                    "job_title": "Analyst",
                    "hire_date": date(2024, 1, n),
                },
            )
    return account


def run_demo(settings: Settings, *, port: int = 8000) -> None:
    configure(settings.log_level, json=settings.log_json)
    engine = make_engine(settings.resolved_database_url())
    migrate.upgrade(engine)
    password = secrets.token_urlsafe(12)
    with transaction(make_session_factory(engine)) as session:
        account = _seed(session)
        user = session.scalar(select(User).where(User.email_key == MANAGER))
        if user is None:
            user = accounts.create_user(session, email=MANAGER, password=password)
        user.password_hash = hash_password(password)
        accounts.set_membership(session, user, account, "MHR")
        token = accounts.create_token(session, user, account_id=account.id, name="demo").token
        count = len(
            list(session.scalars(select(Employee.id).where(Employee.account_id == account.id)))
        )
    engine.dispose()
    base = f"http://127.0.0.1:{port}"
    typer.echo(
        f"\nlmsync demo — account '{DEMO_ACCOUNT}' with {count} employees\n"
        f"  API docs : {base}/docs\n"
        f"  login    : {MANAGER} / {password}\n"
        f"  token    : {token}\n"
        f"  try      : curl -H 'Authorization: Bearer {token}' {base}/api/v1/employees\n"
        "Ctrl-C stops the server.\n"
    )
    from lmsync.web.app import create_app

    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
