"""The pages without a browser: sign-in, throttling, CSRF, roles, errors as pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.api.test_employees_api import hire
from tests.conftest import World


def login_token(client: TestClient) -> str:
    """The sign-in form's CSRF token (its pre-session cookie stays in the client)."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert match
    return match.group(1)


def sign_in(client: TestClient, email: str, password: str = "correct horse") -> str:
    response = client.post(
        "/login",
        data={
            "email": email,
            "password": password,
            "next": "/employees",
            "csrf_token": login_token(client),
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get("/employees")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def test_pages_need_a_session(client: TestClient) -> None:
    response = client.get("/employees?q=x", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/employees%3Fq%3Dx"


def test_sign_in_sets_a_safe_cookie_and_goes_next(client: TestClient, world: World) -> None:
    token = login_token(client)
    response = client.post(
        "/login",
        data={
            "email": "MHR_A@example.com",
            "password": "correct horse",
            "next": "/sync",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/sync"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    offsite = client.post(
        "/login",
        data={
            "email": "mhr_a@example.com",
            "password": "correct horse",
            "next": "//evil.example",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert offsite.headers["location"] == "/"


def test_wrong_password_then_throttled(client: TestClient, world: World) -> None:
    token = login_token(client)
    for _ in range(5):
        wrong = client.post(
            "/login", data={"email": "mhr_a@example.com", "password": "nope", "csrf_token": token}
        )
        assert wrong.status_code == 401
        assert "wrong email or password" in wrong.text
    blocked = client.post(
        "/login",
        data={"email": "mhr_a@example.com", "password": "correct horse", "csrf_token": token},
    )
    assert blocked.status_code == 429
    assert "too many failed sign-in attempts" in blocked.text
    # another login is not blocked by this one's failures
    sign_in(client, "viewer_a@example.com")


def test_form_without_csrf_token_is_refused(client: TestClient, world: World) -> None:
    sign_in(client, "mhr_a@example.com")
    response = client.post(
        "/employees/new", data={"employee_number": "E-1", "first_name": "A", "last_name": "B"}
    )
    assert response.status_code == 403
    assert "Reload the page" in response.text
    listed = client.get("/api/v1/employees", headers=World.auth(world.mhr_a)).json()
    assert listed["total"] == 0


def test_hire_form_shows_errors_and_keeps_values(client: TestClient, world: World) -> None:
    token = sign_in(client, "mhr_a@example.com")
    response = client.post(
        "/employees/new",
        data={
            "csrf_token": token,
            "employee_number": "E-1",
            "first_name": "Zoë",
            "last_name": "",
            "home_phone": "abc",
            "country": "Canada",
        },
    )
    assert response.status_code == 422
    assert "is required" in response.text
    assert "not a phone number" in response.text
    assert 'value="Zoë"' in response.text
    assert 'value="abc"' in response.text
    ok = client.post(
        "/employees/new",
        data={
            "csrf_token": token,
            "employee_number": "E-1",
            "first_name": "Zoë",
            "last_name": "Ngô",
            "lms_excluded": "true",
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303
    listed = client.get("/api/v1/employees", headers=World.auth(world.mhr_a)).json()
    assert listed["items"][0]["lms_excluded"] is True


def test_viewer_sees_no_write_controls_and_is_refused(client: TestClient, world: World) -> None:
    employee = hire(client, world.mhr_a)
    token = sign_in(client, "viewer_a@example.com")
    page = client.get(f"/employees/{employee['id']}?tab=security")
    assert page.status_code == 200
    assert "Sync this employee now" not in page.text
    assert "Hire an employee" not in client.get("/employees").text
    assert client.get("/employees/new").status_code == 403
    refused = client.post(
        f"/employees/{employee['id']}/exclusion", data={"csrf_token": token, "lms_excluded": "true"}
    )
    assert refused.status_code == 403
    assert "read-only" in refused.text
    assert (
        client.get(f"/api/v1/employees/{employee['id']}", headers=World.auth(world.mhr_a)).json()[
            "lms_excluded"
        ]
        is False
    )


def test_other_accounts_employee_is_a_404_page(client: TestClient, world: World) -> None:
    other = hire(client, world.mhr_b)
    sign_in(client, "mhr_a@example.com")
    page = client.get(f"/employees/{other['id']}")
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
    assert "employee not found" in page.text


def test_logout_ends_the_session(client: TestClient, world: World) -> None:
    token = sign_in(client, "mhr_a@example.com")
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/employees", follow_redirects=False).status_code == 303
