"""Property-based fuzzing of every operation of the OpenAPI document (schemathesis), per backend.

One test per operation and backend. The real app (``create_app``, its sync worker included) serves
on a loopback port under uvicorn; schemathesis sends the operation's schema examples, its coverage
cases (boundaries; missing, extra or wrongly typed values; no token) and ``MAX_EXAMPLES`` generated
requests, valid and invalid. Every answer must be: not a 5xx, a status the operation documents,
of the documented content type, and valid against the documented schema.

Calls carry a real Bearer token: the platform operator's on the ``/accounts`` operations, an HR
manager's (MHR) of account A everywhere else. Each operation starts from a freshly seeded database
so that the deeper paths are reachable: user synchronization on, an LMS interface (an in-memory LMS
stands in for the network, so no fuzzed URL is ever contacted), employees in each state, a run
held by the deactivation guard; half of the generated path parameters are the ids of those objects
(or of account B's, which must answer 404).

Random generation seldom reaches the values that break databases (NUL, 2**63...): two
deterministic tests send them on purpose, under the same checks: each hostile value through every
path and query parameter and JSON body field, and a body over the size limit to every operation
that takes a body.

Runs are reproducible (a fixed seed, derandomized, no example database). ``LMSYNC_FUZZ_EXAMPLES``
and ``LMSYNC_FUZZ_SEED`` widen or vary a local run.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import structlog
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from lmsync import log_config
from lmsync.domain.accounts import AccountCreateIn, Role
from lmsync.hr import accounts
from lmsync.lms.base import Connector
from lmsync.lms.fake import FakeLms
from lmsync.settings import Settings
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import EmployeeImport, LmsInterface, SyncRun, utcnow
from lmsync.web.app import create_app
from tests.conftest import World

MAX_EXAMPLES = int(os.environ.get("LMSYNC_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("LMSYNC_FUZZ_SEED", "20260601"))
REQUEST_TIMEOUT = 30  # seconds: a request that hangs fails the test instead of stalling CI
# The app's request body limit here: far above any generated body, and cheap to pass on purpose.
BODY_LIMIT = 256 * 1024

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Values that random generation seldom reaches but that break databases and parsers, mixed into
# every string and integer (schemathesis sends those that fit the schema as valid input, the
# others as invalid input): NUL, which PostgreSQL text refuses; LIKE wildcards and escapes; SQL
# quoting; text that changes under normalization; integers past 32 and 64 bits.
DICTIONARIES: dict[str, list[str | int]] = {
    "hostile-strings": [
        "\x00",
        "a\x00b",
        "%",
        "_",
        "\\",
        "%_\\%",
        "' OR '1'='1",
        '"; DROP TABLE employees; --',
        "\u202eevil",
        "ﬁ\u0301",
        "  ",
        "\n",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    ],
    "extreme-integers": [-1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30],
}

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "dictionaries": {name: {"values": values} for name, values in DICTIONARIES.items()},
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "dictionaries": {
                "string": {"dictionary": "hostile-strings", "probability": 0.15},
                "integer": {"dictionary": "extreme-integers", "probability": 0.15},
            },
        },
        "request-timeout": REQUEST_TIMEOUT,
    }
)


def _openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, built without a database (this app never connects)."""
    with tempfile.TemporaryDirectory() as data_dir:
        app_settings = Settings(
            database_url="sqlite://",
            data_dir=Path(data_dir),
            secret_key=Fernet.generate_key().decode(),
        )
        return create_app(app_settings, run_worker=False).openapi()


# Pytest needs the operations when it collects the tests, before any database exists;
# ``test_the_fuzzed_document_is_the_served_one`` checks that the running app serves this one.
OPENAPI = _openapi_document()
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)

# The seeded objects' ids by path parameter name, for the operation under test (set by the
# ``fuzz_target`` fixture: the hook below runs inside Hypothesis, where fixtures do not reach).
KNOWN_IDS: dict[str, list[str]] = {}


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Half of the time, the ids of seeded objects instead of generated strings."""
    names = [name for name in path_parameters or {} if KNOWN_IDS.get(name)]
    if not names:
        return st.just(path_parameters)
    return st.one_of(
        st.just(path_parameters),
        st.fixed_dictionaries({n: st.sampled_from(KNOWN_IDS[n]) for n in names}).map(
            lambda ids: {**path_parameters, **ids}
        ),
    )


# -- the app under uvicorn, with an in-memory LMS -----------------------------------------------
class LmsDouble:
    """One in-memory LMS behind every connector the app builds (dry runs see the same users)."""

    def __init__(self) -> None:
        self.lms = FakeLms()
        self.dry = FakeLms(dry_run=True)
        self.dry.users = self.lms.users

    def connector(self, interface: LmsInterface, secret: str | None, dry_run: bool) -> Connector:
        return self.dry if dry_run else self.lms


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` (lifespan included) under uvicorn on a free loopback port; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn leaves the test process's logging configuration alone.
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@contextmanager
def json_logs() -> Iterator[None]:
    """Logs as in production (``lmsync serve``): one JSON line each, a plain traceback for an
    error. (structlog's default console renderer prints every local variable of every frame,
    which takes seconds per 500 and would let a run with findings time out.)"""
    saved = structlog.get_config()
    log_config.configure(json=True)
    try:
        yield
    finally:
        structlog.configure(**saved)


# -- the seeded accounts -----------------------------------------------------------------------
@pytest.fixture
def fuzz_world(engine: Engine) -> World:
    """The ``world`` of tests/conftest.py, minus login passwords (hashing them would cost seconds
    per operation; the API only takes tokens)."""
    with transaction(make_session_factory(engine)) as s:
        a = accounts.create_account(s, AccountCreateIn(name="A", company_name="Alpha inc."))
        b = accounts.create_account(s, AccountCreateIn(name="B", company_name="Beta ltée"))
        tokens: dict[str, str] = {}
        members: list[tuple[str, Any, Role]] = [
            ("mhr_a", a, "MHR"),
            ("viewer_a", a, "viewer"),
            ("mhr_b", b, "MHR"),
        ]
        for label, account, role in members:
            user = accounts.create_user(s, email=f"{label}@example.com", password=None)
            accounts.set_membership(s, user, account, role)
            tokens[label] = accounts.create_token(s, user).token
        op = accounts.create_user(s, email="ops@example.com", password=None, is_operator=True)
        tokens["operator"] = accounts.create_token(s, op).token
        return World(account_a=a.id, account_b=b.id, **tokens)


def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, f"seeding: {response.status_code} {response.text}"
    body: dict[str, Any] = response.json()
    return body


def _seed(http: httpx.Client, engine: Engine, world: World) -> dict[str, list[str]]:
    """Account A: sync enabled, an interface, employees active, excluded and terminated, a held
    run, a finished background import, a spare token; account B: an employee, a run, an import
    and a token (all of them 404s for A). Returns their ids by path parameter name, A's first."""
    mhr_a, mhr_b, op = (World.auth(t) for t in (world.mhr_a, world.mhr_b, world.operator))
    _ok(
        http.patch(
            f"/api/v1/accounts/{world.account_a}", json={"user_sync_enabled": True}, headers=op
        )
    )
    _ok(http.put("/api/v1/lms/interface", json={"base_url": "https://lms.test"}, headers=mhr_a))

    def hire(number: str, headers: dict[str, str], **fields: Any) -> str:
        body = {"employee_number": number, "first_name": "Zoë", "last_name": "Ngô", **fields}
        return str(_ok(http.post("/api/v1/employees", json=body, headers=headers), 201)["id"])

    active = hire("A-1", mhr_a, work_email="zoe@example.com", country="CA", province="QC")
    excluded = hire("A-2", mhr_a, lms_excluded=True, hire_date="2024-01-02")
    terminated = hire("A-3", mhr_a, work_email="ex@example.com", hire_date="2024-01-02")
    termination = {"termination_date": "2025-06-30", "reason": "Resignation"}
    url = f"/api/v1/employees/{terminated}/terminate"
    _ok(http.post(url, json=termination, headers=mhr_a))
    other = hire("B-1", mhr_b)
    with transaction(make_session_factory(engine)) as s:
        held = SyncRun(account_id=world.account_a, trigger="hourly", status="held", full=True)
        foreign = SyncRun(account_id=world.account_b, trigger="manual", status="succeeded")
        rejected = {"line": 2, "employee_number": "A-9", "errors": [{"field": "x", "message": "y"}]}
        imports = [
            EmployeeImport(
                account_id=account_id,
                status="succeeded",
                total_rows=1001,
                done_rows=1001,
                imported_count=1000,
                rejected_count=1,
                report={"rejected": [rejected]},
                started_at=utcnow(),
                finished_at=utcnow(),
            )
            for account_id in (world.account_a, world.account_b)
        ]
        s.add_all([held, foreign, *imports])
        # Tokens that may be revoked: a spare one of A's MHR (never the one the test uses), B's.
        spare = accounts.create_token(s, accounts.find_user(s, "mhr_a@example.com")).record
        b_token = accounts.create_token(s, accounts.find_user(s, "mhr_b@example.com")).record
        s.flush()
        return {
            "employee_id": [active, excluded, terminated, other],
            "account_id": [world.account_a, world.account_b],
            "run_id": [held.id, foreign.id],
            "token_id": [spare.id, b_token.id],
            "import_id": [row.id for row in imports],
        }


@dataclass
class Target:
    """The running app and its tokens."""

    base_url: str
    world: World

    def token_for(self, path: str) -> str:
        """The operator on the platform's account operations, account A's MHR elsewhere."""
        if path.startswith("/api/v1/accounts"):
            return self.world.operator
        return self.world.mhr_a


@pytest.fixture
def fuzz_target(settings: Settings, engine: Engine, fuzz_world: World) -> Iterator[Target]:
    """The app under uvicorn on the backend of ``database_url`` (via ``settings``), seeded."""
    small_limit = settings.model_copy(update={"max_body_bytes": BODY_LIMIT})
    app = create_app(small_limit, connector_factory=LmsDouble().connector)
    with json_logs(), serve(app) as base_url:
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
            known_ids = _seed(http, engine, fuzz_world)
        KNOWN_IDS.update(known_ids)
        try:
            yield Target(base_url=base_url, world=fuzz_world)
        finally:
            KNOWN_IDS.clear()


@schema.parametrize()
# The seeded app is shared by all the examples of one operation on purpose: requests pile up
# employees, runs and idempotency records as real traffic would (each operation starts afresh).
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_answers_as_documented(
    case: schemathesis.Case[Any], fuzz_target: Target
) -> None:
    token = fuzz_target.token_for(case.operation.path)
    case.call_and_validate(
        base_url=fuzz_target.base_url,
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
        timeout=REQUEST_TIMEOUT,
    )


# -- deterministic sweeps: hostile values through every parameter and field; oversized bodies --
HOSTILE = {"string": DICTIONARIES["hostile-strings"], "integer": DICTIONARIES["extreme-integers"]}


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = OPENAPI["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _json_type(value_schema: dict[str, Any]) -> str | None:
    """A parameter's or field's JSON type, ``null`` aside (``str | None`` is an ``anyOf``)."""
    options = value_schema.get("anyOf", [value_schema])
    types = [o.get("type") for o in options if o.get("type") not in (None, "null")]
    return types[0] if len(types) == 1 else None


def _json_body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of the operation's JSON body; None if it takes none."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    body_schema: dict[str, Any] = _resolve(content["application/json"]["schema"])
    return body_schema


def _example_body(operation: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON body of every field's documented example (so that a request gets past body
    validation to where its other values are used); None for an operation without one."""
    body_schema = _json_body_schema(operation)
    if body_schema is None:
        return None
    examples = {
        name: _resolve(field).get("examples", [])
        for name, field in body_schema.get("properties", {}).items()
    }
    return {name: values[0] for name, values in examples.items() if values}


def _sweep_cases() -> Iterator[tuple[str, str, str, str, Any]]:
    """(method, path, location, name, value): every hostile value of every path or query
    parameter and top-level JSON body field of a string or integer type."""
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            named = [
                (parameter["in"], parameter["name"], parameter["schema"])
                for parameter in operation.get("parameters", [])
                if parameter["in"] in ("path", "query")
            ]
            body_schema = _json_body_schema(operation) or {}
            for name, field in body_schema.get("properties", {}).items():
                named.append(("body", name, _resolve(field)))
            for location, name, value_schema in named:
                for value in HOSTILE.get(_json_type(value_schema) or "", []):
                    yield method.upper(), path, location, name, value


def _path_parameters(raw: dict[str, Any]) -> dict[str, Any]:
    """Account A's seeded objects for the operation's path parameters."""
    return {
        p["name"]: KNOWN_IDS[p["name"]][0] for p in raw.get("parameters", []) if p["in"] == "path"
    }


def _validate(
    target: Target, case: schemathesis.Case[Any], failures: list[str], label: str
) -> None:
    """Send ``case`` with the operation's token; a failed check is added to ``failures``."""
    try:
        case.call_and_validate(
            base_url=target.base_url,
            headers={"Authorization": f"Bearer {target.token_for(case.operation.path)}"},
            checks=CHECKS,
            timeout=REQUEST_TIMEOUT,
        )
    except (AssertionError, BaseExceptionGroup) as exc:
        failures.append(f"{case.operation.label} with {label}:\n{exc}")


def test_hostile_values_answer_as_documented(fuzz_target: Target) -> None:
    """Every path and query parameter and JSON body field, in turn, gets each hostile value (the
    other path parameters are account A's seeded objects, the other fields their documented
    examples); all answers pass the same checks."""
    failures: list[str] = []
    for number, (method, path, location, name, value) in enumerate(_sweep_cases()):
        raw = OPENAPI["paths"][path][method.lower()]
        path_parameters = _path_parameters(raw)
        query: dict[str, Any] = {}
        body = _example_body(raw)
        if body is not None and "employee_number" in body:
            body["employee_number"] = f"SWEEP-{number}"  # a new employee each time, not a 409
        target = {"path": path_parameters, "query": query, "body": body}[location]
        assert target is not None
        target[name] = value
        operation = schema[path][method]
        if body is None:
            case = operation.Case(path_parameters=path_parameters, query=query)
        else:
            case = operation.Case(
                path_parameters=path_parameters,
                query=query,
                body=body,
                media_type="application/json",
            )
        _validate(fuzz_target, case, failures, f"{location} {name}={value!r}")
    assert not failures, f"{len(failures)} failing requests:\n\n" + "\n\n".join(failures)


def test_oversized_bodies_answer_as_documented(fuzz_target: Target) -> None:
    """A body just over the limit, to every operation that takes one: a documented 413."""
    failures: list[str] = []
    too_big = "x" * BODY_LIMIT
    for path, item in OPENAPI["paths"].items():
        for method, raw in item.items():
            content = raw.get("requestBody", {}).get("content", {})
            if not content:
                continue
            media_type = next(iter(content))
            body: Any = {"file": too_big} if media_type == "multipart/form-data" else too_big
            case = schema[path][method.upper()].Case(
                path_parameters=_path_parameters(raw), body=body, media_type=media_type
            )
            _validate(fuzz_target, case, failures, "a body over the limit")
    assert not failures, f"{len(failures)} failing requests:\n\n" + "\n\n".join(failures)


def test_the_fuzzed_document_is_the_served_one(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == OPENAPI
