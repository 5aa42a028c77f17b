"""SCIM Bulk (RFC 7644 §3.7) for the SCIM connector, as pure functions: the limits a server
publishes, operations packed into requests within them, and each operation's result read back.

The connector (``ScimConnector.create_many``/``update_many``) sends the requests and turns each
result into what the single request would have given: the user made, or the same typed error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
# Operations per request, also when the server takes more: past a hundred, a request holds a
# server worker longer without being cheaper per user, and one lost answer costs more retries.
MAX_OPERATIONS = 100
# The request's own JSON around its operations, counted against maxPayloadSize.
_ENVELOPE_BYTES = 128


@dataclass(frozen=True)
class BulkLimits:
    """What one bulk request may hold (from the ServiceProviderConfig)."""

    max_operations: int
    max_payload: int | None  # bytes; None: the server states no limit


@dataclass(frozen=True)
class Operation:
    method: str  # POST | PATCH
    path: str
    bulk_id: str
    data: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "bulkId": self.bulk_id, "data": self.data}


@dataclass(frozen=True)
class OperationResult:
    """One operation's outcome as the server reported it."""

    status: int
    response: Any  # the SCIM error document of a failure; a resource, or nothing, on success
    location: str | None

    @property
    def resource_id(self) -> str | None:
        """The id of the resource the operation made or changed (from its location, or from
        the resource the server returned)."""
        if isinstance(self.response, dict) and isinstance(self.response.get("id"), str):
            return str(self.response["id"])
        if self.location:
            last = urlsplit(self.location).path.rstrip("/").rpartition("/")[2]
            return unquote(last) or None
        return None


def _positive(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def limits(config: Mapping[str, Any], cap: int = MAX_OPERATIONS) -> BulkLimits | None:
    """The bulk limits a ServiceProviderConfig states; None when it does not support Bulk (or
    states no usable ``maxOperations``, which RFC 7643 §5 requires)."""
    bulk = config.get("bulk")
    if not isinstance(bulk, dict) or bulk.get("supported") is not True:
        return None
    operations = _positive(bulk.get("maxOperations"))
    if operations is None:
        return None
    return BulkLimits(min(operations, cap), _positive(bulk.get("maxPayloadSize")))


def pack(operations: Sequence[Operation], bulk: BulkLimits) -> list[list[Operation]]:
    """The operations in requests of at most ``max_operations`` and ``max_payload`` bytes, in
    order. An operation too large alone goes alone (the server then answers 413 for it)."""
    requests: list[list[Operation]] = []
    current: list[Operation] = []
    size = _ENVELOPE_BYTES
    for operation in operations:
        cost = len(json.dumps(operation.as_json(), separators=(",", ":")).encode()) + 1
        too_big = bulk.max_payload is not None and size + cost > bulk.max_payload
        if current and (len(current) >= bulk.max_operations or too_big):
            requests.append(current)
            current, size = [], _ENVELOPE_BYTES
        current.append(operation)
        size += cost
    if current:
        requests.append(current)
    return requests


def request_body(operations: Sequence[Operation]) -> dict[str, Any]:
    """The BulkRequest; ``failOnErrors`` unset: one refused user never stops the others."""
    return {"schemas": [BULK_REQUEST], "Operations": [op.as_json() for op in operations]}


def _status(value: Any) -> int | None:
    """An operation's status: RFC 7644 writes it as a string ("201"); some servers an integer."""
    if isinstance(value, bool):
        return None
    try:
        status = int(str(value).strip())
    except ValueError:
        return None
    return status if 100 <= status <= 599 else None


def _path_of(location: Any) -> str | None:
    if not isinstance(location, str):
        return None
    return unquote(urlsplit(location).path).rstrip("/")


def results(body: Mapping[str, Any], sent: Sequence[Operation]) -> list[OperationResult | None]:
    """Each sent operation's result, in order; None for one the answer does not report.

    Matched by ``bulkId``, which lmsync sets on every operation; for servers that echo it on
    POSTs only, a PATCH is matched by its location (the user's URL)."""
    answers = body.get("Operations")
    if not isinstance(answers, list):
        return [None] * len(sent)
    by_id: dict[str, OperationResult] = {}
    by_path: dict[str, OperationResult] = {}
    for answer in answers:
        if not isinstance(answer, dict):
            continue
        status = _status(answer.get("status"))
        if status is None:
            continue
        location = answer.get("location")
        result = OperationResult(
            status, answer.get("response"), location if isinstance(location, str) else None
        )
        bulk_id = answer.get("bulkId")
        if isinstance(bulk_id, str):
            by_id.setdefault(bulk_id, result)
        elif (path := _path_of(location)) is not None:
            by_path.setdefault(path, result)
    out: list[OperationResult | None] = []
    for operation in sent:
        found = by_id.get(operation.bulk_id)
        if found is None and operation.method != "POST":
            own = unquote(operation.path).rstrip("/")
            found = next((r for p, r in by_path.items() if p.endswith(own)), None)
        out.append(found)
    return out
