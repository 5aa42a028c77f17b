"""The embedded LMS's email and lastModified indexes answer exactly as scim2-server's stock
search, which walks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from scim2_models import ResourceType, ScimFilter, SearchRequest
from scim2_server.memory import InMemoryStorage

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


# -- meta.lastModified ---------------------------------------------------------------------------

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
USER_TYPE = ResourceType.from_resource(LmsUser)


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


class _Twins:
    """The same writes, at the same (fixed) dates, in an indexed and in a stock storage."""

    def __init__(self) -> None:
        self.now = T0
        self.indexed = EmailIndexedStorage()
        self.stock = InMemoryStorage()
        self.ids: list[dict[str, str]] = [{}, {}]
        for storage in self.storages:
            storage.clock = lambda: self.now

    @property
    def storages(self) -> tuple[InMemoryStorage, InMemoryStorage]:
        return self.indexed, self.stock

    def create(self, name: str, minutes: float) -> None:
        self.now = T0 + timedelta(minutes=minutes)
        for storage, ids in zip(self.storages, self.ids, strict=True):
            body = {"schemas": [CORE_USER], "userName": name}
            ids[name] = str(storage.create(USER_TYPE, LmsUser.model_validate(body)).id)

    def update(self, name: str, minutes: float, nick: str = "n") -> None:
        self.now = T0 + timedelta(minutes=minutes)
        for storage, ids in zip(self.storages, self.ids, strict=True):
            body = {"schemas": [CORE_USER], "id": ids[name], "userName": name, "nickName": nick}
            storage.update(USER_TYPE, LmsUser.model_validate(body))

    def delete(self, name: str) -> None:
        for storage, ids in zip(self.storages, self.ids, strict=True):
            storage.delete(USER_TYPE, ids.pop(name))

    def answers(self, scim_filter: str) -> tuple[list[str], list[str]]:
        request = SearchRequest[LmsUser].model_validate({"filter": scim_filter})
        indexed, stock = (
            sorted(str(getattr(user, "user_name", None)) for user in page.resources)
            for page in (storage.search([USER_TYPE], request) for storage in self.storages)
        )
        return indexed, stock


MODIFIED_FILTERS = [
    f'meta.lastModified gt "{_at(3)}"',  # u3 and u3b were modified at exactly that instant
    f'meta.lastModified ge "{_at(3)}"',
    f'meta.lastModified gt "{_at(2.5)}"',
    f'meta.lastModified gt "{_at(-1)}"',  # every user
    f'meta.lastModified ge "{_at(60)}"',  # none
    'meta.lastModified gt "2024-03-01T14:03:00+02:00"',  # _at(3), another offset
    'meta.lastModified ge "2024-03-01T12:02:59.999999Z"',
    f'META.LASTMODIFIED GE "{_at(5)}"',
    f'urn:ietf:params:scim:schemas:core:2.0:User:meta.lastModified gt "{_at(4)}"',
    'meta.lastModified gt "2024-03-01T12:03:00"',  # no offset: not indexed, matches nothing
    f'meta.lastModified lt "{_at(3)}"',  # not indexed
    f'meta.lastModified gt "{_at(1)}" and userName eq "u5"',  # not indexed: stock path
    f'meta.lastModified gt "{_at(1)}" or userName eq "u0"',  # not indexed
    f'not (meta.lastModified ge "{_at(3)}")',  # not indexed
]


@pytest.fixture
def twins() -> _Twins:
    pair = _Twins()
    for minutes in range(8):
        pair.create(f"u{minutes}", minutes)
    pair.create("u3b", 3)  # the same date as u3
    return pair


@pytest.mark.parametrize("scim_filter", MODIFIED_FILTERS)
def test_modified_since_same_answers_as_the_stock_search(twins: _Twins, scim_filter: str) -> None:
    indexed, stock = twins.answers(scim_filter)
    assert indexed == stock


def test_modified_since_boundaries(twins: _Twins) -> None:
    assert twins.answers(f'meta.lastModified gt "{_at(3)}"')[0] == ["u4", "u5", "u6", "u7"]
    assert twins.answers(f'meta.lastModified ge "{_at(3)}"')[0] == [
        "u3",
        "u3b",
        "u4",
        "u5",
        "u6",
        "u7",
    ]


@pytest.mark.parametrize("scim_filter", MODIFIED_FILTERS)
def test_modified_since_follows_updates_and_deletes(twins: _Twins, scim_filter: str) -> None:
    twins.update("u1", 4)  # moves after the boundary
    twins.update("u6", 6)  # the same date again
    twins.update("u6", 6, nick="again")
    twins.delete("u5")
    twins.delete("u3b")
    twins.create("u3b", 2)  # the same name back, earlier
    twins.create("u9", 3)
    twins.create("u8", 1)  # a date before the latest one
    twins.update("u0", 10)
    twins.delete("u0")
    indexed, stock = twins.answers(scim_filter)
    assert indexed == stock
    if scim_filter == f'meta.lastModified ge "{_at(3)}"':
        assert indexed == ["u1", "u3", "u4", "u6", "u7", "u9"]


def test_a_modified_since_search_examines_only_the_recent_users(twins: _Twins) -> None:
    """What makes it fast: the matcher sees the users modified since then, not all of them."""
    twins.update("u0", 8)
    twins.update("u0", 9)  # its stale entries are skipped
    twins.update("u7", 1)  # a clock set back: its entry at 7 is stale
    since = ScimFilter[LmsUser](f'meta.lastModified gt "{_at(6)}"')
    found = twins.indexed._candidates(["User"], since)
    assert sorted(str(getattr(user, "user_name", None)) for user in found) == ["u0", "u6"]
    walk = ScimFilter[LmsUser](f'meta.lastModified lt "{_at(6)}"')
    assert len(twins.indexed._candidates(["User"], walk)) == 9


def test_stale_modified_entries_are_compacted() -> None:
    pair = _Twins()
    pair.create("busy", 0)
    for minutes in range(1, 500):
        pair.update("busy", minutes)
    assert len(pair.indexed._by_modified) <= 2 * 1 + 64 + 1
    assert pair.answers(f'meta.lastModified ge "{_at(499)}"') == (["busy"], ["busy"])
    assert pair.answers(f'meta.lastModified gt "{_at(498)}"')[0] == ["busy"]


def test_replacing_every_resource_rebuilds_the_modified_index(twins: _Twins) -> None:
    kept = [user for user in twins.indexed.resources if getattr(user, "user_name", "") < "u3"]
    twins.indexed.resources = kept
    since = ScimFilter[LmsUser](f'meta.lastModified ge "{_at(1)}"')
    found = twins.indexed._candidates(["User"], since)
    assert sorted(str(getattr(user, "user_name", None)) for user in found) == ["u1", "u2"]


def test_modified_since_over_http_same_answers_as_the_stock_search(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    """Each LMS has its own dates: compare "modified after this user was" in both."""
    indexed, stock = clients
    for client in clients:
        created = client.post("/Users", json={"schemas": [CORE_USER], "userName": "late"})
        assert created.status_code == 201, created.text
    for name in ("ann", "late"):
        answers = []
        for client in clients:
            user = client.get(f"/Users/{_id(client, name)}").json()
            modified = user["meta"]["lastModified"]
            answers.append(
                [_names(client, f'meta.lastModified {op} "{modified}"') for op in ("gt", "ge")]
            )
        assert answers[0] == answers[1]
        assert name in answers[0][1]  # ge: the user itself
        assert name not in answers[0][0]
    garbage = {"filter": 'meta.lastModified gt "yesterday"'}  # no dateTime: the same refusal
    refused = [indexed.get("/Users", params=garbage), stock.get("/Users", params=garbage)]
    assert [r.status_code for r in refused] == [400, 400]
    assert refused[0].json() == refused[1].json()
    assert refused[0].json()["scimType"] == "invalidFilter"
