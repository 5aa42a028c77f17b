"""CSV import through the API: good rows imported, bad rows reported by line; dry run; bad files."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.api.test_employees_api import count_employees
from tests.conftest import World

URL = "/api/v1/employees/import"

HEADER = "employee_number,first_name,last_name,work_email,home_phone,country,province,"
TEN_ROWS = (
    HEADER
    + """lms_excluded,hire_date
E-01,Zoë,Lévesque-Ngô,zoe@example.ca,514 555-0101,Canada,Québec,non,2024-01-02
E-02,Jean,Tremblay,Jean.Tremblay+hr@Example.CA,,CA,QC,,2024-01-03
E-03,Amélie,Gagnon,amelie@exämple.ca,,CAN,qc,oui,
E-04,,Smith,liam@example.ca,,CA,ON,,2024-01-05
E-05,Olivia,Brown,olivia@example.ca,abc,CA,ON,,2024-01-06
E-06,Noah,Wilson,noah@example.ca,,Atlantis,,,2024-01-07
E-07,Chloé,Roy,,,CA,QC,,2024-01-08
E-08,Mohamed,Haddad,"haddad@example.ca",,Allemagne,,false,2024-01-09
E-09,Sofia,Rossi,sofia@example.ca,"+1 (514) 555-0199 ext. 12",CA,AB,true,2024-01-10
E-10,Hiroshi,Tanaka,hiroshi@example.ca,,CA,ON,,2024-01-11
"""
)


def upload(
    client: TestClient, token: str, content: bytes, **params: str
) -> tuple[int, dict[str, object]]:
    response = client.post(
        URL,
        params=params,
        files={"file": ("employees.csv", content, "text/csv")},
        headers=World.auth(token),
    )
    return response.status_code, response.json()


def test_ten_rows_three_bad(client: TestClient, world: World, engine: Engine) -> None:
    status, report = upload(client, world.mhr_a, TEN_ROWS.encode())
    assert status == 200
    assert report["imported_count"] == 7
    assert report["rejected_count"] == 3
    rejected = {r["line"]: r for r in report["rejected"]}  # type: ignore[attr-defined]
    assert set(rejected) == {5, 6, 7}
    assert rejected[5]["errors"] == [{"field": "first_name", "message": "is required"}]
    assert rejected[6]["employee_number"] == "E-05"
    assert rejected[6]["errors"][0]["field"] == "home_phone"
    assert rejected[7]["errors"][0]["field"] == "country"
    assert count_employees(engine) == 7
    listed = client.get(
        "/api/v1/employees", params={"excluded": "true"}, headers=World.auth(world.mhr_a)
    ).json()
    assert sorted(e["employee_number"] for e in listed["items"]) == ["E-03", "E-09"]


def test_dry_run_writes_nothing(client: TestClient, world: World, engine: Engine) -> None:
    status, report = upload(client, world.mhr_a, TEN_ROWS.encode(), dry_run="true")
    assert status == 200
    assert report["dry_run"] is True
    assert (report["imported_count"], report["rejected_count"]) == (7, 3)
    assert count_employees(engine) == 0


def test_reimport_reports_existing_numbers(client: TestClient, world: World) -> None:
    upload(client, world.mhr_a, TEN_ROWS.encode())
    status, report = upload(client, world.mhr_a, TEN_ROWS.encode())
    assert status == 200
    assert report["imported_count"] == 0
    assert report["rejected_count"] == 10


def test_duplicate_number_in_file(client: TestClient, world: World, engine: Engine) -> None:
    content = b"employee_number,first_name,last_name\nE-1,A,B\nE-1,C,D\n"
    for dry_run in ("true", "false"):
        status, report = upload(client, world.mhr_a, content, dry_run=dry_run)
        assert status == 200
        assert report["imported_count"] == 1
        assert report["rejected"][0]["line"] == 3  # type: ignore[index]
    assert count_employees(engine) == 1


def test_semicolons_bom_and_quoted_newline(client: TestClient, world: World) -> None:
    content = (
        "\ufeffemployee_number;first_name;last_name;address\n"
        'E-1;Zoë;Ngô;"12 rue A\napp. 3"\n'
        "E-2;Jean;Roy;\n"
    ).encode()
    status, report = upload(client, world.mhr_a, content)
    assert status == 200
    assert report["imported_count"] == 2
    lines = [r["line"] for r in report["imported"]]  # type: ignore[attr-defined]
    assert lines == [3, 4]


@pytest.mark.parametrize(
    ("content", "message_part"),
    [
        (b"", "file is empty"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"employee_number,first_name,last_name,shoe_size\nE-1,A,B,42\n", "unknown columns"),
        (b"first_name,last_name\nA,B\n", "missing required columns: employee_number"),
        (b'employee_number,first_name,last_name\nE-1,"A,B\n', "line"),
    ],
)
def test_unreadable_file_is_422_and_writes_nothing(
    client: TestClient, world: World, engine: Engine, content: bytes, message_part: str
) -> None:
    status, problem = upload(client, world.mhr_a, content)
    assert status == 422
    errors = problem["errors"]
    assert errors[0]["field"] == "file"  # type: ignore[index]
    assert message_part in errors[0]["message"]  # type: ignore[index]
    assert count_employees(engine) == 0


def test_row_with_wrong_width_is_reported(client: TestClient, world: World) -> None:
    content = b"employee_number,first_name,last_name\nE-1,A,B,extra\nE-2,C,D\n"
    status, report = upload(client, world.mhr_a, content)
    assert status == 200
    assert report["imported_count"] == 1
    assert report["rejected"][0]["errors"][0]["message"] == "4 values for 3 columns"  # type: ignore[index]


def test_missing_file_is_422(client: TestClient, world: World) -> None:
    response = client.post(URL, headers=World.auth(world.mhr_a))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "file"
