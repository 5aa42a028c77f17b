"""The ``lmsync`` command line on both databases, from account creation to a working token."""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from lmsync import i18n
from lmsync.cli import app
from lmsync.domain.accounts import AccountCreateIn
from lmsync.hr import accounts
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Account, Employee
from lmsync.web.app import create_app
from tests.api.test_import_api import TEN_ROWS

# The POSIX locale of a command run by ``run`` unless told otherwise: English, whatever the
# developer's environment says (the CLI speaks the locale's language).
ENGLISH: dict[str, str | None] = {
    "LC_ALL": None,
    "LC_MESSAGES": None,
    "LANGUAGE": None,
    "LANG": "C",
}
FRENCH: dict[str, str | None] = {**ENGLISH, "LANG": "fr_CA.UTF-8"}
NBSP = "\u00a0"  # French typography: before ":", inside « »


@pytest.fixture(autouse=True)
def _english_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands this module invokes directly speak English, as their assertions expect."""
    for name, value in ENGLISH.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def run(
    cli: CliRunner,
    *args: str,
    input: str | None = None,
    code: int = 0,
    env: Mapping[str, str | None] | None = None,
) -> str:
    """A command's output (stdout and stderr), less the "using database" line that every command
    using the database writes on stderr. In English unless ``env`` sets the locale otherwise."""
    result = cli.invoke(app, list(args), input=input, env={**ENGLISH, **(env or {})})
    assert result.exit_code == code, (result.output, result.exception)
    # An error is a message and an exit code, never an exception that escaped the command.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.output,
        result.exc_info,
    )
    lines = result.output.splitlines()
    database = ("using database ", f"base de données utilisée{NBSP}: ")
    return "\n".join(line for line in lines if not line.startswith(database)).strip()


def test_cli_end_to_end(cli: CliRunner, database_url: str, tmp_path: Path) -> None:
    assert run(cli, "db", "upgrade") == "database is up to date"
    account = run(cli, "account", "create", "--name", "Acme", "--company", "Acme inc.")
    assert len(account) == 36
    run(
        cli,
        "user",
        "create",
        "--email",
        "HR@Acme.example",
        "--password-stdin",
        "--account",
        account,
        "--role",
        "MHR",
        input="a long enough password\n",
    )
    token = run(cli, "token", "create", "--email", "hr@acme.example")
    assert token.startswith("lms_")
    assert "enabled" in run(cli, "account", "enable-sync", account)

    csv_file = tmp_path / "employees.csv"
    csv_file.write_text(TEN_ROWS, encoding="utf-8")
    dry = run(cli, "employees", "import", str(csv_file), "--account", account, "--dry-run", code=3)
    assert dry.splitlines()[0] == "would import 7 employees; rejected 3"
    out = run(cli, "employees", "import", str(csv_file), "--account", account, code=3)
    assert out.splitlines()[0] == "imported 7 employees; rejected 3"
    assert "line 6: home_phone: not a phone number" in out

    settings = Settings(database_url=database_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["account_id"] == account
        assert me["role"] == "MHR"
        listed = client.get("/api/v1/employees", headers={"Authorization": f"Bearer {token}"})
        assert listed.json()["total"] == 7
        account_out = client.get(
            f"/api/v1/accounts/{account}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert account_out["user_sync_enabled"] is True
        assert run(cli, "token", "revoke", input=token + "\n") == "token revoked"
        revoked = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert revoked.status_code == 401
        assert "no such token" in run(cli, "token", "revoke", input="lms_nope\n", code=1)


def test_cli_errors_are_readable(cli: CliRunner) -> None:
    assert "error: email:" in run(cli, "user", "create", "--email", "not-an-email", code=1)
    assert "account not found" in run(cli, "account", "enable-sync", "nope", code=1)
    assert "role must be MHR or viewer" in run(
        cli, "user", "create", "--email", "a@b.example", "--role", "boss", code=1
    )
    assert "unknown time zone" in run(
        cli, "account", "create", "--name", "X", "--company", "X", "--timezone", "Nowhere", code=1
    )
    assert "no user with email" in run(cli, "token", "create", "--email", "x@y.example", code=1)
    run(cli, "user", "create", "--email", "dup@b.example")
    assert "already exists" in run(cli, "user", "create", "--email", "DUP@b.example", code=1)


def test_cli_terminations(cli: CliRunner, database_url: str, tmp_path: Path) -> None:
    account = run(cli, "account", "create", "--name", "Acme", "--company", "Acme inc.")
    csv_file = tmp_path / "one.csv"
    csv_file.write_text(
        "employee_number,first_name,last_name,work_email,hire_date\n"
        "E-1,Ann,Lee,ann@example.com,2024-01-02\n"
    )
    run(cli, "employees", "import", str(csv_file), "--account", account)
    later = (date.today() + timedelta(days=40)).isoformat()
    out = run(cli, "employees", "terminate", "E-1", "--account", account, "--date", later)
    assert out.startswith(f"E-1: active, leaving on {later} (access ends ")
    again = run(cli, "employees", "terminate", "E-1", "--account", account, "--date", later, code=1)
    assert f"already leaving on {later}" in again
    bad = run(
        cli,
        "employees",
        "change-termination",
        "E-1",
        "--account",
        account,
        "--date",
        "someday",
        code=1,
    )
    assert "error: termination_date:" in bad
    now = run(
        cli,
        "employees",
        "change-termination",
        "E-1",
        "--account",
        account,
        "--effective-immediately",
    )
    assert now == "E-1: terminated"
    early = run(
        cli, "employees", "rehire", "E-1", "--account", account, "--hire-date", "2020-01-01", code=1
    )
    assert "error: hire_date: must not be before the termination date" in early
    assert (
        run(
            cli,
            "employees",
            "cancel-termination",
            "E-1",
            "--account",
            account,
            "--note",
            "recorded by mistake",
        )
        == "E-1: active"
    )
    missing = run(cli, "employees", "cancel-termination", "E-1", "--account", account, code=1)
    assert "no termination to cancel" in missing
    unknown = run(
        cli, "employees", "terminate", "E-404", "--account", account, "--date", later, code=1
    )
    assert "no employee 'E-404'" in unknown


# -- exit codes of employees import --------------------------------------------------------------


def _employee_count(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            return len(session.scalars(select(Employee.id)).all())
    finally:
        engine.dispose()


def test_import_exit_codes(cli: CliRunner, database_url: str, tmp_path: Path) -> None:
    account = run(cli, "account", "create", "--name", "Acme", "--company", "Acme inc.")
    imports = ("employees", "import")
    missing = run(cli, *imports, str(tmp_path / "nope.csv"), "--account", account, code=4)
    assert missing == f"error: no such file: {tmp_path / 'nope.csv'}"
    unreadable = run(cli, *imports, str(tmp_path), "--account", account, code=4)
    assert unreadable.startswith(f"error: cannot read {tmp_path}")

    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("employee_number,first_name,surname\nE-1,Ann,Lee\n", encoding="utf-8")
    for extra in ([], ["--dry-run"]):
        out = run(cli, *imports, str(bad_header), "--account", account, *extra, code=5)
        assert "error: unknown columns: surname" in out
        assert "nothing imported" in out
    no_last_name = tmp_path / "short.csv"
    no_last_name.write_text("employee_number,first_name\nE-1,Ann\n", encoding="utf-8")
    out = run(cli, *imports, str(no_last_name), "--account", account, code=5)
    assert "error: missing required columns: last_name; nothing imported" in out
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "file is empty" in run(cli, *imports, str(empty), "--account", account, code=5)
    assert _employee_count(database_url) == 0

    some_bad = tmp_path / "some.csv"
    some_bad.write_text(
        "employee_number,first_name,last_name,home_phone\nE-1,Ann,Lee,\nE-2,Bob,Roy,abc\n",
        encoding="utf-8",
    )
    dry = run(cli, *imports, str(some_bad), "--account", account, "--dry-run", code=3)
    assert dry.splitlines()[0] == "would import 1 employee; rejected 1"
    done = run(cli, *imports, str(some_bad), "--account", account, code=3)
    assert done.splitlines()[0] == "imported 1 employee; rejected 1"
    assert "line 3: home_phone: not a phone number" in done
    assert _employee_count(database_url) == 1

    good = tmp_path / "good.csv"
    good.write_text("employee_number,first_name,last_name\nE-3,Cy,Oh\n", encoding="utf-8")
    assert run(cli, *imports, str(good), "--account", account) == "imported 1 employee; rejected 0"
    unknown = run(cli, *imports, str(good), "--account", "nope", code=1)
    assert "account not found" in unknown
    usage = run(cli, *imports, str(good), code=2)  # click's usage error: --account missing
    assert "--account" in usage


# -- account list and language -------------------------------------------------------------------


def test_account_list_and_language(cli: CliRunner, database_url: str, tmp_path: Path) -> None:
    assert "no accounts yet" in run(cli, "account", "list")
    acme = run(cli, "account", "create", "--name", "Acme", "--company", "Acme inc.")
    zed = run(cli, "account", "create", "--name", "Zed", "--company", "Zed ltée")
    run(cli, "user", "create", "--email", "hr@acme.example", "--account", acme)
    run(cli, "user", "create", "--email", "v@acme.example", "--account", acme, "--role", "viewer")
    run(cli, "account", "enable-sync", acme)
    csv_file = tmp_path / "e.csv"
    csv_file.write_text(
        "employee_number,first_name,last_name\nE-1,Ann,Lee\nE-2,Bob,Roy\nE-3,Cy,Oh\n",
        encoding="utf-8",
    )
    run(cli, "employees", "import", str(csv_file), "--account", acme)

    table = run(cli, "account", "list").splitlines()
    assert re.split(r"\s{2,}", table[0]) == [
        "ID",
        "NAME",
        "COMPANY",
        "EMPLOYEES",
        "MEMBERS",
        "SYNC",
        "LANGUAGE",
    ]
    assert re.split(r"\s{2,}", table[1]) == [acme, "Acme", "Acme inc.", "3", "2", "on", "default"]
    assert re.split(r"\s{2,}", table[2]) == [zed, "Zed", "Zed ltée", "0", "0", "off", "default"]
    assert table[1].index("Acme inc.") == table[2].index("Zed ltée") == table[0].index("COMPANY")

    assert run(cli, "account", "language", acme, "fr_CA") == f"language of account {acme}: fr_CA"
    assert run(cli, "account", "language", zed, "fr-CA").endswith(": fr_CA")
    assert run(cli, "account", "language", zed, "en").endswith(": en")
    assert _ui_languages(database_url) == {acme: "fr_CA", zed: "en"}
    assert run(cli, "account", "list").splitlines()[1].endswith("fr_CA")
    default = run(cli, "account", "language", zed, "default")
    assert default == f"language of account {zed}: default (each browser's language)"
    assert _ui_languages(database_url) == {acme: "fr_CA", zed: None}
    refused = run(cli, "account", "language", zed, "de", code=1)
    assert refused == "error: unknown language 'de': use en, fr_CA or default"
    assert "account not found" in run(cli, "account", "language", "nope", "en", code=1)


def _ui_languages(database_url: str) -> dict[str, str | None]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            return {a.id: a.ui_language for a in session.scalars(select(Account))}
    finally:
        engine.dispose()


# -- help without reStructuredText markup --------------------------------------------------------


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group under ``command`` (Typer's own click: duck-typed)."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def test_every_command_is_listed() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"", "demo", "account list", "account language", "employees import"} <= names
    assert len(names) > 20


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "lmsync")
def test_help_has_no_markup(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    for markup in ("``", "`", ":func:", ":class:", ":meth:", ":mod:", ":attr:", "::"):
        assert markup not in result.output, (markup, result.output)


# -- which database ------------------------------------------------------------------------------


def test_the_database_is_said_on_stderr_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql+psycopg://lmsync:s3cret-pw@127.0.0.1:1/lmsync"  # nothing listens on port 1
    monkeypatch.setenv("LMSYNC_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["account", "list"])
    assert result.exit_code == 1  # cannot connect
    assert result.stderr.splitlines()[0] == (
        "using database postgresql+psycopg://lmsync:***@127.0.0.1:1/lmsync"
    )
    assert "s3cret-pw" not in result.output


def test_commands_say_which_database(cli: CliRunner, database_url: str) -> None:
    result = cli.invoke(app, ["account", "create", "--name", "A", "--company", "A inc."])
    assert result.exit_code == 0
    assert result.stderr.startswith("using database ")
    assert len(result.stdout.strip()) == 36  # stdout: only the id, for scripts
    assert "\nusing database" not in "\n" + cli.invoke(app, ["--help"]).output  # no database


@contextmanager
def _demo_running(data_dir: Path, database: Path) -> Iterator[None]:
    """What a running ``lmsync demo`` leaves: its database and the lock it holds."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{database}")
    migrate.upgrade(engine)
    with transaction(make_session_factory(engine)) as session:
        accounts.create_account(
            session, AccountCreateIn(name="lmsync demo", company_name="Démo inc.")
        )
    engine.dispose()
    with (data_dir / "demo.lock").open("a+", encoding="utf-8") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(json.dumps({"pid": 4242, "pages_url": "http://127.0.0.1:8123/"}))
        lock.flush()
        yield


def test_commands_next_to_a_running_demo_use_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / ".lmsync"
    monkeypatch.chdir(tmp_path)  # the default data directory: ./.lmsync
    monkeypatch.delenv("LMSYNC_DATA_DIR", raising=False)
    monkeypatch.setenv("LMSYNC_DATABASE_URL", "")
    cli = CliRunner()
    demo_db = data_dir / "demo.sqlite3"
    with _demo_running(data_dir, demo_db):
        listed = cli.invoke(app, ["account", "list"])
        assert listed.exit_code == 0, listed.output
        assert "lmsync demo" in listed.stdout
        assert listed.stderr.startswith(
            f"using database sqlite:///{demo_db} (the running demo's: a new lmsync demo starts "
            "it afresh)"
        )
        served = Settings(data_dir=data_dir, database_url=None)
        assert served.resolved_database_url().endswith("lmsync.sqlite3")  # the server's own

    stopped = cli.invoke(app, ["account", "list"])  # the demo stopped: its lock is free
    assert stopped.exit_code == 0, stopped.output
    assert "lmsync demo" not in stopped.stdout
    own = data_dir / "lmsync.sqlite3"
    assert stopped.stderr.startswith(
        f"using database sqlite:///{own} (not the demo's, which is not running; to use it: "
        f"LMSYNC_DATABASE_URL=sqlite:///{demo_db})"
    )
    assert "no accounts yet" in stopped.stderr


# -- the POSIX locale's language -----------------------------------------------------------------


def test_the_cli_speaks_french_with_a_french_locale(cli: CliRunner, tmp_path: Path) -> None:
    role = ("user", "create", "--email", "a@b.example", "--role", "boss")
    refused = run(cli, *role, code=1, env=FRENCH)
    assert refused == f"erreur{NBSP}: le rôle doit être MHR ou viewer"

    account = run(cli, "account", "create", "--name", "Acme", "--company", "Acme inc.", env=FRENCH)
    assert len(account) == 36  # machine output: the same in every language
    missing = tmp_path / "nope.csv"
    out = run(cli, "employees", "import", str(missing), "--account", account, code=4, env=FRENCH)
    assert out == f"erreur{NBSP}: fichier introuvable{NBSP}: {missing}"
    one = tmp_path / "one.csv"
    one.write_text("employee_number,first_name,last_name\nE-1,Ann,Lee\n", encoding="utf-8")
    imported = run(cli, "employees", "import", str(one), "--account", account, env=FRENCH)
    assert imported == f"1 employé importé; rejetés{NBSP}: 0"

    # A domain validation error (a Msg) is said in French too, its field name as it is.
    zone = run(
        cli, "account", "create", "--name", "X", "--company", "X", "--timezone", "Nowhere",
        code=1, env=FRENCH,
    )  # fmt: skip
    assert zone.startswith(
        f"erreur{NBSP}: timezone{NBSP}: fuseau horaire inconnu «{NBSP}Nowhere{NBSP}»; "
    )
    assert run(cli, "account", "enable-sync", "nope", code=1, env=FRENCH) == (
        f"erreur{NBSP}: compte introuvable"
    )

    # The table's headers are translated, its cells are not.
    table = run(cli, "account", "list", env=FRENCH).splitlines()
    assert re.split(r"\s{2,}", table[0]) == [
        "ID", "NOM", "ENTREPRISE", "EMPLOYÉS", "MEMBRES", "SYNCHRONISATION", "LANGUE",
    ]  # fmt: skip
    assert re.split(r"\s{2,}", table[1]) == [
        account,
        "Acme",
        "Acme inc.",
        "1",
        "0",
        "off",
        "default",
    ]


def test_the_database_line_and_results_follow_the_locale(cli: CliRunner) -> None:
    result = cli.invoke(app, ["db", "upgrade"], env=FRENCH)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"base de données utilisée{NBSP}: ")
    assert result.stdout == "la base de données est à jour\n"
    assert i18n.current() == "en"  # the command's language ended with it


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (FRENCH, f"erreur{NBSP}: le rôle doit être MHR ou viewer"),
        (
            {**ENGLISH, "LC_ALL": "fr_CA.UTF-8", "LANG": "en_US.UTF-8"},
            f"erreur{NBSP}: le rôle doit être MHR ou viewer",
        ),
        ({**ENGLISH, "LC_ALL": "C", "LANG": "fr_CA.UTF-8"}, "error: role must be MHR or viewer"),
        ({**ENGLISH, "LANG": "C"}, "error: role must be MHR or viewer"),
        ({**ENGLISH, "LANG": "en_US.UTF-8"}, "error: role must be MHR or viewer"),
        ({**ENGLISH, "LANG": "de_DE.UTF-8"}, "error: role must be MHR or viewer"),
    ],
    ids=["LANG=fr_CA", "LC_ALL=fr_CA over LANG=en_US", "LC_ALL=C", "LANG=C", "en_US", "de_DE"],
)
def test_the_locale_decides_the_language(
    cli: CliRunner, env: dict[str, str | None], expected: str
) -> None:
    role = ("user", "create", "--email", "a@b.example", "--role", "boss")
    assert run(cli, *role, code=1, env=env) == expected
