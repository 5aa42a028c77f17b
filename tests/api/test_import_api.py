"""CSV import through the API: good rows imported, bad rows reported by line; dry run; bad files.

Files of up to ``imports.SYNC_ROWS`` rows answer 200 with the report; larger ones 202 and run in
the background (the tests lower the threshold and the chunk size to keep the files small)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lmsync.hr import imports
from lmsync.storage.tables import Employee, EmployeeImport
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
    assert rejected[5]["errors"] == [
        {"field": "first_name", "code": "is required", "message": "is required"}
    ]
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


# -- large files: 202 and a background import --------------------------------------------------


@pytest.fixture
def small_chunks(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Background imports from 6 rows up, 3 rows a chunk; returns the sync wake-ups counter."""
    monkeypatch.setattr(imports, "SYNC_ROWS", 5)
    service = client.app.state.lmsync.imports  # type: ignore[attr-defined]
    monkeypatch.setattr(service, "chunk_rows", 3)
    monkeypatch.setattr(service, "pause", 0.0)
    wakes: list[int] = []
    monkeypatch.setattr(service, "on_change", lambda: wakes.append(1))
    return wakes


def wait_import(client: TestClient, token: str, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = client.get(location, headers=World.auth(token))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{location} did not finish")


def queue_import(
    client: TestClient, token: str, content: bytes, **params: str
) -> tuple[str, dict[str, Any]]:
    response = client.post(
        URL,
        params=params,
        files={"file": ("employees.csv", content, "text/csv")},
        headers=World.auth(token),
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/api/v1/employees/imports/{body['id']}"
    return response.headers["location"], body


def test_large_file_is_imported_in_the_background(
    client: TestClient, world: World, engine: Engine, small_chunks: list[int]
) -> None:
    location, queued = queue_import(client, world.mhr_a, TEN_ROWS.encode())
    assert queued["status"] in ("queued", "running")
    assert (queued["total_rows"], queued["dry_run"]) == (10, False)
    done = wait_import(client, world.mhr_a, location)
    assert done["status"] == "succeeded", done
    assert (done["done_rows"], done["imported_count"], done["rejected_count"]) == (10, 7, 3)
    rejected = {r["line"]: r for r in done["rejected"]}
    assert set(rejected) == {5, 6, 7}  # the same lines and messages as a small file's
    assert rejected[5]["errors"] == [
        {"field": "first_name", "code": "is required", "message": "is required"}
    ]
    assert rejected[6]["employee_number"] == "E-05"
    assert rejected[6]["errors"][0]["field"] == "home_phone"
    assert rejected[7]["errors"][0]["field"] == "country"
    assert done["finished_at"] is not None
    assert count_employees(engine) == 7
    with Session(engine) as s:
        # Due for the LMS as any hire is (the excluded ones not), and the file is gone.
        due = s.scalars(select(Employee.employee_number).where(Employee.lms_due_at.is_not(None)))
        assert sorted(due) == ["E-01", "E-02", "E-07", "E-08", "E-10"]
        assert s.scalar(select(EmployeeImport.content)) is None
    # The sync worker was woken after each chunk that hired (rows 4-6 were all rejected).
    assert len(small_chunks) == 3


def test_large_dry_run_in_the_background_writes_nothing(
    client: TestClient, world: World, engine: Engine, small_chunks: list[int]
) -> None:
    content = TEN_ROWS.encode() + b"E-01,Again,Twice,,,CA,,,\n"
    location, queued = queue_import(client, world.mhr_a, content, dry_run="true")
    assert queued["dry_run"] is True
    done = wait_import(client, world.mhr_a, location)
    assert (done["status"], done["imported_count"], done["rejected_count"]) == ("succeeded", 7, 4)
    # A number seen in an earlier chunk is caught in a later one.
    assert done["rejected"][-1]["line"] == 12
    assert done["rejected"][-1]["errors"][0]["message"] == "appears twice in this file"
    assert count_employees(engine) == 0
    assert small_chunks == []


def test_threshold_between_answering_now_and_in_the_background(
    client: TestClient, world: World
) -> None:
    rows = [f"N-{i},Zoë,Ngô" for i in range(imports.SYNC_ROWS + 1)]
    at_limit = "employee_number,first_name,last_name\n" + "\n".join(rows[:-1]) + "\n"
    status, report = upload(client, world.mhr_a, at_limit.encode(), dry_run="true")
    assert (status, report["imported_count"]) == (200, imports.SYNC_ROWS)
    over = at_limit + rows[-1] + "\n"
    location, queued = queue_import(client, world.mhr_a, over.encode(), dry_run="true")
    assert queued["total_rows"] == imports.SYNC_ROWS + 1
    assert wait_import(client, world.mhr_a, location)["imported_count"] == imports.SYNC_ROWS + 1


def test_idempotency_key_replays_the_202(
    client: TestClient, world: World, engine: Engine, small_chunks: list[int]
) -> None:
    headers = {**World.auth(world.mhr_a), "Idempotency-Key": "big-import-1"}
    files = {"file": ("employees.csv", TEN_ROWS.encode(), "text/csv")}
    first = client.post(URL, files=files, headers=headers)
    second = client.post(URL, files=files, headers=headers)
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == first.headers["location"]
    assert wait_import(client, world.mhr_a, first.headers["location"])["imported_count"] == 7
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(EmployeeImport)) == 1
    assert count_employees(engine) == 7


def test_one_unfinished_import_per_account(
    client: TestClient, world: World, small_chunks: list[int]
) -> None:
    client.app.state.lmsync.imports.stop()  # type: ignore[attr-defined]  # nothing runs them
    location, _ = queue_import(client, world.mhr_a, TEN_ROWS.encode())
    status, problem = upload(client, world.mhr_a, TEN_ROWS.encode(), dry_run="true")
    assert status == 409
    assert location in str(problem["detail"])
    other, _ = queue_import(client, world.mhr_b, TEN_ROWS.encode())  # another account may
    assert other != location
    # Small files are not queued, so they still answer at once.
    status, report = upload(client, world.mhr_a, b"employee_number,first_name,last_name\nX,A,B\n")
    assert (status, report["imported_count"]) == (200, 1)


def test_imports_are_read_in_the_own_account_only(
    client: TestClient, world: World, small_chunks: list[int]
) -> None:
    location, _ = queue_import(client, world.mhr_a, TEN_ROWS.encode())
    wait_import(client, world.mhr_a, location)
    assert client.get(location, headers=World.auth(world.viewer_a)).status_code == 200
    assert client.get(location, headers=World.auth(world.mhr_b)).status_code == 404
    assert client.get(URL + "s/nope", headers=World.auth(world.mhr_a)).status_code == 404
    viewer = client.post(
        URL,
        files={"file": ("employees.csv", TEN_ROWS.encode(), "text/csv")},
        headers=World.auth(world.viewer_a),
    )
    assert viewer.status_code == 403
    listed = client.get(URL + "s", headers=World.auth(world.mhr_a)).json()
    assert [i["id"] for i in listed["items"]] == [location.rsplit("/", 1)[1]]
    assert listed["items"][0]["imported_count"] == 7
    assert "rejected" not in listed["items"][0]
    assert client.get(URL + "s", headers=World.auth(world.mhr_b)).json()["total"] == 0


def test_import_list_is_paged(client: TestClient, world: World, small_chunks: list[int]) -> None:
    ids = []
    for n in range(3):
        content = b"employee_number,first_name,last_name\n" + b"".join(
            f"P{n}-{i},A,B\n".encode() for i in range(6)
        )
        location, queued = queue_import(client, world.mhr_a, content)
        wait_import(client, world.mhr_a, location)
        ids.append(queued["id"])
    page = client.get(URL + "s", params={"limit": 2}, headers=World.auth(world.mhr_a)).json()
    assert (page["total"], [i["id"] for i in page["items"]]) == (3, ids[:0:-1])
    following = client.get(page["next"], headers=World.auth(world.mhr_a)).json()
    assert [i["id"] for i in following["items"]] == ids[:1]
    assert following["next"] is None


def test_report_keeps_a_bounded_number_of_rejected_rows(
    client: TestClient, world: World, small_chunks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "REPORT_LIMIT", 4)
    content = b"employee_number,first_name,last_name\n" + b"".join(
        f"B-{i},,Nameless\n".encode() for i in range(10)
    )
    location, _ = queue_import(client, world.mhr_a, content)
    done = wait_import(client, world.mhr_a, location)
    assert (done["rejected_count"], len(done["rejected"])) == (10, 4)
    assert [r["line"] for r in done["rejected"]] == [2, 3, 4, 5]


def test_unreadable_large_file_is_refused_before_queueing(
    client: TestClient, world: World, engine: Engine, small_chunks: list[int]
) -> None:
    content = TEN_ROWS.encode() + b'E-11,"broken,quote\n'
    status, problem = upload(client, world.mhr_a, content)
    assert status == 422
    assert problem["errors"][0]["field"] == "file"  # type: ignore[index]
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(EmployeeImport)) == 0
    assert count_employees(engine) == 0
