"""The benchmark's data: N employees, the LMS users already there, and the lmsync database.

Employees are valid HR rows: two template employees are normalized by lmsync's own
``normalize_employee`` (phones, country, province, language), then each row gets its own number,
names and work email (``normalize_email``), and the rows are inserted in bulk, due for the LMS as
``hr.employees.hire`` leaves them. The LMS is seeded with N/2 users: N/4 have the work email of
every fourth employee (half of them in UPPER case, half in Mixed case) and N/4 belong to nobody.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.accounts import AccountCreateIn
from lmsync.domain.employees import EmployeeData, normalize_employee
from lmsync.domain.interface import InterfaceIn
from lmsync.domain.normalize import normalize_email
from lmsync.hr import accounts
from lmsync.security import SecretBox
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Account, Employee, utcnow
from lmsync.sync.engine import SyncEngine
from lmsync.sync.service import SyncService

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
COMPANY = "Bench inc."
HIRE_DATE = "2024-01-02"
# (first name, its ASCII form for the mailbox)
FIRST_NAMES = (
    ("Zoë", "zoe"),
    ("Jean", "jean"),
    ("Amélie", "amelie"),
    ("Omar", "omar"),
    ("Li", "li"),
    ("Ana", "ana"),
    ("Kwame", "kwame"),
    ("Noah", "noah"),
    ("Léa", "lea"),
    ("Ravi", "ravi"),
)
_TEMPLATES: tuple[dict[str, Any], ...] = (
    {
        "language": "fr-CA",
        "job_title": "Payroll clerk",
        "home_phone": "514 555-0199",
        "cell_phone": "+1 (438) 555-0142",
        "address": "1000 rue Sherbrooke O.",
        "city": "Montréal",
        "province": "Québec",
        "country": "Canada",
        "postal_code": "H3A 3G4",
    },
    {
        "language": "en",
        "job_title": "Warehouse associate",
        "home_phone": "416 555-0123",
        "address": "200 Bay St",
        "city": "Toronto",
        "province": "ON",
        "country": "CA",
        "postal_code": "M5J 2J5",
    },
)


@dataclass(frozen=True)
class Person:
    """One employee as HR holds it (a valid, normalized row) with the id lmsync will use."""

    id: str
    data: EmployeeData

    @property
    def email(self) -> str:
        assert self.data.work_email is not None
        return self.data.work_email


def people(n: int, *, prefix: str = "E") -> list[Person]:
    """``n`` distinct, valid employees with lower-case work emails."""
    templates = [
        normalize_employee(
            {
                "employee_number": "T-0",
                "first_name": "Template",
                "last_name": "Row",
                "work_email": "template@example.com",
                "hire_date": HIRE_DATE,
                **fields,
            },
            today=date.today(),
        )
        for fields in _TEMPLATES
    ]
    out = []
    for i in range(n):
        first, mailbox = FIRST_NAMES[i % len(FIRST_NAMES)]
        last = f"Ngô-{i}"
        stored, key = normalize_email(f"{mailbox}.ngo{i}@example.com")
        data = dataclasses.replace(
            templates[i % len(templates)],
            employee_number=f"{prefix}-{i:06d}",
            first_name=first,
            last_name=last,
            work_email=stored,
            work_email_key=key,
        )
        out.append(Person(id=str(uuid.uuid4()), data=data))
    return out


def _case(email: str, k: int) -> str:
    """Every other address in UPPER case, the others in Mixed case."""
    if k % 2 == 0:
        return email.upper()
    local, _, domain = email.partition("@")
    return f"{local.title()}@{domain.capitalize()}"


def seed_users(persons: list[Person]) -> tuple[list[dict[str, Any]], int]:
    """The LMS users already there: N/4 matching an employee, N/4 belonging to nobody.

    Returns the SCIM users and how many of them match an employee.
    """
    n = len(persons)
    users: list[dict[str, Any]] = []
    matched = [p for i, p in enumerate(persons) if i % 4 == 0][: n // 4 or 1]
    for k, person in enumerate(matched):
        email = _case(person.email, k)
        users.append(_scim_user(email, "Pre", "Existing"))
    for j in range(n // 4):
        users.append(_scim_user(f"former.{j}@elsewhere.example", "Former", f"Contractor {j}"))
    return users, len(matched)


def _scim_user(email: str, first: str, last: str) -> dict[str, Any]:
    return {
        "schemas": [CORE_USER],
        "userName": email,
        "name": {"givenName": first, "familyName": last},
        "emails": [{"value": email, "type": "work", "primary": True}],
        "active": True,
    }


def bench_account() -> Account:
    """The account as lmsync sees it (transient: for the payloads of the raw and naive clients)."""
    return Account(
        id=str(uuid.uuid4()),
        name="Bench",
        company_name=COMPANY,
        default_language="en",
        timezone="UTC",
        user_sync_enabled=True,
    )


def transient_employee(person: Person, account_id: str) -> Employee:
    """The employee row as an unsaved ORM object (``mapping.desired_fields`` reads it)."""
    return Employee(
        id=person.id,
        account_id=account_id,
        **dataclasses.asdict(person.data),
    )


# -- the lmsync database ---------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """An lmsync database with one account, its employees, its LMS interface and an MHR token."""

    database_url: str
    data_dir: Path
    account_id: str
    api_token: str


def insert_employees(
    sessions: sessionmaker[Session], account_id: str, persons: list[Person]
) -> None:
    """Bulk insert of valid rows, due for the LMS exactly as ``hire`` leaves them."""
    now = utcnow()
    for start in range(0, len(persons), 5000):
        rows = [
            {
                "id": p.id,
                "account_id": account_id,
                "created_at": now,
                "updated_at": now,
                "lms_due_at": now,
                **dataclasses.asdict(p.data),
            }
            for p in persons[start : start + 5000]
        ]
        with transaction(sessions) as session:
            session.execute(insert(Employee), rows)


def build(
    database_url: str,
    data_dir: Path,
    persons: list[Person],
    *,
    interface: dict[str, Any],
) -> Setup:
    """Migrate, then create the account (sync enabled), employees, interface and an MHR token."""
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        sessions = make_session_factory(engine)
        box = SecretBox.from_settings(None, data_dir)
        with transaction(sessions) as session:
            account = accounts.create_account(
                session, AccountCreateIn(name="Bench", company_name=COMPANY)
            )
            account.user_sync_enabled = True
            account_id = account.id
            user = accounts.create_user(
                session, email=f"hr.{uuid.uuid4().hex[:8]}@bench.example", password=None
            )
            accounts.set_membership(session, user, account, "MHR")
            token = accounts.create_token(session, user).token
        insert_employees(sessions, account_id, persons)
        service = SyncService(sessions, box, SyncEngine(sessions, box))
        try:
            with transaction(sessions) as session:
                service.put_interface(session, account_id, InterfaceIn.model_validate(interface))
        finally:
            service.close()
    finally:
        engine.dispose()
    return Setup(database_url, data_dir, account_id, token)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on ``admin_url``'s server, dropped on exit."""
    name = f"lmsync_bench_{uuid.uuid4().hex[:12]}"
    admin: Engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def postgres_reachable(admin_url: str) -> str | None:
    """None when the server answers, else the reason."""
    try:
        engine = create_engine(admin_url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None
