"""The pure half of SCIM Bulk: limits, packing within them, and reading a bulk answer."""

from __future__ import annotations

import json

from lmsync.lms.scim_bulk import (
    MAX_OPERATIONS,
    BulkLimits,
    Operation,
    limits,
    pack,
    request_body,
    results,
)


def test_limits_from_the_service_provider_config() -> None:
    assert limits({"bulk": {"supported": True, "maxOperations": 1000, "maxPayloadSize": 9}}) == (
        BulkLimits(MAX_OPERATIONS, 9)
    )
    assert limits({"bulk": {"supported": True, "maxOperations": 10}}) == BulkLimits(10, None)
    assert limits({"bulk": {"supported": False, "maxOperations": 10}}) is None
    assert limits({"bulk": {"supported": True, "maxOperations": 0}}) is None
    assert limits({"bulk": {"supported": "yes", "maxOperations": 10}}) is None
    assert limits({"bulk": {"supported": True, "maxOperations": True}}) is None
    assert limits({}) is None


def _op(n: int, size: int = 10) -> Operation:
    return Operation("POST", "/Users", f"c{n}", {"userName": "x" * size})


def test_pack_within_operations_and_payload() -> None:
    ops = [_op(n) for n in range(7)]
    assert [len(r) for r in pack(ops, BulkLimits(3, None))] == [3, 3, 1]
    one = len(json.dumps(ops[0].as_json(), separators=(",", ":")).encode()) + 1
    packed = pack(ops, BulkLimits(100, 128 + 2 * one))
    assert [len(r) for r in packed] == [2, 2, 2, 1]
    assert [op.bulk_id for r in packed for op in r] == [op.bulk_id for op in ops]  # in order
    # Too large alone: alone (the server says 413 and it goes as a single request).
    assert [len(r) for r in pack([_op(0, 5000), _op(1)], BulkLimits(100, 1000))] == [1, 1]


def test_request_body_leaves_fail_on_errors_unset() -> None:
    body = request_body([_op(0)])
    assert "failOnErrors" not in body
    assert body["Operations"][0] == {
        "method": "POST",
        "path": "/Users",
        "bulkId": "c0",
        "data": {"userName": "xxxxxxxxxx"},
    }


def test_results_by_bulk_id_location_and_missing() -> None:
    sent = [
        _op(0),
        _op(1),
        Operation("PATCH", "/Users/u%202", "u2", {}),
        Operation("PATCH", "/Users/u3", "u3", {}),
    ]
    answer = {
        "Operations": [
            # Out of order, statuses as strings (RFC 7644) or numbers, PATCH without bulkId.
            {"bulkId": "c1", "status": "409", "response": {"detail": "taken"}},
            {"location": "https://lms/v2/Users/u%202", "method": "PATCH", "status": 200},
            {"bulkId": "c0", "status": "201", "location": "https://lms/v2/Users/abc"},
            {"bulkId": "zz", "status": "nonsense"},
            "not an object",
        ]
    }
    found = results(answer, sent)
    assert found[0] is not None
    assert found[0].status == 201
    assert found[0].resource_id == "abc"
    assert found[1] is not None
    assert found[1].status == 409
    assert found[1].resource_id is None
    assert found[2] is not None
    assert found[2].status == 200
    assert found[3] is None  # not reported: the connector treats it as a transient failure
    assert results({"Operations": "no"}, sent) == [None] * 4
