"""Sign-in, passwords, API tokens and flash messages, hardened: constant-work sign-in, a password
policy of the NIST SP 800-63B kind, expiring tokens and their page, login CSRF, flash codes."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from lmsync import security
from lmsync.domain.errors import ValidationFailed
from lmsync.hr import accounts, sessions
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import ApiToken, utcnow
from lmsync.web.pages.common import FLASH_MESSAGES, FlashCode
from tests.api.test_employees_api import hire
from tests.api.test_pages import login_token, sign_in
from tests.conftest import World
from tests.db.test_cli import run

# --- constant-work sign-in ------------------------------------------------------------------


class VerifySpy:
    """The password hasher, counting its argon2 verifications (and still doing them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self._hasher = security._hasher
        monkeypatch.setattr(security, "_hasher", self)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, hash: str, password: str) -> Any:
        self.calls += 1
        return self._hasher.verify(hash, password)


@pytest.mark.parametrize(
    "email",
    ["nobody@example.com", "ops@example.com"],  # unknown; a login without a password
)
def test_a_refused_sign_in_costs_one_password_verification(
    session: Session, world: World, monkeypatch: pytest.MonkeyPatch, email: str
) -> None:
    spy = VerifySpy(monkeypatch)
    with pytest.raises(sessions.LoginRefused):
        sessions.login(session, email, "correct horse", "10.0.0.1")
    assert spy.calls == 1
    sessions.login(session, "mhr_a@example.com", "correct horse", "10.0.0.1")
    assert spy.calls == 2


def test_verify_password_without_a_hash_is_never_a_match() -> None:
    assert security.verify_password(None, "") is False
    assert security.verify_password(None, "correct horse") is False
    assert security.verify_password(security.hash_password("correct horse"), "correct horse")


def test_an_unknown_email_is_throttled_too(client: TestClient, world: World) -> None:
    token = login_token(client)
    form = {"email": "nobody@example.com", "password": "guess one", "csrf_token": token}
    for _ in range(5):
        assert client.post("/login", data=form).status_code == 401
    blocked = client.post("/login", data=form)
    assert blocked.status_code == 429
    assert "too many failed sign-in attempts" in blocked.text


# --- password policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("12345678", "must be at least 12 characters long"),
        (" " * 8, "must be at least 12 characters long"),
        ("", "must be at least 12 characters long"),
        (" " * 12, "must not be only spaces"),
        ("x" * 129, "must be at most 128 characters long"),
        ("qwertyqwerty", security.TOO_COMMON),
        ("QwertyQwerty", security.TOO_COMMON),
        ("qwerty qwerty", security.TOO_COMMON),
        ("123456789012", security.TOO_COMMON),
        ("passwordpassword", security.TOO_COMMON),
        ("my name is jean.tremblay", "must not contain the email's name (the part before the @)"),
    ],
)
def test_password_policy_refuses(password: str, problem: str) -> None:
    assert security.password_problem(password, email="Jean.Tremblay@example.com") == problem


@pytest.mark.parametrize(
    "password",
    ["correct horse", "a long enough password", "x" * 128, "Zoë aime le café au lait"],
)
def test_password_policy_accepts_long_uncommon_passwords(password: str) -> None:
    assert security.password_problem(password, email="jean.tremblay@example.com") is None


def test_the_common_password_list_ships_with_the_package() -> None:
    listed = security.common_passwords()
    assert len(listed) > 40_000
    assert "qwertyqwerty" in listed


@pytest.mark.parametrize("password", ["12345678", " " * 8, "qwertyqwerty"])
def test_create_user_applies_the_policy(session: Session, password: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        accounts.create_user(session, email="hr@acme.example", password=password)
    assert refused.value.errors[0].field == "password"


def test_cli_user_create_says_what_is_wrong_with_the_password(cli: CliRunner) -> None:
    create = ("user", "create", "--email", "hr@acme.example", "--password-stdin")
    short = run(cli, *create, input="12345678\n", code=1)
    assert "error: password: must be at least 12 characters long" in short
    common = run(cli, *create, input="qwertyqwerty\n", code=1)
    assert "this password is too common; choose another" in common
    assert len(run(cli, *create, input="a long enough password\r\n")) == 36


# --- API tokens: expiry ---------------------------------------------------------------------


def token_record(engine: Engine, token: str) -> ApiToken:
    with transaction(make_session_factory(engine)) as s:
        record = s.scalars(
            select(ApiToken).where(ApiToken.token_hash == security.hash_api_token(token))
        ).one()
        s.expunge(record)
        return record


def test_tokens_get_the_default_lifetime(engine: Engine, world: World) -> None:
    record = token_record(engine, world.mhr_a)
    assert record.expires_at is not None
    assert abs(record.expires_at - (record.created_at + timedelta(days=90))) < timedelta(minutes=1)


def test_an_expired_token_is_refused(client: TestClient, engine: Engine, world: World) -> None:
    with transaction(make_session_factory(engine)) as s:
        s.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == security.hash_api_token(world.mhr_a))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = client.get("/api/v1/me", headers=World.auth(world.mhr_a))
    assert response.status_code == 401
    assert response.json()["detail"] == "the token has expired"
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/me", headers=World.auth(world.viewer_a)).status_code == 200


def test_cli_token_create_days_and_maximum(cli: CliRunner, engine: Engine) -> None:
    account = run(cli, "account", "create", "--name", "Acme", "--company", "Acme inc.")
    run(
        cli,
        *("user", "create", "--email", "hr@acme.example", "--account", account),
        *("--password-stdin",),
        input="a long enough password\n",
    )
    refused = run(cli, "token", "create", "--email", "hr@acme.example", "--days", "366", code=1)
    assert "error: days: a token lasts at most 365 days" in refused
    token = run(cli, "token", "create", "--email", "hr@acme.example", "--days", "7")
    record = token_record(engine, token)
    assert record.expires_at is not None
    assert abs(record.expires_at - (record.created_at + timedelta(days=7))) < timedelta(minutes=1)


def test_token_max_days_comes_from_the_settings(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMSYNC_TOKEN_MAX_DAYS", "30")
    account = run(cli, "account", "create", "--name", "Acme", "--company", "Acme inc.")
    run(cli, "user", "create", "--email", "hr@acme.example", "--account", account)
    refused = run(cli, "token", "create", "--email", "hr@acme.example", "--days", "31", code=1)
    assert "at most 30 days" in refused


# --- API tokens: the page and the API -------------------------------------------------------


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_manager_sees_the_accounts_tokens_creates_one_shown_once_and_revokes(
    client: TestClient, world: World
) -> None:
    csrf = sign_in(client, "mhr_a@example.com")
    page = client.get("/tokens")
    assert page.status_code == 200
    assert "viewer_a@example.com" in page.text  # the viewer's token, in the same account
    assert "mhr_b@example.com" not in page.text
    assert world.mhr_a not in page.text  # never the token itself
    assert world.mhr_a[:10] in page.text  # its prefix
    assert not re.search(r"\sstyle\s*=|\son[a-z]+\s*=|<script(?![^>]*\bsrc=)", page.text)  # CSP

    too_long = client.post("/tokens", data={"csrf_token": csrf, "name": "x", "days": "400"})
    assert too_long.status_code == 422
    assert "a token lasts at most 365 days" in too_long.text
    created = client.post("/tokens", data={"csrf_token": csrf, "name": "payroll", "days": "30"})
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    new_token = re.search(r'value="(lms_[^"]+)"', created.text)
    assert new_token
    auth = World.auth(new_token.group(1))
    assert client.get("/api/v1/me", headers=auth).json()["email"] == "mhr_a@example.com"
    assert new_token.group(1) not in client.get("/tokens").text  # shown once

    listed = client.get("/api/v1/tokens", headers=auth).json()
    payroll = next(t for t in listed["items"] if t["name"] == "payroll")
    assert payroll["status"] == "active"
    confirm = client.get(f"/tokens/{payroll['id']}/revoke")
    assert "Every program using it is refused" in confirm.text
    no_csrf = client.post(f"/tokens/{payroll['id']}/revoke")
    assert no_csrf.status_code == 403
    revoked = client.post(
        f"/tokens/{payroll['id']}/revoke", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/tokens?flash=token_revoked"
    assert client.get("/api/v1/me", headers=auth).status_code == 401
    assert "Token revoked" in client.get(revoked.headers["location"]).text


def test_viewer_sees_only_their_own_tokens_and_cannot_change_them(
    client: TestClient, world: World
) -> None:
    csrf = sign_in(client, "viewer_a@example.com")
    page = client.get("/tokens")
    assert page.status_code == 200
    assert "viewer_a@example.com" in page.text
    assert "mhr_a@example.com</td>" not in page.text
    assert "Create token" not in page.text
    assert "Revoke" not in page.text
    refused = client.post("/tokens", data={"csrf_token": csrf, "name": "x", "days": "30"})
    assert refused.status_code == 403
    mine = client.get("/api/v1/tokens", headers=World.auth(world.viewer_a)).json()
    assert [t["owner_email"] for t in mine["items"]] == ["viewer_a@example.com"]
    revoke = client.post(f"/tokens/{mine['items'][0]['id']}/revoke", data={"csrf_token": csrf})
    assert revoke.status_code == 403


def test_tokens_api_lists_pages_and_revokes(client: TestClient, world: World) -> None:
    manager = World.auth(world.mhr_a)
    first = client.get("/api/v1/tokens?limit=1", headers=manager).json()
    assert first["total"] == 2
    assert first["next"].startswith("/api/v1/tokens?")
    assert "offset=1" in first["next"]
    listed = client.get("/api/v1/tokens", headers=manager).json()["items"]
    assert {t["owner_email"] for t in listed} == {"mhr_a@example.com", "viewer_a@example.com"}
    assert all(set(t) >= {"prefix", "created_at", "last_used_at", "expires_at"} for t in listed)
    viewer_token = next(t for t in listed if t["owner_email"] == "viewer_a@example.com")
    path = f"/api/v1/tokens/{viewer_token['id']}"
    assert client.delete(path, headers=World.auth(world.viewer_a)).status_code == 403
    assert client.delete(path, headers=World.auth(world.mhr_b)).status_code == 404
    assert client.delete(path, headers=manager).status_code == 204
    assert client.get("/api/v1/me", headers=World.auth(world.viewer_a)).status_code == 401
    assert client.delete(path, headers=manager).status_code == 204  # again: nothing changes


# --- login CSRF ------------------------------------------------------------------------------


def signed_in(client: TestClient) -> bool:
    status: int = client.get("/employees", follow_redirects=False).status_code
    return status == 200


@pytest.mark.parametrize("token", [None, "", "forged", "0" * 64])
def test_sign_in_without_the_forms_token_is_refused(
    client: TestClient, world: World, token: str | None
) -> None:
    login_token(client)  # the browser has the pre-session cookie; the request lacks the token
    data = {"email": "mhr_a@example.com", "password": "correct horse"}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert "This sign-in form has expired" in response.text
    assert "lmsync_session" not in response.headers.get("set-cookie", "")
    assert not signed_in(client)


def test_sign_in_token_without_its_cookie_is_refused(client: TestClient, world: World) -> None:
    """A token taken from one browser's form does not work from another (another site posting
    it from the victim's browser, which has no matching cookie)."""
    token = login_token(client)
    client.cookies.clear()
    data = {"email": "mhr_a@example.com", "password": "correct horse", "csrf_token": token}
    assert client.post("/login", data=data).status_code == 403
    assert not signed_in(client)


def test_the_login_cookie_is_httponly_lax_and_scoped(client: TestClient) -> None:
    cookie = client.get("/login").headers["set-cookie"]
    assert cookie.startswith("lmsync_login=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/login" in cookie


def test_logout_needs_the_csrf_token(client: TestClient, world: World) -> None:
    sign_in(client, "mhr_a@example.com")
    assert client.post("/logout").status_code == 403
    assert signed_in(client)


# --- flash messages ---------------------------------------------------------------------------


def test_flash_shows_only_catalogued_messages(client: TestClient, world: World) -> None:
    employee = hire(client, world.mhr_a)
    sign_in(client, "mhr_a@example.com")
    planted = client.get("/employees?flash=Your+session+expired%3A+call+555-0100")
    assert "555-0100" not in planted.text
    assert 'class="flash"' not in planted.text
    shown = client.get(f"/employees/{employee['id']}?tab=security&flash=included")
    assert '<div class="flash" role="status">Included in the LMS interface.</div>' in shown.text


def test_every_flash_code_has_a_message() -> None:
    assert set(get_args(FlashCode)) == set(FLASH_MESSAGES)


def test_a_refusal_with_its_own_words_is_a_page(client: TestClient, world: World) -> None:
    configured = client.put(
        "/api/v1/lms/interface",
        json={"base_url": "http://127.0.0.1:9/scim/v2", "secret": "s3cret"},
        headers=World.auth(world.mhr_a),
    )
    assert configured.status_code == 200, configured.text
    csrf = sign_in(client, "mhr_a@example.com")
    refused = client.post("/sync/now", data={"csrf_token": csrf}, follow_redirects=False)
    assert refused.status_code == 409
    assert "contact a product expert" in refused.text
