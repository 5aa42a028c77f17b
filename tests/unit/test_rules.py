"""Unit tests of lmsync.sync.rules: one test per row of docs/rules.md, the scope switches, and
property tests (excluded never written, terminated never created, convergence, one link per LMS
user across an account)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lmsync.lms.base import RemoteUser
from lmsync.sync.rules import (
    DUPLICATE_HR_EMAIL,
    WORK_EMAIL_REQUIRED,
    Action,
    EmployeeView,
    FieldValues,
    Kind,
    LinkRefresh,
    LinkView,
    Scope,
    decide,
    diff,
    duplicate_email_keys,
)

IN_SCOPE = Scope(user_sync_enabled=True, interface_active=True)
EMAIL = "ann.lee@example.com"
NEVER_FOR_EXCLUDED = frozenset(
    {Kind.CREATE, Kind.LINK, Kind.UPDATE, Kind.DEACTIVATE, Kind.REACTIVATE}
)
FINAL_KINDS = frozenset(Kind) - {Kind.CORRELATE}


def desired(email: str | None = EMAIL, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "external_id": "e1",
        "first_name": "Ann",
        "last_name": "Lee",
        "language": "fr-CA",
        "email": email,
        "job_title": "Nurse",
        "notifications_enabled": True,
    }
    values.update(overrides)
    return values


def employee(
    *,
    id: str = "e1",
    active: bool = True,
    excluded: bool = False,
    email_key: str | None = EMAIL,
    email_shared: bool = False,
    fields: FieldValues | None = None,
) -> EmployeeView:
    return EmployeeView(
        id=id,
        active=active,
        excluded=excluded,
        email_key=email_key,
        email_shared=email_shared,
        desired=desired(email_key) if fields is None else fields,
    )


def link(
    *,
    user_id: str = "u1",
    lms_active: bool = True,
    written: FieldValues | None = None,
    gone: bool = False,
    remote: RemoteUser | None = None,
) -> LinkView:
    return LinkView(
        lms_user_id=user_id,
        lms_active=lms_active,
        written=desired() if written is None else written,
        gone=gone,
        remote=remote,
    )


def remote(
    user_id: str = "u1",
    *,
    active: bool = True,
    email: str = EMAIL,
    fields: FieldValues | None = None,
    linked_to: str | None = None,
) -> RemoteUser:
    return RemoteUser(
        id=user_id,
        active=active,
        email_key=email.strip().casefold(),
        fields=desired(email) if fields is None else fields,
        linked_to=linked_to,
    )


# --- docs/rules.md, one test per row -------------------------------------------------------------


@pytest.mark.parametrize("active", [True, False], ids=["active", "terminated"])
@pytest.mark.parametrize(
    "the_link",
    [
        None,
        link(written=desired(job_title="Old title")),
        link(lms_active=False),
        link(lms_active=True),
        link(gone=True),
        link(remote=remote(active=False, fields=desired(last_name="Drifted"))),
    ],
    ids=["unlinked", "linked-stale", "linked-inactive", "linked-active", "gone", "drifted"],
)
@pytest.mark.parametrize("matches", [None, (), (remote("u7"),)], ids=["no-lookup", "none", "one"])
def test_row_excluded_any_status_any_link_none_and_link_frozen(
    active: bool, the_link: LinkView | None, matches: tuple[RemoteUser, ...] | None
) -> None:
    action = decide(employee(active=active, excluded=True), the_link, IN_SCOPE, matches)
    assert action.kind == Kind.NONE
    assert not action.writes
    assert not action.drop_link  # the link is kept, frozen
    assert action.changes == {}
    assert action.reason == "excluded from the LMS interface"


@pytest.mark.parametrize("matches", [None, (), (remote(),)], ids=["no-lookup", "none", "one"])
def test_row_active_in_scope_no_work_email_unlinked_skip(
    matches: tuple[RemoteUser, ...] | None,
) -> None:
    action = decide(employee(email_key=None), None, IN_SCOPE, matches)
    assert action.kind == Kind.SKIP
    assert action.reason == WORK_EMAIL_REQUIRED == "work email required"
    assert not action.writes


def test_row_active_in_scope_work_email_unlinked_correlate_first() -> None:
    action = decide(employee(), None, IN_SCOPE)
    assert action.kind == Kind.CORRELATE
    assert not action.writes
    assert not action.drop_link


def test_row_active_in_scope_work_email_unlinked_one_match_links() -> None:
    match = remote("u42", fields=desired(job_title="Intern", first_name="Ann"))
    action = decide(employee(), None, IN_SCOPE, (match,))
    assert action.kind == Kind.LINK
    assert action.lms_user_id == "u42"
    assert action.changes == {"job_title": "Nurse"}  # only the differing maintained fields
    assert not action.reactivate
    assert action.writes


def test_row_active_in_scope_work_email_unlinked_one_identical_match_links_without_write() -> None:
    action = decide(employee(), None, IN_SCOPE, (remote("u42"),))
    assert action.kind == Kind.LINK
    assert action.lms_user_id == "u42"
    assert action.changes == {}
    assert not action.writes


def test_row_active_in_scope_work_email_unlinked_no_match_creates_with_all_fields() -> None:
    emp = employee()
    action = decide(emp, None, IN_SCOPE, ())
    assert action.kind == Kind.CREATE
    assert dict(action.changes) == dict(emp.desired)
    assert action.lms_user_id is None
    assert action.writes


def test_row_active_in_scope_work_email_unlinked_several_matches_conflict() -> None:
    matches = (remote("u9"), remote("u3", email=EMAIL.upper()))
    action = decide(employee(), None, IN_SCOPE, matches)
    assert action.kind == Kind.CONFLICT
    assert "several LMS users have this email" in action.reason
    assert "u3, u9" in action.reason  # the ids, sorted
    assert not action.writes
    assert action.lms_user_id is None


@pytest.mark.parametrize("matches", [None, (), (remote(),)], ids=["no-lookup", "none", "one"])
def test_row_active_in_scope_work_email_shared_unlinked_conflict_for_either(
    matches: tuple[RemoteUser, ...] | None,
) -> None:
    shared = duplicate_email_keys([(EMAIL, True, False), (EMAIL, True, False)])
    assert shared == {EMAIL}
    for emp_id in ("e1", "e2"):
        emp = employee(id=emp_id, email_shared=EMAIL in shared)
        action = decide(emp, None, IN_SCOPE, matches)
        assert action.kind == Kind.CONFLICT
        assert action.reason == DUPLICATE_HR_EMAIL == "duplicate work email in HR"
        assert not action.writes


def test_row_active_in_scope_linked_lms_active_updates_changed_fields() -> None:
    emp = employee(fields=desired(job_title="Head nurse", language="en"))
    action = decide(emp, link(written=desired()), IN_SCOPE)
    assert action.kind == Kind.UPDATE
    assert action.lms_user_id == "u1"
    assert action.changes == {"job_title": "Head nurse", "language": "en"}
    assert "job_title" in action.reason
    assert not action.reactivate
    assert action.writes


def test_row_active_in_scope_linked_lms_active_nothing_changed_none() -> None:
    action = decide(employee(), link(written=desired()), IN_SCOPE)
    assert action.kind == Kind.NONE
    assert not action.writes


def test_row_active_in_scope_email_change_updates_linked_user_not_create() -> None:
    emp = employee(email_key="ann.new@example.com")
    action = decide(emp, link(written=desired()), IN_SCOPE, ())
    assert action.kind == Kind.UPDATE
    assert action.lms_user_id == "u1"
    assert action.changes == {"email": "ann.new@example.com"}


@pytest.mark.parametrize("changed", [False, True], ids=["same", "changed"])
def test_row_active_in_scope_rehired_linked_lms_deactivated_reactivates_then_updates(
    changed: bool,
) -> None:
    emp = employee(fields=desired(job_title="Rehired") if changed else desired())
    action = decide(emp, link(lms_active=False), IN_SCOPE)
    assert action.kind == Kind.REACTIVATE
    assert action.reactivate
    assert action.lms_user_id == "u1"
    assert action.changes == ({"job_title": "Rehired"} if changed else {})
    assert action.writes


def test_row_terminated_in_scope_deactivation_on_linked_lms_active_deactivates() -> None:
    action = decide(employee(active=False), link(lms_active=True), IN_SCOPE)
    assert action.kind == Kind.DEACTIVATE
    assert action.lms_user_id == "u1"
    assert action.writes
    assert not action.drop_link


def test_row_terminated_linked_lms_already_deactivated_none() -> None:
    action = decide(employee(active=False), link(lms_active=False), IN_SCOPE)
    assert action.kind == Kind.NONE
    assert not action.writes


@pytest.mark.parametrize("matches", [None, (), (remote(),)], ids=["no-lookup", "none", "one"])
def test_row_terminated_unlinked_none_never_created(
    matches: tuple[RemoteUser, ...] | None,
) -> None:
    action = decide(employee(active=False), None, IN_SCOPE, matches)
    assert action.kind == Kind.NONE  # not even a lookup (CORRELATE)
    assert not action.writes
    assert not action.drop_link


def test_row_any_linked_lms_user_gone_drops_link_and_correlates_again() -> None:
    gone = link(gone=True)
    first = decide(employee(), gone, IN_SCOPE)
    assert first.kind == Kind.CORRELATE
    assert first.drop_link

    created = decide(employee(), gone, IN_SCOPE, ())
    assert created.kind == Kind.CREATE
    assert created.drop_link
    assert dict(created.changes) == desired()

    linked = decide(employee(), gone, IN_SCOPE, (remote("u2"),))
    assert linked.kind == Kind.LINK
    assert linked.lms_user_id == "u2"
    assert linked.drop_link


def test_row_any_linked_gone_terminated_drops_link_without_creating() -> None:
    action = decide(employee(active=False), link(gone=True), IN_SCOPE, ())
    assert action.kind == Kind.NONE
    assert action.drop_link


def test_row_any_linked_gone_without_email_drops_link_and_skips() -> None:
    action = decide(employee(email_key=None), link(gone=True), IN_SCOPE)
    assert action.kind == Kind.SKIP
    assert action.reason == WORK_EMAIL_REQUIRED
    assert action.drop_link


# --- the scope switches ------------------------------------------------------------------------

OUT_OF_SCOPE = [
    pytest.param(Scope(user_sync_enabled=False, interface_active=True), id="user-sync-disabled"),
    pytest.param(Scope(user_sync_enabled=True, interface_active=False), id="interface-inactive"),
]


@pytest.mark.parametrize("scope", OUT_OF_SCOPE)
@pytest.mark.parametrize(
    ("emp", "the_link", "matches"),
    [
        pytest.param(employee(), None, None, id="unlinked-no-lookup"),
        pytest.param(employee(), None, (), id="unlinked-no-match"),
        pytest.param(employee(), None, (remote(),), id="unlinked-one-match"),
        pytest.param(employee(fields=desired(job_title="New")), link(), None, id="linked-changed"),
        pytest.param(employee(), link(lms_active=False), None, id="linked-deactivated"),
        pytest.param(employee(active=False), link(), None, id="terminated-linked-active"),
        pytest.param(employee(), link(gone=True), (), id="gone"),
    ],
)
def test_scope_out_of_scope_does_nothing(
    scope: Scope,
    emp: EmployeeView,
    the_link: LinkView | None,
    matches: tuple[RemoteUser, ...] | None,
) -> None:
    action = decide(emp, the_link, scope, matches)
    assert action.kind == Kind.NONE
    assert not action.writes
    assert not action.drop_link


SYNC_USERS_OFF = Scope(user_sync_enabled=True, interface_active=True, sync_users=False)


@pytest.mark.parametrize(
    ("emp", "the_link", "matches"),
    [
        pytest.param(employee(), None, None, id="unlinked-no-lookup"),
        pytest.param(employee(), None, (), id="unlinked-no-match"),
        pytest.param(employee(), None, (remote(),), id="unlinked-one-match"),
        pytest.param(employee(fields=desired(job_title="New")), link(), None, id="linked-changed"),
        pytest.param(employee(), link(lms_active=False), None, id="linked-deactivated"),
    ],
)
def test_scope_sync_users_off_no_create_link_update_reactivate(
    emp: EmployeeView, the_link: LinkView | None, matches: tuple[RemoteUser, ...] | None
) -> None:
    action = decide(emp, the_link, SYNC_USERS_OFF, matches)
    assert action.kind == Kind.NONE
    assert not action.writes


def test_scope_sync_users_off_still_deactivates_terminated() -> None:
    action = decide(employee(active=False), link(lms_active=True), SYNC_USERS_OFF)
    assert action.kind == Kind.DEACTIVATE
    assert action.lms_user_id == "u1"


def test_scope_deactivate_terminated_off_no_deactivation() -> None:
    scope = Scope(user_sync_enabled=True, interface_active=True, deactivate_terminated=False)
    action = decide(employee(active=False), link(lms_active=True), scope)
    assert action.kind == Kind.NONE
    assert not action.writes
    # ... while active employees are still kept up to date.
    update = decide(employee(fields=desired(job_title="New")), link(), scope)
    assert update.kind == Kind.UPDATE


# --- correlation details -----------------------------------------------------------------------


def test_link_to_deactivated_lms_user_found_by_email_reactivates() -> None:
    action = decide(employee(), None, IN_SCOPE, (remote("u5", active=False),))
    assert action.kind == Kind.LINK
    assert action.lms_user_id == "u5"
    assert action.reactivate
    assert action.changes == {}
    assert action.writes


def test_match_already_linked_to_another_employee_conflict() -> None:
    action = decide(employee(id="e1"), None, IN_SCOPE, (remote("u5", linked_to="e2"),))
    assert action.kind == Kind.CONFLICT
    assert "e2" in action.reason
    assert action.lms_user_id is None
    assert not action.writes


def test_match_already_linked_to_the_same_employee_links() -> None:
    action = decide(employee(id="e1"), None, IN_SCOPE, (remote("u5", linked_to="e1"),))
    assert action.kind == Kind.LINK
    assert action.lms_user_id == "u5"


def test_match_with_email_in_other_case_links_without_email_change() -> None:
    match = remote("u5", email=EMAIL.upper())
    action = decide(employee(), None, IN_SCOPE, (match,))
    assert action.kind == Kind.LINK
    assert "email" not in action.changes
    assert not action.writes


# --- diff ---------------------------------------------------------------------------------------


def test_diff_email_is_case_insensitive() -> None:
    assert diff({"email": "A@X.com"}, {"email": "a@x.COM"}) == {}
    assert diff({"email": " a@x.com "}, {"email": "A@X.COM"}) == {}
    assert diff({"email": "b@x.com"}, {"email": "a@x.com"}) == {"email": "b@x.com"}


def test_diff_other_fields_are_exact_missing_counts_extra_ignored() -> None:
    assert diff({"last_name": "Lee"}, {"last_name": "LEE"}) == {"last_name": "Lee"}
    assert diff({"job_title": None}, {}) == {"job_title": None}
    assert diff({"city": "Laval"}, {"city": "Laval", "extra": 1}) == {}
    assert diff({"email": None}, {"email": "a@x.com"}) == {"email": None}


# --- Action.writes -------------------------------------------------------------------------------


def test_action_writes_false_for_link_without_changes_and_not_reactivating() -> None:
    assert not Action(Kind.LINK, lms_user_id="u1").writes
    assert Action(Kind.LINK, lms_user_id="u1", changes={"city": "Laval"}).writes
    assert Action(Kind.LINK, lms_user_id="u1", reactivate=True).writes


@pytest.mark.parametrize("kind", list(Kind))
def test_action_writes_by_kind(kind: Kind) -> None:
    expected = kind in {Kind.CREATE, Kind.UPDATE, Kind.DEACTIVATE, Kind.REACTIVATE}
    assert Action(kind, changes={"city": "Laval"} if kind == Kind.CREATE else {}).writes is (
        expected
    )


# --- full-pass drift ---------------------------------------------------------------------------


def test_full_pass_drift_updates_drifted_fields_even_if_written_matches() -> None:
    drifted = remote("u1", fields=desired(last_name="Leigh", job_title="Clerk"))
    action = decide(employee(), link(written=desired(), remote=drifted), IN_SCOPE)
    assert action.kind == Kind.UPDATE
    assert action.lms_user_id == "u1"
    assert action.changes == {"last_name": "Lee", "job_title": "Nurse"}


def test_full_pass_remote_up_to_date_needs_no_write() -> None:
    action = decide(employee(), link(written=desired(), remote=remote("u1")), IN_SCOPE)
    assert action.kind == Kind.NONE


def test_full_pass_remote_inactive_while_employee_active_reactivates() -> None:
    the_link = link(lms_active=True, remote=remote("u1", active=False))
    action = decide(employee(), the_link, IN_SCOPE)
    assert action.kind == Kind.REACTIVATE
    assert action.reactivate
    assert action.lms_user_id == "u1"


def test_full_pass_remote_reactivated_by_hand_for_terminated_deactivates() -> None:
    the_link = link(lms_active=False, remote=remote("u1", active=True))
    action = decide(employee(active=False), the_link, IN_SCOPE)
    assert action.kind == Kind.DEACTIVATE


# --- duplicate_email_keys ------------------------------------------------------------------------


def test_duplicate_email_keys_ignores_excluded_terminated_and_none() -> None:
    assert duplicate_email_keys(
        [
            ("a@x.com", True, False),
            ("a@x.com", True, True),  # excluded
            ("b@x.com", True, False),
            ("b@x.com", False, False),  # terminated: a leaver's address can be reused
            (None, True, False),
            (None, True, False),
            ("c@x.com", True, False),
            ("c@x.com", True, False),
            ("c@x.com", True, False),
        ]
    ) == {"c@x.com"}
    assert duplicate_email_keys([]) == set()


# --- strategies --------------------------------------------------------------------------------

POOL = ("ann@x.com", "bob@x.com", "cy@y.org")
VALUES = ("A", "B", None)
FIELD_NAMES = ("first_name", "job_title")
EMPLOYEE_IDS = ("e1", "e2", "e3")
# Booleans biased so that in-scope, active, non-excluded employees (where the rules act) are common.
likely = st.sampled_from((True, True, True, False))
unlikely = likely.map(lambda b: not b)
USER_IDS = ("u1", "u2", "u3", "u4")


@st.composite
def cased(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


@st.composite
def field_values(draw: st.DrawFn, email: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {name: draw(st.sampled_from(VALUES)) for name in FIELD_NAMES}
    values["email"] = draw(cased(email)) if email is not None else None
    return values


@st.composite
def employees(draw: st.DrawFn) -> EmployeeView:
    email_key = draw(st.sampled_from((None, *POOL)))
    return EmployeeView(
        id=draw(st.sampled_from(EMPLOYEE_IDS)),
        active=draw(likely),
        excluded=draw(unlikely),
        email_key=email_key,
        email_shared=draw(unlikely),
        desired=draw(field_values(email_key)),
    )


@st.composite
def remote_users(draw: st.DrawFn, user_id: str | None = None) -> RemoteUser:
    email = draw(st.sampled_from((None, *POOL)))
    fields = draw(field_values(email))
    return RemoteUser(
        id=user_id if user_id is not None else draw(st.sampled_from(USER_IDS)),
        active=draw(st.booleans()),
        email_key=email,
        fields=fields,
        linked_to=draw(st.sampled_from((None, *EMPLOYEE_IDS))),
    )


@st.composite
def links(draw: st.DrawFn) -> LinkView:
    user_id = draw(st.sampled_from(USER_IDS))
    email = draw(st.sampled_from((None, *POOL)))
    return LinkView(
        lms_user_id=user_id,
        lms_active=draw(st.booleans()),
        written=draw(field_values(email)),
        gone=draw(unlikely),
        remote=draw(st.none() | remote_users(user_id)),
    )


scopes = st.builds(Scope, likely, likely, likely, likely)
match_tuples = st.none() | st.lists(remote_users(), max_size=3, unique_by=lambda u: u.id).map(tuple)


# --- property: excluded / terminated ------------------------------------------------------------


@given(employees(), st.none() | links(), scopes, match_tuples)
def test_property_excluded_never_written(
    emp: EmployeeView,
    the_link: LinkView | None,
    scope: Scope,
    matches: tuple[RemoteUser, ...] | None,
) -> None:
    action = decide(replace(emp, excluded=True), the_link, scope, matches)
    assert not action.writes
    assert action.kind not in NEVER_FOR_EXCLUDED
    assert not action.drop_link


@given(employees(), st.none() | links().map(lambda lv: replace(lv, gone=True)), scopes)
@settings(max_examples=200)
def test_property_terminated_unlinked_never_created_nor_linked(
    emp: EmployeeView, the_link: LinkView | None, scope: Scope
) -> None:
    emp = replace(emp, active=False)
    for matches in (None, (), (RemoteUser("u1", True, emp.email_key),)):
        action = decide(emp, the_link, scope, matches)
        assert action.kind not in {Kind.CREATE, Kind.LINK, Kind.CORRELATE}
        assert not action.writes


@given(employees(), st.none() | links(), scopes, match_tuples)
def test_property_decide_is_final_once_matches_are_given(
    emp: EmployeeView,
    the_link: LinkView | None,
    scope: Scope,
    matches: tuple[RemoteUser, ...] | None,
) -> None:
    action = decide(emp, the_link, scope, () if matches is None else matches)
    assert action.kind in FINAL_KINDS


# --- property: convergence ---------------------------------------------------------------------


@dataclass
class LinkRecord:
    user_id: str
    lms_active: bool
    written: FieldValues


@dataclass
class World:
    """One employee's recorded link and an in-memory LMS."""

    link: LinkRecord | None
    lms: dict[str, RemoteUser]
    created: int = 0


def email_key_of(fields: FieldValues) -> str | None:
    email = fields.get("email")
    return email.strip().casefold() if isinstance(email, str) else None


def plan(emp: EmployeeView, world: World, scope: Scope, *, full: bool) -> Action:
    """The engine's two-step decision: correlate by email when the rules ask for it."""
    view: LinkView | None = None
    if world.link is not None:
        current = world.lms.get(world.link.user_id)
        view = LinkView(
            world.link.user_id,
            world.link.lms_active,
            world.link.written,
            gone=current is None,
            remote=current if full else None,
        )
    action = decide(emp, view, scope)
    if action.kind == Kind.CORRELATE:
        matches = tuple(
            u for u in world.lms.values() if emp.email_key and u.email_key == emp.email_key
        )
        action = decide(emp, view, scope, matches)
    assert action.kind != Kind.CORRELATE
    return action


def apply(emp: EmployeeView, world: World, action: Action) -> None:
    """Carry ``action`` out against the in-memory LMS, as the engine records it."""
    if action.drop_link:
        assert world.link is None or world.link.user_id not in world.lms
        world.link = None
    if action.kind == Kind.CREATE:
        assert world.link is None
        world.created += 1
        user_id = f"new{world.created}"
        fields = dict(action.changes)
        world.lms[user_id] = RemoteUser(user_id, True, email_key_of(fields), fields)
        world.link = LinkRecord(user_id, True, dict(emp.desired))
    elif action.kind in {Kind.LINK, Kind.UPDATE, Kind.REACTIVATE}:
        assert action.lms_user_id is not None
        if action.kind == Kind.LINK:
            assert world.link is None
        else:
            assert world.link is not None
            assert world.link.user_id == action.lms_user_id
        user = world.lms[action.lms_user_id]
        fields = {**user.fields, **action.changes}
        world.lms[user.id] = replace(
            user,
            active=user.active or action.reactivate,
            fields=fields,
            email_key=email_key_of(fields),
        )
        world.link = LinkRecord(user.id, True, dict(emp.desired))
    elif action.kind == Kind.DEACTIVATE:
        assert world.link is not None
        assert world.link.user_id == action.lms_user_id
        world.lms[world.link.user_id] = replace(world.lms[world.link.user_id], active=False)
        world.link.lms_active = False
    if action.refresh is not None:
        assert action.kind == Kind.NONE
        assert world.link is not None
        world.link.lms_active = action.refresh.lms_active
        if action.refresh.written is not None:
            world.link.written = dict(action.refresh.written)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    users = draw(st.lists(remote_users(), max_size=4, unique_by=lambda u: u.id))
    lms = {u.id: replace(u, linked_to=None) for u in users}
    record: LinkRecord | None = None
    if draw(st.booleans()):
        email = draw(st.sampled_from((None, *POOL)))
        target = draw(st.sampled_from((*lms, "gone")))  # mostly an existing LMS user
        record = LinkRecord(target, draw(st.booleans()), draw(field_values(email)))
    return World(record, lms)


@given(employees(), worlds(), scopes, st.booleans())
@settings(max_examples=300)
def test_property_convergence_one_pass_then_nothing_to_do(
    emp: EmployeeView, world: World, scope: Scope, full: bool
) -> None:
    before = dict(world.lms)
    first = plan(emp, world, scope, full=full)
    assume(first.kind not in {Kind.SKIP, Kind.CONFLICT})
    apply(emp, world, first)
    second = plan(emp, world, scope, full=full)
    assert second.kind == Kind.NONE, (first, second, world)
    assert not second.writes
    assert not second.drop_link
    assert second.refresh is None  # the link's record converged too
    assert_end_state(emp, world, scope, before, full=full)


def assert_end_state(
    emp: EmployeeView, world: World, scope: Scope, before: dict[str, RemoteUser], *, full: bool
) -> None:
    """The converged state is the one docs/rules.md wants; the switches froze what they guard."""
    in_scope = scope.user_sync_enabled and scope.interface_active and not emp.excluded
    if not in_scope or (not emp.active and not scope.deactivate_terminated):
        assert world.lms == before
        return
    if not scope.sync_users:  # deactivation only
        assert set(world.lms) == set(before)
        for user_id, now in world.lms.items():
            assert now.fields == before[user_id].fields
            assert now.active <= before[user_id].active
    if not emp.active:
        assert world.created == 0
    user = world.lms.get(world.link.user_id) if world.link is not None else None
    if emp.active and scope.sync_users and emp.email_key is not None:
        assert user is not None  # linked (or created) and the link recorded
    if world.link is None or user is None:
        return
    current_active = user.active if full else world.link.lms_active
    current_fields = user.fields if full else world.link.written
    if emp.active and scope.sync_users:
        assert current_active
        assert diff(emp.desired, current_fields) == {}
        if full:
            assert world.link.lms_active
    if not emp.active:
        assert not current_active


# --- property: an account's plan links each LMS user to one employee at most ----------------


@dataclass
class Account:
    employees: list[EmployeeView]
    lms: dict[str, RemoteUser]
    links: dict[str, LinkRecord] = field(default_factory=dict)


@st.composite
def accounts(draw: st.DrawFn) -> Account:
    lms: dict[str, RemoteUser] = {}
    for index in range(draw(st.integers(0, 6))):
        email = draw(cased(draw(st.sampled_from(POOL))))
        fields = {**draw(field_values(None)), "email": email}
        lms[f"u{index}"] = RemoteUser(f"u{index}", draw(st.booleans()), email.casefold(), fields)
    raw: list[tuple[str, bool, bool, str | None, dict[str, Any]]] = []
    for index in range(draw(st.integers(1, 8))):
        email_key = draw(st.sampled_from((None, *POOL)))
        raw.append(
            (
                f"e{index}",
                draw(likely),
                draw(unlikely),
                email_key,
                draw(field_values(email_key)),
            )
        )
    shared = duplicate_email_keys([(key, active, excl) for _, active, excl, key, _ in raw])
    emps = [
        EmployeeView(emp_id, active, excl, key, key in shared, values)
        for emp_id, active, excl, key, values in raw
    ]
    account = Account(emps, lms)
    targets = (*lms, "gone1", "gone2")
    taken: set[str] = set()
    for emp in emps:
        target = draw(st.none() | st.sampled_from(targets))
        if target is None or target in taken:
            continue
        taken.add(target)
        written_email = draw(st.sampled_from((None, *POOL)))
        account.links[emp.id] = LinkRecord(
            target, draw(st.booleans()), draw(field_values(written_email))
        )
    return account


def plan_account(account: Account, scope: Scope, *, full: bool) -> list[tuple[str, Action]]:
    """Mirror the engine's planning of one account: terminations first, correlate the unlinked
    with ``linked_to`` filled from the links and from the LINKs planned so far."""
    claimed = {record.user_id: emp_id for emp_id, record in account.links.items()}
    planned: list[tuple[str, Action]] = []
    for emp in sorted(account.employees, key=lambda e: (e.active, e.id)):
        record = account.links.get(emp.id)
        view: LinkView | None = None
        if record is not None:
            current = account.lms.get(record.user_id)
            view = LinkView(
                record.user_id,
                record.lms_active,
                record.written,
                gone=current is None,
                remote=current if full else None,
            )
        action = decide(emp, view, scope)
        if action.kind == Kind.CORRELATE:
            found = [
                u
                for u in account.lms.values()
                if str(u.fields["email"]).casefold() == emp.email_key
            ]
            matches = tuple(replace(u, linked_to=claimed.get(u.id)) for u in found)
            action = decide(emp, view, scope, matches)
        if action.kind == Kind.LINK:
            assert action.lms_user_id is not None
            claimed.setdefault(action.lms_user_id, emp.id)
        planned.append((emp.id, action))
    return planned


@given(accounts(), scopes, st.booleans())
@settings(max_examples=300)
def test_property_account_plan_one_employee_per_lms_user_and_no_duplicate_create(
    account: Account, scope: Scope, full: bool
) -> None:
    planned = plan_account(account, scope, full=full)
    links = {emp_id: record.user_id for emp_id, record in account.links.items()}
    lms_emails = {str(u.fields["email"]).casefold() for u in account.lms.values()}
    by_id = {emp.id: emp for emp in account.employees}
    created_emails: list[str | None] = []
    for emp_id, action in planned:
        assert action.kind != Kind.CORRELATE
        if action.drop_link:
            links.pop(emp_id)
        if action.kind == Kind.LINK:
            assert emp_id not in links
            assert action.lms_user_id is not None
            links[emp_id] = action.lms_user_id
            user = account.lms[action.lms_user_id]
            assert str(user.fields["email"]).casefold() == by_id[emp_id].email_key
            assert "email" not in action.changes  # same address in another letter case
        elif action.kind == Kind.CREATE:
            assert emp_id not in links
            links[emp_id] = f"new-{emp_id}"
            key = by_id[emp_id].email_key
            assert key is not None
            assert key not in lms_emails, f"created {key} that already exists in the LMS"
            created_emails.append(key)
    assert len(created_emails) == len(set(created_emails)), "the same email created twice"
    targets = list(links.values())
    assert len(targets) == len(set(targets)), f"an LMS user linked twice: {links}"


# -- a full pass keeps the link's record in step with what it read ---------------------------------


@pytest.mark.parametrize(
    ("emp", "view", "refresh"),
    [
        pytest.param(
            employee(),
            link(lms_active=False, remote=remote(active=True)),
            LinkRefresh(True, desired()),
            id="reactivated by hand in the LMS, up to date",
        ),
        pytest.param(
            employee(),
            link(written={}, remote=remote()),
            LinkRefresh(True, desired()),
            id="record lags behind the values the LMS holds",
        ),
        pytest.param(
            employee(active=False),
            link(lms_active=True, remote=remote(active=False)),
            LinkRefresh(False),
            id="terminated, deactivated by hand in the LMS",
        ),
        pytest.param(employee(), link(remote=remote()), None, id="in step: nothing to record"),
    ],
)
def test_full_pass_refreshes_a_stale_link_without_writing(
    emp: EmployeeView, view: LinkView, refresh: LinkRefresh | None
) -> None:
    action = decide(emp, view, IN_SCOPE)
    assert action.kind == Kind.NONE
    assert not action.writes
    assert action.refresh == refresh
