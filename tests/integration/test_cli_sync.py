"""The command line against a real SCIM LMS: configure, test, dry run, activate, sync."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.db.test_cli import run
from tests.integration.conftest import LmsProcess, scim_user


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LMSYNC_DATABASE_URL", database_url)
    monkeypatch.setenv("LMSYNC_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def test_cli_configures_tests_and_syncs(cli: CliRunner, lms: LmsProcess, tmp_path: Path) -> None:
    account = run(cli, "account", "create", "--name", "Acme", "--company", "Acme inc.")
    run(cli, "account", "enable-sync", account)
    lms.load([scim_user("ALICE@example.com")])
    csv_file = tmp_path / "e.csv"
    csv_file.write_text(
        "employee_number,first_name,last_name,work_email\n"
        "1,Alice,A,alice@example.com\n2,Bob,B,bob@example.com\n3,Carl,C,\n",
        encoding="utf-8",
    )
    run(cli, "employees", "import", str(csv_file), "--account", account)

    bad = run(cli, "lms", "configure", "--account", account, "--url", "not a url", code=1)
    assert "base_url" in bad
    run(
        cli,
        "lms",
        "configure",
        "--account",
        account,
        "--url",
        lms.base_url,
        "--secret-stdin",
        input=lms.token + "\n",
    )
    tested = run(cli, "lms", "test", "--account", account)
    assert "authentication accepted" in tested

    planned = run(cli, "sync", "--account", account, "--activate", "--dry-run")
    assert "planned" in planned
    assert "create             1" in planned
    assert "link               1" in planned
    assert lms.stats()["writes"] == 0

    done = run(cli, "sync", "--account", account, "--activate")
    assert "succeeded" in done
    assert "create             1" in done
    emails = sorted(u["emails"][0]["value"].casefold() for u in lms.users())
    assert emails == ["alice@example.com", "bob@example.com"]
    again = run(cli, "sync", "--account", account, "--full")
    assert "create" not in again
