"""Unit tests of lmsync.lms.scim: the pure request builders and readers, and the connector's HTTP
edge against ``httpx.MockTransport`` (no network; the real scim2-server runs in the integration
tests)."""

from __future__ import annotations

import base64
import email.utils
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError

from lmsync.domain.interface import InterfaceIn, ScimOptionsIn
from lmsync.hr.csv_import import pydantic_field_errors
from lmsync.lms.base import (
    AlreadyExistsError,
    ConnectionReport,
    DryRunWriteError,
    LmsError,
    MisconfiguredError,
    NotFoundError,
    RejectedError,
    TransientError,
)
from lmsync.lms.registry import scim_settings
from lmsync.lms.scim import (
    CORE_USER,
    DEFAULT_EXTENSION_URN,
    ENTERPRISE_USER,
    PATCH_OP,
    ScimConnector,
    ScimSettings,
    merge_for_put,
    neutral_fields,
    patch_operations,
    user_name,
    user_resource,
)
from lmsync.storage.tables import LmsInterface
from lmsync.sync.mapping import CREATE_ONLY_FIELDS, MAINTAINED_FIELDS
from lmsync.sync.rules import diff

BASE_URL = "https://lms.example.test/scim/v2"
PREFIX = "/scim/v2"
SETTINGS = ScimSettings(base_url=BASE_URL, secret="s3cret")
EXT = DEFAULT_EXTENSION_URN
TORONTO = ZoneInfo("America/Toronto")
SPC_URN = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"

FIELDS: dict[str, Any] = {
    "external_id": "0b7c1c1e-3a52-4c55-9d5e-0d1f3c0e2a11",
    "employee_number": "E-042",
    "first_name": "Jean",
    "last_name": "Tremblay",
    "language": "fr-CA",
    "email": "jean@example.ca",
    "company_name": "Acme Inc.",
    "job_title": "Welder",
    "home_phone": "+15145550100",
    "cell_phone": "+15145550199",
    "address": "1 rue Principale",
    "city": "Montréal",
    "province": "QC",
    "country": "CA",
    "postal_code": "H2X 1Y4",
    "notifications_enabled": True,
}
# Only the required fields: every optional one empty (None or "").
SPARSE: dict[str, Any] = {
    **dict.fromkeys(MAINTAINED_FIELDS),
    "external_id": "ext-2",
    "employee_number": "E-043",
    "first_name": "Ann",
    "last_name": "Lee",
    "email": "ann@example.ca",
    "job_title": "",
    "notifications_enabled": True,
}
CREATE_ONLY: dict[str, Any] = {
    "registration_date": datetime(2024, 3, 1, tzinfo=TORONTO),
    "expiration_date": datetime(2124, 7, 1, tzinfo=TORONTO),
    "access_mode": "Request",
}

Handler = Callable[[httpx.Request], httpx.Response]


class Connect(Protocol):
    def __call__(
        self, handler: Handler, settings: ScimSettings = ..., *, dry_run: bool = ...
    ) -> ScimConnector: ...


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Connectors on a MockTransport; all closed after the test."""
    opened: list[ScimConnector] = []

    def make(
        handler: Handler, settings: ScimSettings = SETTINGS, *, dry_run: bool = False
    ) -> ScimConnector:
        connector = ScimConnector(settings, dry_run=dry_run, transport=httpx.MockTransport(handler))
        opened.append(connector)
        return connector

    yield make
    for connector in opened:
        connector.close()


def path_of(request: httpx.Request) -> str:
    return request.url.path.removeprefix(PREFIX)


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def scim(
    status: int = 200, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/scim+json", **(headers or {})},
    )


def list_response(resources: list[dict[str, Any]], total: int | None = None) -> dict[str, Any]:
    return {
        "schemas": [LIST_URN],
        "totalResults": len(resources) if total is None else total,
        "Resources": resources,
    }


def stored(user_id: str, fields: dict[str, Any] = FIELDS) -> dict[str, Any]:
    """A user as a server returns it: what lmsync created, plus id and meta."""
    return {
        **user_resource(SETTINGS, fields, CREATE_ONLY),
        "id": user_id,
        "meta": {"resourceType": "User", "version": 'W/"1"'},
    }


def fail_on_call(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.method} {request.url}")


# --- user_resource ---------------------------------------------------------------------------


def test_user_resource_places_every_field_as_rfc_7643_says() -> None:
    resource = user_resource(SETTINGS, FIELDS, CREATE_ONLY)

    assert resource == {
        "schemas": [CORE_USER, ENTERPRISE_USER, EXT],
        "userName": "jean@example.ca",
        "externalId": "0b7c1c1e-3a52-4c55-9d5e-0d1f3c0e2a11",
        "name": {"givenName": "Jean", "familyName": "Tremblay"},
        "displayName": "Jean Tremblay",
        "emails": [{"value": "jean@example.ca", "type": "work", "primary": True}],
        "active": True,
        "preferredLanguage": "fr-CA",
        "title": "Welder",
        "phoneNumbers": [
            {"value": "+15145550100", "type": "home"},
            {"value": "+15145550199", "type": "mobile"},
        ],
        "addresses": [
            {
                "type": "work",
                "primary": True,
                "streetAddress": "1 rue Principale",
                "locality": "Montréal",
                "region": "QC",
                "postalCode": "H2X 1Y4",
                "country": "CA",
            }
        ],
        ENTERPRISE_USER: {"employeeNumber": "E-042", "organization": "Acme Inc."},
        EXT: {
            "registrationDate": "2024-03-01T00:00:00-05:00",
            "expirationDate": "2124-07-01T00:00:00-04:00",
            "notificationsEnabled": True,
            "accessMode": "Request",
        },
    }
    json.dumps(resource)  # nothing left that JSON cannot carry (datetimes are strings)


def test_user_resource_user_name_can_be_the_employee_number() -> None:
    settings = replace(SETTINGS, user_name_field="employee_number")

    resource = user_resource(settings, FIELDS, CREATE_ONLY)

    assert resource["userName"] == "E-042"
    assert user_name(settings, FIELDS) == "E-042"
    assert user_name(SETTINGS, FIELDS) == "jean@example.ca"
    assert resource["emails"] == [{"value": "jean@example.ca", "type": "work", "primary": True}]
    assert resource[ENTERPRISE_USER]["employeeNumber"] == "E-042"


def test_user_resource_honours_a_custom_extension_urn_and_attribute_names() -> None:
    settings = replace(
        SETTINGS,
        extension_urn="urn:acme:params:scim:schemas:extension:academy:1.0:User",
        extension_attributes={"registration_date": "startsOn", "notifications_enabled": "notify"},
    )

    resource = user_resource(settings, {**FIELDS, "notifications_enabled": False}, CREATE_ONLY)

    urn = "urn:acme:params:scim:schemas:extension:academy:1.0:User"
    assert resource["schemas"] == [CORE_USER, ENTERPRISE_USER, urn]
    # Only the configured attributes, under their configured names; False is a value, not "empty".
    assert resource[urn] == {"startsOn": "2024-03-01T00:00:00-05:00", "notify": False}
    assert EXT not in resource


def test_user_resource_without_extension_urn_sends_no_extension() -> None:
    settings = replace(SETTINGS, extension_urn=None)

    resource = user_resource(settings, FIELDS, CREATE_ONLY)

    assert resource["schemas"] == [CORE_USER, ENTERPRISE_USER]
    assert EXT not in resource
    extension_keys = [k for k in resource if k.startswith("urn:") and k != ENTERPRISE_USER]
    assert extension_keys == []


def test_user_resource_omits_empty_optional_fields() -> None:
    resource = user_resource(SETTINGS, SPARSE, {"access_mode": "Request"})

    for absent in ("preferredLanguage", "title", "phoneNumbers", "addresses"):
        assert absent not in resource
    assert resource[ENTERPRISE_USER] == {"employeeNumber": "E-043"}
    assert resource[EXT] == {"notificationsEnabled": True, "accessMode": "Request"}


def test_user_resource_sends_only_the_phones_and_address_parts_it_has() -> None:
    fields = {**FIELDS, "home_phone": None, "address": "", "province": None}

    resource = user_resource(SETTINGS, fields, {})

    assert resource["phoneNumbers"] == [{"value": "+15145550199", "type": "mobile"}]
    assert resource["addresses"] == [
        {
            "type": "work",
            "primary": True,
            "locality": "Montréal",
            "postalCode": "H2X 1Y4",
            "country": "CA",
        }
    ]


# --- neutral_fields --------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [FIELDS, {**FIELDS, "notifications_enabled": False}, SPARSE])
def test_neutral_fields_round_trips_the_maintained_fields(fields: dict[str, Any]) -> None:
    read = neutral_fields(SETTINGS, stored("u-1", fields))

    assert set(read) == set(MAINTAINED_FIELDS)
    expected = {k: (v if v != "" else None) for k, v in fields.items()}
    assert read == expected
    # a freshly created user shows no difference to the employee
    assert diff({k: v for k, v in fields.items() if v != ""}, read) == {}


def test_neutral_fields_round_trips_with_a_custom_extension() -> None:
    settings = replace(
        SETTINGS, extension_urn="urn:acme:ext", extension_attributes={"notifications_enabled": "n"}
    )
    fields = {**FIELDS, "notifications_enabled": False}

    read = neutral_fields(settings, user_resource(settings, fields, CREATE_ONLY))

    assert read["notifications_enabled"] is False
    assert diff(fields, read) == {}


def test_neutral_fields_reads_the_primary_email_and_address() -> None:
    resource = {
        "emails": [
            {"value": "home@example.org", "type": "home"},
            {"value": "Jean@Example.CA", "type": "work", "primary": True},
        ],
        "addresses": [
            {"type": "home", "locality": "Laval"},
            {"type": "work", "primary": True, "locality": "Montréal"},
        ],
        "phoneNumbers": [{"value": "+1555", "type": "mobile"}],
    }

    read = neutral_fields(SETTINGS, resource)

    assert read["email"] == "Jean@Example.CA"
    assert read["city"] == "Montréal"
    assert read["cell_phone"] == "+1555"
    assert read["home_phone"] is None


# --- patch_operations ------------------------------------------------------------------------


def test_patch_only_changed_fields_produce_operations() -> None:
    ops = patch_operations(SETTINGS, FIELDS, {"job_title", "language"}, None)

    assert sorted(ops, key=lambda op: str(op["path"])) == [
        {"op": "replace", "path": "preferredLanguage", "value": "fr-CA"},
        {"op": "replace", "path": "title", "value": "Welder"},
    ]


def test_patch_external_id_employee_number_and_company() -> None:
    ops = patch_operations(
        SETTINGS, FIELDS, {"external_id", "employee_number", "company_name"}, None
    )

    assert ops == [
        {"op": "replace", "path": "externalId", "value": FIELDS["external_id"]},
        {"op": "replace", "path": f"{ENTERPRISE_USER}:employeeNumber", "value": "E-042"},
        {"op": "replace", "path": f"{ENTERPRISE_USER}:organization", "value": "Acme Inc."},
    ]


@pytest.mark.parametrize("changed", [{"first_name"}, {"last_name"}, {"first_name", "last_name"}])
def test_patch_name_change_also_writes_display_name(changed: set[str]) -> None:
    ops = patch_operations(SETTINGS, FIELDS, changed, None)

    paths = {"first_name": "name.givenName", "last_name": "name.familyName"}
    expected = [{"op": "replace", "path": paths[n], "value": FIELDS[n]} for n in sorted(changed)]
    expected.append({"op": "replace", "path": "displayName", "value": "Jean Tremblay"})
    assert ops == expected


def test_patch_email_change_writes_emails_and_user_name() -> None:
    fields = {**FIELDS, "email": "jean.t@example.ca"}

    ops = patch_operations(SETTINGS, fields, {"email"}, None)

    assert ops == [
        {
            "op": "replace",
            "path": "emails",
            "value": [{"value": "jean.t@example.ca", "type": "work", "primary": True}],
        },
        {"op": "replace", "path": "userName", "value": "jean.t@example.ca"},
    ]


def test_patch_email_change_leaves_user_name_when_it_is_the_employee_number() -> None:
    settings = replace(SETTINGS, user_name_field="employee_number")

    ops = patch_operations(settings, {**FIELDS, "email": "jean.t@example.ca"}, {"email"}, None)

    assert [op["path"] for op in ops] == ["emails"]


def test_patch_employee_number_change_writes_user_name_when_it_is_the_user_name() -> None:
    settings = replace(SETTINGS, user_name_field="employee_number")

    ops = patch_operations(
        settings, {**FIELDS, "employee_number": "E-777"}, {"employee_number"}, None
    )

    assert ops == [
        {"op": "replace", "path": f"{ENTERPRISE_USER}:employeeNumber", "value": "E-777"},
        {"op": "replace", "path": "userName", "value": "E-777"},
    ]
    # with userName = email, the employee number does not touch userName
    default_ops = patch_operations(SETTINGS, FIELDS, {"employee_number"}, None)
    assert "userName" not in [op["path"] for op in default_ops]


def test_patch_phones_are_written_whole() -> None:
    ops = patch_operations(SETTINGS, FIELDS, {"cell_phone"}, None)

    assert ops == [
        {
            "op": "replace",
            "path": "phoneNumbers",
            "value": [
                {"value": "+15145550100", "type": "home"},
                {"value": "+15145550199", "type": "mobile"},
            ],
        }
    ]


@pytest.mark.parametrize("name", ["address", "city", "province", "postal_code", "country"])
def test_patch_address_is_written_whole(name: str) -> None:
    ops = patch_operations(SETTINGS, FIELDS, {name}, None)

    assert ops == [
        {
            "op": "replace",
            "path": "addresses",
            "value": user_resource(SETTINGS, FIELDS, {})["addresses"],
        }
    ]


@pytest.mark.parametrize(
    ("cleared", "path"),
    [
        ({"job_title": None}, "title"),
        ({"language": None}, "preferredLanguage"),
        ({"company_name": None}, f"{ENTERPRISE_USER}:organization"),
        ({"home_phone": None, "cell_phone": None}, "phoneNumbers"),
        (
            {"address": None, "city": None, "province": None, "postal_code": None, "country": None},
            "addresses",
        ),
    ],
)
def test_patch_cleared_optional_field_is_removed(cleared: dict[str, Any], path: str) -> None:
    ops = patch_operations(SETTINGS, {**FIELDS, **cleared}, set(cleared), None)

    assert ops == [{"op": "remove", "path": path}]


def test_patch_one_phone_cleared_keeps_the_other() -> None:
    ops = patch_operations(SETTINGS, {**FIELDS, "home_phone": None}, {"home_phone"}, None)

    assert ops == [
        {
            "op": "replace",
            "path": "phoneNumbers",
            "value": [{"value": "+15145550199", "type": "mobile"}],
        }
    ]


def test_patch_notifications_go_to_the_configured_extension_attribute() -> None:
    fields = {**FIELDS, "notifications_enabled": False}

    assert patch_operations(SETTINGS, fields, {"notifications_enabled"}, None) == [
        {"op": "replace", "path": f"{EXT}:notificationsEnabled", "value": False}
    ]
    custom = replace(
        SETTINGS, extension_urn="urn:acme:ext", extension_attributes={"notifications_enabled": "n"}
    )
    assert patch_operations(custom, fields, {"notifications_enabled"}, None) == [
        {"op": "replace", "path": "urn:acme:ext:n", "value": False}
    ]
    no_extension = replace(SETTINGS, extension_urn=None)
    assert patch_operations(no_extension, fields, {"notifications_enabled"}, None) == []


@pytest.mark.parametrize("active", [True, False])
def test_patch_active_flag(active: bool) -> None:
    assert patch_operations(SETTINGS, FIELDS, set(), active) == [
        {"op": "replace", "path": "active", "value": active}
    ]
    ops = patch_operations(SETTINGS, FIELDS, {"job_title"}, active)
    assert ops[-1] == {"op": "replace", "path": "active", "value": active}
    assert len(ops) == 2


def test_patch_nothing_changed_and_no_active_is_empty() -> None:
    assert patch_operations(SETTINGS, FIELDS, set(), None) == []
    assert patch_operations(SETTINGS, FIELDS, [], None) == []


# --- merge_for_put ---------------------------------------------------------------------------


def _server_copy() -> dict[str, Any]:
    current = stored("u-1", {**FIELDS, "job_title": "Apprentice", "last_name": "Roy"})
    current["nickName"] = "JT"
    current["groups"] = [{"value": "g-1", "display": "Welders"}]
    current["x509Certificates"] = [{"value": "MIIC..."}]
    return current


def test_merge_for_put_keeps_unmanaged_and_create_only_drops_meta_overlays_fields() -> None:
    current = _server_copy()

    merged = merge_for_put(SETTINGS, current, FIELDS, {"job_title", "last_name"}, None)

    assert "meta" not in merged
    assert merged["id"] == "u-1"
    assert merged["nickName"] == "JT"
    assert merged["groups"] == [{"value": "g-1", "display": "Welders"}]
    assert merged["x509Certificates"] == [{"value": "MIIC..."}]
    assert merged["title"] == "Welder"
    assert merged["name"] == {"givenName": "Jean", "familyName": "Tremblay"}
    assert merged["displayName"] == "Jean Tremblay"
    assert merged[EXT] == {
        "registrationDate": "2024-03-01T00:00:00-05:00",
        "expirationDate": "2124-07-01T00:00:00-04:00",
        "accessMode": "Request",
        "notificationsEnabled": True,
    }
    assert neutral_fields(SETTINGS, merged) == FIELDS
    assert merged["active"] is True  # active=None: the server's value stays
    assert "meta" in current  # the server's copy is not modified


def test_merge_for_put_overlays_the_notifications_flag_over_the_extension() -> None:
    current = _server_copy()

    merged = merge_for_put(
        SETTINGS,
        current,
        {**FIELDS, "notifications_enabled": False},
        {"notifications_enabled"},
        None,
    )

    assert merged[EXT]["notificationsEnabled"] is False
    assert merged[EXT]["registrationDate"] == "2024-03-01T00:00:00-05:00"
    assert merged[EXT]["accessMode"] == "Request"


@pytest.mark.parametrize("active", [True, False])
def test_merge_for_put_sets_active_when_given(active: bool) -> None:
    current = {**_server_copy(), "active": not active}

    assert merge_for_put(SETTINGS, current, FIELDS, set(), active)["active"] is active


def test_merge_for_put_keeps_the_server_active_flag_when_none() -> None:
    current = {**_server_copy(), "active": False}

    assert merge_for_put(SETTINGS, current, FIELDS, {"job_title"}, None)["active"] is False


def test_merge_for_put_keeps_unmanaged_enterprise_attributes() -> None:
    current = _server_copy()
    current[ENTERPRISE_USER] = {
        **current[ENTERPRISE_USER],
        "department": "Welding",
        "manager": {"value": "u-9"},
    }

    merged = merge_for_put(SETTINGS, current, FIELDS, {"job_title"}, None)

    assert merged[ENTERPRISE_USER]["department"] == "Welding"
    assert merged[ENTERPRISE_USER]["manager"] == {"value": "u-9"}
    assert merged[ENTERPRISE_USER]["employeeNumber"] == "E-042"


def test_merge_for_put_clears_a_cleared_optional_field() -> None:
    current = _server_copy()  # has title, phoneNumbers, addresses, preferredLanguage
    fields = {**FIELDS, "job_title": None, "home_phone": None, "cell_phone": None}

    merged = merge_for_put(
        SETTINGS, current, fields, {"job_title", "home_phone", "cell_phone"}, None
    )

    read = neutral_fields(SETTINGS, merged)
    assert read["job_title"] is None
    assert read["home_phone"] is None
    assert read["cell_phone"] is None


def test_merge_for_put_keeps_other_extensions_declared() -> None:
    other = "urn:vendor:params:scim:schemas:extension:badge:1.0:User"
    current = _server_copy()
    current["schemas"] = [*current["schemas"], other]
    current[other] = {"badge": "B-7"}

    merged = merge_for_put(SETTINGS, current, FIELDS, {"job_title"}, None)

    assert merged[other] == {"badge": "B-7"}
    assert other in merged["schemas"]


# --- the HTTP edge: statuses become typed errors ---------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, TransientError),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
        (401, MisconfiguredError),
        (403, MisconfiguredError),
        (404, NotFoundError),
        (409, AlreadyExistsError),
        (400, RejectedError),
        (422, RejectedError),
    ],
)
def test_status_becomes_typed_error(connect: Connect, status: int, error: type[LmsError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return scim(status, {"schemas": [ERROR_URN], "status": str(status), "detail": "nope"})

    connector = connect(handler)
    with pytest.raises(LmsError) as info:
        connector.get("u-1")

    assert type(info.value) is error
    assert "nope" in info.value.message


@pytest.mark.parametrize(("status", "error"), [(409, AlreadyExistsError), (400, RejectedError)])
def test_refused_create_carries_the_payload(
    connect: Connect, status: int, error: type[LmsError]
) -> None:
    connector = connect(lambda request: scim(status, {"schemas": [ERROR_URN], "detail": "x"}))

    with pytest.raises(error) as info:
        connector.create(FIELDS, CREATE_ONLY)

    assert info.value.payload == user_resource(SETTINGS, FIELDS, CREATE_ONLY)


def test_429_with_retry_after_seconds(connect: Connect) -> None:
    connector = connect(lambda request: scim(429, headers={"Retry-After": "3"}))

    with pytest.raises(TransientError) as info:
        connector.get("u-1")

    assert info.value.retry_after == 3.0


def test_429_with_retry_after_http_date(connect: Connect) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    connector = connect(lambda request: scim(429, headers={"Retry-After": when}))

    with pytest.raises(TransientError) as info:
        connector.get("u-1")

    assert info.value.retry_after is not None
    assert 90.0 <= info.value.retry_after <= 120.0


def test_retry_after_in_the_past_is_zero_and_absent_is_none(connect: Connect) -> None:
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    answers = iter([scim(503, headers={"Retry-After": past}), scim(503)])
    connector = connect(lambda request: next(answers))

    with pytest.raises(TransientError) as info:
        connector.get("u-1")
    assert info.value.retry_after == 0.0
    with pytest.raises(TransientError) as info:
        connector.get("u-1")
    assert info.value.retry_after is None


def test_400_scim_error_detail_is_in_the_message(connect: Connect) -> None:
    body = {
        "schemas": [ERROR_URN],
        "status": "400",
        "scimType": "invalidValue",
        "detail": "bad phone",
    }
    connector = connect(lambda request: scim(400, body))

    with pytest.raises(RejectedError) as info:
        connector.update("u-1", FIELDS, {"home_phone"})

    assert "bad phone" in info.value.message
    assert "bad phone" in str(info.value)


def test_error_without_json_body_is_described_by_its_category(connect: Connect) -> None:
    # Only a SCIM error document is quoted: a plain-text body could be anyone's (remote_text).
    connector = connect(lambda request: httpx.Response(400, text="phone is not E.164"))

    with pytest.raises(RejectedError) as info:
        connector.get("u-1")

    assert "phone is not E.164" not in info.value.message
    assert "HTTP status 400" in info.value.message
    assert "content type text/plain" in info.value.message


@pytest.mark.parametrize("exception", [httpx.ConnectError, httpx.ReadTimeout, httpx.ConnectTimeout])
def test_transport_failures_are_transient(
    connect: Connect, exception: type[httpx.TransportError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception("boom", request=request)

    connector = connect(handler)
    with pytest.raises(TransientError) as info:
        connector.get("u-1")

    assert isinstance(info.value.__cause__, exception)
    assert info.value.retry_after is None


def test_non_json_200_on_users_is_misconfigured(connect: Connect) -> None:
    html = "<html><body>Welcome to the portal</body></html>"
    connector = connect(lambda request: httpx.Response(200, text=html))

    with pytest.raises(MisconfiguredError) as info:
        connector.list_page(1, 10)
    assert "not JSON" in info.value.message
    with pytest.raises(MisconfiguredError):
        connector.find_by_email("jean@example.ca")


def test_json_200_that_is_not_an_object_is_misconfigured(connect: Connect) -> None:
    connector = connect(lambda request: scim(200, [1, 2, 3]))

    with pytest.raises(MisconfiguredError):
        connector.list_page(1, 10)


@pytest.mark.parametrize("status", [200, 204])
def test_patch_accepts_200_and_204(connect: Connect, status: int) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return scim(200, stored("u-1")) if status == 200 else httpx.Response(204)

    connector = connect(handler)
    connector.update("u-1", {**FIELDS, "job_title": "Lead"}, {"job_title"}, active=False)

    assert len(seen) == 1
    assert seen[0].method == "PATCH"
    assert path_of(seen[0]) == "/Users/u-1"
    assert body_of(seen[0]) == {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "replace", "path": "title", "value": "Lead"},
            {"op": "replace", "path": "active", "value": False},
        ],
    }


def test_update_with_nothing_to_write_sends_nothing(connect: Connect) -> None:
    connector = connect(fail_on_call)

    connector.update("u-1", FIELDS, set())

    assert connector.requests == 0


def test_patch_answered_201_is_an_error(connect: Connect) -> None:
    connector = connect(lambda request: httpx.Response(201))

    with pytest.raises(RejectedError):
        connector.update("u-1", FIELDS, {"job_title"})


def test_create_posts_the_user_and_accepts_201(connect: Connect) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return scim(201, stored("u-new"))

    connector = connect(handler)
    user = connector.create(FIELDS, CREATE_ONLY)

    assert [(r.method, path_of(r)) for r in seen] == [("POST", "/Users")]
    assert body_of(seen[0]) == user_resource(SETTINGS, FIELDS, CREATE_ONLY)
    assert seen[0].headers["Content-Type"] == "application/scim+json"
    assert user.id == "u-new"
    assert user.active is True
    assert user.email_key == "jean@example.ca"
    assert user.fields == FIELDS


def test_answer_without_id_is_rejected(connect: Connect) -> None:
    resource = stored("x")
    del resource["id"]
    connector = connect(lambda request: scim(201, resource))

    with pytest.raises(RejectedError):
        connector.create(FIELDS, CREATE_ONLY)


# --- reading ---------------------------------------------------------------------------------

FILTER = re.compile(r'^emails\.value eq "((?:[^"\\]|\\.)*)"$')


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def test_find_by_email_on_a_case_sensitive_server(connect: Connect) -> None:
    jean = stored("u-jean")
    other = stored("u-other", {**FIELDS, "email": "someone@example.ca"})
    filters: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert path_of(request) == "/Users"
        value = request.url.params["filter"]
        filters.append(value)
        match = FILTER.match(value)
        assert match is not None
        wanted = _unquote(match.group(1))
        # case-SENSITIVE comparison, and a sloppy server that also returns an unrelated user
        hits = [u for u in (jean,) if any(e["value"] == wanted for e in u["emails"])]
        return scim(200, list_response([*hits, other]))

    connector = connect(handler)
    found = connector.find_by_email("  Jean@Example.CA ")

    assert [u.id for u in found] == ["u-jean"]
    assert found[0].email_key == "jean@example.ca"
    assert filters == ['emails.value eq "Jean@Example.CA"', 'emails.value eq "jean@example.ca"']


def test_find_by_email_on_a_compliant_server_returns_each_user_once(connect: Connect) -> None:
    jean = stored("u-jean")

    def handler(request: httpx.Request) -> httpx.Response:
        match = FILTER.match(request.url.params["filter"])
        assert match is not None
        wanted = _unquote(match.group(1)).casefold()
        hits = [u for u in (jean,) if any(e["value"].casefold() == wanted for e in u["emails"])]
        return scim(200, list_response(hits))

    connector = connect(handler)

    assert [u.id for u in connector.find_by_email("JEAN@example.ca")] == ["u-jean"]
    assert connector.requests == 2
    assert [u.id for u in connector.find_by_email("jean@example.ca")] == ["u-jean"]
    assert connector.requests == 3  # already lower-case: asked once


def test_find_by_email_matches_a_secondary_email(connect: Connect) -> None:
    user = stored("u-2", {**FIELDS, "email": "jt@corp.example"})
    user["emails"].append({"value": "Jean@Example.ca", "type": "other"})
    connector = connect(lambda request: scim(200, list_response([user])))

    assert [u.id for u in connector.find_by_email("jean@example.ca")] == ["u-2"]


def test_find_by_email_with_no_match_is_empty(connect: Connect) -> None:
    connector = connect(lambda request: scim(200, list_response([])))

    assert connector.find_by_email("nobody@example.ca") == []


def test_find_by_email_quotes_the_filter_value(connect: Connect) -> None:
    filters: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        filters.append(request.url.params["filter"])
        assert request.url.params["count"] == "500"
        return scim(200, list_response([]))

    connector = connect(handler)
    connector.find_by_email('o"neil\\x@example.ca')

    assert filters == ['emails.value eq "o\\"neil\\\\x@example.ca"']
    match = FILTER.match(filters[0])
    assert match is not None
    assert _unquote(match.group(1)) == 'o"neil\\x@example.ca'


def test_find_by_external_id_checks_the_answer(connect: Connect) -> None:
    filters: list[str] = []
    ext_id = FIELDS["external_id"]

    def handler(request: httpx.Request) -> httpx.Response:
        filters.append(request.url.params["filter"])
        return scim(
            200, list_response([stored("u-x", {**FIELDS, "external_id": "other"}), stored("u-1")])
        )

    connector = connect(handler)
    user = connector.find_by_external_id(ext_id)

    assert user is not None
    assert user.id == "u-1"
    assert filters == [f'externalId eq "{ext_id}"']


def test_find_by_external_id_none_when_absent(connect: Connect) -> None:
    connector = connect(lambda request: scim(200, {"schemas": [LIST_URN], "totalResults": 0}))

    assert connector.find_by_external_id("ext-9") is None


def test_find_by_external_id_escapes_backslashes(connect: Connect) -> None:
    filters: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        filters.append(request.url.params["filter"])
        return scim(200, list_response([]))

    connector = connect(handler)
    connector.find_by_external_id('a\\"b')

    assert filters == ['externalId eq "a\\\\\\"b"']


def test_list_page_returns_users_and_total(connect: Connect) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        ann = stored("u-ann", {**SPARSE, "first_name": "Ann"})
        ann["active"] = False
        return scim(200, list_response([stored("u-1"), ann], total=42))

    connector = connect(handler)
    page = connector.list_page(11, 2)

    assert path_of(seen[0]) == "/Users"
    assert dict(seen[0].url.params) == {"startIndex": "11", "count": "2"}
    assert page.total == 42
    assert [u.id for u in page.users] == ["u-1", "u-ann"]
    assert [u.active for u in page.users] == [True, False]
    assert page.users[0].fields == FIELDS
    assert page.users[1].email_key == "ann@example.ca"


def test_list_page_without_total_counts_the_resources(connect: Connect) -> None:
    connector = connect(lambda request: scim(200, {"Resources": [stored("u-1")]}))

    page = connector.list_page(1, 50)

    assert page.total == 1
    assert [u.id for u in page.users] == ["u-1"]


def test_get_reads_one_user(connect: Connect) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, path_of(request)) == ("GET", "/Users/u-7")
        return scim(200, stored("u-7"))

    connector = connect(handler)
    user = connector.get("u-7")

    assert user.id == "u-7"
    assert user.fields == FIELDS


def test_update_without_patch_gets_then_puts_the_merged_user(connect: Connect) -> None:
    settings = replace(SETTINGS, use_patch=False)
    current = _server_copy()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return scim(200, current)
        return scim(200, body_of(request))

    connector = connect(handler, settings)
    connector.update("u-1", FIELDS, {"job_title", "last_name"}, active=False)

    assert [(r.method, path_of(r)) for r in seen] == [("GET", "/Users/u-1"), ("PUT", "/Users/u-1")]
    sent = body_of(seen[1])
    assert sent == merge_for_put(settings, current, FIELDS, {"job_title", "last_name"}, False)
    assert "meta" not in sent
    assert sent["nickName"] == "JT"
    assert sent["title"] == "Welder"
    assert sent["active"] is False
    assert sent[EXT]["registrationDate"] == "2024-03-01T00:00:00-05:00"


def test_update_without_patch_on_a_missing_user_is_not_found(connect: Connect) -> None:
    connector = connect(
        lambda request: scim(404, {"detail": "no such user"}), replace(SETTINGS, use_patch=False)
    )

    with pytest.raises(NotFoundError):
        connector.update("u-gone", FIELDS, {"job_title"})
    assert connector.requests == 1


# --- dry run ---------------------------------------------------------------------------------


def test_dry_run_refuses_writes_before_they_reach_the_server(connect: Connect) -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, path_of(request)))
        if request.method == "GET" and path_of(request) == "/Users/u-1":
            return scim(200, stored("u-1"))
        return scim(200, list_response([stored("u-1")]))

    connector = connect(handler, dry_run=True)

    with pytest.raises(DryRunWriteError):
        connector.create(FIELDS, CREATE_ONLY)
    with pytest.raises(DryRunWriteError):
        connector.update("u-1", FIELDS, {"job_title"}, active=False)
    assert seen == []

    assert connector.get("u-1").id == "u-1"
    assert [u.id for u in connector.find_by_email("jean@example.ca")] == ["u-1"]
    assert connector.list_page(1, 10).total == 1
    search = connector._request("POST", "/Users/.search", json={"filter": 'userName eq "x"'})
    assert search.status_code == 200
    assert seen == [
        ("GET", "/Users/u-1"),
        ("GET", "/Users"),
        ("GET", "/Users"),
        ("POST", "/Users/.search"),
    ]


def test_dry_run_put_mode_reads_then_refuses_the_put(connect: Connect) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return scim(200, stored("u-1"))

    connector = connect(handler, replace(SETTINGS, use_patch=False), dry_run=True)

    with pytest.raises(DryRunWriteError):
        connector.update("u-1", {**FIELDS, "job_title": "Lead"}, {"job_title"})
    assert seen == ["GET"]


def test_without_dry_run_writes_are_sent(connect: Connect) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return scim(201, stored("u-1"))

    connector = connect(handler)
    connector.create(FIELDS, CREATE_ONLY)

    assert seen == ["POST"]


# --- authentication --------------------------------------------------------------------------


def _headers_sent(connect: Connect, settings: ScimSettings) -> httpx.Headers:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return scim(200, stored("u-1"))

    connect(handler, settings).get("u-1")
    assert len(seen) == 1
    return seen[0].headers


def test_bearer_auth(connect: Connect) -> None:
    headers = _headers_sent(connect, replace(SETTINGS, auth_type="bearer", secret="x"))

    assert headers["Authorization"] == "Bearer x"
    assert headers["Accept"] == "application/scim+json"


def test_api_key_auth_uses_the_configured_header(connect: Connect) -> None:
    settings = replace(SETTINGS, auth_type="api_key", secret="k-123", auth_header="X-Lms-Token")

    headers = _headers_sent(connect, settings)

    assert headers["X-Lms-Token"] == "k-123"
    assert "Authorization" not in headers


def test_basic_auth(connect: Connect) -> None:
    settings = replace(SETTINGS, auth_type="basic", username="svc", secret="pä:ss")

    headers = _headers_sent(connect, settings)

    expected = base64.b64encode("svc:pä:ss".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"


# --- test(): the connection check ------------------------------------------------------------

LMS_ATTRIBUTES = ["registrationDate", "expirationDate", "notificationsEnabled", "accessMode"]


def _spc(patch: bool = True, filtering: bool = True) -> dict[str, Any]:
    return {
        "schemas": [SPC_URN],
        "patch": {"supported": patch},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": filtering, "maxResults": 200},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [],
    }


def _schema(urn: str, attributes: list[str]) -> dict[str, Any]:
    return {"id": urn, "attributes": [{"name": a, "type": "string"} for a in attributes]}


def make_server(
    *,
    spc: dict[str, Any] | None = None,
    users_status: int = 200,
    extension_attributes: list[str] | None = LMS_ATTRIBUTES,
    extension_declared: bool = True,
    enterprise: bool = True,
    core: bool = True,
) -> Handler:
    """A mock SCIM server's discovery endpoints. ``extension_attributes=None``: no LMS schema."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = path_of(request)
        assert request.method == "GET"
        if path == "/ServiceProviderConfig":
            return scim(200, spc if spc is not None else _spc())
        if path == "/Users":
            if users_status != 200:
                return scim(users_status, {"schemas": [ERROR_URN], "detail": "invalid token"})
            assert request.headers["Authorization"] == f"Bearer {SETTINGS.secret}"
            return scim(200, list_response([], total=7))
        if path == "/Schemas":
            schemas = []
            if core:
                schemas.append(_schema(CORE_USER, ["userName", "name", "emails"]))
            if enterprise:
                schemas.append(_schema(ENTERPRISE_USER, ["employeeNumber", "organization"]))
            if extension_attributes is not None:
                schemas.append(_schema(EXT, extension_attributes))
            return scim(200, list_response(schemas))
        if path == "/ResourceTypes":
            extensions = []
            if enterprise:
                extensions.append({"schema": ENTERPRISE_USER, "required": False})
            if extension_declared and extension_attributes is not None:
                extensions.append({"schema": EXT, "required": False})
            user_type = {"id": "User", "name": "User", "endpoint": "/Users", "schema": CORE_USER}
            group_type = {"id": "Group", "name": "Group", "endpoint": "/Groups"}
            return scim(
                200, list_response([group_type, {**user_type, "schemaExtensions": extensions}])
            )
        return scim(404, {"detail": "not here"})

    return handler


def errors(report: ConnectionReport) -> list[str]:
    return [f.message for f in report.findings if f.level == "error"]


def warnings(report: ConnectionReport) -> list[str]:
    return [f.message for f in report.findings if f.level == "warning"]


def test_connection_check_on_a_complete_server(connect: Connect) -> None:
    report = connect(make_server()).test()

    assert report.ok is True
    assert errors(report) == []
    assert warnings(report) == []
    oks = [f.message for f in report.findings if f.level == "ok"]
    assert "authentication accepted" in oks
    assert any(EXT in m and "all its attributes" in m for m in oks)


def test_connection_check_authentication_failed(connect: Connect) -> None:
    seen: list[str] = []
    server = make_server(users_status=401)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(path_of(request))
        return server(request)

    report = connect(handler).test()

    assert report.ok is False
    assert len(errors(report)) == 1
    assert errors(report)[0].startswith("authentication failed")
    assert "invalid token" in errors(report)[0]
    assert "/Schemas" not in seen  # stops at the failed authentication


def test_connection_check_users_error_other_than_auth(connect: Connect) -> None:
    report = connect(make_server(users_status=500)).test()

    assert report.ok is False
    assert [e for e in errors(report) if e.startswith("/Users")] != []


def test_connection_check_extension_schema_missing(connect: Connect) -> None:
    report = connect(make_server(extension_attributes=None)).test()

    assert report.ok is False
    assert any(EXT in e and "is missing" in e for e in errors(report))


def test_connection_check_extension_published_but_not_declared(connect: Connect) -> None:
    report = connect(make_server(extension_declared=False)).test()

    assert report.ok is False
    assert any("is missing" in e for e in errors(report))


def test_connection_check_extension_lacks_attributes(connect: Connect) -> None:
    server = make_server(extension_attributes=["registrationDate", "notificationsEnabled"])

    report = connect(server).test()

    assert report.ok is False
    assert errors(report) == ["the LMS extension lacks attributes: accessMode, expirationDate"]


def test_connection_check_custom_extension_attribute_names(connect: Connect) -> None:
    settings = replace(
        SETTINGS, extension_attributes={"notifications_enabled": "notificationsEnabled"}
    )

    report = connect(make_server(extension_attributes=["notificationsEnabled"]), settings).test()

    assert report.ok is True


def test_connection_check_without_extension_ignores_the_lms_schema(connect: Connect) -> None:
    settings = replace(SETTINGS, extension_urn=None)

    report = connect(make_server(extension_attributes=None), settings).test()

    assert report.ok is True
    assert not any("LMS extension" in f.message for f in report.findings)


def test_connection_check_patch_unsupported(connect: Connect) -> None:
    report = connect(make_server(spc=_spc(patch=False))).test()

    assert report.ok is False
    assert any("PATCH" in e for e in errors(report))


def test_connection_check_patch_unsupported_is_fine_in_put_mode(connect: Connect) -> None:
    settings = replace(SETTINGS, use_patch=False)

    report = connect(make_server(spc=_spc(patch=False)), settings).test()

    assert report.ok is True
    assert not any("PATCH" in f.message for f in report.findings)


def test_connection_check_warns_without_filter_or_enterprise(connect: Connect) -> None:
    report = connect(make_server(spc=_spc(filtering=False), enterprise=False)).test()

    assert report.ok is True
    assert any("cannot filter" in w for w in warnings(report))
    assert any("enterprise extension" in w for w in warnings(report))


def test_connection_check_core_schema_missing(connect: Connect) -> None:
    report = connect(make_server(core=False)).test()

    assert report.ok is False
    assert "the server does not publish the core User schema" in errors(report)


def test_connection_check_not_a_scim_server(connect: Connect) -> None:
    connector = connect(lambda request: httpx.Response(200, text="<html>login</html>"))

    report = connector.test()

    assert report.ok is False
    assert len(report.findings) == 1
    assert errors(report)[0].startswith("ServiceProviderConfig:")


def test_connection_check_spc_missing(connect: Connect) -> None:
    report = connect(lambda request: scim(404, {"detail": "not here"})).test()

    assert report.ok is False
    assert errors(report)[0].startswith("ServiceProviderConfig:")


def test_create_only_fields_are_the_extension_ones() -> None:
    """Every create-only neutral field has a default extension attribute (else it is never sent)."""
    resource = user_resource(SETTINGS, FIELDS, CREATE_ONLY)

    assert set(CREATE_ONLY) == set(CREATE_ONLY_FIELDS)
    assert len(resource[EXT]) == len(CREATE_ONLY_FIELDS) + 1


# --- the portal identifier -------------------------------------------------------------------

PORTAL = replace(SETTINGS, portal_id="acme")


ROOTS = ("Users", "ServiceProviderConfig", "Schemas", "ResourceTypes")


def _recording_server(seen: list[httpx.Request]) -> Handler:
    """A mock SCIM server answering every request kind, under any portal path segment; records
    each request."""
    discovery = make_server()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = path_of(request)
        portal, _, rest = path.removeprefix("/").partition("/")
        if portal not in ROOTS:
            path = f"/{rest}"
        if path in ("/ServiceProviderConfig", "/Schemas", "/ResourceTypes"):
            url = request.url.copy_with(path=PREFIX + path)
            return discovery(httpx.Request(request.method, url, headers=request.headers))
        if request.method == "POST":
            return scim(201, stored("u-1"))
        if request.method in ("PATCH", "PUT"):
            return scim(200, stored("u-1"))
        if path == "/Users/u-1":
            return scim(200, stored("u-1"))
        return scim(200, list_response([stored("u-1")]))

    return handler


def _every_request_kind(connect: Connect, settings: ScimSettings) -> list[httpx.Request]:
    """Every request the connector makes: list, searches, get, create, PATCH, GET+PUT, test."""
    seen: list[httpx.Request] = []
    connector = connect(_recording_server(seen), settings)
    connector.list_page(1, 10)
    connector.find_by_email("jean@example.ca")
    connector.find_by_external_id(FIELDS["external_id"])
    connector.get("u-1")
    connector.create(FIELDS, CREATE_ONLY)
    connector.update("u-1", {**FIELDS, "job_title": "Lead"}, {"job_title"}, active=False)
    connect(_recording_server(seen), replace(settings, use_patch=False)).update(
        "u-1", {**FIELDS, "job_title": "Lead"}, {"job_title"}
    )
    assert connector.test().ok is True
    assert {r.method for r in seen} == {"GET", "POST", "PATCH", "PUT"}
    return seen


def test_portal_id_is_sent_in_its_header_with_every_request(connect: Connect) -> None:
    seen = _every_request_kind(connect, PORTAL)

    assert [r.headers.get("X-Portal-Id") for r in seen] == ["acme"] * len(seen)
    # The URL is left alone, and the authentication too.
    assert {r.url.path for r in seen} >= {f"{PREFIX}/Users", f"{PREFIX}/Users/u-1"}
    assert all(r.url.path.startswith(f"{PREFIX}/") for r in seen)
    assert all(r.headers["Authorization"] == "Bearer s3cret" for r in seen)


def test_portal_id_header_name_is_configurable(connect: Connect) -> None:
    settings = replace(PORTAL, portal_id_header="X-Tenant")

    headers = _headers_sent(connect, settings)

    assert headers["X-Tenant"] == "acme"
    assert "X-Portal-Id" not in headers


def test_portal_id_in_path_is_a_segment_before_users(connect: Connect) -> None:
    seen = _every_request_kind(connect, replace(PORTAL, portal_id_in="path"))

    assert all(r.url.path.startswith(f"{PREFIX}/acme/") for r in seen)
    assert {r.url.path for r in seen} >= {
        f"{PREFIX}/acme/Users",
        f"{PREFIX}/acme/Users/u-1",
        f"{PREFIX}/acme/ServiceProviderConfig",
    }
    assert all("X-Portal-Id" not in r.headers for r in seen)


@pytest.mark.parametrize(
    ("portal_id", "segment"),
    [
        ("eu/1", b"eu%2F1"),
        ("acme eu", b"acme%20eu"),
        ("Montréal?#%", b"Montr%C3%A9al%3F%23%25"),
        ("a.b~c_d-e", b"a.b~c_d-e"),
    ],
)
@pytest.mark.parametrize("base_url", [BASE_URL, f"{BASE_URL}/"])
def test_portal_id_in_path_is_percent_encoded(
    connect: Connect, portal_id: str, segment: bytes, base_url: str
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return scim(200, list_response([stored("u-1")]))

    settings = replace(SETTINGS, base_url=base_url, portal_id=portal_id, portal_id_in="path")
    connect(handler, settings).list_page(1, 10)

    assert seen[0].url.raw_path.startswith(PREFIX.encode() + b"/" + segment + b"/Users?")
    assert seen[0].url.params["count"] == "10"


@pytest.mark.parametrize("portal_id", [None, ""])
@pytest.mark.parametrize("portal_id_in", ["header", "path"])
def test_without_portal_id_nothing_is_sent(
    connect: Connect, portal_id: str | None, portal_id_in: str
) -> None:
    seen = _every_request_kind(
        connect, replace(SETTINGS, portal_id=portal_id, portal_id_in=portal_id_in)
    )

    assert all("X-Portal-Id" not in r.headers for r in seen)
    assert all(r.url.path.startswith(f"{PREFIX}/") for r in seen)
    assert not any(r.url.path.startswith(f"{PREFIX}/acme") for r in seen)


@pytest.mark.parametrize(
    ("settings", "finding"),
    [
        (PORTAL, "portal identifier sent as header X-Portal-Id"),
        (replace(PORTAL, portal_id_header="X-Tenant"), "portal identifier sent as header X-Tenant"),
        (replace(PORTAL, portal_id_in="path"), "portal identifier sent as a path segment"),
    ],
)
def test_connection_check_says_how_the_portal_id_is_sent(
    connect: Connect, settings: ScimSettings, finding: str
) -> None:
    seen: list[httpx.Request] = []
    report = connect(_recording_server(seen), settings).test()

    assert report.ok is True
    assert any(f.level == "ok" and f.message.startswith(finding) for f in report.findings)
    assert not any("s3cret" in f.message for f in report.findings)


def test_connection_check_names_the_portal_form_even_when_the_portal_is_unknown(
    connect: Connect,
) -> None:
    report = connect(lambda request: scim(404, {"detail": "no such portal"}), PORTAL).test()

    assert report.ok is False
    assert report.findings[0].message == "portal identifier sent as header X-Portal-Id"
    assert errors(report)[0].startswith("ServiceProviderConfig:")


def test_connection_check_without_portal_id_says_nothing_of_it(connect: Connect) -> None:
    report = connect(make_server()).test()

    assert not any("portal" in f.message for f in report.findings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (replace(PORTAL, portal_id_header="Authorization"), "reserved"),
        (replace(PORTAL, portal_id_header="Content-Type"), "reserved"),
        (replace(PORTAL, portal_id_header="X Portal"), "HTTP header name"),
        (
            replace(PORTAL, auth_type="api_key", auth_header="x-portal-id"),
            "it is the API key header",
        ),
        (replace(PORTAL, portal_id="Montréal"), "path segment instead"),
        (replace(PORTAL, portal_id="a\r\nX-Evil: 1"), "path segment instead"),
        (replace(PORTAL, portal_id_in="query"), "unknown portal identifier form"),
    ],
)
def test_connector_refuses_a_portal_id_it_cannot_send(settings: ScimSettings, message: str) -> None:
    """The stored options were checked when saved: this is the last line of defence."""
    with pytest.raises(MisconfiguredError, match=message):
        ScimConnector(settings, transport=httpx.MockTransport(fail_on_call))


def test_a_non_ascii_portal_id_goes_in_the_path(connect: Connect) -> None:
    seen: list[httpx.Request] = []
    settings = replace(PORTAL, portal_id="Montréal", portal_id_in="path")

    connect(_recording_server(seen), settings).get("u-1")

    assert seen[0].url.raw_path == PREFIX.encode() + b"/Montr%C3%A9al/Users/u-1"


# --- the portal identifier: validation (the field paths the API and the page report) ----------


def _interface_errors(**overrides: Any) -> dict[str, str]:
    body = {"base_url": BASE_URL, **overrides}
    try:
        InterfaceIn.model_validate(body)
    except ValidationError as exc:
        return {e.field: e.message for e in pydantic_field_errors(exc)}
    return {}


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "authorization",
        "Proxy-Authorization",
        "Host",
        "Content-Type",
        "Content-Length",
        "content-encoding",
        "Transfer-Encoding",
        "Connection",
        "Cookie",
        "X-Forwarded-For",
        "Accept",
    ],
)
def test_a_reserved_portal_header_is_a_field_error(name: str) -> None:
    errors = _interface_errors(options={"portal_id_header": name}, portal_id="acme")

    assert list(errors) == ["options.portal_id_header"]
    assert errors["options.portal_id_header"].startswith(f"{name} is reserved")


@pytest.mark.parametrize("name", ["", "X Portal", "X-Portal:Id", "X-Portal\r\nX-Evil", "Pörtal"])
def test_a_portal_header_that_is_not_a_header_name_is_a_field_error(name: str) -> None:
    errors = _interface_errors(options={"portal_id_header": name})

    assert "must be an HTTP header name" in errors["options.portal_id_header"]


@pytest.mark.parametrize("name", ["X-Portal-Id", "X-Tenant", "tenant_id", "X-Moodle-Tenant"])
def test_usable_portal_headers_are_accepted(name: str) -> None:
    assert _interface_errors(options={"portal_id_header": name}, portal_id="acme") == {}


def test_the_api_key_header_cannot_carry_the_portal_id() -> None:
    errors = _interface_errors(
        auth_type="api_key",
        auth_header="X-Portal-Id",
        portal_id="acme",
        options={"portal_id_header": "x-portal-id"},
    )

    assert errors == {
        "options.portal_id_header": "the API key header cannot also carry the portal identifier"
    }
    # With a bearer token, the API key header is not sent: no clash.
    assert _interface_errors(auth_header="X-Portal-Id", portal_id="acme") == {}


@pytest.mark.parametrize("portal_id", ["Montréal", "a\u00a0b"])
def test_a_non_ascii_portal_id_is_refused_in_a_header_but_not_in_the_path(portal_id: str) -> None:
    errors = _interface_errors(portal_id=portal_id)

    assert list(errors) == ["portal_id"]
    assert "path segment" in errors["portal_id"]
    assert _interface_errors(portal_id=portal_id, options={"portal_id_in": "path"}) == {}


@pytest.mark.parametrize("portal_id", ["a\r\nX-Evil: 1", "a\nb", "a\u0000b", "a\u200bb"])
@pytest.mark.parametrize("portal_id_in", ["header", "path"])
def test_control_characters_in_the_portal_id_are_refused(portal_id: str, portal_id_in: str) -> None:
    errors = _interface_errors(portal_id=portal_id, options={"portal_id_in": portal_id_in})

    assert errors == {"portal_id": "must not contain control characters"}


@pytest.mark.parametrize("portal_id", [".", ".."])
def test_dot_segments_cannot_be_the_portal_path_segment(portal_id: str) -> None:
    errors = _interface_errors(portal_id=portal_id, options={"portal_id_in": "path"})

    assert errors == {"portal_id": "cannot be a path segment"}


def test_portal_id_is_trimmed_and_blank_is_none() -> None:
    body = {"base_url": BASE_URL}
    assert InterfaceIn.model_validate({**body, "portal_id": "  acme "}).portal_id == "acme"
    assert InterfaceIn.model_validate({**body, "portal_id": "   "}).portal_id is None
    assert _interface_errors(portal_id="x" * 201) == {"portal_id": "must be at most 200 characters"}


def test_portal_id_in_is_header_or_path() -> None:
    assert set(_interface_errors(options={"portal_id_in": "query"})) == {"options.portal_id_in"}
    options = InterfaceIn.model_validate({"base_url": BASE_URL}).options
    assert isinstance(options, ScimOptionsIn)
    assert (options.portal_id_in, options.portal_id_header) == ("header", "X-Portal-Id")


# --- the portal identifier: from the stored interface to the connector ----------------------


def _interface(**values: Any) -> LmsInterface:
    defaults: dict[str, Any] = {
        "account_id": "a-1",
        "base_url": BASE_URL,
        "auth_type": "bearer",
        "auth_header": "X-API-Key",
        "options": {},
    }
    return LmsInterface(**{**defaults, **values})


def test_scim_settings_pass_the_portal_id_on() -> None:
    options = {"portal_id_in": "path", "portal_id_header": "X-Tenant"}

    settings = scim_settings(_interface(portal_id="acme", options=options), "s3cret")

    assert (settings.portal_id, settings.portal_id_in, settings.portal_id_header) == (
        "acme",
        "path",
        "X-Tenant",
    )


def test_scim_settings_of_an_interface_saved_before_the_portal_options() -> None:
    settings = scim_settings(_interface(portal_id=" acme ", options={"use_patch": True}), None)

    assert (settings.portal_id, settings.portal_id_in, settings.portal_id_header) == (
        "acme",
        "header",
        "X-Portal-Id",
    )
    assert scim_settings(_interface(portal_id=""), None).portal_id is None
