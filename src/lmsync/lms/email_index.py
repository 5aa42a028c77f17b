"""scim2-server's in-memory storage, plus indexes of the users' email addresses and lastModified.

scim2-server answers ``filter=userName eq "..."`` from an index, but it indexes single-valued
attributes only: ``emails.value eq "..."`` (how lmsync correlates an employee) walks every user
through the filter matcher, about 0.4 ms each, so 5 s at 12,000 users. A real LMS answers that
lookup from a database index. This storage narrows such a search to the users holding the address
(compared as scim2-server compares it) and leaves the decision to scim2-server's own matcher, so
the answers are the same; every other search is scim2-server's, untouched.

It also indexes the users' ``meta.lastModified``: ``meta.lastModified gt "<dateTime>"`` (or
``ge``), what lmsync's incremental pass asks, reads the users modified since then from a sorted
list instead of walking all of them (40 s at 100,000 users), again leaving the decision to
scim2-server's matcher.

It overrides three internal methods of ``scim2_server.memory.InMemoryStorage`` and uses its key
helper: the version is pinned in pyproject.toml and tests/lms/test_email_index.py compares it with
the stock search.
"""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import Any, TypeGuard

from scim2_models import AttributeBinding, Path, Resource, ScimFilter
from scim2_models.path import CompareOperator, Comparison
from scim2_models.path.resolution import coerce_value
from scim2_server.memory import InMemoryStorage, Key, _key
from scim2_server.utils import parametrize

USER = "User"
EMAILS_URN = "urn:ietf:params:scim:schemas:core:2.0:User:emails.value"
LAST_MODIFIED_URN = "urn:ietf:params:scim:schemas:core:2.0:User:meta.lastModified"


def email_lookup(scim_filter: ScimFilter[Any] | None) -> tuple[AttributeBinding, Any] | None:
    """The attribute and the compared value of a filter ``emails.value eq "<string>"``."""
    if scim_filter is None or scim_filter.model is None:
        return None
    node = scim_filter.ast
    if (
        not isinstance(node, Comparison)
        or node.op != CompareOperator.eq
        or not isinstance(node.value, str)
    ):
        return None
    binding = scim_filter.resolve_comparison(node.attr_path, strict=False)
    if binding is None or binding.urn != EMAILS_URN:
        return None
    try:
        return binding, binding.comparable(node.value)
    except ValueError:
        return None


def modified_since(scim_filter: ScimFilter[Any] | None) -> datetime | None:
    """The instant of a filter ``meta.lastModified gt|ge "<dateTime with an offset>"``."""
    if scim_filter is None or scim_filter.model is None:
        return None
    node = scim_filter.ast
    if (
        not isinstance(node, Comparison)
        or node.op not in (CompareOperator.gt, CompareOperator.ge)
        or not isinstance(node.value, str)
    ):
        return None
    binding = scim_filter.resolve_comparison(node.attr_path, strict=False)
    if binding is None or binding.urn != LAST_MODIFIED_URN:
        return None
    try:
        value = coerce_value(binding, node.value, node.op)  # as the matcher reads it
    except ValueError:  # InvalidFilterException is one
        return None
    return value if _aware(value) else None


def _aware(value: object) -> TypeGuard[datetime]:
    """Whether ``value`` is a datetime with a UTC offset, comparable with any other such one."""
    return isinstance(value, datetime) and value.utcoffset() is not None


class EmailIndexedStorage(InMemoryStorage):
    """``InMemoryStorage`` whose ``emails.value eq`` and ``meta.lastModified gt|ge`` searches on
    users read an index.

    The email index is built on the first such search (as scim2-server builds its own) and kept
    up to date by every write afterwards; the lastModified index is kept by every write.
    """

    def __init__(self) -> None:
        self._email_binding: AttributeBinding | None = None
        self._by_email: dict[Any, set[str]] = {}
        self._emails_of: dict[str, set[Any]] = {}
        self._modified_of: dict[str, datetime] = {}  # user id -> meta.lastModified
        # (lastModified, id), sorted; an entry whose pair is not in _modified_of is stale.
        self._by_modified: list[tuple[datetime, str]] = []
        super().__init__()

    @property
    def resources(self) -> list[Resource[Any]]:
        """The stored resources."""
        return super().resources

    @resources.setter
    def resources(self, resources: list[Resource[Any]]) -> None:
        self._email_binding = None  # rebuilt on the next email search
        self._by_email, self._emails_of = {}, {}
        self._modified_of, self._by_modified = {}, []
        base = InMemoryStorage.__dict__["resources"]
        assert isinstance(base, property)
        assert base.fset is not None
        base.fset(self, resources)

    def _candidates(
        self, names: list[str | None], scim_filter: ScimFilter[Any] | None
    ) -> list[Resource[Any]]:
        if names != [USER]:
            return super()._candidates(names, scim_filter)
        since = modified_since(scim_filter)
        if since is not None:
            return self._modified_since(since)
        lookup = email_lookup(scim_filter)
        if lookup is None:
            return super()._candidates(names, scim_filter)
        binding, value = lookup
        users = self._resources.get(USER, {})
        if self._email_binding is None:
            self._email_binding = binding
            for user in users.values():
                self._index(user)
        return [users[user_id] for user_id in self._by_email.get(value, ())]

    def _modified_since(self, since: datetime) -> list[Resource[Any]]:
        """The users modified at ``since`` or later (a superset of ``gt``)."""
        users = self._resources.get(USER, {})
        found: dict[str, Resource[Any]] = {}
        start = bisect.bisect_left(self._by_modified, (since,))
        for modified, user_id in self._by_modified[start:]:
            if self._modified_of.get(user_id) == modified and user_id not in found:
                found[user_id] = users[user_id]
        return list(found.values())

    def _store(self, resource: Resource[Any], values: dict[str, Any]) -> None:
        super()._store(resource, values)  # calls _remove first: the old values go
        name, user_id = _key(resource)
        if name != USER:
            return
        if self._email_binding is not None:
            self._index(resource)
        assert resource.meta is not None
        modified = resource.meta.last_modified
        if _aware(modified):  # any other value never matches an aware instant
            self._modified_of[user_id] = modified
            bisect.insort(self._by_modified, (modified, user_id))  # usually an append

    def _remove(self, key: Key) -> None:
        super()._remove(key)
        if key[0] != USER:
            return
        for value in self._emails_of.pop(key[1], ()):
            holders = self._by_email[value]
            holders.discard(key[1])
            if not holders:
                del self._by_email[value]
        if self._modified_of.pop(key[1], None) is not None:
            self._compact()

    def _compact(self) -> None:
        """Drop the stale entries once they outnumber the live ones (amortized O(log n))."""
        if len(self._by_modified) > 2 * len(self._modified_of) + 64:
            self._by_modified = sorted(
                (modified, user_id) for user_id, modified in self._modified_of.items()
            )

    def _index(self, resource: Resource[Any]) -> None:
        binding = self._email_binding
        assert binding is not None
        found = parametrize(Path, type(resource))(binding.urn).get(resource, strict=False)
        values: set[Any] = set()
        for address in found or ():
            try:
                values.add(binding.comparable(address))
            except ValueError:  # not comparable: it cannot be equal to a searched value
                continue
        user_id = _key(resource)[1]
        self._emails_of[user_id] = values
        for value in values:
            self._by_email.setdefault(value, set()).add(user_id)
