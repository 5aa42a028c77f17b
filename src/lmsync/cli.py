"""The lmsync command line: database, server, accounts, logins, tokens, employees (imports and
the lifecycle: terminate, change or cancel a termination, rehire) and the demo.

Commands that use the database say which on stderr ("using database ..."): LMSYNC_DATABASE_URL,
else the database of a demo running on the data directory (LMSYNC_DATA_DIR, default ./.lmsync),
else lmsync.sqlite3 in the data directory.

Messages speak the language of the POSIX locale (LC_ALL, LC_MESSAGES, LANG: e.g.
LANG=fr_CA.UTF-8 for French); the --help texts stay English.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from lmsync import i18n
from lmsync.demo import demo_database, running_demo
from lmsync.domain.accounts import AccountCreateIn, AccountPatchIn
from lmsync.domain.employees import (
    CancelTerminationIn,
    RehireIn,
    TerminateIn,
    TerminationChangeIn,
)
from lmsync.domain.errors import (
    CheckFinding,
    DomainError,
    FieldError,
    LmsCheckFailed,
    NotFound,
    ValidationFailed,
)
from lmsync.domain.interface import InterfaceIn
from lmsync.hr import accounts, csv_import, imports
from lmsync.hr import employees as hr_employees
from lmsync.hr.csv_import import pydantic_field_errors
from lmsync.hr.principal import Principal
from lmsync.i18n import N_, _
from lmsync.jobs import wiring
from lmsync.lms.base import Finding
from lmsync.lms.registry import Connectors
from lmsync.log_config import configure
from lmsync.security import SecretBox
from lmsync.settings import DEFAULT_DATABASE_FILE, Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Account, Employee, Membership, SyncRun
from lmsync.sync.engine import RunOptions, RunSummary, SyncEngine
from lmsync.sync.held_back import SWITCH_LABELS
from lmsync.sync.service import SyncService
from lmsync.web.pages import field_labels

# The --help texts stay English: Typer builds them when this module is imported, before any
# command knows the reader's language. What a command says is marked with ``_`` and printed with
# ``_say`` (or ``i18n.text``) in the locale's language (``_in_the_locale_language``).
app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
account_app = typer.Typer(no_args_is_help=True, help="Accounts (companies).")
user_app = typer.Typer(no_args_is_help=True, help="Logins and their roles.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
employees_app = typer.Typer(no_args_is_help=True, help="Employees.")
lms_app = typer.Typer(no_args_is_help=True, help="The account's LMS interface.")
app.add_typer(db_app, name="db")
app.add_typer(account_app, name="account")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(employees_app, name="employees")
app.add_typer(lms_app, name="lms")

OPERATOR = Principal(user_id="cli", email="cli", is_operator=True, account_id=None, role=None)

# Exit codes (documented in the commands' --help and the README): 0 success, 1 an error, 2 a
# usage error (click's), then one per situation a script may want to tell apart.
EXIT_ERROR = 1
EXIT_ROWS_REJECTED = 3  # employees import: some rows refused, the others imported
EXIT_FILE_MISSING = 4  # employees import: the file does not exist or cannot be read
EXIT_BAD_FILE = 5  # employees import: the file refused as a whole (bad header...), nothing written


@app.callback()
def _in_the_locale_language(ctx: typer.Context) -> None:
    # Runs before every command: its messages speak the POSIX locale's language (LC_ALL,
    # LC_MESSAGES, LANG, LANGUAGE), until the command ends (the context then closes, and the
    # language before it is back: several commands can run in one process, as in the tests).
    # No docstring: the app's help stays the module's.
    ctx.with_resource(i18n.using(i18n.from_environment(os.environ)))


def _say(message: Any, *, err: bool = False) -> None:
    """Print a message (a Msg, or text) in the command's language."""
    typer.echo(i18n.text(message), err=err)


def _fail(message: Any, code: int = EXIT_ERROR) -> typer.Exit:
    """Say ``message`` (a Msg, or text such as an OS error) as an error; the exit to raise."""
    _say(_("error: {message}", message=message), err=True)
    return typer.Exit(code)


def _say_field_errors(errors: Sequence[FieldError]) -> None:
    for error in errors:
        _say(_("error: {field}: {message}", field=error.field, message=error.message), err=True)


def _shown(url: str) -> str:
    """A database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"//([^/:@]*):[^/@]*@", r"//\1:***@", url)


def _database_url(settings: Settings, *, follow_demo: bool = True) -> str:
    """The database a command uses, said on stderr (without its password).

    LMSYNC_DATABASE_URL when set; else, with ``follow_demo``, the database of a demo running on
    the data directory (so that commands run next to ``lmsync demo`` act on it); else the data
    directory's lmsync.sqlite3.
    """
    if settings.database_url:
        url = settings.database_url
        said = _("using database {url}", url=_shown(url))
    else:
        demo = running_demo(settings.data_dir)
        if demo is not None and follow_demo:
            url = demo.database_url
            said = _(
                "using database {url} (the running demo's: a new lmsync demo starts it afresh)",
                url=_shown(url),
            )
        else:
            url = settings.resolved_database_url()
            said = _("using database {url}", url=_shown(url))
            if demo is not None:
                said = _(
                    "using database {url} (a demo is running on {demo_url})",
                    url=_shown(url),
                    demo_url=demo.database_url,
                )
            elif (
                demo_database(settings.data_dir).exists()
                and not (settings.data_dir / DEFAULT_DATABASE_FILE).exists()
            ):
                said = _(
                    "using database {url} (not the demo's, which is not running; to use it: "
                    "LMSYNC_DATABASE_URL=sqlite:///{demo_path})",
                    url=_shown(url),
                    demo_path=str(demo_database(settings.data_dir)),
                )
    _say(said, err=True)
    return url


def _settings(*, follow_demo: bool = True) -> Settings:
    """The settings with the database the command uses (see ``_database_url``)."""
    settings = Settings()
    url = _database_url(settings, follow_demo=follow_demo)
    return settings.model_copy(update={"database_url": url})


@contextmanager
def _database() -> Iterator[sessionmaker[Session]]:
    """Sessions on the command's database (schema upgraded first); domain errors exit 1."""
    settings = _settings()
    engine = make_engine(settings.resolved_database_url())
    try:
        migrate.upgrade(engine)
        sessions = make_session_factory(engine)
        wiring.install(sessions, wiring.deferrer_for(settings))  # HR changes defer their jobs
        yield sessions
    except ValidationFailed as exc:
        _say_field_errors(exc.errors)
        raise typer.Exit(1) from exc
    except DomainError as exc:
        raise _fail(exc.message) from exc
    finally:
        engine.dispose()


@contextmanager
def _session() -> Iterator[Session]:
    """A transaction on the configured database (schema upgraded first); domain errors exit 1."""
    with _database() as sessions, transaction(sessions) as session:
        yield session


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema to the latest migration."""
    engine = make_engine(_settings().resolved_database_url())
    migrate.upgrade(engine)
    engine.dispose()
    _say(_("database is up to date"))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also carry out sync work in this process (--no-worker: the web tier only, "
            "with lmsync worker processes elsewhere; procrastinate queue only).",
        ),
    ] = True,
) -> None:
    """Upgrade the schema, then serve the pages and the API."""
    import uvicorn

    from lmsync.web.app import create_app

    # The server never follows a running demo: it would serve the demo's database for good.
    settings = _settings(follow_demo=False)
    configure(settings.log_level, json=settings.log_json)
    if not worker and wiring.deferrer_for(settings) is None:
        raise _fail(_("--no-worker needs the PostgreSQL job queue (a PostgreSQL database)"))
    app_ = create_app(settings, upgrade_schema=True, run_worker=worker)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command("worker")
def worker_command(
    concurrency: Annotated[
        int | None,
        typer.Option(help="Accounts synced at once (default LMSYNC_WORKER_CONCURRENCY)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve this process's Prometheus metrics (runs, LMS requests, jobs) on this "
            "port at /metrics (default: not served).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address the metrics port listens on.")
    ] = "127.0.0.1",
) -> None:
    """Carry out sync jobs from the PostgreSQL queue (LMSYNC_JOB_QUEUE=procrastinate) until
    stopped (SIGINT/SIGTERM: the running jobs finish first). Run as many as needed."""
    import asyncio
    import socket

    from lmsync.jobs import tasks
    from lmsync.jobs import worker as jobs_worker
    from lmsync.jobs.runner import JobRunner

    settings = _settings(follow_demo=False)
    configure(settings.log_level, json=settings.log_json)
    try:
        deferrer = wiring.deferrer_for(settings)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if deferrer is None:
        raise _fail(_("lmsync worker needs a PostgreSQL LMSYNC_DATABASE_URL (the job queue)"))
    if metrics_port is not None:
        import prometheus_client

        try:  # a daemon thread; the default registry: this process's counters
            prometheus_client.start_http_server(metrics_port, addr=metrics_host)
        except OSError as exc:
            raise _fail(
                _(
                    "cannot serve metrics on {host}:{port}: {error}",
                    host=metrics_host,
                    port=metrics_port,
                    error=str(exc),
                )
            ) from exc
    url = settings.resolved_database_url()
    engine = make_engine(url)
    migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    wiring.install(sessions, deferrer)
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    sync_engine = SyncEngine(
        sessions,
        box,
        connector_factory=Connectors.from_settings(settings),
        lock_lease=timedelta(seconds=settings.sync_lease_seconds),
    )
    service = SyncService(sessions, box, sync_engine, deferrer=deferrer)
    service.start()  # recovery: runs left by a stopped server are ended, resumed, taken over
    tasks.install(JobRunner(sync_engine, sessions, deferrer), settings.job_stall_seconds)
    size = concurrency or settings.worker_concurrency
    try:
        name = f"lmsync-worker@{socket.gethostname()}"
        asyncio.run(jobs_worker.run(url, size, name, settings.job_stall_seconds))
    finally:
        service.close()
        engine.dispose()


@account_app.command("create")
def account_create(
    name: Annotated[str, typer.Option(help="The account's name.")],
    company: Annotated[str, typer.Option(help="The company's name, sent to the LMS.")],
    language: Annotated[str, typer.Option(help="Default language (BCP 47).")] = "en",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC",
) -> None:
    """Create an account; prints its id."""
    data = _model(
        AccountCreateIn,
        {"name": name, "company_name": company, "default_language": language, "timezone": timezone},
    )
    with _session() as session:
        account = accounts.create_account(session, data)
        typer.echo(account.id)


@account_app.command("enable-sync")
def account_enable_sync(account: Annotated[str, typer.Argument(help="Account id.")]) -> None:
    """Switch user synchronization on for an account (the platform operator's switch)."""
    with _session() as session:
        accounts.update_account(session, OPERATOR, account, AccountPatchIn(user_sync_enabled=True))
        _say(_("user synchronization enabled for {account}", account=account))


@account_app.command("list")
def account_list() -> None:
    """List the accounts: id, name, company, employees (all, leavers and terminated included),
    logins that are members, whether user synchronization is on, and the pages' language."""
    with _session() as session:
        employees = (
            select(Employee.account_id, func.count().label("n"))
            .group_by(Employee.account_id)
            .subquery()
        )
        members = (
            select(Membership.account_id, func.count().label("n"))
            .group_by(Membership.account_id)
            .subquery()
        )
        rows = session.execute(
            select(
                Account,
                func.coalesce(employees.c.n, 0),
                func.coalesce(members.c.n, 0),
            )
            .outerjoin(employees, employees.c.account_id == Account.id)
            .outerjoin(members, members.c.account_id == Account.id)
            .order_by(Account.name, Account.id)
        ).all()
    if not rows:
        _say(_("no accounts yet (lmsync account create makes one)"), err=True)
        return
    _print_table(
        [
            i18n.text(header)
            for header in (
                _("ID"),
                _("NAME"),
                _("COMPANY"),
                _("EMPLOYEES"),
                _("MEMBERS"),
                _("SYNC"),
                _("LANGUAGE"),
            )
        ],
        # The data cells are the stored values, in every language (scripts read them).
        [
            [
                account.id,
                account.name,
                account.company_name,
                str(n_employees),
                str(n_members),
                "on" if account.user_sync_enabled else "off",
                account.ui_language or "default",
            ]
            for account, n_employees, n_members in rows
        ],
        numeric={3, 4},
    )


def _print_table(header: list[str], rows: list[list[str]], *, numeric: set[int]) -> None:
    """Columns padded to their widest cell (numbers on the right), two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        typer.echo("  ".join(cells).rstrip())


@account_app.command("language")
def account_language(
    account: Annotated[str, typer.Argument(help="Account id.")],
    language: Annotated[
        str,
        typer.Argument(
            help="en, fr_CA, or default (each browser's language).", metavar="en|fr_CA|default"
        ),
    ],
) -> None:
    """Set the language of lmsync's pages and emails for an account's users (a user's own
    choice still wins). Not the employees' language sent to the LMS."""
    if language == "default":
        chosen: i18n.Language | None = None
    else:
        chosen = i18n.supported(language)
        if chosen is None:
            raise _fail(
                _("unknown language '{language}': use en, fr_CA or default", language=language)
            )
    with _session() as session:
        accounts.get_account(session, account).ui_language = chosen
    if chosen is None:
        _say(
            _(
                "language of account {account}: default (each browser's language)",
                account=account,
            )
        )
    else:
        _say(_("language of account {account}: {language}", account=account, language=chosen))


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Login email.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    account: Annotated[str | None, typer.Option(help="Account id to join.")] = None,
    role: Annotated[str, typer.Option(help="MHR or viewer.")] = "MHR",
    operator: Annotated[bool, typer.Option("--operator", help="A platform operator.")] = False,
) -> None:
    """Create a login, optionally a member of an account; prints its id.

    The password: at least 12 characters, not a common or breached one, not containing the
    email's name. Without --password-stdin the login has no password (it cannot sign in to the
    pages; an API token can still act as it)."""
    if role not in ("MHR", "viewer"):
        raise _fail(_("role must be MHR or viewer"))
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    with _session() as session:
        user = accounts.create_user(session, email=email, password=password, is_operator=operator)
        if account is not None:
            accounts.set_membership(
                session,
                user,
                accounts.get_account(session, account),
                "MHR" if role == "MHR" else "viewer",
            )
        typer.echo(user.id)


@token_app.command("create")
def token_create(
    email: Annotated[str, typer.Option(help="The login the token acts as.")],
    account: Annotated[
        str | None, typer.Option(help="Account id (needed when the login has several).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the token.")] = "",
    days: Annotated[
        int | None,
        typer.Option(
            help="Days until it expires (default LMSYNC_TOKEN_DEFAULT_DAYS, 90; "
            "at most LMSYNC_TOKEN_MAX_DAYS, 365)."
        ),
    ] = None,
) -> None:
    """Issue an API token; it is printed once and only its hash is kept."""
    settings = Settings()
    lifetime = accounts.TokenLifetime(settings.token_default_days, settings.token_max_days)
    with _session() as session:
        user = accounts.find_user(session, email)
        issued = accounts.create_token(
            session, user, account_id=account, name=name, days=days, lifetime=lifetime
        )
        typer.echo(issued.token)


@token_app.command("revoke")
def token_revoke() -> None:
    """Revoke a token read from standard input (so it never lands in the shell history)."""
    token = sys.stdin.readline().strip()
    with _session() as session:
        accounts.revoke_token(session, token)
    _say(_("token revoked"))


@employees_app.command("import")
def employees_import(
    file: Annotated[Path, typer.Argument(help="The CSV file.")],
    account: Annotated[str, typer.Option(help="Account id.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only; write nothing.")] = False,
) -> None:
    """Import employees from a CSV file whose header names the API's JSON fields.

    Rows are committed 500 at a time, as the server's background imports are: the server stays
    responsive, and Ctrl-C keeps the rows already committed (the import is then "interrupted").

    Exit codes: 0 every row imported (or, with --dry-run, importable); 1 an error (e.g. an
    unknown account, an import that failed or was interrupted); 2 a wrong option; 3 some rows
    were rejected (each listed with its line; the others were imported); 4 the file does not
    exist or cannot be read; 5 the file was refused as a whole, nothing imported (a bad header:
    unknown, missing or repeated columns; or an empty file, not UTF-8, broken CSV, too large).
    """
    try:
        content = file.read_bytes()
    except FileNotFoundError as exc:
        raise _fail(_("no such file: {file}", file=str(file)), EXIT_FILE_MISSING) from exc
    except OSError as exc:
        raise _fail(
            _("cannot read {file}: {error}", file=str(file), error=str(exc.strerror or exc)),
            EXIT_FILE_MISSING,
        ) from exc
    if dry_run:
        with _session() as session, _file_refused():
            report = csv_import.import_employees(session, None, account, content, dry_run=True)
        _print_report(len(report.imported), report.rejected, dry_run=True)
        if report.rejected:
            raise typer.Exit(EXIT_ROWS_REJECTED)
        return
    rejected: list[csv_import.RejectedRow] = []
    show_progress = sys.stderr.isatty()

    def on_chunk(chunk: imports.ChunkDone) -> None:
        rejected.extend(chunk.report.rejected)
        if show_progress:
            rows = i18n.ngettext(
                "{done}/{count} row", "{done}/{count} rows", chunk.total_rows
            ).format(done=chunk.done_rows, count=chunk.total_rows)
            typer.echo(f"\r{rows}", nl=False, err=True)

    try:
        with _database() as sessions, _file_refused():
            row = imports.run_in_foreground(sessions, None, account, content, on_chunk=on_chunk)
    finally:
        if show_progress:
            typer.echo(err=True)
    _print_report(row.imported_count, rejected, dry_run=False)
    if row.status != "succeeded":
        raise _fail(
            _(
                "import {id} {status}: {message}",
                id=row.id,
                status=field_labels.status(row.status),
                message=row.message,
            )
        )
    if rejected:
        raise typer.Exit(EXIT_ROWS_REJECTED)


@contextmanager
def _file_refused() -> Iterator[None]:
    """A file refused as a whole (its header, encoding, CSV syntax, size): the errors, exit 5."""
    try:
        yield
    except ValidationFailed as exc:
        if not exc.errors or any(error.field != "file" for error in exc.errors):
            raise
        for error in exc.errors:
            _say(_("error: {message}; nothing imported", message=error.message), err=True)
        raise typer.Exit(EXIT_BAD_FILE) from exc


def _print_report(imported: int, rejected: list[csv_import.RejectedRow], *, dry_run: bool) -> None:
    if dry_run:
        said = i18n.ngettext(
            "would import {count} employee; rejected {rejected}",
            "would import {count} employees; rejected {rejected}",
            imported,
        )
    else:
        said = i18n.ngettext(
            "imported {count} employee; rejected {rejected}",
            "imported {count} employees; rejected {rejected}",
            imported,
        )
    typer.echo(said.format(count=imported, rejected=len(rejected)))
    for row in rejected:
        for error in row.errors:
            said = _(
                "line {line}: {field}: {message}",
                line=row.line,
                field=error.field,
                message=error.message,
            )
            typer.echo(f"  {i18n.text(said)}")


EmployeeRef = Annotated[str, typer.Argument(help="The employee's number (or id).")]
AccountOpt = Annotated[str, typer.Option(help="Account id.")]


def _employee_id(session: Session, account: str, ref: str) -> str:
    found = session.scalar(
        select(Employee.id).where(
            Employee.account_id == account,
            (Employee.employee_number == ref) | (Employee.id == ref),
        )
    )
    if found is None:
        raise NotFound(_("no employee '{ref}' in this account", ref=ref))
    return found


def _lifecycle(step: Callable[..., Employee], account: str, employee: str, data: Any) -> None:
    """One lifecycle step on the employee named by number or id; says where it leaves them."""
    with _session() as session:
        _say_employment(
            step(session, None, account, _employee_id(session, account, employee), data)
        )


def _say_employment(employee: Employee) -> None:
    if employee.leaving_on is not None:
        assert employee.access_ends_at is not None
        said = _(
            "{number}: active, leaving on {day} (access ends {ends} UTC)",
            number=employee.employee_number,
            day=employee.leaving_on.isoformat(),
            ends=f"{employee.access_ends_at:%Y-%m-%d %H:%M}",
        )
    elif employee.status == "active":
        said = _("{number}: active", number=employee.employee_number)
    else:
        said = _("{number}: terminated", number=employee.employee_number)
    _say(said)


@employees_app.command("terminate")
def employees_terminate(
    employee: EmployeeRef,
    account: AccountOpt,
    date: Annotated[str, typer.Option("--date", help="Last day worked (YYYY-MM-DD).")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    immediately: Annotated[
        bool, typer.Option("--effective-immediately", help="End access now (e.g. a dismissal).")
    ] = False,
) -> None:
    """Record a termination. The LMS user stays active until the last day worked ends (00:00
    the next day, account's time zone), unless the date is past or it is effective immediately."""
    data = _model(
        TerminateIn,
        {"termination_date": date, "reason": reason, "effective_immediately": immediately},
    )
    _lifecycle(hr_employees.terminate, account, employee, data)


@employees_app.command("change-termination")
def employees_change_termination(
    employee: EmployeeRef,
    account: AccountOpt,
    date: Annotated[str | None, typer.Option("--date", help="New last day worked.")] = None,
    reason: Annotated[str | None, typer.Option(help="New reason.")] = None,
    immediately: Annotated[
        bool | None,
        typer.Option(
            "--effective-immediately/--at-end-of-last-day",
            help="End access now, or when the last day worked ends.",
        ),
    ] = None,
) -> None:
    """Change a termination that has not taken effect yet (only the options given change)."""
    sent = {"termination_date": date, "reason": reason, "effective_immediately": immediately}
    data = _model(TerminationChangeIn, {k: v for k, v in sent.items() if v is not None})
    _lifecycle(hr_employees.change_termination, account, employee, data)


@employees_app.command("cancel-termination")
def employees_cancel_termination(
    employee: EmployeeRef,
    account: AccountOpt,
    note: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
) -> None:
    """Undo a termination, scheduled or in effect (recorded by mistake): the employment goes on
    with the same hire date. Not a rehire, which starts a new period of employment."""
    data = _model(CancelTerminationIn, {"note": note})
    _lifecycle(hr_employees.cancel_termination, account, employee, data)


@employees_app.command("rehire")
def employees_rehire(
    employee: EmployeeRef,
    account: AccountOpt,
    hire_date: Annotated[str, typer.Option("--hire-date", help="First day of the new period.")],
) -> None:
    """Start a new period of employment for a terminated employee."""
    data = _model(RehireIn, {"hire_date": hire_date})
    _lifecycle(hr_employees.rehire, account, employee, data)


Model = TypeVar("Model", bound=BaseModel)


def _model(model: type[Model], raw: dict[str, Any]) -> Model:
    """Validate options like the API does; each bad one is an error line and exit code 1."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        _say_field_errors(pydantic_field_errors(exc))
        raise typer.Exit(1) from exc


def _sync_service() -> tuple[SyncService, Engine]:
    settings = _settings()
    engine = make_engine(settings.resolved_database_url())
    migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    deferrer = wiring.deferrer_for(settings)
    wiring.install(sessions, deferrer)
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    return SyncService(sessions, box, SyncEngine(sessions, box), deferrer=deferrer), engine


@lms_app.command("configure")
def lms_configure(
    account: Annotated[str, typer.Option(help="Account id.")],
    url: Annotated[
        str, typer.Option(help="The LMS's SCIM base URL, or the Moodle site's address.")
    ],
    connector: Annotated[
        str, typer.Option(help="scim (SCIM 2.0) or moodle (Moodle web services).")
    ] = "scim",
    auth_type: Annotated[str, typer.Option(help="SCIM: bearer, api_key or basic.")] = "bearer",
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the token/key/password from stdin.")
    ] = False,
    username: Annotated[str | None, typer.Option(help="User name (basic auth).")] = None,
    auth_header: Annotated[str, typer.Option(help="Header carrying an API key.")] = "X-API-Key",
    portal_id: Annotated[
        str | None,
        typer.Option(
            help="The portal (tenant) of an LMS that hosts several behind one URL; sent with "
            "every request."
        ),
    ] = None,
    portal_id_in: Annotated[
        str,
        typer.Option(
            "--portal-id-in",
            help="How the portal id is sent: header (--portal-id-header) or path (a segment "
            "appended to the URL).",
        ),
    ] = "header",
    portal_id_header: Annotated[
        str, typer.Option("--portal-id-header", help="The header carrying the portal id.")
    ] = "X-Portal-Id",
    hourly: Annotated[
        bool, typer.Option(help="Activate automatic transfer to LMS at each hour.")
    ] = True,
    sync_users: Annotated[bool, typer.Option(help="Synchronize LMS users.")] = True,
    deactivate: Annotated[
        bool, typer.Option(help="Deactivate LMS users of terminated employees.")
    ] = True,
    user_name_field: Annotated[
        str, typer.Option(help="What the SCIM userName carries: email or employee_number.")
    ] = "email",
    auth_method: Annotated[
        str, typer.Option(help="Moodle: the auth method of new users (manual, oauth2, saml2...).")
    ] = "manual",
    languages: Annotated[
        str,
        typer.Option(
            help="Moodle: the installed language packs, comma-separated (first: default)."
        ),
    ] = "en",
    bulk: Annotated[
        bool, typer.Option(help="SCIM: send users in Bulk requests when the LMS supports them.")
    ] = True,
    sweep_hour: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=23,
            help="The hour (account's time zone) of the daily full sweep; omitted: kept.",
        ),
    ] = None,
) -> None:
    """Configure (or reconfigure) the account's LMS interface. A new URL or authentication
    needs the secret again (--secret-stdin); the deactivation guard's settings are kept."""
    secret = sys.stdin.readline().rstrip("\n") if secret_stdin else None
    try:
        data = InterfaceIn.model_validate(
            {
                "base_url": url,
                "auth_type": auth_type,
                "secret": secret,
                "username": username,
                "auth_header": auth_header,
                "portal_id": portal_id,
                "hourly_transfer": hourly,
                "sync_users": sync_users,
                "deactivate_terminated": deactivate,
                "connector": connector,
                **({} if sweep_hour is None else {"sweep_hour": sweep_hour}),
                "options": {
                    "auth_method": auth_method,
                    "languages": [c.strip() for c in languages.split(",") if c.strip()],
                }
                if connector == "moodle"
                else {
                    "user_name_field": user_name_field,
                    "portal_id_in": portal_id_in,
                    "portal_id_header": portal_id_header,
                    "use_bulk": bulk,
                },
            }
        )
    except ValidationError as exc:
        _say_field_errors(csv_import.pydantic_field_errors(exc))
        raise typer.Exit(1) from exc
    service, engine = _sync_service()
    try:
        saved = service.save_interface(account, data)
    except ValidationFailed as exc:
        if not secret_stdin and any(e.field == "secret" for e in exc.errors):
            _say(_("hint: give the secret again with --secret-stdin"), err=True)
        _say_field_errors(exc.errors)
        raise typer.Exit(1) from exc
    except DomainError as exc:
        raise _fail(exc.message) from exc
    finally:
        service.close()
        engine.dispose()
    _say(_("LMS interface saved; connection test:"))
    _print_findings(saved.connection_test.findings)
    for name, count in saved.caught_up.items():
        said = i18n.ngettext(
            '"{switch}" is on again: {count} employee it held back due now',
            '"{switch}" is on again: {count} employees it held back due now',
            count,
        )
        typer.echo(said.format(switch=i18n.gettext(SWITCH_LABELS[name]), count=count))
    for name, count in saved.held_back.items():
        said = i18n.ngettext(
            '"{switch}" is off: it holds back {count} employee',
            '"{switch}" is off: it holds back {count} employees',
            count,
        )
        typer.echo(said.format(switch=i18n.gettext(SWITCH_LABELS[name]), count=count))
    if not saved.connection_test.ok:
        # Exit 0: the save was kept (activation refuses on its own until the test passes).
        _say(
            _(
                "warning: the LMS failed its connection test; the settings are saved, but "
                "activation is refused until `lmsync lms test` reports no error"
            ),
            err=True,
        )


# A connection test's finding levels, as the pages say them (test_result.html).
LEVEL_LABELS = {"ok": N_("ok"), "warning": N_("warning"), "error": N_("error")}


def _print_findings(findings: Sequence[CheckFinding | Finding], *, err: bool = False) -> None:
    """One line a finding: its level (aligned on the longest in the language), its message."""
    levels = {code: i18n.gettext(label) for code, label in LEVEL_LABELS.items()}
    width = max(len(level) for level in levels.values())
    for finding in findings:
        level = levels.get(finding.level, finding.level)
        typer.echo(f"  [{level:>{width}}] {i18n.text(finding.message)}", err=err)


@lms_app.command("test")
def lms_test(account: Annotated[str, typer.Option(help="Account id.")]) -> None:
    """Test the connection: discovery documents, credentials, schemas. Writes nothing."""
    service, engine = _sync_service()
    try:
        report = service.test_interface(account)
    except DomainError as exc:
        raise _fail(exc.message) from exc
    finally:
        service.close()
        engine.dispose()
    _print_findings(report.findings)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def sync(
    account: Annotated[str, typer.Option(help="Account id.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; write nothing.")] = False,
    full: Annotated[
        bool, typer.Option("--full", help="All employees, not only the due ones.")
    ] = False,
    activate: Annotated[
        bool, typer.Option("--activate", help="The first activation (marks the interface active).")
    ] = False,
) -> None:
    """Synchronize an account now, with a progress bar and a summary table."""
    service, engine = _sync_service()
    try:
        with service.sessions() as session:
            service.get_interface(session, account)
        if activate:
            service.check_lms(account)
        options = RunOptions(
            trigger="activation" if activate else "manual",
            dry_run=dry_run,
            full=full or activate,
            activating=activate,
        )
        summary = _run_with_progress(service, account, options)
    except LmsCheckFailed as exc:
        _print_findings(exc.findings, err=True)
        raise _fail(exc.message) from exc
    except DomainError as exc:
        raise _fail(exc.message) from exc
    finally:
        service.close()
        engine.dispose()
    verb = i18n.text(_("planned") if dry_run else _("done"))
    typer.echo()
    _say(_("run {id}: {status}", id=summary.run_id, status=field_labels.status(summary.status)))
    if summary.message:
        typer.echo(f"  {i18n.text(summary.message)}")
    # The actions are the run's codes (as its counts are stored), in every language.
    header = i18n.text(_("action"))
    typer.echo(f"  {header:<12} {verb:>7}")
    for action, count in sorted(summary.counts.items()):
        typer.echo(f"  {action:<12} {count:>7}")
    if summary.status in ("failed", "held", "partial", "interrupted"):
        raise typer.Exit(1)


def _run_with_progress(service: SyncService, account: str, options: RunOptions) -> RunSummary:
    result: list[RunSummary | BaseException] = []

    def target() -> None:
        try:
            result.append(service.run_now(account, options))
        except BaseException as exc:  # handed to the main thread
            result.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    with typer.progressbar(length=1, label=i18n.text(_("syncing")), file=sys.stderr) as bar:
        shown = 0
        while worker.is_alive():
            worker.join(0.2)
            with service.sessions() as session:
                run = session.scalars(
                    select(SyncRun)
                    .where(SyncRun.account_id == account)
                    .order_by(SyncRun.started_at.desc())
                    .limit(1)
                ).first()
            if run is not None and run.progress_total:
                bar.length = run.progress_total
                bar.update(run.progress_done - shown)
                shown = run.progress_done
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@app.command()
def demo(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the pages and the API (0: any free).")
    ] = 8000,
    lms_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Port of the embedded SCIM LMS (0: any free one)."),
    ] = 0,
) -> None:
    """Set up a demo account with employees and a manager login, then serve on 127.0.0.1.

    The demo's database is demo.sqlite3 in the data directory (LMSYNC_DATA_DIR, default
    ./.lmsync), recreated at each start; lmsync commands run with the same data directory use it
    while the demo runs. A port in use stops the demo before it changes anything (exit code 6),
    and so does another demo running on the same data directory (exit code 7).
    """
    from lmsync.demo import DemoCannotStart, run_demo

    try:
        run_demo(Settings(), port=port, lms_port=lms_port)
    except DemoCannotStart as exc:
        raise _fail(exc.message, exc.exit_code) from exc


def main() -> None:
    app()
