"""Activation and saving check the LMS first (issue 10), against a real scim2-server process:

- an activation, or its preview, against an LMS whose connection test reports an error is refused
  with the findings (API 409 problem, page, CLI exit code and message), and nothing is written;
- saving the interface runs the test once saved and shows the result beside the saved values
  (API ``connection_test``, page, CLI), and the save is kept whatever it finds.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from lmsync.cli import app
from lmsync.settings import Settings
from tests.api.test_pages import sign_in
from tests.db.test_cli import run
from tests.integration.conftest import Harness

SETTINGS_PAGE = "/settings/interfaces/lms"
MISSING_URN = "urn:example:missing:1.0:User"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/scim/v2"


# Each way an LMS fails its test: the interface's settings, and a piece of the error finding.
BROKEN: dict[str, tuple[Callable[[Harness], dict[str, Any]], str]] = {
    "extension-missing": (
        lambda h: {"base_url": h.lms.base_url, "options": {"extension_urn": MISSING_URN}},
        f"the LMS extension schema {MISSING_URN} is missing on the server",
    ),
    "wrong-secret": (
        lambda h: {"base_url": h.lms.base_url, "secret": "not-the-token"},
        "authentication failed",
    ),
    "unreachable": (
        lambda h: {"base_url": closed_port_url(), "secret": h.lms.token},
        "cannot connect to the LMS",
    ),
}


def break_lms(harness: Harness, how: str) -> str:
    """Point the interface at a broken LMS; the save is kept and its test says why. Returns the
    expected piece of the error finding."""
    settings, expected = BROKEN[how]
    saved = harness.client.put("/api/v1/lms/interface", json=settings(harness), headers=harness.mhr)
    assert saved.status_code == 200, saved.text
    test = saved.json()["connection_test"]
    assert test["ok"] is False
    assert any(f["level"] == "error" and expected in f["message"] for f in test["findings"]), test
    return expected


def run_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM sync_runs")) or 0)


def assert_nothing_written(harness: Harness, engine: Engine) -> None:
    assert run_rows(engine) == 0
    interface = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    assert interface["active"] is False
    assert harness.lms.stats()["writes"] == 0
    assert harness.lms.users() == []


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_activation_is_refused_with_the_findings_and_writes_nothing(
    harness: Harness, engine: Engine, how: str
) -> None:
    harness.hire("E-1", "would.be.created@example.com")
    expected = break_lms(harness, how)

    for dry_run in (True, False):
        refused = harness.client.post(
            "/api/v1/lms/interface/activate", json={"dry_run": dry_run}, headers=harness.mhr
        )
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert "the LMS failed its connection test" in problem["detail"]
        assert "nothing was written" in problem["detail"]
        errors = [f["message"] for f in problem["findings"] if f["level"] == "error"]
        assert any(expected in message for message in errors), problem
        assert set(problem["findings"][0]) == {"level", "message"}
        assert harness.lms.token not in refused.text

    assert_nothing_written(harness, engine)


def test_activation_goes_through_once_the_lms_is_fixed(harness: Harness, engine: Engine) -> None:
    harness.hire("E-1", "fixed@example.com")
    break_lms(harness, "wrong-secret")
    body = {"base_url": harness.lms.base_url, "secret": harness.lms.token}
    fixed = harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr).json()
    assert fixed["connection_test"]["ok"] is True
    messages = [f["message"] for f in fixed["connection_test"]["findings"]]
    assert "authentication accepted" in messages

    run = harness.activate()

    assert run["status"] == "succeeded", run
    assert len(harness.lms.by_email("fixed@example.com")) == 1


def test_the_saved_interface_shows_its_test_and_a_get_does_not(harness: Harness) -> None:
    body = {"base_url": harness.lms.base_url, "hourly_transfer": False}
    saved = harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr)
    assert saved.status_code == 200
    out = saved.json()
    assert out["connection_test"]["ok"] is True
    assert out["hourly_transfer"] is False
    assert out["secret_set"] is True
    assert harness.lms.token not in saved.text
    stored = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    assert "connection_test" not in stored
    assert "held_back" not in stored
    assert stored["hourly_transfer"] is False


def test_the_page_refuses_the_preview_and_the_activation_with_the_findings(
    harness: Harness, engine: Engine
) -> None:
    harness.hire("E-1", "page@example.com")
    expected = break_lms(harness, "extension-missing")
    csrf = sign_in(harness.client, "mhr_a@example.com")

    preview = harness.client.post(f"{SETTINGS_PAGE}/preview", data={"csrf_token": csrf})
    activate = harness.client.post(
        f"{SETTINGS_PAGE}/activate", data={"csrf_token": csrf, "confirm": "yes"}
    )

    for page in (preview, activate):
        assert page.status_code == 409
        assert "Activation refused" in page.text
        assert "The LMS failed its connection test: nothing was written" in page.text
        assert expected in page.text
        assert 'name="base_url"' in page.text  # the settings, to fix them
    assert_nothing_written(harness, engine)


def test_the_settings_page_shows_the_test_after_saving_and_keeps_the_save(
    harness: Harness,
) -> None:
    csrf = sign_in(harness.client, "mhr_a@example.com")
    form = {
        "csrf_token": csrf,
        "base_url": harness.lms.base_url,
        "auth_type": "bearer",
        "secret": "not-the-token",
        "hourly_transfer": "true",
        "sync_users": "true",
        "deactivate_terminated": "true",
    }

    bad = harness.client.post(SETTINGS_PAGE, data=form)

    assert bad.status_code == 200
    assert "LMS interface saved." in bad.text
    assert "The settings are saved, but the LMS failed its connection test" in bad.text
    assert "authentication failed" in bad.text
    assert "not-the-token" not in bad.text
    tested = harness.client.post("/api/v1/lms/interface/test", headers=harness.mhr).json()
    assert tested["ok"] is False  # the bad secret was kept

    good = harness.client.post(SETTINGS_PAGE, data={**form, "secret": harness.lms.token})

    assert good.status_code == 200
    assert "connection works" in good.text
    assert "failed its connection test" not in good.text


def _cli_on(harness: Harness, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI runner on the harness's database and data directory."""
    assert settings.database_url is not None
    monkeypatch.setenv("LMSYNC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LMSYNC_DATA_DIR", str(settings.data_dir))
    return CliRunner()


def test_the_cli_warns_when_saving_and_refuses_to_activate(
    harness: Harness, engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, account = _cli_on(harness, settings, monkeypatch), harness.world.account_a
    harness.hire("E-1", "cli@example.com")
    configure = ("lms", "configure", "--account", account, "--url", harness.lms.base_url)

    saved = run(cli, *configure, "--secret-stdin", input="not-the-token\n")  # exit 0: kept

    assert "LMS interface saved" in saved
    assert "[  error] authentication failed" in saved
    assert "warning: the LMS failed its connection test; the settings are saved" in saved
    assert "not-the-token" not in saved

    for extra in ([], ["--dry-run"]):
        refused = run(cli, "sync", "--account", account, "--activate", *extra, code=1)
        assert "error: activation refused: the LMS failed its connection test" in refused
        assert "nothing was written" in refused
        assert "[  error] authentication failed" in refused
    assert_nothing_written(harness, engine)

    fixed = run(cli, *configure, "--secret-stdin", input=harness.lms.token + "\n")
    assert "warning" not in fixed
    assert "[     ok] authentication accepted" in fixed
    done = run(cli, "sync", "--account", account, "--activate")
    assert "succeeded" in done
    assert len(harness.lms.by_email("cli@example.com")) == 1


def test_the_cli_sets_bulk_and_the_sweep_hour(
    harness: Harness, engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, account = _cli_on(harness, settings, monkeypatch), harness.world.account_a
    configure = ("lms", "configure", "--account", account, "--url", harness.lms.base_url)

    saved = run(cli, *configure, "--no-bulk", "--sweep-hour", "5")

    assert "[     ok] Bulk is off for this interface: one request per user" in saved
    assert "filters users on meta.lastModified" in saved
    interface = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    assert interface["options"]["use_bulk"] is False
    assert interface["sweep_hour"] == 5
    assert interface["modified_filter"] is True

    again = run(cli, *configure)  # the hour is kept when omitted; Bulk is on by default
    assert "Bulk supported: up to 100 users per request" in again
    assert (
        harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()["sweep_hour"] == 5
    )
    refused = cli.invoke(app, [*configure, "--sweep-hour", "24"])
    assert refused.exit_code == 2
    assert "less than or equal to 23" in refused.output
