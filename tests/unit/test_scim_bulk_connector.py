"""The SCIM connector's Bulk edge against ``httpx.MockTransport`` (the real scim2-server runs in
tests/integration/test_scim_bulk.py): what it does when a server's Bulk misbehaves."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from lmsync.lms.base import (
    AlreadyExistsError,
    FilterUnsupportedError,
    LmsError,
    MisconfiguredError,
    NotFoundError,
    RejectedError,
    RemoteUser,
    TransientError,
    UpdateRequest,
)
from lmsync.lms.scim import ScimConnector, ScimSettings
from tests.unit.test_scim_connector import CREATE_ONLY, FIELDS

BASE = "https://lms.example.test/scim/v2"
SPC = {"bulk": {"supported": True, "maxOperations": 1000, "maxPayloadSize": 1_000_000}}


def _fields(n: int) -> dict[str, Any]:
    return {**FIELDS, "email": f"u{n}@example.ca", "external_id": f"e{n}"}


class Lms:
    """A scripted server: ``bulk`` answers each POST /Bulk; single requests succeed."""

    def __init__(self, bulk: Callable[[dict[str, Any]], httpx.Response], spc: Any = None):
        self.bulk = bulk
        self.spc = SPC if spc is None else spc
        self.calls: list[tuple[str, str, int]] = []  # method, path, operations

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/scim/v2")
        body = json.loads(request.content) if request.content else {}
        self.calls.append((request.method, path, len(body.get("Operations", []))))
        if path == "/ServiceProviderConfig":
            return httpx.Response(200, json=self.spc)
        if path == "/Bulk":
            return self.bulk(body)
        if request.method == "POST":
            return httpx.Response(201, json={**body, "id": "single-" + body["externalId"]})
        return httpx.Response(204)

    def bulks(self) -> list[int]:
        return [n for method, path, n in self.calls if path == "/Bulk"]

    def singles(self) -> int:
        return sum(1 for method, path, _ in self.calls if path.startswith("/Users"))


def ok_all(body: dict[str, Any]) -> httpx.Response:
    answers = []
    for op in body["Operations"]:
        status = "201" if op["method"] == "POST" else "200"
        answers.append(
            {"bulkId": op["bulkId"], "status": status, "location": f"{BASE}/Users/{op['bulkId']}"}
        )
    return httpx.Response(200, json={"Operations": answers})


@pytest.fixture
def connect() -> Iterator[Callable[..., ScimConnector]]:
    opened: list[ScimConnector] = []

    def make(lms: Lms, **settings: Any) -> ScimConnector:
        connector = ScimConnector(
            ScimSettings(base_url=BASE, secret="s3cret", **settings),
            transport=httpx.MockTransport(lms),
        )
        opened.append(connector)
        return connector

    yield make
    for connector in opened:
        connector.close()


def test_creations_and_updates_share_a_bulk_request(connect: Callable[..., ScimConnector]) -> None:
    lms = Lms(ok_all)
    connector = connect(lms)
    assert connector.batch_size == 100  # the server allows 1,000: capped
    made, errors = connector.write_many(
        [(_fields(n), CREATE_ONLY) for n in range(3)],
        [
            UpdateRequest("u-1", _fields(9), ["job_title"]),
            UpdateRequest("u-2", _fields(8), [], False),
            UpdateRequest("u-3", _fields(7), []),  # nothing to write: no operation at all
        ],
    )
    assert [u.id for u in made if isinstance(u, RemoteUser)] == ["c0", "c1", "c2"]
    assert made[0].email_key == "u0@example.ca"  # type: ignore[union-attr]
    assert errors == [None, None, None]
    assert lms.bulks() == [5]
    assert lms.singles() == 0


def test_a_lone_write_and_bulk_off_go_one_by_one(connect: Callable[..., ScimConnector]) -> None:
    lms = Lms(ok_all)
    made = connect(lms).create_many([(_fields(1), CREATE_ONLY)])
    assert isinstance(made[0], RemoteUser)
    assert lms.bulks() == []
    assert ("GET", "/ServiceProviderConfig", 0) not in lms.calls  # not even asked

    off = Lms(ok_all)
    connector = connect(off, use_bulk=False)
    assert connector.batch_size == 1
    connector.create_many([(_fields(n), CREATE_ONLY) for n in range(2)])
    assert off.bulks() == []
    assert off.singles() == 2


@pytest.mark.parametrize(
    "spc",
    [{"bulk": {"supported": False}}, {"bulk": {"supported": True, "maxOperations": 0}}, {}],
)
def test_without_bulk_in_the_config_one_request_per_user(
    connect: Callable[..., ScimConnector], spc: dict[str, Any]
) -> None:
    lms = Lms(ok_all, spc)
    connector = connect(lms)
    assert connector.batch_size == 1
    connector.update_many([UpdateRequest(f"u{n}", _fields(n), ["job_title"]) for n in range(3)])
    assert lms.bulks() == []
    assert lms.singles() == 3


@pytest.mark.parametrize("status", [404, 405, 501])
def test_no_bulk_endpoint_falls_back_for_the_rest_of_the_run(
    connect: Callable[..., ScimConnector], status: int
) -> None:
    lms = Lms(lambda body: httpx.Response(status))
    connector = connect(lms)
    made = connector.create_many([(_fields(n), CREATE_ONLY) for n in range(3)])
    assert all(isinstance(u, RemoteUser) for u in made)
    made = connector.create_many([(_fields(n), CREATE_ONLY) for n in range(3, 5)])
    assert all(isinstance(u, RemoteUser) for u in made)
    assert lms.bulks() == [3]  # asked once
    assert connector.batch_size == 1


def test_a_request_too_large_is_split_in_halves(connect: Callable[..., ScimConnector]) -> None:
    def bulk(body: dict[str, Any]) -> httpx.Response:
        if len(body["Operations"]) > 2:
            return httpx.Response(413)
        return ok_all(body)

    lms = Lms(bulk)
    made = connect(lms).create_many([(_fields(n), CREATE_ONLY) for n in range(5)])
    assert [u.id for u in made if isinstance(u, RemoteUser)] == ["c0", "c1", "c2", "c3", "c4"]
    assert lms.bulks() == [5, 2, 3, 1, 2]  # 5 → 2 + 3, 3 → 1 + 2


def test_each_operations_status_becomes_its_own_error(
    connect: Callable[..., ScimConnector],
) -> None:
    def bulk(body: dict[str, Any]) -> httpx.Response:
        statuses = ["201", "409", 400, "503", "401", "garbage"]
        answers = []
        for op, status in zip(body["Operations"], statuses, strict=False):
            error = {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "detail": "no s3cret here" if status == 400 else "nope",
                "status": str(status),
            }
            answers.append(
                {
                    "bulkId": op["bulkId"],
                    "status": status,
                    "location": f"{BASE}/Users/x{op['bulkId']}",
                    "response": error if status != "201" else None,
                }
            )
        return httpx.Response(200, json={"Operations": answers})

    made = connect(Lms(bulk)).create_many([(_fields(n), CREATE_ONLY) for n in range(7)])
    kinds = [type(u).__name__ for u in made]
    assert kinds == [
        "RemoteUser",
        "AlreadyExistsError",
        "RejectedError",
        "TransientError",
        "RejectedError",  # one user refused (401/403 on its operation): that user only
        "TransientError",  # a status that cannot be read: not reported
        "TransientError",  # not in the answer at all
    ]
    rejected = made[2]
    assert isinstance(rejected, RejectedError)
    assert "HTTP status 400" in rejected.message
    assert "s3cret" not in rejected.message  # an echo of the secret is never quoted
    assert isinstance(made[1], AlreadyExistsError)
    assert isinstance(made[4], RejectedError)
    assert "refused this user" in made[4].message


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json={"Operations": "none"}),
        httpx.Response(200, json=[1, 2]),
    ],
)
def test_an_answer_that_reports_nothing_means_retry_without_bulk(
    connect: Callable[..., ScimConnector], answer: httpx.Response
) -> None:
    lms = Lms(lambda body: answer)
    connector = connect(lms)
    made = connector.create_many([(_fields(n), CREATE_ONLY) for n in range(2)])
    assert all(isinstance(u, TransientError) for u in made)  # made or not: asked again
    assert connector.batch_size == 1  # and asked again one by one


def test_a_transient_whole_request_is_each_operations_transient_error(
    connect: Callable[..., ScimConnector],
) -> None:
    made = connect(Lms(lambda body: httpx.Response(503))).create_many(
        [(_fields(n), CREATE_ONLY) for n in range(2)]
    )
    assert all(isinstance(u, TransientError) for u in made)


def test_credentials_refused_for_the_whole_request_stop_the_run(
    connect: Callable[..., ScimConnector],
) -> None:
    with pytest.raises(MisconfiguredError):
        connect(Lms(lambda body: httpx.Response(401))).create_many(
            [(_fields(n), CREATE_ONLY) for n in range(2)]
        )


def test_put_mode_sends_updates_one_by_one(connect: Callable[..., ScimConnector]) -> None:
    def single_or_bulk(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "/Users/" in request.url.path:
            return httpx.Response(200, json={"id": "u", "userName": "a", "schemas": []})
        return lms(request)

    lms = Lms(ok_all)
    connector = ScimConnector(
        ScimSettings(base_url=BASE, secret="s", use_patch=False),
        transport=httpx.MockTransport(single_or_bulk),
    )
    try:
        errors = connector.update_many(
            [UpdateRequest(f"u{n}", _fields(n), ["job_title"]) for n in range(2)]
        )
    finally:
        connector.close()
    assert errors == [None, None]
    assert lms.bulks() == []
    assert [m for m, p, _ in lms.calls if p.startswith("/Users/")] == ["PUT", "PUT"]
    assert isinstance(errors, list)
    assert not any(isinstance(e, LmsError) for e in errors)


def test_a_request_refused_as_a_whole_goes_one_by_one(
    connect: Callable[..., ScimConnector],
) -> None:
    """A 409 or 422 for the whole bulk request: each user gets its own answer (none of them
    is recorded as refused for the others' sake)."""
    lms = Lms(lambda body: httpx.Response(422))
    made = connect(lms).create_many([(_fields(n), CREATE_ONLY) for n in range(3)])
    assert all(isinstance(u, RemoteUser) for u in made)
    assert lms.bulks() == [3]
    assert lms.singles() == 3


def _listing(pages: list[Any]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["startIndex"])
        page = pages.pop(0)
        if isinstance(page, int):
            return httpx.Response(page, json={"detail": "no"})
        assert start >= 1
        return httpx.Response(200, json=page)

    return handler


def _user(n: int) -> dict[str, Any]:
    return {"id": f"id{n}", "userName": f"u{n}", "emails": [{"value": f"u{n}@x.ca"}]}


def test_changed_since_pages_and_reads_a_numeric_string_total() -> None:
    pages = [
        {"totalResults": "3", "Resources": [_user(1), _user(2)]},
        {"totalResults": "3", "Resources": [_user(3)]},
    ]
    connector = ScimConnector(
        ScimSettings(base_url=BASE, page_size=2), transport=httpx.MockTransport(_listing(pages))
    )
    try:
        read = connector.changed_since(datetime(2026, 1, 1, tzinfo=UTC))
    finally:
        connector.close()
    assert [u.id for u in read.users] == ["id1", "id2", "id3"]
    assert pages == []


@pytest.mark.parametrize(
    ("pages", "error"),
    [
        ([400], FilterUnsupportedError),  # the first page refused: no such filter
        ([404], NotFoundError),  # a wrong URL or portal is not "no filter"
        ([{"totalResults": 9, "Resources": [_user(1)]}, 400], RejectedError),
    ],
)
def test_changed_since_tells_no_filter_from_other_failures(
    pages: list[Any], error: type[LmsError]
) -> None:
    connector = ScimConnector(
        ScimSettings(base_url=BASE, page_size=1), transport=httpx.MockTransport(_listing(pages))
    )
    try:
        with pytest.raises(error) as raised:
            connector.changed_since(datetime(2026, 1, 1, tzinfo=UTC))
    finally:
        connector.close()
    assert type(raised.value) is error
