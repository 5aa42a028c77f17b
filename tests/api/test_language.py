"""Which language a page speaks: the user's choice, else the account's, else the browser's."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine

from lmsync.storage.tables import Account, User
from tests.api.test_pages import sign_in
from tests.conftest import World


def _lang(html: str) -> str:
    match = re.search(r'<html lang="([^"]+)"', html)
    assert match, html[:200]
    return match.group(1)


def test_the_browser_language_decides_when_nobody_chose(client: TestClient) -> None:
    page = client.get("/login", headers={"Accept-Language": "fr-CA,fr;q=0.9"})
    assert _lang(page.text) == "fr-CA"
    assert page.headers["content-language"] == "fr-CA"
    assert "accept-language" in page.headers["vary"].lower()
    assert _lang(client.get("/login", headers={"Accept-Language": "de, en;q=0.5"}).text) == "en"


def test_the_user_choice_wins_and_can_be_cleared(client: TestClient, world: World) -> None:
    csrf = sign_in(client, "mhr_a@example.com")
    english = {"Accept-Language": "en"}
    chosen = client.post(
        "/preferences/language",
        data={"language": "fr_CA", "next": "/sync", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert chosen.status_code == 303
    assert chosen.headers["location"] == "/sync"
    assert _lang(client.get("/employees", headers=english).text) == "fr-CA"
    client.post(
        "/preferences/language",
        data={"language": "", "next": "https://evil.example/", "csrf_token": csrf},
    )
    assert _lang(client.get("/employees", headers=english).text) == "en"


def test_the_account_language_comes_before_the_browser(
    client: TestClient, world: World, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Account).where(Account.id == world.account_a).values(ui_language="fr_CA")
        )
    sign_in(client, "mhr_a@example.com")
    assert _lang(client.get("/employees", headers={"Accept-Language": "en"}).text) == "fr-CA"
    with engine.begin() as conn:
        conn.execute(update(User).values(ui_language="en"))
    assert _lang(client.get("/employees", headers={"Accept-Language": "fr"}).text) == "en"


def test_the_choice_needs_the_form_token(client: TestClient, world: World) -> None:
    sign_in(client, "mhr_a@example.com")
    refused = client.post("/preferences/language", data={"language": "fr_CA"})
    assert refused.status_code == 403
