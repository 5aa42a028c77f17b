"""The employees API end to end on both databases: lifecycle, validation, isolation and roles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lmsync import i18n
from lmsync.i18n import _
from lmsync.storage.tables import Employee, EmployeeEvent, IdempotencyRecord, utcnow
from tests.conftest import World

API = "/api/v1/employees"


def zoe(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "employee_number": "E-1",
        "first_name": "  Zoë ",
        "last_name": "Lévesque-Ngô",
        "language": "fr-ca",
        "work_email": "Jean.Tremblay+hr@Example.CA",
        "company_name": "Alpha Québec",
        "job_title": "Payroll clerk",
        "home_phone": "514 555-0199",
        "cell_phone": "+1 (514) 555-0199 ext. 12",
        "address": "1000 rue Sherbrooke O.",
        "city": "Montréal",
        "province": "Québec",
        "country": "CAN",
        "postal_code": "H3A 3G4",
        "hire_date": "2024-03-01",
    }
    body.update(overrides)
    return body


def hire(client: TestClient, token: str, **overrides: Any) -> dict[str, Any]:
    response = client.post(API, json=zoe(**overrides), headers=World.auth(token))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def clear_due(engine: Engine, employee_id: str) -> None:
    """As if the sync engine had acted on the employee."""
    with Session(engine) as s, s.begin():
        s.get_one(Employee, employee_id).lms_due_at = None


def count_employees(engine: Engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(Employee)) or 0


def test_hire_normalizes_and_marks_due(client: TestClient, world: World) -> None:
    body = hire(client, world.mhr_a)
    assert "work_email_key" not in body
    assert body["first_name"] == "Zoë"
    assert body["last_name"] == "Lévesque-Ngô"
    assert body["language"] == "fr-CA"
    assert body["work_email"] == "Jean.Tremblay+hr@Example.CA"
    assert body["country"] == "CA"
    assert body["province"] == "CA-QC"
    assert body["home_phone"] == "514 555-0199"
    assert body["home_phone_e164"] == "+15145550199"
    assert body["cell_phone"] == "+1 (514) 555-0199 ext. 12"
    assert body["cell_phone_e164"] == "+15145550199"
    assert body["status"] == "active"
    assert body["lms_excluded"] is False
    assert body["lms_due_at"] is not None
    assert body["created_at"].endswith("Z")
    got = client.get(f"{API}/{body['id']}", headers=World.auth(world.mhr_a))
    assert got.status_code == 200
    assert got.json() == body


def test_hire_answers_with_the_employee_location(client: TestClient, world: World) -> None:
    headers = {**World.auth(world.mhr_a), "Idempotency-Key": "hire-zoe-location"}
    first = client.post(API, json=zoe(), headers=headers)
    assert first.status_code == 201
    location = first.headers["location"]
    assert location == f"{API}/{first.json()['id']}"
    assert client.get(location, headers=headers).json() == first.json()
    replayed = client.post(API, json=zoe(), headers=headers)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.headers["location"] == location
    documented = client.get("/openapi.json").json()["paths"][API]["post"]["responses"]["201"]
    assert "Location" in documented["headers"]


def test_hire_excluded_is_not_due(client: TestClient, world: World) -> None:
    body = hire(client, world.mhr_a, lms_excluded=True)
    assert body["lms_excluded"] is True
    assert body["lms_due_at"] is None


def test_hire_defaults_hire_date_to_today(client: TestClient, world: World) -> None:
    body = hire(client, world.mhr_a, hire_date=None)
    assert body["hire_date"]  # the account's local date; exact value depends on the clock


@pytest.mark.parametrize(
    ("field", "value", "message_part"),
    [
        ("first_name", "   ", "required"),
        ("last_name", "x" * 101, "at most 100"),
        ("work_email", "bad@", "something after the @-sign"),
        ("home_phone", "abc", "not a phone number"),
        ("country", "Atlantis", 'unknown country "Atlantis"'),
        ("language", "french", "not a language tag"),
        ("hire_date", "2024-02-30", "date"),
        ("lms_excluded", "maybe", "true or false"),
        ("nickname", "Zed", "unknown field"),
    ],
)
def test_hire_rejects_bad_field(
    client: TestClient, world: World, engine: Engine, field: str, value: str, message_part: str
) -> None:
    response = client.post(API, json=zoe(**{field: value}), headers=World.auth(world.mhr_a))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    messages = {e["field"]: e["message"] for e in problem["errors"]}
    assert field in messages, messages
    assert message_part in messages[field]
    assert count_employees(engine) == 0


def test_all_field_errors_reported_at_once(client: TestClient, world: World) -> None:
    response = client.post(
        API,
        json=zoe(first_name="", home_phone="abc", country="Atlantis"),
        headers=World.auth(world.mhr_a),
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {
        "first_name",
        "home_phone",
        "country",
    }


def test_a_type_error_comes_with_the_other_fields_errors(
    client: TestClient, world: World, engine: Engine
) -> None:
    """pydantic's type errors and the domain's errors of the other fields, in one answer."""
    auth = World.auth(world.mhr_a)
    body = zoe(hire_date=5, work_email="bad@", first_name="", lms_excluded="maybe", nickname="Z")
    response = client.post(API, json=body, headers=auth)
    assert response.status_code == 422, response.text
    codes = {e["field"]: e["code"] for e in response.json()["errors"]}
    assert codes == {
        "hire_date": "must be a date (YYYY-MM-DD)",
        "lms_excluded": "must be true or false",
        "nickname": "unknown field",
        "first_name": "is required",
        "work_email": "There must be something after the @-sign.",
    }
    # A wrongly typed country: the phones, read with it, are not judged.
    no_country = client.post(API, json=zoe(country=5, home_phone="514 555-0199"), headers=auth)
    assert [e["field"] for e in no_country.json()["errors"]] == ["country"]
    # Missing names are reported along a type error, as they would be without it.
    bare = client.post(API, json={"hire_date": "soon"}, headers=auth)
    assert {e["field"] for e in bare.json()["errors"]} == {
        "hire_date",
        "employee_number",
        "first_name",
        "last_name",
    }
    assert count_employees(engine) == 0


def test_a_patch_type_error_comes_with_the_sent_fields_errors(
    client: TestClient, world: World
) -> None:
    body = hire(client, world.mhr_a)
    auth = World.auth(world.mhr_a)
    url = f"{API}/{body['id']}"
    sent = {"lms_excluded": [], "work_email": "x@", "job_title": "Lead", "cell_phone": "abc"}
    response = client.patch(url, json=sent, headers=auth)
    assert response.status_code == 422, response.text
    # The absent names are not required; the phone is read with the stored country: not here.
    assert {e["field"] for e in response.json()["errors"]} == {"lms_excluded", "work_email"}
    assert client.get(url, headers=auth).json() == body
    with_country = client.patch(url, json={**sent, "country": "CA"}, headers=auth)
    assert {e["field"] for e in with_country.json()["errors"]} == {
        "lms_excluded",
        "work_email",
        "cell_phone",
    }


def test_problem_details_speak_the_request_language(client: TestClient, world: World) -> None:
    french = {**World.auth(world.mhr_a), "Accept-Language": "fr-CA,fr;q=0.9"}
    response = client.post(API, json=zoe(last_name="x" * 101, lms_excluded=7), headers=french)
    assert response.status_code == 422
    assert response.headers["content-language"] == "fr-CA"
    problem = response.json()
    too_long = _("must be at most {max_length} characters", max_length=100)
    boolean = _("must be true or false")
    with i18n.using("fr_CA"):
        assert problem["title"] == i18n.text(_("Invalid input"))
        assert problem["detail"] == i18n.text(_("some fields are invalid"))
        assert problem["errors"] == [
            {"field": "lms_excluded", "code": boolean.code, "message": i18n.text(boolean)},
            {"field": "last_name", "code": too_long.code, "message": i18n.text(too_long)},
        ]
    english = client.post(API, json=zoe(last_name="x" * 101), headers=World.auth(world.mhr_a))
    assert english.json()["errors"] == [
        {
            "field": "last_name",
            "code": "must be at most {max_length} characters",
            "message": "must be at most 100 characters",
        }
    ]
    assert english.json()["title"] == "Invalid input"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("first_name", 5, "must be text"),
        ("first_name", "x" * 1001, "must be at most {max_length} characters"),
        ("hire_date", "2024-02-30", "must be a date (YYYY-MM-DD)"),
        ("hire_date", "2024-02-01T10:00:00", "must be a date (YYYY-MM-DD)"),
        ("lms_excluded", "maybe", "must be true or false"),
        ("nickname", "Zed", "unknown field"),
    ],
)
def test_pydantic_errors_are_said_in_our_words(
    client: TestClient, world: World, field: str, value: Any, code: str
) -> None:
    response = client.post(API, json=zoe(**{field: value}), headers=World.auth(world.mhr_a))
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [(field, code)]
    assert "Input should" not in errors[0]["message"]


def test_malformed_json_is_400(client: TestClient, world: World, engine: Engine) -> None:
    response = client.post(
        API,
        content=b'{"employee_number": "E-1", ',
        headers={**World.auth(world.mhr_a), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["message"] == "malformed JSON (at character 27)"
    assert error["code"] == "malformed JSON (at character {position})"
    assert count_employees(engine) == 0


def test_duplicate_employee_number_is_field_error(client: TestClient, world: World) -> None:
    hire(client, world.mhr_a)
    response = client.post(API, json=zoe(), headers=World.auth(world.mhr_a))
    assert response.status_code == 422
    taken = "already used by another employee of this account"
    assert response.json()["errors"] == [
        {"field": "employee_number", "code": taken, "message": taken}
    ]
    # the same number in another account is fine
    hire(client, world.mhr_b)


def test_patch_changes_only_sent_fields_and_marks_due(
    client: TestClient, world: World, engine: Engine
) -> None:
    body = hire(client, world.mhr_a)
    clear_due(engine, body["id"])
    response = client.patch(
        f"{API}/{body['id']}",
        json={"job_title": "Payroll lead", "province": "ON", "country": "Canada"},
        headers=World.auth(world.mhr_a),
    )
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["job_title"] == "Payroll lead"
    assert out["province"] == "CA-ON"
    assert out["first_name"] == "Zoë"
    assert out["lms_due_at"] is not None
    events = client.get(f"{API}/{body['id']}/events", headers=World.auth(world.mhr_a)).json()
    assert [e["kind"] for e in events] == ["hired", "updated"]
    assert events[1]["details"]["fields"] == ["job_title", "province"]


def test_patch_without_change_writes_nothing(
    client: TestClient, world: World, engine: Engine
) -> None:
    body = hire(client, world.mhr_a)
    clear_due(engine, body["id"])
    response = client.patch(
        f"{API}/{body['id']}", json={"country": "CA"}, headers=World.auth(world.mhr_a)
    )
    assert response.status_code == 200
    assert response.json()["lms_due_at"] is None
    assert response.json()["updated_at"] == body["updated_at"]


def test_patch_bad_value_leaves_record_untouched(client: TestClient, world: World) -> None:
    body = hire(client, world.mhr_a)
    response = client.patch(
        f"{API}/{body['id']}",
        json={"job_title": "Lead", "cell_phone": "abc"},
        headers=World.auth(world.mhr_a),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "cell_phone"
    again = client.get(f"{API}/{body['id']}", headers=World.auth(world.mhr_a)).json()
    assert again == body


def test_patch_cannot_change_status_or_null_required(client: TestClient, world: World) -> None:
    body = hire(client, world.mhr_a)
    auth = World.auth(world.mhr_a)
    status = client.patch(f"{API}/{body['id']}", json={"status": "terminated"}, headers=auth)
    assert status.status_code == 422
    unknown = "unknown field"
    assert status.json()["errors"] == [{"field": "status", "code": unknown, "message": unknown}]
    nulls = client.patch(
        f"{API}/{body['id']}", json={"last_name": None, "hire_date": None}, headers=auth
    )
    assert nulls.status_code == 422
    assert {e["field"] for e in nulls.json()["errors"]} == {"hire_date"}
    nulls = client.patch(f"{API}/{body['id']}", json={"last_name": None}, headers=auth)
    required = "is required"
    assert nulls.json()["errors"] == [{"field": "last_name", "code": required, "message": required}]


def test_exclude_then_include(client: TestClient, world: World, engine: Engine) -> None:
    body = hire(client, world.mhr_a)
    auth = World.auth(world.mhr_a)
    clear_due(engine, body["id"])
    out = client.patch(f"{API}/{body['id']}", json={"lms_excluded": True}, headers=auth).json()
    assert out["lms_excluded"] is True
    assert out["lms_due_at"] is not None
    out = client.patch(f"{API}/{body['id']}", json={"lms_excluded": False}, headers=auth).json()
    assert out["lms_excluded"] is False
    kinds = [e["kind"] for e in client.get(f"{API}/{body['id']}/events", headers=auth).json()]
    assert kinds == ["hired", "excluded", "included"]
    filtered = client.get(API, params={"excluded": "true"}, headers=auth).json()
    assert filtered["total"] == 0


def test_terminate_and_rehire(client: TestClient, world: World, engine: Engine) -> None:
    body = hire(client, world.mhr_a)
    auth = World.auth(world.mhr_a)
    url = f"{API}/{body['id']}"
    clear_due(engine, body["id"])
    out = client.post(
        f"{url}/terminate",
        json={"termination_date": "2026-11-20", "reason": " Resignation "},
        headers=auth,
    )
    assert out.status_code == 200, out.text
    assert out.json()["status"] == "terminated"
    assert out.json()["termination_date"] == "2026-11-20"
    assert out.json()["termination_reason"] == "Resignation"
    assert out.json()["lms_due_at"] is not None

    again = client.post(f"{url}/terminate", json={"termination_date": "2026-11-21"}, headers=auth)
    assert again.status_code == 409
    assert "already terminated" in again.json()["detail"]

    early = client.post(f"{url}/rehire", json={"hire_date": "2026-11-01"}, headers=auth)
    assert early.status_code == 422
    assert early.json()["errors"][0]["field"] == "hire_date"

    back = client.post(f"{url}/rehire", json={"hire_date": "2027-01-04"}, headers=auth)
    assert back.status_code == 200
    assert back.json()["status"] == "active"
    assert back.json()["hire_date"] == "2027-01-04"
    assert back.json()["termination_date"] is None
    not_terminated = client.post(f"{url}/rehire", json={"hire_date": "2027-02-01"}, headers=auth)
    assert not_terminated.status_code == 409
    kinds = [e["kind"] for e in client.get(f"{url}/events", headers=auth).json()]
    assert kinds == ["hired", "terminated", "rehired"]


def test_termination_before_hire_is_refused(client: TestClient, world: World) -> None:
    body = hire(client, world.mhr_a, hire_date="2024-03-01")
    response = client.post(
        f"{API}/{body['id']}/terminate",
        json={"termination_date": "2024-02-28"},
        headers=World.auth(world.mhr_a),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "termination_date"
    assert client.get(f"{API}/{body['id']}", headers=World.auth(world.mhr_a)).json()["status"] == (
        "active"
    )


def test_list_filters_and_pages(client: TestClient, world: World) -> None:
    auth = World.auth(world.mhr_a)
    ids = [
        hire(client, world.mhr_a, employee_number=f"E-{n}", last_name=f"Name{n:02d}")["id"]
        for n in range(5)
    ]
    client.post(f"{API}/{ids[0]}/terminate", json={"termination_date": "2026-01-01"}, headers=auth)
    page = client.get(API, params={"limit": 2}, headers=auth).json()
    assert page["total"] == 5
    assert [e["last_name"] for e in page["items"]] == ["Name00", "Name01"]
    assert page["next"] is not None
    second = client.get(page["next"], headers=auth).json()
    assert [e["last_name"] for e in second["items"]] == ["Name02", "Name03"]
    last = client.get(API, params={"limit": 2, "offset": 4}, headers=auth).json()
    assert last["next"] is None
    assert client.get(API, params={"status": "terminated"}, headers=auth).json()["total"] == 1
    assert client.get(API, params={"q": "name03"}, headers=auth).json()["total"] == 1
    assert client.get(API, params={"q": "E-4"}, headers=auth).json()["total"] == 1
    too_big = client.get(API, params={"limit": 1000}, headers=auth)
    assert too_big.status_code == 422
    assert too_big.json()["errors"][0]["field"] == "limit"


def test_other_accounts_employee_is_404(client: TestClient, world: World) -> None:
    body = hire(client, world.mhr_b)
    auth = World.auth(world.mhr_a)
    url = f"{API}/{body['id']}"
    assert client.get(url, headers=auth).status_code == 404
    assert client.patch(url, json={"job_title": "x"}, headers=auth).status_code == 404
    assert (
        client.post(f"{url}/terminate", json={"termination_date": "2026-01-01"}, headers=auth)
    ).status_code == 404
    assert client.get(f"{url}/events", headers=auth).status_code == 404
    assert client.get(API, headers=auth).json()["total"] == 0


def test_viewer_reads_but_cannot_write(client: TestClient, world: World, engine: Engine) -> None:
    body = hire(client, world.mhr_a)
    viewer = World.auth(world.viewer_a)
    url = f"{API}/{body['id']}"
    assert client.get(url, headers=viewer).status_code == 200
    assert client.get(API, headers=viewer).json()["total"] == 1
    writes = [
        client.post(API, json=zoe(employee_number="E-2"), headers=viewer),
        client.patch(url, json={"job_title": "x"}, headers=viewer),
        client.post(f"{url}/terminate", json={"termination_date": "2026-01-01"}, headers=viewer),
        client.post(f"{url}/rehire", json={"hire_date": "2026-01-01"}, headers=viewer),
        client.post(
            f"{API}/import",
            files={"file": ("e.csv", b"employee_number,first_name,last_name\nE-9,A,B\n")},
            headers=viewer,
        ),
    ]
    assert [r.status_code for r in writes] == [403] * len(writes)
    assert "read-only" in writes[0].json()["detail"]
    assert count_employees(engine) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer lms_nope"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
)
def test_missing_or_bad_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get(API, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"


def test_idempotency_key_returns_first_result(
    client: TestClient, world: World, engine: Engine
) -> None:
    headers = {**World.auth(world.mhr_a), "Idempotency-Key": "hire-zoe-1"}
    first = client.post(API, json=zoe(), headers=headers)
    second = client.post(API, json=zoe(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert count_employees(engine) == 1
    other = client.post(API, json=zoe(employee_number="E-2"), headers=headers)
    assert other.status_code == 409
    assert count_employees(engine) == 1


def test_failed_request_does_not_consume_idempotency_key(client: TestClient, world: World) -> None:
    headers = {**World.auth(world.mhr_a), "Idempotency-Key": "k"}
    assert client.post(API, json=zoe(country="Atlantis"), headers=headers).status_code == 422
    assert client.post(API, json=zoe(), headers=headers).status_code == 201


def test_idempotency_keys_expire_after_a_day(
    client: TestClient, world: World, engine: Engine
) -> None:
    headers = {**World.auth(world.mhr_a), "Idempotency-Key": "daily-import-1"}
    assert client.post(API, json=zoe(), headers=headers).status_code == 201
    with Session(engine) as s, s.begin():
        for record in s.scalars(select(IdempotencyRecord)):
            record.created_at = utcnow() - timedelta(hours=25)
    # The same key a day later is a new request, and the stale record is gone.
    again = client.post(API, json=zoe(employee_number="E-2"), headers=headers)
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert count_employees(engine) == 2
    with Session(engine) as s:
        ages = [r.created_at for r in s.scalars(select(IdempotencyRecord))]
    assert len(ages) == 1
    assert ages[0] > utcnow() - timedelta(hours=1)


def test_events_record_actor(client: TestClient, world: World, engine: Engine) -> None:
    body = hire(client, world.mhr_a)
    with Session(engine) as s:
        event = s.scalars(
            select(EmployeeEvent).where(EmployeeEvent.employee_id == body["id"])
        ).one()
        assert event.kind == "hired"
        assert event.actor_user_id is not None
