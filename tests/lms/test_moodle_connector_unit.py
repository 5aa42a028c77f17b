"""Unit tests of lmsync.lms.moodle.MoodleConnector against ``httpx.MockTransport`` standing in
for Moodle's REST web services (the real Moodle runs in the integration tests). The fake answers
as Moodle does: HTTP 200 with ``exception``/``errorcode``/``message`` for errors."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from lmsync.lms.base import (
    AlreadyExistsError,
    ConflictError,
    DryRunWriteError,
    LmsError,
    MisconfiguredError,
    NotFoundError,
    RejectedError,
    RemoteUser,
    TransientError,
    UpdateRequest,
)
from lmsync.lms.moodle import NEEDED_FUNCTIONS, SERVER_PATH, MoodleConnector, MoodleSettings
from lmsync.lms.moodle_fields import MoodleMapping

SITE = "https://moodle.example.test"
TOKEN = "tok3n0123456789abcdef"
SELF_ID = 2  # the web-service user
MARKER = "MOODLE-SAID-SECRET-ROW"
CREATE = "core_user_create_users"
UPDATE = "core_user_update_users"

Handler = Callable[[httpx.Request], httpx.Response]


def fields(email: str, **overrides: Any) -> dict[str, Any]:
    """Every maintained field, filled (``overrides`` may replace the email too)."""
    filled = {
        "external_id": "x-" + email,
        "employee_number": "E-" + email.split("@", 1)[0],
        "first_name": "Ann",
        "last_name": "Lee",
        "language": "fr-CA",
        "email": email,
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
    return {**filled, **overrides}


CREATE_ONLY: dict[str, Any] = {
    "registration_date": "1700000000",
    "expiration_date": "4800000000",
    "access_mode": "Request",
}


def moodle_error(code: str, message: str = MARKER, debuginfo: str = MARKER) -> dict[str, Any]:
    return {
        "exception": "moodle_exception",
        "errorcode": code,
        "message": message,
        "debuginfo": debuginfo,
    }


def decode_users(form: dict[str, str]) -> list[dict[str, Any]]:
    """``users[0][firstname]=...&users[0][customfields][1][type]=...`` back into dicts."""
    users: dict[int, dict[str, Any]] = {}
    for key, value in form.items():
        match = re.fullmatch(r"users\[(\d+)\]\[(\w+)\](?:\[(\d+)\]\[(\w+)\])?", key)
        if not match:
            continue
        user = users.setdefault(int(match[1]), {})
        if match[3] is None:
            user[match[2]] = value
        else:
            user.setdefault(match[2], {}).setdefault(int(match[3]), {})[match[4]] = value
    out = []
    for index in sorted(users):
        user = users[index]
        if "customfields" in user:
            user["customfields"] = [user["customfields"][i] for i in sorted(user["customfields"])]
        out.append(user)
    return out


def _like(pattern: str, text: str) -> bool:
    regex = "".join(
        ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern.casefold()
    )
    return re.fullmatch(regex, text.casefold(), re.DOTALL) is not None


@dataclass
class Call:
    function: str
    form: dict[str, str]
    url: str
    fields: int  # form fields in the body


@dataclass
class FakeMoodle:
    """Moodle's REST server, as far as the connector uses it."""

    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    functions: set[str] = field(default_factory=lambda: set(NEEDED_FUNCTIONS))
    calls: list[Call] = field(default_factory=list)
    refuse_create: Callable[[list[dict[str, Any]]], dict[str, Any] | None] = lambda _users: None
    create_answer: Callable[[list[dict[str, Any]]], Any] | None = None
    update_warnings: dict[int, str] = field(default_factory=dict)
    next_id: int = 100

    def __post_init__(self) -> None:
        self.users.setdefault(1, {"id": 1, "username": "guest", "email": "root@localhost"})
        self.users.setdefault(
            SELF_ID, {"id": SELF_ID, "username": "lmsync", "email": "lmsync@example.test"}
        )

    def add(self, user_id: int, email: str, username: str | None = None) -> None:
        self.users[user_id] = {
            "id": user_id,
            "username": username or email.lower(),
            "email": email,
            "firstname": "F",
            "lastname": "L",
        }

    def of(self, function: str) -> list[Call]:
        return [c for c in self.calls if c.function == function]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.url.path == SERVER_PATH
        pairs = parse_qsl(request.content.decode(), keep_blank_values=True)
        form = dict(pairs)
        function = request.url.params.get("wsfunction", "")
        self.calls.append(Call(function, form, str(request.url), len(pairs)))
        if form.get("wstoken") != TOKEN:
            return httpx.Response(200, json=moodle_error("invalidtoken"))
        body = json.dumps(self.answer(function, form)).encode()  # null too
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    def answer(self, function: str, form: dict[str, str]) -> Any:
        if function == "core_webservice_get_site_info":
            return {
                "sitename": "Acme Learning",
                "release": "5.0.1+ (Build: 20250530)",
                "version": "2025041401.01",
                "userid": SELF_ID,
                "functions": [{"name": f, "version": "1"} for f in sorted(self.functions)],
            }
        if function == "core_user_get_users":
            key, value = form["criteria[0][key]"], form["criteria[0][value]"]
            if key == "id":
                found = [u for u in self.users.values() if str(u["id"]) == value]
            else:
                found = [u for u in self.users.values() if _like(value, str(u.get(key, "")))]
            return {"users": found, "warnings": []}
        if function == "core_user_get_users_by_field":
            name = form["field"]
            values = [v for k, v in form.items() if k.startswith("values[")]
            return [u for u in self.users.values() if str(u.get(name)) in values]
        if function == CREATE:
            sent = decode_users(form)
            if (error := self.refuse_create(sent)) is not None:
                return error
            if self.create_answer is not None:
                return self.create_answer(sent)
            made = []
            for user in sent:
                self.next_id += 1
                stored = {k: v for k, v in user.items() if k != "customfields"}
                stored["id"] = self.next_id
                stored["customfields"] = [
                    {"shortname": c["type"], "value": c["value"]}
                    for c in user.get("customfields", [])
                ]
                self.users[self.next_id] = stored
                made.append({"id": self.next_id, "username": user["username"]})
            return made
        if function == UPDATE:
            warnings = []
            for user in decode_users(form):
                code = self.update_warnings.get(int(user["id"]))
                if code:
                    warnings.append(
                        {"item": "user", "itemid": int(user["id"]), "warningcode": code}
                    )
            return {"warnings": warnings}
        return moodle_error("invalidrecord")


@pytest.fixture
def connect() -> Iterator[Callable[..., MoodleConnector]]:
    """Connectors on a MockTransport; all closed after the test."""
    made: list[MoodleConnector] = []

    def factory(handler: Handler, *, dry_run: bool = False, **settings: Any) -> MoodleConnector:
        options = {"base_url": SITE, "token": TOKEN, **settings}
        connector = MoodleConnector(
            MoodleSettings(**options), dry_run=dry_run, transport=httpx.MockTransport(handler)
        )
        made.append(connector)
        return connector

    yield factory
    for connector in made:
        connector.close()


def _fixed(status: int, content: bytes = b"", **kwargs: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, **kwargs)

    return handler


def _answer(body: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    return handler


# -- the HTTP edge ----------------------------------------------------------------------------


def test_token_travels_in_the_body_never_in_the_url(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle()
    connector = connect(moodle)
    connector.find_by_email("ann@x.com")
    connector.create(fields("new@x.com"), CREATE_ONLY)
    assert moodle.calls
    for call in moodle.calls:
        assert TOKEN not in call.url
        assert call.form["wstoken"] == TOKEN
        assert "wsfunction=" in call.url
        assert "wsfunction" not in call.form


def test_invalid_token_is_misconfigured_and_never_quoted(
    connect: Callable[..., MoodleConnector],
) -> None:
    echo = moodle_error("invalidtoken", message=f"bad {TOKEN}", debuginfo=f"token={TOKEN}")
    connector = connect(_answer(echo))
    with pytest.raises(MisconfiguredError) as exc:
        connector.get("5")
    assert TOKEN not in exc.value.message
    assert TOKEN not in str(exc.value)
    assert "invalidtoken" in exc.value.message


def test_wrong_token_against_the_fake(connect: Callable[..., MoodleConnector]) -> None:
    connector = connect(FakeMoodle(), token="not-the-token")
    with pytest.raises(MisconfiguredError):
        connector.find_by_email("ann@x.com")


def test_an_error_code_holding_the_token_is_redacted(
    connect: Callable[..., MoodleConnector],
) -> None:
    connector = connect(_answer(moodle_error(TOKEN)))
    with pytest.raises(RejectedError) as exc:
        connector.get("5")
    assert TOKEN not in exc.value.message


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("invalidparameter", RejectedError),
        ("dmlwriteexception", RejectedError),
        ("accessexception", MisconfiguredError),
        ("invalidtoken", MisconfiguredError),
        ("servicenotavailable", MisconfiguredError),
    ],
)
def test_moodle_messages_are_never_quoted(
    connect: Callable[..., MoodleConnector], code: str, kind: type[LmsError]
) -> None:
    connector = connect(_answer(moodle_error(code)))
    with pytest.raises(LmsError) as exc:
        connector.get("5")
    assert type(exc.value) is kind
    assert MARKER not in exc.value.message
    assert MARKER not in str(exc.value)
    assert code in exc.value.message


@pytest.mark.parametrize("status", [503, 500, 502, 429])
def test_server_errors_are_transient(connect: Callable[..., MoodleConnector], status: int) -> None:
    connector = connect(_fixed(status, MARKER.encode()))
    with pytest.raises(TransientError) as exc:
        connector.get("5")
    assert str(status) in exc.value.message
    assert MARKER not in exc.value.message


def test_connection_failure_is_transient(connect: Callable[..., MoodleConnector]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {TOKEN}", request=request)

    connector = connect(handler)
    with pytest.raises(TransientError) as exc:
        connector.get("5")
    assert TOKEN not in exc.value.message


@pytest.mark.parametrize(
    "body", [b"<html>" + MARKER.encode() + b"</html>", b"", b"{not json " + MARKER.encode()]
)
def test_non_json_answer_is_misconfigured(
    connect: Callable[..., MoodleConnector], body: bytes
) -> None:
    connector = connect(_fixed(200, body, headers={"Content-Type": "text/html"}))
    with pytest.raises(MisconfiguredError) as exc:
        connector.get("5")
    assert MARKER not in exc.value.message


@pytest.mark.parametrize("status", [404, 403, 401, 301, 302])
def test_other_statuses_are_misconfigured(
    connect: Callable[..., MoodleConnector], status: int
) -> None:
    handler = _fixed(status, MARKER.encode(), headers={"Location": SITE + "/login"})
    with pytest.raises(MisconfiguredError) as exc:
        connect(handler).get("5")
    assert MARKER not in exc.value.message


# -- creating ---------------------------------------------------------------------------------


def test_create_sends_the_user_and_returns_its_id(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle()
    connector = connect(moodle, mapping=MoodleMapping(languages=("en", "fr_ca")))
    user = connector.create(fields("Ann.Lee@X.com"), CREATE_ONLY)
    assert isinstance(user, RemoteUser)
    stored = moodle.users[int(user.id)]
    assert stored["username"] == "ann.lee@x.com"
    assert stored["email"] == "Ann.Lee@X.com"
    assert stored["lang"] == "fr_ca"
    assert stored["auth"] == "manual"
    assert stored["createpassword"] == "1"
    assert "password" not in stored
    custom = {c["shortname"]: c["value"] for c in stored["customfields"]}
    assert custom["registrationdate"] == "1700000000"
    assert custom["accessmode"] == "Request"
    assert user.email_key == "ann.lee@x.com"
    assert user.fields["language"] == "fr-CA"


def test_create_many_isolates_the_refused_user(connect: Callable[..., MoodleConnector]) -> None:
    emails = ["a@x.com", "b@x.com", "bad@x.com", "c@x.com", "d@x.com"]
    for bad_position in range(len(emails)):
        order = [e for e in emails if e != "bad@x.com"]
        order.insert(bad_position, "bad@x.com")
        moodle = FakeMoodle(
            refuse_create=lambda sent: (
                moodle_error("invalidparameter")
                if any(u["email"] == "bad@x.com" for u in sent)
                else None
            )
        )
        connector = connect(moodle)
        results = connector.create_many([(fields(e), CREATE_ONLY) for e in order])
        assert len(results) == 5
        for email, result in zip(order, results, strict=True):
            if email == "bad@x.com":
                assert isinstance(result, RejectedError)
                assert not isinstance(result, ConflictError)
                assert MARKER not in result.message
            else:
                assert isinstance(result, RemoteUser), (bad_position, email, result)
                assert result.email_key == email
                assert moodle.users[int(result.id)]["email"] == email
        created = {u["email"] for u in moodle.users.values()}
        assert created >= set(emails) - {"bad@x.com"}
        assert "bad@x.com" not in created
        assert len(moodle.of(CREATE)) <= 2 * math.ceil(math.log2(5)) + 3


def test_create_refused_because_the_username_is_taken(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle(refuse_create=lambda _sent: moodle_error("invalidparameter"))
    moodle.add(40, "someone.else@x.com", username="ann@x.com")
    results = connect(moodle).create_many([(fields("ann@x.com"), CREATE_ONLY)])
    assert isinstance(results[0], ConflictError)
    assert "40" in results[0].message


def test_create_refused_because_the_email_is_taken(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle(refuse_create=lambda _sent: moodle_error("invalidparameter"))
    moodle.add(41, "ANN@x.com", username="legacy-ann")
    results = connect(moodle).create_many([(fields("ann@x.com"), CREATE_ONLY)])
    assert isinstance(results[0], AlreadyExistsError)


def test_create_refused_because_the_same_user_exists(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle(refuse_create=lambda _sent: moodle_error("invalidparameter"))
    moodle.add(42, "Ann@x.com", username="ann@x.com")
    with pytest.raises(AlreadyExistsError):
        connect(moodle).create(fields("ann@x.com"), CREATE_ONLY)


def test_create_refused_for_an_unknown_reason(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle(refuse_create=lambda _sent: moodle_error("invalidparameter"))
    with pytest.raises(RejectedError) as exc:
        connect(moodle).create(fields("ann@x.com"), CREATE_ONLY)
    assert type(exc.value) is RejectedError
    assert MARKER not in exc.value.message


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"email": " "}, "email"),
        ({"first_name": ""}, "first name"),
        ({"last_name": None}, "last name"),
        ({"home_phone": "1" * 21}, "home phone"),
    ],
)
def test_create_refuses_what_moodle_would_before_sending(
    connect: Callable[..., MoodleConnector], overrides: dict[str, Any], words: str
) -> None:
    moodle = FakeMoodle()
    connector = connect(moodle)
    results = connector.create_many(
        [(fields("ok@x.com"), CREATE_ONLY), ({**fields("ann@x.com"), **overrides}, CREATE_ONLY)]
    )
    assert isinstance(results[0], RemoteUser)
    assert isinstance(results[1], RejectedError)
    assert words in results[1].message
    assert len(moodle.of(CREATE)) == 1
    assert len(decode_users(moodle.of(CREATE)[0].form)) == 1


def test_batches_stay_under_max_input_vars(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    mapping = MoodleMapping(languages=("en", "fr_ca"), job_title_field="jobtitle")
    connector = connect(moodle, mapping=mapping, max_input_vars=1000, batch_size=1000)
    emails = [f"user{i}@x.com" for i in range(300)]
    results = connector.create_many([(fields(e), CREATE_ONLY) for e in emails])
    assert all(isinstance(r, RemoteUser) for r in results)
    assert [r.email_key for r in results if isinstance(r, RemoteUser)] == emails
    calls = moodle.of(CREATE)
    per_user = max(
        len([k for k in call.form if k.startswith(f"users[{i}]")])
        for call in calls
        for i in range(len(decode_users(call.form)))
    )
    assert per_user >= 25  # every field was sent: the bound below is not trivial
    assert 1 <= connector.batch_size <= (1000 - 20) // per_user
    assert len(calls) >= 300 // connector.batch_size
    for call in calls:
        assert call.fields <= 1000
        assert len(decode_users(call.form)) <= connector.batch_size


def test_batch_size_setting_is_kept_when_smaller(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    connector = connect(moodle, batch_size=7)
    assert connector.batch_size == 7
    connector.create_many([(fields(f"u{i}@x.com"), CREATE_ONLY) for i in range(20)])
    assert [len(decode_users(c.form)) for c in moodle.of(CREATE)] == [7, 7, 6]


def test_create_answer_missing_users_is_misconfigured(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle(
        create_answer=lambda sent: [{"id": 500, "username": sent[0]["username"]}],
    )
    with pytest.raises(MisconfiguredError) as exc:
        connect(moodle).create_many([(fields(f"u{i}@x.com"), CREATE_ONLY) for i in range(3)])
    assert "1 users of the 3" in exc.value.message


def test_create_answer_not_a_list_is_misconfigured(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle(create_answer=lambda _sent: None)
    with pytest.raises(MisconfiguredError):
        connect(moodle).create_many([(fields("u@x.com"), CREATE_ONLY)])


def test_create_answer_a_dict_is_misconfigured(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle(create_answer=lambda _sent: {"users": []})
    with pytest.raises(MisconfiguredError):
        connect(moodle).create_many([(fields("u@x.com"), CREATE_ONLY)])


def test_manual_without_password_is_misconfigured(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle()
    with pytest.raises(MisconfiguredError):
        connect(moodle, create_password=False).create_many([(fields("u@x.com"), CREATE_ONLY)])
    assert moodle.of(CREATE) == []


# -- updating ---------------------------------------------------------------------------------


def _request(user_id: str, **changes: Any) -> UpdateRequest:
    return UpdateRequest(user_id, fields("u@x.com", **changes), list(changes))


def test_update_many_maps_the_warnings(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle(
        update_warnings={
            10: "invaliduserid",
            11: "usernotupdateddeleted",
            12: "usernotupdatedadmin",
            13: "somethingunexpected",
        }
    )
    results = connect(moodle).update_many(
        [_request(str(i), city=f"City {i}") for i in (10, 11, 12, 13, 14)]
    )
    assert isinstance(results[0], NotFoundError)
    assert isinstance(results[1], NotFoundError)
    assert isinstance(results[2], ConflictError)
    assert type(results[3]) is RejectedError
    assert "somethingunexpected" in results[3].message
    assert results[4] is None
    [call] = moodle.of(UPDATE)
    sent = decode_users(call.form)
    assert [u["id"] for u in sent] == ["10", "11", "12", "13", "14"]
    assert all(set(u) == {"id", "city"} for u in sent)


def test_update_sends_only_the_changed_fields(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    connector = connect(moodle, mapping=MoodleMapping(job_title_field="jobtitle"))
    connector.update("10", fields("u@x.com", job_title=None, city="Laval"), ["job_title", "city"])
    [user] = decode_users(moodle.of(UPDATE)[0].form)
    assert user == {
        "id": "10",
        "city": "Laval",
        "customfields": [{"type": "jobtitle", "value": ""}],
    }


@pytest.mark.parametrize(("active", "suspended"), [(True, "0"), (False, "1")])
def test_update_active_flag(
    connect: Callable[..., MoodleConnector], active: bool, suspended: str
) -> None:
    moodle = FakeMoodle()
    connect(moodle).update("10", fields("u@x.com"), [], active=active)
    [user] = decode_users(moodle.of(UPDATE)[0].form)
    assert user == {"id": "10", "suspended": suspended}


def test_update_of_the_web_service_user_is_refused(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle()
    results = connect(moodle).update_many(
        [UpdateRequest(str(SELF_ID), fields("u@x.com"), [], active=False)]
    )
    assert isinstance(results[0], ConflictError)
    assert moodle.of(UPDATE) == []


def test_update_of_the_web_service_user_spares_the_others(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle()
    results = connect(moodle).update_many(
        [_request(str(SELF_ID), city="X"), _request("10", city="Y")]
    )
    assert isinstance(results[0], ConflictError)
    assert results[1] is None
    [call] = moodle.of(UPDATE)
    assert [u["id"] for u in decode_users(call.form)] == ["10"]


def test_update_with_a_too_long_phone_is_not_sent(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    results = connect(moodle).update_many(
        [_request("10", cell_phone="1" * 21), _request("11", city="Y")]
    )
    assert isinstance(results[0], RejectedError)
    assert results[1] is None
    [call] = moodle.of(UPDATE)
    assert [u["id"] for u in decode_users(call.form)] == ["11"]


# -- reading ----------------------------------------------------------------------------------


def test_find_by_email_filters_the_like_wildcards(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    moodle.add(20, "ann_lee@x.com")
    moodle.add(21, "annXlee@x.com")
    found = connect(moodle).find_by_email("ann_lee@x.com")
    assert [u.id for u in found] == ["20"]
    [search] = moodle.of("core_user_get_users")
    assert search.form["criteria[0][key]"] == "email"
    assert search.form["criteria[0][value]"] == "ann_lee@x.com"


def test_find_by_email_fake_returns_both(connect: Callable[..., MoodleConnector]) -> None:
    """The fake's LIKE matches both users: the filtering above is the connector's."""
    moodle = FakeMoodle()
    moodle.add(20, "ann_lee@x.com")
    moodle.add(21, "annXlee@x.com")
    answer = moodle.answer(
        "core_user_get_users", {"criteria[0][key]": "email", "criteria[0][value]": "ann_lee@x.com"}
    )
    assert {u["id"] for u in answer["users"]} == {20, 21}


@pytest.mark.parametrize("search", ["Ann_Lee@X.com", "ann_lee@x.com", " ANN_LEE@X.COM "])
def test_find_by_email_is_case_insensitive(
    connect: Callable[..., MoodleConnector], search: str
) -> None:
    moodle = FakeMoodle()
    moodle.add(20, "Ann_Lee@x.com")
    moodle.add(21, "annXlee@x.com")
    found = connect(moodle).find_by_email(search)
    assert [(u.id, u.email_key) for u in found] == [("20", "ann_lee@x.com")]


def test_find_by_email_never_returns_the_web_service_user(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle()
    assert connect(moodle).find_by_email("lmsync@example.test") == []


def test_find_by_blank_email_asks_nothing(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    assert connect(moodle).find_by_email("  ") == []
    assert moodle.calls == []


def test_list_page_excludes_guest_and_the_web_service_user(
    connect: Callable[..., MoodleConnector],
) -> None:
    moodle = FakeMoodle()
    for i in range(5):
        moodle.add(30 + i, f"user{i}@x.com")
    connector = connect(moodle)
    first = connector.list_page(1, 3)
    second = connector.list_page(4, 3)
    assert first.total == 5
    assert second.total == 5
    ids = [u.id for u in first.users + second.users]
    assert sorted(ids) == [str(30 + i) for i in range(5)]
    assert len(first.users) == 3


def test_get_missing_user_is_not_found(connect: Callable[..., MoodleConnector]) -> None:
    connector = connect(_answer({"users": [], "warnings": []}))
    with pytest.raises(NotFoundError):
        connector.get("77")


def test_get_reads_the_user(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    moodle.add(20, "Ann@x.com")
    moodle.users[20].update(suspended=True, city="Laval", lang="fr")
    user = connect(moodle).get("20")
    assert user.id == "20"
    assert user.active is False
    assert user.email_key == "ann@x.com"
    assert user.fields["city"] == "Laval"
    assert user.fields["language"] == "fr"


# -- dry run ----------------------------------------------------------------------------------


def test_dry_run_refuses_creates_before_sending(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    connector = connect(moodle, dry_run=True)
    with pytest.raises(DryRunWriteError):
        connector.create_many([(fields("ann@x.com"), CREATE_ONLY)])
    assert moodle.of(CREATE) == []
    assert len(moodle.users) == 2


def test_dry_run_refuses_updates_before_sending(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    connector = connect(moodle, dry_run=True)
    with pytest.raises(DryRunWriteError):
        connector.update("10", fields("u@x.com"), ["city"])
    assert moodle.of(UPDATE) == []


def test_dry_run_allows_reads(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    moodle.add(20, "ann@x.com")
    connector = connect(moodle, dry_run=True)
    assert [u.id for u in connector.find_by_email("ann@x.com")] == ["20"]
    assert connector.get("20").id == "20"
    assert connector.list_page(1, 10).total == 1
    assert connector.test().ok
    assert {c.function for c in moodle.calls} <= {
        "core_webservice_get_site_info",
        "core_user_get_users",
        "core_user_get_users_by_field",
    }


# -- test connection --------------------------------------------------------------------------


def test_test_reports_the_site(connect: Callable[..., MoodleConnector]) -> None:
    report = connect(FakeMoodle()).test()
    assert report.ok
    messages = " ".join(f.message for f in report.findings)
    assert "Acme Learning" in messages
    assert "5.0.1+ (Build: 20250530)" in messages


@pytest.mark.parametrize("missing", [{UPDATE}, {CREATE, "core_user_get_users_by_field"}])
def test_test_reports_missing_functions(
    connect: Callable[..., MoodleConnector], missing: set[str]
) -> None:
    moodle = FakeMoodle(functions=set(NEEDED_FUNCTIONS) - missing)
    report = connect(moodle).test()
    assert not report.ok
    errors = [f.message for f in report.findings if f.level == "error"]
    assert len(errors) == 1
    assert errors[0].startswith("the token's service lacks: ")
    assert errors[0].split(": ", 1)[1].split(", ") == sorted(missing)


def test_test_reports_a_refused_token(connect: Callable[..., MoodleConnector]) -> None:
    report = connect(FakeMoodle(), token="wrong-token").test()
    assert not report.ok
    assert [f.level for f in report.findings] == ["error"]
    assert "token" in report.findings[0].message
    assert "wrong-token" not in report.findings[0].message


def test_test_redacts_the_token_in_the_site_name(
    connect: Callable[..., MoodleConnector],
) -> None:
    info = {"sitename": f"Site {TOKEN}", "release": "5.0", "userid": 2, "functions": []}
    report = connect(_answer(info)).test()
    assert all(TOKEN not in f.message for f in report.findings)
    assert any("Site [redacted]" in f.message for f in report.findings)
    assert not report.ok


def test_update_call_refused_isolates_the_user(connect: Callable[..., MoodleConnector]) -> None:
    moodle = FakeMoodle()
    original = moodle.answer

    def answer(function: str, form: dict[str, str]) -> Any:
        if function == UPDATE and any(u["id"] == "13" for u in decode_users(form)):
            return moodle_error("invalidparameter")
        return original(function, form)

    moodle.answer = answer  # type: ignore[method-assign]
    results = connect(moodle).update_many([_request(str(i), city="Z") for i in range(10, 15)])
    assert [type(r) for r in results] == [type(None)] * 3 + [RejectedError, type(None)]
    assert MARKER not in str(results[3])
    assert len(moodle.of(UPDATE)) <= 2 * math.ceil(math.log2(5)) + 3
