"""``lmsync demo``: the whole product on one machine, in one process.

A fresh SQLite database, an embedded SCIM LMS (scim2-server, in memory) that already holds a few
users, a demo account whose ~50 employees exercise every rule, the first activation's dry-run
preview, the real activation, then the API (and the sync worker) served on loopback.

Before it touches anything the demo takes its ports (the pages' port is bound and kept for the
server, the embedded LMS's is checked) and a lock on ``demo.lock`` in the data directory, which it
holds while it runs: a second demo on the same ports or the same data directory stops with an
error instead of deleting the running demo's database. The lock also tells the command line
which database a running demo uses (``running_demo``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any

import typer
from sqlalchemy.orm import Session

from lmsync.domain.accounts import AccountCreateIn
from lmsync.domain.employees import RehireIn, TerminateIn
from lmsync.domain.interface import InterfaceIn
from lmsync.hr import accounts, employees
from lmsync.i18n import _
from lmsync.log_config import configure
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.sync.engine import RunOptions, RunSummary, SyncEngine
from lmsync.sync.service import SyncService

HOST = "127.0.0.1"
DATABASE_FILE = "demo.sqlite3"
LOCK_FILE = "demo.lock"
# Exit codes of `lmsync demo` when it cannot start (documented in its --help and the README).
EXIT_PORT_IN_USE = 6
EXIT_ALREADY_RUNNING = 7

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
    return "-".join("".join(secrets.choice(alphabet) for _char in range(4)) for _part in range(4))


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


class DemoCannotStart(Exception):
    """The demo stopped before touching anything; ``exit_code`` says why."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class RunningDemo:
    """A demo that holds the lock of a data directory: its database, and what it said of itself
    (None while it is starting)."""

    database: Path
    pid: int | None
    pages_url: str | None

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.database}"


def demo_database(data_dir: Path) -> Path:
    """Where ``lmsync demo`` keeps its database."""
    return data_dir / DATABASE_FILE


def running_demo(data_dir: Path) -> RunningDemo | None:
    """The demo running on this data directory, if one is (it holds ``demo.lock``)."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a demo runs
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None  # a stopped demo's lock file
        with os.fdopen(os.dup(fd), encoding="utf-8") as file:
            raw = file.read()
    finally:
        os.close(fd)
    try:
        said = json.loads(raw)
        pid, pages_url = int(said["pid"]), str(said["pages_url"])
    except (ValueError, KeyError, TypeError):
        pid, pages_url = None, None  # still starting: it has not written them yet
    return RunningDemo(demo_database(data_dir), pid, pages_url)


def _listen(port: int) -> socket.socket:
    """The pages' socket, bound now and handed to the server (no one can take it in between)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise _port_refused(port, _("its pages and API"), "--port", exc) from exc
    return sock


def _check_free(port: int) -> None:
    """The embedded LMS's port is free (it binds it itself a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise _port_refused(port, _("its embedded LMS"), "--lms-port", exc) from exc


def _port_refused(port: int, what: str, option: str, exc: OSError) -> DemoCannotStart:
    busy = exc.errno == errno.EADDRINUSE
    reason = (
        _("is already in use (another lmsync demo?)")
        if busy
        else _("cannot be used: {error}", error=str(exc))
    )
    return DemoCannotStart(
        _(
            "the demo cannot start: port {port} on {host}, for {what}, {reason}. Nothing was "
            "changed. Stop the program that uses it (a demo stops with Ctrl-C), or choose another "
            "port with {option}.",
            port=port,
            host=HOST,
            what=what,
            reason=reason,
            option=option,
        ),
        EXIT_PORT_IN_USE,
    )


def _lock(data_dir: Path) -> IO[str]:
    """Take the data directory's demo lock, held (by the open file) while the demo runs."""
    file = (data_dir / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        other = running_demo(data_dir)
        message = _(
            "the demo cannot start: another lmsync demo is running on the data directory "
            "{directory}. Its database was left alone. Use that demo, stop it (Ctrl-C in its "
            "terminal), or run this one on another data directory and port, e.g. "
            "LMSYNC_DATA_DIR=/tmp/lmsync-demo2 lmsync demo --port 8001.",
            directory=str(data_dir),
        )
        if other is not None and other.pid is not None:
            message = _(
                "the demo cannot start: another lmsync demo is running on the data directory "
                "{directory} (process {pid}, pages at {url}). Its database was left alone. Use "
                "that demo, stop it (Ctrl-C in its terminal), or run this one on another data "
                "directory and port, e.g. LMSYNC_DATA_DIR=/tmp/lmsync-demo2 lmsync demo --port "
                "8001.",
                directory=str(data_dir),
                pid=other.pid,
                url=other.pages_url,
            )
        raise DemoCannotStart(message, EXIT_ALREADY_RUNNING) from None
    return file


def _say_running(lock: IO[str], pages_url: str) -> None:
    lock.seek(0)
    lock.truncate()
    lock.write(json.dumps({"pid": os.getpid(), "pages_url": pages_url}))
    lock.flush()


def run_demo(settings: Settings, *, port: int = 8000, lms_port: int = 0) -> None:
    """Set up and serve the demo; ``DemoCannotStart`` (nothing touched) when a port it needs or
    its data directory is taken. Port 0: any free port."""
    web = _listen(port)
    try:
        if lms_port:
            _check_free(lms_port)
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # personal data, the key
        lock = _lock(settings.data_dir)
        try:
            _run(settings, web, lms_port, lock)
        finally:
            lock.close()  # releases the lock; the file stays (removing it would race a starter)
    finally:
        web.close()


def _run(settings: Settings, web: socket.socket, lms_port: int, lock: IO[str]) -> None:
    import httpx
    import uvicorn

    from lmsync.lms.embedded import EmbeddedLms
    from lmsync.web.app import create_app

    configure(settings.log_level, json=settings.log_json)
    database = demo_database(settings.data_dir)
    for path in (
        database,
        database.with_suffix(".sqlite3-wal"),
        database.with_suffix(".sqlite3-shm"),
    ):
        path.unlink(missing_ok=True)  # the embedded LMS starts empty: so does the demo's database
    settings = settings.model_copy(update={"database_url": f"sqlite:///{database}"})
    base = f"http://{HOST}:{web.getsockname()[1]}"
    _say_running(lock, f"{base}/")
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
        typer.echo(
            f"\nlmsync demo — account '{DEMO_ACCOUNT}', 50 employees, LMS at {lms.base_url}\n"
            f"  pages      : {base}/  (sign in below)\n"
            f"  API docs   : {base}/docs\n"
            f"  login      : {MANAGER} / {password}   (viewer: {VIEWER}, same password)\n"
            f"  API token  : {token}\n"
            f"  LMS token  : {lms_token}\n"
            f"  database   : sqlite:///{database}\n"
            f"  try        : curl -H 'Authorization: Bearer {token}' {base}/api/v1/lms/runs\n"
            f"  CLI        : lmsync account list   (run from here, or with the same "
            "LMSYNC_DATA_DIR: the lmsync commands use the running demo's database)\n"
            "Hire, edit or terminate employees in the pages or the API: the LMS follows within "
            "seconds.\n"
            "Ctrl-C stops the demo.\n"
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, poll_seconds=1.0), log_level="warning")
        )
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises it once stopped
            server.run(sockets=[web])
    finally:
        lms.stop()
