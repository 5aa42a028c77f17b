"""The embedded SCIM LMS: in a separate process (as integration tests use it) and in a thread."""

import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmsync.lms.embedded import LMS_EXTENSION_URN, EmbeddedLms, FaultRule, main
from tests.lms_peer import running_lms

TOKEN = "t"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"


@dataclass(frozen=True)
class Lms:
    base_url: str  # http://127.0.0.1:PORT/v2
    admin_url: str  # http://127.0.0.1:PORT/_admin


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first stdout line of ``proc``, or '' if it ends or stays silent for ``timeout``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return proc.stdout.readline().decode().strip()


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lms]:
    """``python -m lmsync.lms.embedded`` in a child process, stopped with SIGTERM at the end."""
    port = _free_port()
    stderr_path: Path = tmp_path_factory.mktemp("embedded-lms") / "stderr.log"
    command = [sys.executable, "-m", "lmsync.lms.embedded", "--port", str(port), "--token", TOKEN]
    with (
        stderr_path.open("wb") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr) as proc,
    ):
        try:
            line = _read_line(proc, timeout=30)
            assert line == f"ready http://127.0.0.1:{port}/v2", stderr_path.read_text()
            yield Lms(f"http://127.0.0.1:{port}/v2", f"http://127.0.0.1:{port}/_admin")
        finally:
            proc.terminate()
            try:
                returncode = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
    # SIGTERM is a clean shutdown, not a crash.
    assert returncode == 0, stderr_path.read_text()


@pytest.fixture
def scim(lms: Lms) -> Iterator[httpx.Client]:
    """A client of the SCIM endpoints, with the bearer token."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    with httpx.Client(base_url=lms.base_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def admin(lms: Lms) -> Iterator[httpx.Client]:
    """A client of the /_admin endpoints; stats and faults start cleared in every test."""
    with httpx.Client(base_url=lms.admin_url, timeout=10) as client:
        client.delete("/faults").raise_for_status()
        client.post("/stats/reset").raise_for_status()
        yield client
        client.delete("/faults").raise_for_status()


def _user(user_name: str, email: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [CORE_USER], "userName": user_name, **extra}
    if email is not None:
        body["emails"] = [{"value": email, "type": "work", "primary": True}]
    return body


def _count(scim: httpx.Client, scim_filter: str) -> int:
    response = scim.get("/Users", params={"filter": scim_filter})
    assert response.status_code == 200, response.text
    total: int = response.json()["totalResults"]
    return total


# -- SCIM behaviour ------------------------------------------------------------------------------


def test_create_and_read_back_a_user_with_both_extensions(scim: httpx.Client) -> None:
    lms_attributes = {
        "registrationDate": "2024-01-15T10:00:00Z",
        "expirationDate": "2025-01-15T10:00:00Z",
        "notificationsEnabled": True,
        "accessMode": "full",
    }
    body = _user(
        "alice.read-back",
        "alice.read-back@example.org",
        externalId="ext-alice",
        active=True,
    )
    body["schemas"] = [CORE_USER, ENTERPRISE, LMS_EXTENSION_URN]
    body[ENTERPRISE] = {"employeeNumber": "42", "department": "R&D"}
    body[LMS_EXTENSION_URN] = lms_attributes

    created = scim.post("/Users", json=body)
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]

    read = scim.get(f"/Users/{user_id}")
    assert read.status_code == 200, read.text
    user = read.json()
    assert user["userName"] == "alice.read-back"
    assert user["externalId"] == "ext-alice"
    assert user[ENTERPRISE] == {"employeeNumber": "42", "department": "R&D"}
    lms_block = user[LMS_EXTENSION_URN]
    assert datetime.fromisoformat(lms_block["registrationDate"]) == datetime(
        2024, 1, 15, 10, tzinfo=UTC
    )
    assert datetime.fromisoformat(lms_block["expirationDate"]) == datetime(
        2025, 1, 15, 10, tzinfo=UTC
    )
    assert lms_block["notificationsEnabled"] is True
    assert lms_block["accessMode"] == "full"


def test_lms_extension_is_published_and_validated(scim: httpx.Client) -> None:
    schema = scim.get(f"/Schemas/{LMS_EXTENSION_URN}")
    assert schema.status_code == 200, schema.text
    types = {a["name"]: a["type"] for a in schema.json()["attributes"]}
    assert types == {
        "registrationDate": "dateTime",
        "expirationDate": "dateTime",
        "notificationsEnabled": "boolean",
        "accessMode": "string",
    }
    wrong = _user("wrong.type")
    wrong["schemas"] = [CORE_USER, LMS_EXTENSION_URN]
    wrong[LMS_EXTENSION_URN] = {"notificationsEnabled": "maybe"}
    assert scim.post("/Users", json=wrong).status_code == 400


def test_email_filter_ignores_letter_case(scim: httpx.Client) -> None:
    created = scim.post("/Users", json=_user("case.filter", "Case.Filter@example.org"))
    assert created.status_code == 201, created.text
    scim.post("/Users", json=_user("case.other", "case.other@example.org")).raise_for_status()

    response = scim.get("/Users", params={"filter": 'emails.value eq "CASE.FILTER@EXAMPLE.ORG"'})
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["totalResults"] == 1
    assert [u["id"] for u in found["Resources"]] == [created.json()["id"]]


def test_patch_deactivates_a_user(scim: httpx.Client) -> None:
    created = scim.post("/Users", json=_user("patch.me", active=True))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    assert created.json()["active"] is True

    patch = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    response = scim.patch(f"/Users/{user_id}", json=patch)
    assert response.status_code == 204, response.text  # scim2-server answers PATCH without a body

    assert scim.get(f"/Users/{user_id}").json()["active"] is False


def test_a_token_is_required_except_for_the_service_provider_config(
    lms: Lms, scim: httpx.Client
) -> None:
    with httpx.Client(base_url=lms.base_url, timeout=10) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dDp0"}):
            response = anonymous.get("/Users", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="SCIM"'
            assert response.json() == {
                "schemas": [ERROR],
                "status": "401",
                "detail": "Missing or invalid bearer token",
            }
        # Also without the optional /v2 prefix.
        assert anonymous.get(lms.base_url.removesuffix("/v2") + "/Users").status_code == 401

        refused = anonymous.post("/Users", json=_user("no.token"))
        assert refused.status_code == 401
        assert _count(scim, 'userName eq "no.token"') == 0  # the refused request did nothing

        config = anonymous.get("/ServiceProviderConfig")
        assert config.status_code == 200
        schemes = config.json()["authenticationSchemes"]
        assert [s["type"] for s in schemes] == ["oauthbearertoken"]

    assert scim.get("/Users").status_code == 200


# -- /_admin/stats --------------------------------------------------------------------------------


def test_stats_count_requests_and_writes(scim: httpx.Client, admin: httpx.Client) -> None:
    assert admin.get("/stats").json()["requests"] == {}

    user_id = scim.post("/Users", json=_user("stats.user")).json()["id"]  # write
    scim.get(f"/Users/{user_id}").raise_for_status()  # read
    search = {"schemas": [SEARCH], "filter": 'userName eq "stats.user"'}
    assert scim.post("/Users/.search", json=search).json()["totalResults"] == 1  # read
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "nickName", "value": "s"}],
    }
    scim.patch(f"/Users/{user_id}", json=patch).raise_for_status()  # write
    duplicate = scim.post("/Users", json=_user("stats.user"))  # write, refused
    assert duplicate.status_code == 409
    scim.delete(f"/Users/{user_id}").raise_for_status()  # write

    stats = admin.get("/stats").json()
    assert stats["requests"] == {"POST": 3, "GET": 1, "PATCH": 1, "DELETE": 1}
    assert stats["writes"] == 4

    reset = admin.post("/stats/reset")
    assert reset.status_code == 200
    assert admin.get("/stats").json()["requests"] == {}
    assert admin.get("/stats").json()["writes"] == 0


def test_stats_leave_out_refused_requests(lms: Lms, admin: httpx.Client) -> None:
    with httpx.Client(base_url=lms.base_url, timeout=10) as anonymous:
        assert anonymous.post("/Users", json=_user("refused.write")).status_code == 401
    stats = admin.get("/stats").json()
    assert stats["requests"] == {}
    assert stats["writes"] == 0
    assert stats["unauthorized"] == 1


# -- /_admin/faults -------------------------------------------------------------------------------


def test_injected_503s_then_success(scim: httpx.Client, admin: httpx.Client) -> None:
    injected = admin.post("/faults", json={"status": 503, "count": 2, "methods": ["POST"]})
    assert injected.status_code == 200, injected.text

    assert scim.get("/Users").status_code == 200  # GET does not match the fault

    body = _user("fault.retry")
    for _ in range(2):
        response = scim.post("/Users", json=body)
        assert response.status_code == 503
        assert response.json()["schemas"] == [ERROR]
        assert response.json()["status"] == "503"
        assert "Retry-After" not in response.headers
    # Had a faulted request reached the SCIM app, this third one would be a 409 duplicate.
    assert scim.post("/Users", json=body).status_code == 201
    assert _count(scim, 'userName eq "fault.retry"') == 1

    stats = admin.get("/stats").json()
    assert stats["writes"] == 1  # faulted requests are not served writes
    assert stats["faulted"] == 2
    assert admin.get("/faults").json() == {"faults": []}


def test_injected_429_carries_retry_after(scim: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/faults", json={"status": 429, "count": 1, "retry_after": 7}).raise_for_status()

    throttled = scim.get("/Users")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.headers["Content-Type"] == "application/scim+json"
    assert throttled.json()["status"] == "429"

    assert scim.get("/Users").status_code == 200  # count was 1


def test_deleting_faults_clears_them(scim: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/faults", json={"status": 500, "count": 5}).raise_for_status()
    assert scim.get("/Users").status_code == 500
    assert admin.get("/faults").json()["faults"][0]["count"] == 4

    assert admin.delete("/faults").json() == {"faults": []}
    assert scim.get("/Users").status_code == 200


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 200},
        {"status": "503"},
        {"status": 503, "count": 0},
        {"status": 503, "methods": "POST"},
        {"status": 503, "colour": "red"},
        {"status": 503, "bulk_match": ""},
        {"status": 503, "bulk_match": 7},
        {"status": 503, "bulk_match": ["x"]},
        {"status": 429, "bulk_match": "x", "retry_after": 3},
    ],
)
def test_invalid_faults_are_refused(
    scim: httpx.Client, admin: httpx.Client, fault: dict[str, Any]
) -> None:
    assert admin.post("/faults", json=fault).status_code == 400
    assert admin.get("/faults").json() == {"faults": []}
    assert scim.get("/Users").status_code == 200


def _bulk(scim: httpx.Client, operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = scim.post("/Bulk", json={"schemas": [BULK], "Operations": operations})
    assert response.status_code == 200, response.text
    assert response.json()["schemas"] == [BULK_RESPONSE]
    results: list[dict[str, Any]] = response.json()["Operations"]
    return results


def _nick(nick: str) -> dict[str, Any]:
    return {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "nickName", "value": nick}],
    }


def test_bulk_faults_fail_single_operations(
    lms: Lms, scim: httpx.Client, admin: httpx.Client
) -> None:
    spared = scim.post("/Users", json=_user("bulkfault.spared")).json()["id"]
    admin.post(
        "/faults", json={"status": 503, "bulk_match": "bulkfault.new-503"}
    ).raise_for_status()
    rule = {"status": 400, "bulk_match": spared, "methods": ["PATCH"]}
    admin.post("/faults", json=rule).raise_for_status()
    admin.post("/stats/reset").raise_for_status()

    results = _bulk(
        scim,
        [
            {"method": "POST", "path": "/Users", "bulkId": "ok", "data": _user("bulkfault.new")},
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": "failed",
                "data": _user("bulkfault.new-503"),
            },
            # The rewritten request keeps the references between the operations left.
            {"method": "PATCH", "path": "/Users/bulkId:ok", "data": _nick("via-bulk-id")},
            {"method": "PATCH", "path": f"/Users/{spared}", "data": _nick("never")},
        ],
    )

    assert [(r["method"], r["status"]) for r in results] == [
        ("POST", "201"),
        ("POST", "503"),
        ("PATCH", "200"),
        ("PATCH", "400"),
    ]
    assert [r.get("bulkId") for r in results] == ["ok", "failed", None, None]
    assert results[1] == {
        "method": "POST",
        "bulkId": "failed",
        "status": "503",
        "response": {
            "schemas": [ERROR],
            "status": "503",
            "detail": "Service Unavailable (fault injected by the embedded LMS)",
        },
    }
    assert results[3]["location"] == f"{lms.base_url}/Users/{spared}"
    assert results[3]["response"]["status"] == "400"
    assert results[3]["response"]["schemas"] == [ERROR]

    created = scim.get(results[0]["location"]).json()
    assert created["userName"] == "bulkfault.new"
    assert created["nickName"] == "via-bulk-id"
    assert results[2]["location"] == results[0]["location"]
    assert _count(scim, 'userName eq "bulkfault.new-503"') == 0
    assert "nickName" not in scim.get(f"/Users/{spared}").json()

    stats = admin.get("/stats").json()
    assert stats["faulted"] == 2
    assert stats["requests"] == {"POST": 1, "GET": 3}  # the bulk request, then the reads
    assert stats["writes"] == 1
    assert admin.get("/faults").json() == {"faults": []}


def test_a_bulk_fault_runs_out_and_spares_other_requests(
    scim: httpx.Client, admin: httpx.Client
) -> None:
    admin.post("/faults", json={"status": 500, "count": 2, "bulk_match": "bulkcount-"})
    # A bulk_match rule only fails bulk operations.
    assert scim.post("/Users", json=_user("bulkcount-single")).status_code == 201
    assert scim.post("/Users/.search", json={"schemas": [SEARCH]}).status_code == 200
    assert admin.get("/faults").json()["faults"][0]["count"] == 2

    results = _bulk(
        scim,
        [
            {"method": "POST", "path": "/Users", "bulkId": f"b{n}", "data": _user(f"bulkcount-{n}")}
            for n in range(1, 4)
        ],
    )
    assert [r["status"] for r in results] == ["500", "500", "201"]
    assert admin.get("/faults").json() == {"faults": []}
    last = {"method": "POST", "path": "/Users", "bulkId": "b4", "data": _user("bulkcount-4")}
    results = _bulk(scim, [last])
    assert [r["status"] for r in results] == ["201"]
    counts = [_count(scim, f'userName eq "bulkcount-{n}"') for n in range(1, 5)]
    assert counts == [0, 0, 1, 1]
    assert admin.get("/stats").json()["faulted"] == 2


def test_a_bulk_whose_every_operation_fails_does_not_reach_the_scim_app(
    lms: Lms, scim: httpx.Client, admin: httpx.Client
) -> None:
    # Rules are tried in order; this one only fails PUT operations.
    admin.post("/faults", json={"status": 502, "bulk_match": "bulkall-", "methods": ["PUT"]})
    admin.post("/faults", json={"status": 503, "count": 5, "bulk_match": "bulkall-"})
    results = _bulk(
        scim,
        [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": _user("bulkall-a")},
            {"method": "DELETE", "path": "/Users/bulkall-missing"},  # else a 404
        ],
    )
    assert [(r["method"], r["status"]) for r in results] == [("POST", "503"), ("DELETE", "503")]
    assert results[1]["location"] == f"{lms.base_url}/Users/bulkall-missing"
    assert _count(scim, 'userName eq "bulkall-a"') == 0
    faults = admin.get("/faults").json()["faults"]
    assert [(f["status"], f["count"]) for f in faults] == [(502, 1), (503, 3)]
    stats = admin.get("/stats").json()
    assert stats["faulted"] == 2
    assert stats["writes"] == 1


def test_fault_rule_json_with_bulk_match() -> None:
    rule = FaultRule.from_json({"status": 503, "bulk_match": "x", "methods": ["patch"]})
    assert rule.to_json() == {
        "status": 503,
        "count": 1,
        "retry_after": None,
        "methods": ["PATCH"],
        "bulk_match": "x",
    }
    assert not rule.matches("PATCH")
    assert rule.matches_operation("PATCH", "/Users/x1")
    assert not rule.matches_operation("POST", "x")
    assert FaultRule.from_json({"status": 503}).bulk_match is None


# -- without the meta.lastModified filter --------------------------------------------------------

SINCE = 'meta.lastModified gt "2020-01-01T00:00:00Z"'


def test_the_modified_filter_is_served_by_default(scim: httpx.Client) -> None:
    scim.post("/Users", json=_user("modified.default")).raise_for_status()
    assert _count(scim, SINCE) >= 1


def test_without_the_modified_filter_its_searches_answer_400() -> None:
    with (
        EmbeddedLms(modified_filter=False) as lms,
        httpx.Client(base_url=lms.base_url, timeout=10) as client,
    ):
        user_id = client.post("/Users", json=_user("nomodified")).json()["id"]
        root = lms.base_url.removesuffix("/v2")
        refused = [
            client.get("/Users", params={"filter": SINCE}),
            client.get("/Users", params={"filter": 'userName eq "x" or META.LASTMODIFIED pr'}),
            client.post("/Users/.search", json={"schemas": [SEARCH], "filter": SINCE}),
            # Without the optional /v2 prefix, with a trailing slash.
            client.post(f"{root}/Users/.search/", json={"schemas": [SEARCH], "filter": SINCE}),
        ]
        for response in refused:
            assert response.status_code == 400, response.text
            assert response.headers["Content-Type"] == "application/scim+json"
            body = response.json()
            assert body.keys() == {"schemas", "status", "scimType", "detail"}
            assert (body["schemas"], body["status"], body["scimType"]) == (
                [ERROR],
                "400",
                "invalidFilter",
            )
            assert "meta.lastModified" in body["detail"]

        assert _count(client, 'userName eq "nomodified"') == 1
        search = {"schemas": [SEARCH], "filter": 'userName eq "nomodified"'}
        assert client.post("/Users/.search", json=search).json()["totalResults"] == 1
        assert client.get("/Users").json()["totalResults"] == 1
        assert client.get(f"/Users/{user_id}").status_code == 200
        stats = httpx.get(f"{lms.admin_url}/stats", timeout=10).json()
        assert stats["requests"] == {"POST": 4, "GET": 5}


def test_no_modified_filter_option(tmp_path: Path) -> None:
    """``--no-modified-filter``, as tests/lms_peer.py starts it."""
    with running_lms(tmp_path, modified_filter=False) as process, process._http() as client:
        refused = client.get("/Users", params={"filter": SINCE})
        assert refused.status_code == 400
        assert refused.json()["scimType"] == "invalidFilter"
        assert client.get("/Users", params={"filter": 'userName eq "x"'}).status_code == 200


# -- /_admin/users --------------------------------------------------------------------------------


def test_bulk_load_then_page(scim: httpx.Client, admin: httpx.Client) -> None:
    users = [_user(f"bulk-{n:03d}", f"bulk-{n:03d}@example.org") for n in range(50)]
    loaded = admin.post("/users", json=users)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json() == {"created": 50}
    assert admin.get("/stats").json()["requests"] == {}  # seeding is not counted

    page = scim.get(
        "/Users",
        params={
            "filter": 'userName sw "bulk-"',
            "sortBy": "userName",
            "startIndex": 11,
            "count": 10,
        },
    )
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["totalResults"] == 50
    assert body["startIndex"] == 11
    assert body["itemsPerPage"] == 10
    assert [u["userName"] for u in body["Resources"]] == [f"bulk-{n:03d}" for n in range(10, 20)]


def test_bulk_load_reports_failures(scim: httpx.Client, admin: httpx.Client) -> None:
    users: list[Any] = [_user("seed.ok"), _user("seed.ok"), {"schemas": [CORE_USER]}, "x"]
    response = admin.post("/users", json=users)
    assert response.status_code == 400
    body = response.json()
    assert body["created"] == 1
    assert [(e["index"], e["status"]) for e in body["errors"]] == [(1, 409), (2, 400), (3, 400)]
    assert _count(scim, 'userName eq "seed.ok"') == 1

    assert admin.post("/users", json={"userName": "x"}).status_code == 400


def test_unknown_admin_endpoints(admin: httpx.Client) -> None:
    assert admin.get("/nothing").status_code == 404
    wrong_method = admin.put("/stats")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET"


# -- in a thread of this process ------------------------------------------------------------------


def test_embedded_lms_in_a_thread_starts_serves_and_stops() -> None:
    lms = EmbeddedLms(token="secret")
    with lms:
        assert lms.running
        assert lms.base_url == f"http://127.0.0.1:{lms.port}/v2"
        thread_name = f"embedded-lms-{lms.port}"
        base_url = lms.base_url
        headers = {"Authorization": "Bearer secret"}
        with httpx.Client(base_url=base_url, timeout=10) as client:
            created = client.post("/Users", json=_user("threaded"), headers=headers)
            assert created.status_code == 201, created.text
            assert client.get("/Users", headers=headers).json()["totalResults"] == 1
            assert client.get("/Users").status_code == 401
            stats = httpx.get(f"{lms.admin_url}/stats", timeout=10).json()
            assert stats["writes"] == 1

    assert not lms.running
    assert thread_name not in {t.name for t in threading.enumerate()}
    with pytest.raises(RuntimeError):
        _ = lms.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/ServiceProviderConfig", timeout=2)


def test_embedded_lms_without_token_on_a_chosen_port() -> None:
    port = _free_port()
    with EmbeddedLms(port=port) as lms:
        assert lms.port == port
        response = httpx.get(f"{lms.base_url}/Users", timeout=10)
        assert response.status_code == 200
        assert response.json()["totalResults"] == 0  # a fresh, empty store per instance


def test_embedded_lms_restarts_after_stop() -> None:
    lms = EmbeddedLms()
    lms.start()
    try:
        with pytest.raises(RuntimeError):
            lms.start()
    finally:
        lms.stop()
    lms.stop()  # idempotent
    lms.start()
    try:
        assert httpx.get(f"{lms.base_url}/ServiceProviderConfig", timeout=10).status_code == 200
    finally:
        lms.stop()


def test_main_rejects_an_empty_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--token", ""])
    assert exit_info.value.code == 2
    assert "--token must not be empty" in capsys.readouterr().err


def test_latency_option_delays_every_scim_answer() -> None:
    """``--latency-ms``: the benchmarks' LMS across a network (a lower bound only is asserted)."""
    with EmbeddedLms(latency=0.3) as lms, httpx.Client(base_url=lms.base_url) as client:
        started = time.perf_counter()
        response = client.get("/Users", params={"count": 0})
        elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed >= 0.3


def test_main_rejects_a_negative_latency(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--latency-ms", "-1"])
    assert exit_info.value.code == 2
    assert "--latency-ms must be between 0 and 60000" in capsys.readouterr().err


def test_a_portal_must_be_named_in_the_header_or_the_path() -> None:
    """``--portal``: a multi-portal LMS, for the connector's portal identifier."""
    portal, segment = "acme eu/1", "acme%20eu%2F1"
    with EmbeddedLms(portal=portal) as lms, httpx.Client(timeout=10) as client:
        root = f"http://127.0.0.1:{lms.port}"
        by_path = client.post(f"{root}/v2/{segment}/Users", json=_user("portal.path"))
        assert by_path.status_code == 201, by_path.text
        by_header = client.get(f"{lms.base_url}/Users", headers={"X-Portal-Id": portal})
        assert by_header.json()["totalResults"] == 1  # the same store
        without_version = client.get(f"{root}/{segment}/Users/{by_path.json()['id']}")
        assert without_version.status_code == 200

        refused = [
            client.get(f"{lms.base_url}/Users"),  # no portal
            client.get(f"{lms.base_url}/acme/Users"),  # another portal
            client.get(f"{root}/v2/acme%20eu/1/Users"),  # the "/" not encoded: another one
            client.get(f"{lms.base_url}/Users", headers={"X-Portal-Id": "acme"}),
            # The header names the portal when present, even with the right path.
            client.get(f"{root}/v2/{segment}/Users", headers={"X-Portal-Id": "other"}),
        ]
        assert [r.status_code for r in refused] == [404] * len(refused)
        assert refused[0].json()["detail"] == "Unknown portal"
        stats = client.get(f"{lms.admin_url}/stats").json()
        assert stats["wrong_portal"] == len(refused)
        assert stats["requests"] == {"POST": 1, "GET": 2}


def test_main_rejects_an_empty_portal(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--portal", ""])
    assert exit_info.value.code == 2
    assert "--portal must not be empty" in capsys.readouterr().err
