"""Accounts (operator only), the user-sync switch, tokens, /me, /healthz and the OpenAPI."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lmsync.security import hash_api_token
from lmsync.storage.tables import ApiToken, Employee
from tests.api.test_employees_api import clear_due, hire
from tests.conftest import World

API = "/api/v1/accounts"


def test_operator_creates_and_lists_accounts(client: TestClient, world: World) -> None:
    op = World.auth(world.operator)
    created = client.post(
        API,
        json={"name": "Gamma", "company_name": "Gamma SA", "default_language": "fr_ca"},
        headers=op,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"{API}/{body['id']}"
    assert body["default_language"] == "fr-CA"
    assert body["user_sync_enabled"] is False
    listed = client.get(API, headers=op).json()
    assert listed["total"] == 3
    assert client.get(f"{API}/{body['id']}", headers=op).json() == body


def test_account_validation(client: TestClient, world: World) -> None:
    response = client.post(
        API,
        json={"name": " ", "company_name": "X", "timezone": "Mars/Olympus", "language": "fr"},
        headers=World.auth(world.operator),
    )
    assert response.status_code == 422
    fields = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert fields["name"] == "is required"
    assert "unknown time zone" in fields["timezone"]
    assert fields["language"] == "unknown field"


def test_only_operator_manages_accounts(client: TestClient, world: World) -> None:
    mhr = World.auth(world.mhr_a)
    assert client.post(API, json={"name": "X", "company_name": "X"}, headers=mhr).status_code == 403
    assert client.get(API, headers=mhr).status_code == 403
    patch = client.patch(f"{API}/{world.account_a}", json={"user_sync_enabled": True}, headers=mhr)
    assert patch.status_code == 403
    assert "platform operator" in patch.json()["detail"]
    # a member reads its own account, not another one
    assert client.get(f"{API}/{world.account_a}", headers=mhr).status_code == 200
    assert client.get(f"{API}/{world.account_b}", headers=mhr).status_code == 404


def test_enabling_user_sync_marks_every_employee_due(
    client: TestClient, world: World, engine: Engine
) -> None:
    first = hire(client, world.mhr_a)
    clear_due(engine, first["id"])
    response = client.patch(
        f"{API}/{world.account_a}",
        json={"user_sync_enabled": True},
        headers=World.auth(world.operator),
    )
    assert response.status_code == 200
    assert response.json()["user_sync_enabled"] is True
    with Session(engine) as s:
        assert s.get_one(Employee, first["id"]).lms_due_at is not None


def test_unknown_account_is_404(client: TestClient, world: World) -> None:
    response = client.patch(f"{API}/nope", json={"name": "X"}, headers=World.auth(world.operator))
    assert response.status_code == 404


def test_tokens_are_stored_hashed(client: TestClient, world: World, engine: Engine) -> None:
    with Session(engine) as s:
        stored = list(s.scalars(select(ApiToken)))
    assert len(stored) == 4
    raw = {world.mhr_a, world.viewer_a, world.mhr_b, world.operator}
    assert {t.token_hash for t in stored} == {hash_api_token(t) for t in raw}
    for token in stored:
        assert token.token_hash not in raw
        assert all(token.token_hash != r and r not in token.token_hash for r in raw)


def test_revoked_token_is_refused(client: TestClient, world: World, engine: Engine) -> None:
    auth = World.auth(world.mhr_a)
    assert client.get("/api/v1/me", headers=auth).json()["role"] == "MHR"
    from lmsync.storage.tables import utcnow

    with Session(engine) as s, s.begin():
        record = s.scalars(
            select(ApiToken).where(ApiToken.token_hash == hash_api_token(world.mhr_a))
        ).one()
        record.revoked_at = utcnow()
    assert client.get("/api/v1/me", headers=auth).status_code == 401


def test_me_and_healthz(client: TestClient, world: World) -> None:
    me = client.get("/api/v1/me", headers=World.auth(world.viewer_a)).json()
    assert me == {
        "user_id": me["user_id"],
        "email": "viewer_a@example.com",
        "is_operator": False,
        "account_id": world.account_a,
        "role": "viewer",
    }
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_unknown_route_and_method_are_problems(client: TestClient, world: World) -> None:
    missing = client.get("/api/v1/nothing-here", headers=World.auth(world.mhr_a))
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = client.delete("/api/v1/employees", headers=World.auth(world.mhr_a))
    assert wrong.status_code == 405
    assert wrong.json()["status"] == 405


def test_openapi_describes_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/api/v1/employees", "post"),
        ("/api/v1/employees", "get"),
        ("/api/v1/employees/{employee_id}", "get"),
        ("/api/v1/employees/{employee_id}", "patch"),
        ("/api/v1/employees/{employee_id}/terminate", "post"),
        ("/api/v1/employees/{employee_id}/rehire", "post"),
        ("/api/v1/employees/import", "post"),
        ("/api/v1/accounts", "post"),
        ("/api/v1/accounts/{account_id}", "patch"),
        ("/healthz", "get"),
    }
    present = {(path, method) for path, ops in paths.items() for method in ops}
    assert expected <= present
    hire_op = paths["/api/v1/employees"]["post"]
    assert "application/problem+json" in hire_op["responses"]["422"]["content"]
    for path in ("/api/v1/employees", "/api/v1/accounts"):
        assert "Location" in paths[path]["post"]["responses"]["201"]["headers"], path
    schema = spec["components"]["schemas"]["EmployeeCreateIn"]["properties"]
    assert schema["first_name"]["examples"] == ["Zoë"]
    assert "exclude this employee from the Learning Management System" in str(
        schema["lms_excluded"]
    )
