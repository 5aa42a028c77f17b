"""The interface's portal identifier reaches the LMS, against a real scim2-server process that
serves one portal of a multi-portal LMS (``python -m lmsync.lms.embedded --portal``): every SCIM
request must name it, in the ``X-Portal-Id`` header or as the path segment after the URL, or it
is answered 404. Configured through the API, the page and the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lmsync.settings import Settings
from lmsync.web.app import create_app
from tests.api.test_pages import sign_in
from tests.conftest import World
from tests.db.test_cli import run
from tests.integration.conftest import Harness, configure, wait_for
from tests.lms_peer import running_lms

PORTAL = "acme eu/1"  # a space and a "/": both percent-encoded in the path form
SETTINGS_PAGE = "/settings/interfaces/lms"
PORTAL_FINDINGS = {
    "header": "portal identifier sent as header X-Portal-Id",
    "path": "portal identifier sent as a path segment of the URL",
}


@pytest.fixture
def harness(settings: Settings, world: World, tmp_path: Path) -> Iterator[Harness]:
    """lmsync against an LMS serving the portal ``PORTAL`` only; the interface is configured
    with the LMS's URL and token, without portal identifier yet."""
    with running_lms(tmp_path, portal=PORTAL) as lms:
        app = create_app(settings, poll_seconds=0.1)
        with TestClient(app, raise_server_exceptions=False) as client:
            configure(client, world, lms)
            lms.reset_stats()
            yield Harness(client, world, lms)


def put_interface(harness: Harness, **overrides: Any) -> dict[str, Any]:
    body = {"base_url": harness.lms.base_url, **overrides}
    response = harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def messages(report: dict[str, Any], level: str) -> list[str]:
    return [f["message"] for f in report["findings"] if f["level"] == level]


@pytest.mark.parametrize("form", ["header", "path"])
def test_the_portal_id_reaches_the_lms_with_every_request(harness: Harness, form: str) -> None:
    saved = put_interface(harness, portal_id=PORTAL, options={"portal_id_in": form})

    assert saved["portal_id"] == PORTAL
    assert saved["options"]["portal_id_in"] == form
    assert saved["options"]["portal_id_header"] == "X-Portal-Id"
    test = saved["connection_test"]
    assert test["ok"] is True, test
    assert messages(test, "ok")[0] == PORTAL_FINDINGS[form]
    assert "authentication accepted" in messages(test, "ok")
    employee = harness.hire("E-1", "portal.one@example.com")
    harness.hire("E-2", "portal.two@example.com")

    run = harness.activate()  # searches, then creates

    assert run["status"] == "succeeded", run
    assert len(harness.lms.users()) == 2
    harness.client.patch(
        f"/api/v1/employees/{employee['id']}", json={"job_title": "Lead"}, headers=harness.mhr
    )
    wait_for(lambda: harness.lms.by_email("portal.one@example.com")[0].get("title") == "Lead")
    assert harness.sync(full=True)["status"] == "succeeded"  # lists the users
    stats = harness.lms.stats()
    assert stats["wrong_portal"] == 0
    assert {"GET", "POST", "PATCH"} <= set(stats["requests"]), stats


def test_without_the_portal_id_the_lms_answers_404_and_the_test_says_so(
    harness: Harness,
) -> None:
    """The embedded LMS really checks the portal: the test above cannot pass by chance."""
    test = put_interface(harness)["connection_test"]

    assert test["ok"] is False
    assert not any("portal" in m for m in messages(test, "ok"))
    assert messages(test, "error")[0].startswith("ServiceProviderConfig:")
    assert harness.lms.stats()["wrong_portal"] > 0

    other = put_interface(harness, portal_id="acme eu", options={"portal_id_in": "path"})
    assert other["connection_test"]["ok"] is False


def test_a_reserved_portal_header_is_a_field_error(harness: Harness) -> None:
    body = {
        "base_url": harness.lms.base_url,
        "portal_id": PORTAL,
        "options": {"portal_id_header": "Authorization"},
    }

    response = harness.client.put("/api/v1/lms/interface", json=body, headers=harness.mhr)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"] == [
        {
            "field": "options.portal_id_header",
            "code": "{name} is reserved for HTTP, authentication or proxies: choose another "
            "header (e.g. {example})",
            "message": "Authorization is reserved for HTTP, authentication or proxies: choose "
            "another header (e.g. X-Portal-Id)",
        }
    ]
    non_ascii = {**body, "portal_id": "Montréal", "options": {}}
    response = harness.client.put("/api/v1/lms/interface", json=non_ascii, headers=harness.mhr)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["portal_id"]


def test_the_page_explains_and_saves_the_portal_options(harness: Harness) -> None:
    csrf = sign_in(harness.client, "mhr_a@example.com")
    page = harness.client.get(SETTINGS_PAGE).text
    assert 'id="h-portal_id"' in page
    assert "several portals (tenants) behind one address" in page
    assert '<option value="header" selected>' in page
    assert 'name="portal_id_header" type="text" maxlength="100" value="X-Portal-Id"' in page
    form = {
        "csrf_token": csrf,
        "base_url": harness.lms.base_url,
        "auth_type": "bearer",
        "portal_id": PORTAL,
        "portal_id_in": "header",
        "portal_id_header": "Authorization",
        "hourly_transfer": "true",
        "sync_users": "true",
        "deactivate_terminated": "true",
    }

    refused = harness.client.post(SETTINGS_PAGE, data=form)

    assert refused.status_code == 422
    error = re.search(
        r'<div class="field-error" id="e-portal_id_header">([^<]*)</div>', refused.text
    )
    assert error is not None
    assert error.group(1).startswith("Authorization is reserved")
    assert 'value="Authorization"' in refused.text  # the form keeps what was typed

    fixed = {**form, "portal_id_in": "path", "portal_id_header": "X-Tenant"}
    saved = harness.client.post(SETTINGS_PAGE, data=fixed)

    assert saved.status_code == 200
    assert "connection works" in saved.text
    assert PORTAL_FINDINGS["path"] in saved.text
    stored = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    assert stored["portal_id"] == PORTAL
    assert stored["options"]["portal_id_in"] == "path"
    assert stored["options"]["portal_id_header"] == "X-Tenant"
    shown = harness.client.get(SETTINGS_PAGE).text
    assert '<option value="path" selected>' in shown
    assert 'value="X-Tenant"' in shown


def test_the_cli_configures_the_portal_options(
    harness: Harness, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.database_url is not None
    monkeypatch.setenv("LMSYNC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LMSYNC_DATA_DIR", str(settings.data_dir))
    cli, account = CliRunner(), harness.world.account_a
    configure = ("lms", "configure", "--account", account, "--url", harness.lms.base_url)

    refused = run(cli, *configure, "--portal-id", PORTAL, "--portal-id-header", "Host", code=1)
    assert "error: options.portal_id_header: Host is reserved" in refused

    saved = run(cli, *configure, "--portal-id", PORTAL, "--portal-id-in", "path")

    assert "[     ok] portal identifier sent as a path segment of the URL" in saved
    assert "[     ok] authentication accepted" in saved
    stored = harness.client.get("/api/v1/lms/interface", headers=harness.mhr).json()
    assert stored["options"]["portal_id_in"] == "path"
    assert run(cli, "sync", "--account", account, "--activate").count("succeeded") >= 1
