"""The ``lmsync`` command line: database, server, accounts, logins, tokens, imports and the demo."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from lmsync.domain.accounts import AccountCreateIn, AccountPatchIn
from lmsync.domain.errors import DomainError, ValidationFailed
from lmsync.hr import accounts, csv_import
from lmsync.hr.principal import Principal
from lmsync.log_config import configure
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction

app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
account_app = typer.Typer(no_args_is_help=True, help="Accounts (companies).")
user_app = typer.Typer(no_args_is_help=True, help="Logins and their roles.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
employees_app = typer.Typer(no_args_is_help=True, help="Employees.")
app.add_typer(db_app, name="db")
app.add_typer(account_app, name="account")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(employees_app, name="employees")

OPERATOR = Principal(user_id="cli", email="cli", is_operator=True, account_id=None, role=None)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@contextmanager
def _session() -> Iterator[Session]:
    """A transaction on the configured database (schema upgraded first); domain errors exit 1."""
    settings = Settings()
    engine = make_engine(settings.resolved_database_url())
    migrate.upgrade(engine)
    try:
        with transaction(make_session_factory(engine)) as session:
            yield session
    except ValidationFailed as exc:
        for error in exc.errors:
            typer.echo(f"error: {error.field}: {error.message}", err=True)
        raise typer.Exit(1) from exc
    except DomainError as exc:
        raise _fail(exc.message) from exc
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema to the latest migration."""
    settings = Settings()
    engine = make_engine(settings.resolved_database_url())
    migrate.upgrade(engine)
    engine.dispose()
    typer.echo("database is up to date")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Upgrade the schema, then serve the API."""
    import uvicorn

    from lmsync.web.app import create_app

    settings = Settings()
    configure(settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_app(settings, upgrade_schema=True), host=host, port=port, log_level="warning"
    )


@account_app.command("create")
def account_create(
    name: Annotated[str, typer.Option(help="The account's name.")],
    company: Annotated[str, typer.Option(help="The company's name, sent to the LMS.")],
    language: Annotated[str, typer.Option(help="Default language (BCP 47).")] = "en",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC",
) -> None:
    """Create an account; prints its id."""
    try:
        data = AccountCreateIn(
            name=name, company_name=company, default_language=language, timezone=timezone
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    with _session() as session:
        account = accounts.create_account(session, data)
        typer.echo(account.id)


@account_app.command("enable-sync")
def account_enable_sync(account: Annotated[str, typer.Argument(help="Account id.")]) -> None:
    """Switch user synchronization on for an account (the platform operator's switch)."""
    with _session() as session:
        accounts.update_account(session, OPERATOR, account, AccountPatchIn(user_sync_enabled=True))
        typer.echo(f"user synchronization enabled for {account}")


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
    """Create a login, optionally a member of an account; prints its id."""
    if role not in ("MHR", "viewer"):
        raise _fail("role must be MHR or viewer")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
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
) -> None:
    """Issue an API token; it is printed once and only its hash is kept."""
    with _session() as session:
        user = accounts.find_user(session, email)
        issued = accounts.create_token(session, user, account_id=account, name=name)
        typer.echo(issued.token)


@employees_app.command("import")
def employees_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    account: Annotated[str, typer.Option(help="Account id.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only; write nothing.")] = False,
) -> None:
    """Import employees from a CSV file whose header names the API's JSON fields."""
    with _session() as session:
        report = csv_import.import_employees(
            session, None, account, file.read_bytes(), dry_run=dry_run
        )
        verb = "would import" if dry_run else "imported"
        typer.echo(f"{verb} {len(report.imported)} employees; rejected {len(report.rejected)}")
        for row in report.rejected:
            for error in row.errors:
                typer.echo(f"  line {row.line}: {error.field}: {error.message}")
    if report.rejected:
        raise typer.Exit(2)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
) -> None:
    """Set up a demo account with employees and a manager login, then serve on 127.0.0.1."""
    from lmsync.demo import run_demo

    run_demo(Settings(), port=port)


def main() -> None:
    app()
