"""The embedded LMS's email index answers exactly as scim2-server's stock search, which walks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from scim2_models import ResourceType, ScimFilter, SearchRequest

from lmsync.lms.email_index import EmailIndexedStorage
from lmsync.lms.embedded import EmbeddedLms, LmsUser

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

USERS: dict[str, list[dict[str, Any]]] = {
    "ann": [{"value": "Ann.Lee@Example.com", "type": "work", "primary": True}],
    "ann-home": [{"value": "ann.lee@example.COM", "type": "home"}],
    "bob": [{"value": "bob@example.com"}, {"value": "robert@example.org", "type": "other"}],
    "zoe": [{"value": "zoë@exämple.com"}],
    "nobody": [],
}
FILTERS = [
    'emails.value eq "ann.lee@example.com"',
    'emails.value eq "ANN.LEE@EXAMPLE.COM"',
    'emails.value eq "robert@example.org"',
    'emails.value eq "ZOË@EXÄMPLE.COM"',
    'emails.value eq "missing@example.com"',
    'EMAILS.VALUE eq "bob@example.com"',
    'emails[type eq "work"].value eq "ann.lee@example.com"',  # not indexed: walks
    'emails.value co "example.com"',  # not indexed: walks
    'emails.value eq "ann.lee@example.com" and active eq true',  # not indexed: walks
    'userName eq "bob"',
]


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """The same users in an LMS with the index and in one with scim2-server's stock search."""
    with (
        EmbeddedLms(email_index=True) as indexed,
        EmbeddedLms(email_index=False) as stock,
        httpx.Client(base_url=indexed.base_url) as a,
        httpx.Client(base_url=stock.base_url) as b,
    ):
        for client in (a, b):
            for name, emails in USERS.items():
                body = {"schemas": [CORE_USER], "userName": name, "emails": emails}
                assert client.post("/Users", json=body).status_code == 201
        yield a, b


def _names(client: httpx.Client, scim_filter: str) -> list[str]:
    response = client.get("/Users", params={"filter": scim_filter})
    assert response.status_code == 200, response.text
    return sorted(user["userName"] for user in response.json().get("Resources", []))


def _id(client: httpx.Client, name: str) -> str:
    found = client.get("/Users", params={"filter": f'userName eq "{name}"'}).json()
    return str(found["Resources"][0]["id"])


@pytest.mark.parametrize("scim_filter", FILTERS)
def test_same_answers_as_the_stock_search(
    clients: tuple[httpx.Client, httpx.Client], scim_filter: str
) -> None:
    indexed, stock = clients
    assert _names(indexed, scim_filter) == _names(stock, scim_filter)


def test_index_follows_every_write(clients: tuple[httpx.Client, httpx.Client]) -> None:
    indexed, stock = clients
    lookup = 'emails.value eq "ann.lee@example.com"'
    assert _names(indexed, lookup) == ["ann", "ann-home"]  # the index is built by now
    for client in clients:
        user_id = _id(client, "ann-home")
        patch = {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "emails", "value": [{"value": "x@y.com"}]}],
        }
        assert client.patch(f"/Users/{user_id}", json=patch).status_code in (200, 204)
        nobody = _id(client, "nobody")
        body = {
            "schemas": [CORE_USER],
            "userName": "nobody",
            "emails": [{"value": "ANN.lee@example.com"}],
        }
        assert client.put(f"/Users/{nobody}", json=body).status_code == 200
        assert client.delete(f"/Users/{_id(client, 'bob')}").status_code == 204
        new = {"schemas": [CORE_USER], "userName": "bob2", "emails": [{"value": "Bob@Example.com"}]}
        assert client.post("/Users", json=new).status_code == 201
    for scim_filter in (lookup, 'emails.value eq "x@y.com"', 'emails.value eq "bob@example.com"'):
        assert _names(indexed, scim_filter) == _names(stock, scim_filter)
    assert _names(indexed, lookup) == ["ann", "nobody"]
    assert _names(indexed, 'emails.value eq "bob@example.com"') == ["bob2"]


def test_a_lookup_examines_only_the_holders_of_the_address() -> None:
    """What makes it fast: the matcher sees the users holding the address, not all of them."""
    user_type = ResourceType.from_resource(LmsUser)
    storage = EmailIndexedStorage()
    for i in range(200):
        body = {"schemas": [CORE_USER], "userName": f"u{i}", "emails": [{"value": f"p{i}@x.com"}]}
        storage.create(user_type, LmsUser.model_validate(body))
    lookup = ScimFilter[LmsUser]('emails.value eq "P7@X.com"')
    assert [getattr(user, "user_name", None) for user in storage._candidates(["User"], lookup)] == [
        "u7"
    ]
    walk = ScimFilter[LmsUser]('emails.value co "p7"')
    assert len(storage._candidates(["User"], walk)) == 200
    request = SearchRequest[LmsUser].model_validate({"filter": 'emails.value eq "p7@x.com"'})
    assert [
        getattr(user, "user_name", None) for user in storage.search([user_type], request).resources
    ] == ["u7"]


def test_replacing_every_resource_rebuilds_the_index() -> None:
    user_type = ResourceType.from_resource(LmsUser)
    storage = EmailIndexedStorage()
    first = storage.create(
        user_type,
        LmsUser.model_validate(
            {"schemas": [CORE_USER], "userName": "a", "emails": [{"value": "a@x.com"}]}
        ),
    )
    lookup = ScimFilter[LmsUser]('emails.value eq "a@x.com"')
    assert storage._candidates(["User"], lookup) == [first]  # the index is built
    replacement = first.model_copy(update={"id": "other"})
    storage.resources = [replacement]
    assert [user.id for user in storage._candidates(["User"], lookup)] == ["other"]
