"""The ``lmsync`` command line on both databases, from account creation to a working token."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lmsync.cli import app
from lmsync.settings import Settings
from lmsync.web.app import create_app
from tests.api.test_import_api import TEN_ROWS


def run(cli: CliRunner, *args: str, input: str | None = None, code: int = 0) -> str:
    result = cli.invoke(app, list(args), input=input)
    assert result.exit_code == code, (result.output, result.exception)
    return result.output.strip()


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
    dry = run(cli, "employees", "import", str(csv_file), "--account", account, "--dry-run", code=2)
    assert dry.splitlines()[0] == "would import 7 employees; rejected 3"
    out = run(cli, "employees", "import", str(csv_file), "--account", account, code=2)
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
