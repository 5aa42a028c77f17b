"""scim2-server's in-memory storage, plus an index of the users' email addresses.

scim2-server answers ``filter=userName eq "..."`` from an index, but it indexes single-valued
attributes only: ``emails.value eq "..."`` (how lmsync correlates an employee) walks every user
through the filter matcher, about 0.4 ms each, so 5 s at 12,000 users. A real LMS answers that
lookup from a database index. This storage narrows such a search to the users holding the address
(compared as scim2-server compares it) and leaves the decision to scim2-server's own matcher, so
the answers are the same; every other search is scim2-server's, untouched.

It overrides three internal methods of ``scim2_server.memory.InMemoryStorage`` and uses its key
helper: the version is pinned in pyproject.toml and tests/lms/test_email_index.py compares it with
the stock search.
"""

from __future__ import annotations

from typing import Any

from scim2_models import AttributeBinding, Path, Resource, ScimFilter
from scim2_models.path import CompareOperator, Comparison
from scim2_server.memory import InMemoryStorage, Key, _key
from scim2_server.utils import parametrize

USER = "User"
EMAILS_URN = "urn:ietf:params:scim:schemas:core:2.0:User:emails.value"


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


class EmailIndexedStorage(InMemoryStorage):
    """``InMemoryStorage`` whose ``emails.value eq`` searches read an index.

    The index is built on the first such search (as scim2-server builds its own) and kept up to
    date by every write afterwards.
    """

    def __init__(self) -> None:
        self._email_binding: AttributeBinding | None = None
        self._by_email: dict[Any, set[str]] = {}
        self._emails_of: dict[str, set[Any]] = {}
        super().__init__()

    @property
    def resources(self) -> list[Resource[Any]]:
        """The stored resources."""
        return super().resources

    @resources.setter
    def resources(self, resources: list[Resource[Any]]) -> None:
        self._email_binding = None  # rebuilt on the next email search
        self._by_email, self._emails_of = {}, {}
        base = InMemoryStorage.__dict__["resources"]
        assert isinstance(base, property)
        assert base.fset is not None
        base.fset(self, resources)

    def _candidates(
        self, names: list[str | None], scim_filter: ScimFilter[Any] | None
    ) -> list[Resource[Any]]:
        lookup = email_lookup(scim_filter) if names == [USER] else None
        if lookup is None:
            return super()._candidates(names, scim_filter)
        binding, value = lookup
        users = self._resources.get(USER, {})
        if self._email_binding is None:
            self._email_binding = binding
            for user in users.values():
                self._index(user)
        return [users[user_id] for user_id in self._by_email.get(value, ())]

    def _store(self, resource: Resource[Any], values: dict[str, Any]) -> None:
        super()._store(resource, values)  # calls _remove first: the old addresses go
        if self._email_binding is not None and _key(resource)[0] == USER:
            self._index(resource)

    def _remove(self, key: Key) -> None:
        super()._remove(key)
        if key[0] == USER:
            for value in self._emails_of.pop(key[1], ()):
                holders = self._by_email[value]
                holders.discard(key[1])
                if not holders:
                    del self._by_email[value]

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
