"""``lmsync demo``: the whole product on one machine, in one process.

A fresh SQLite database, an embedded SCIM LMS (scim2-server, in memory) that already holds a few
users, a demo account whose ~50 employees exercise every rule, the first activation's dry-run
preview, the real activation, then the API (and the sync worker) served on loopback.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

import httpx
import typer
import uvicorn
from sqlalchemy.orm import Session

from lmsync.domain.accounts import AccountCreateIn
from lmsync.domain.employees import RehireIn, TerminateIn
from lmsync.domain.interface import InterfaceIn
from lmsync.hr import accounts, employees
from lmsync.lms.embedded import EmbeddedLms
from lmsync.log_config import configure
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.sync.engine import RunOptions, RunSummary, SyncEngine
from lmsync.sync.service import SyncService

DEMO_ACCOUNT = "lmsync demo"
MANAGER = "hr.manager@demo.example"
VIEWER = "viewer@demo.example"
DOMAIN = "demo.example"

_FIRST = [
    "Zoë",
    "Jean",
    "Amélie",
    "Liam",
    "Olivia",
    "Noah",
    "Chloé",
    "Mohamed",
    "Sofia",
    "Hiroshi",
    "Fatou",
    "Lucas",
    "Léa",
    "Gabriel",
    "Emma",
    "Thomas",
    "Alice",
    "Nathan",
    "Camille",
    "Hugo",
    "Inès",
    "Louis",
    "Jade",
    "Raphaël",
    "Manon",
]
_LAST = [
    "Lévesque-Ngô",
    "Tremblay",
    "Gagnon",
    "Smith",
    "Brown",
    "Wilson",
    "Roy",
    "Haddad",
    "Rossi",
    "Tanaka",
    "Diop",
    "Martin",
    "Côté",
    "Bouchard",
    "Gauthier",
    "Morin",
    "Lavoie",
    "Fortin",
    "Gagné",
    "Ouellet",
    "Pelletier",
    "Bélanger",
    "Lévesque",
    "Bergeron",
    "Leblanc",
]
_PROVINCES = ["Québec", "QC", "Ontario", "BC", "Alberta"]


def _email(n: int) -> str:
    return f"employee{n:02d}@{DOMAIN}"


def demo_people() -> list[dict[str, Any]]:
    """50 employees; the notes say which rule each special one shows."""
    people = []
    for n in range(1, 51):
        person: dict[str, Any] = {
            "employee_number": f"E-{n:04d}",
            "first_name": _FIRST[n % len(_FIRST)],
            "last_name": _LAST[(n * 7) % len(_LAST)],
            "work_email": _email(n),
            "language": "fr-CA" if n % 3 else "en",
            "job_title": ["Analyst", "Nurse", "Technician", "Payroll clerk", "Manager"][n % 5],
            "country": "Canada",
            "province": _PROVINCES[n % len(_PROVINCES)],
            "cell_phone": f"514 555-01{n:02d}",
            "hire_date": date(2024, 1 + n % 12, 1 + n % 28),
        }
        if n in (3, 17, 33):
            person["lms_excluded"] = True  # excluded: never created
        if n in (8, 26, 44):
            person["work_email"] = None  # skipped: work email required
        if n in (21, 22):
            person["work_email"] = f"shared.mailbox@{DOMAIN}"  # conflict: duplicate in HR
        people.append(person)
    return people


# LMS users present before the activation: five match employees by email in another letter
# case (linked, not duplicated), three belong to no employee (left alone).
def demo_lms_users() -> list[dict[str, Any]]:
    users = []
    for n in (5, 10, 15, 30, 45):
        users.append(_scim_user(_email(n).upper().replace(f"@{DOMAIN.upper()}", f"@{DOMAIN}"), n))
    for n in (1, 2, 3):
        users.append(_scim_user(f"contractor{n}@partner.example", 100 + n))
    return users


def _scim_user(email: str, n: int) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": "Existing", "familyName": f"Learner {n}"},
        "emails": [{"value": email, "type": "work", "primary": True}],
        "active": True,
    }


def _readable_password() -> str:
    """A random password that is easy to read and type: four groups of four letters and digits
    (about 79 bits; no 0/o, 1/l/i to mix up)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


def _seed(session: Session, password: str, lifetime: accounts.TokenLifetime) -> tuple[str, str]:
    account = accounts.create_account(
        session,
        AccountCreateIn(
            name=DEMO_ACCOUNT,
            company_name="Démo Cangaroo inc.",
            default_language="fr-CA",
            timezone="America/Toronto",
        ),
    )
    account.user_sync_enabled = True  # the product expert's switch, already on in the demo
    manager = accounts.create_user(session, email=MANAGER, password=password)
    accounts.set_membership(session, manager, account, "MHR")
    viewer = accounts.create_user(session, email=VIEWER, password=password)
    accounts.set_membership(session, viewer, account, "viewer")
    hired = [employees.hire(session, None, account.id, p) for p in demo_people()]
    # two leavers: terminated before the activation, so never created in the LMS
    for employee in hired[-2:]:
        employees.terminate(
            session, None, account.id, employee.id, TerminateIn(termination_date=date(2026, 10, 30))
        )
    # and one who left and came back
    employees.terminate(
        session, None, account.id, hired[0].id, TerminateIn(termination_date=date(2026, 6, 30))
    )
    employees.rehire(session, None, account.id, hired[0].id, RehireIn(hire_date=date(2026, 9, 1)))
    token = accounts.create_token(
        session, manager, account_id=account.id, name="demo", lifetime=lifetime
    ).token
    return account.id, token


def _print_counts(title: str, summary: RunSummary) -> None:
    labels = {
        "link": "to link (same email already in the LMS)",
        "create": "to create",
        "skip": "skipped (no work email)",
        "conflict": "conflicts",
        "excluded": "excluded",
        "none": "nothing to do (e.g. terminated)",
    }
    typer.echo(f"\n{title}")
    for key, label in labels.items():
        typer.echo(f"  {summary.counts.get(key, 0):>4}  {label}")


def run_demo(settings: Settings, *, port: int = 8000, lms_port: int = 0) -> None:
    configure(settings.log_level, json=settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = settings.data_dir / "demo.sqlite3"
    for path in (
        database,
        database.with_suffix(".sqlite3-wal"),
        database.with_suffix(".sqlite3-shm"),
    ):
        path.unlink(missing_ok=True)  # the embedded LMS starts empty: so does the demo's database
    settings = settings.model_copy(update={"database_url": f"sqlite:///{database}"})
    lms_token = secrets.token_urlsafe(16)
    password = _readable_password()
    lms = EmbeddedLms(port=lms_port, token=lms_token)
    lms.start()
    try:
        httpx.post(f"{lms.admin_url}/users", json=demo_lms_users(), timeout=30).raise_for_status()
        engine = make_engine(settings.resolved_database_url())
        migrate.upgrade(engine)
        sessions = make_session_factory(engine)
        box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
        sync_engine = SyncEngine(sessions, box)
        service = SyncService(sessions, box, sync_engine)
        with transaction(sessions) as session:
            lifetime = accounts.TokenLifetime(settings.token_default_days, settings.token_max_days)
            account_id, token = _seed(session, password, lifetime)
            service.put_interface(
                session,
                account_id,
                InterfaceIn.model_validate(
                    {"base_url": lms.base_url, "auth_type": "bearer", "secret": lms_token}
                ),
            )
        preview = service.activate(account_id, dry_run=True, actor=None)
        assert isinstance(preview, RunSummary)
        _print_counts("First activation — dry-run preview (nothing written):", preview)
        done = service.run_now(
            account_id, RunOptions(trigger="activation", full=True, activating=True)
        )
        _print_counts(f"First activation — done ({done.status}):", done)
        service.close()
        engine.dispose()
        base = f"http://127.0.0.1:{port}"
        typer.echo(
            f"\nlmsync demo — account '{DEMO_ACCOUNT}', 50 employees, LMS at {lms.base_url}\n"
            f"  pages      : {base}/  (sign in below)\n"
            f"  API docs   : {base}/docs\n"
            f"  login      : {MANAGER} / {password}   (viewer: {VIEWER}, same password)\n"
            f"  API token  : {token}\n"
            f"  LMS token  : {lms_token}\n"
            f"  try        : curl -H 'Authorization: Bearer {token}' {base}/api/v1/lms/runs\n"
            "Hire, edit or terminate employees in the pages or the API: the LMS follows within "
            "seconds.\n"
            "Ctrl-C stops the demo.\n"
        )
        from lmsync.web.app import create_app

        uvicorn.run(
            create_app(settings, poll_seconds=1.0), host="127.0.0.1", port=port, log_level="warning"
        )
    finally:
        lms.stop()
