"""Shared fixtures: a migrated database on each backend (SQLite and PostgreSQL) and an API client.

Every test that asks for ``database_url`` runs twice, once per backend. PostgreSQL comes from
``LMSYNC_TEST_POSTGRES_URL`` (default: the local server at 127.0.0.1:5432). When it cannot be
reached the PostgreSQL half fails under CI (``CI`` set) and is skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from lmsync.domain.accounts import AccountCreateIn
from lmsync.hr import accounts
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Base
from lmsync.web.app import create_app
from tests.lms_peer import lms  # noqa: F401 - the LMS process fixture, for every test folder

POSTGRES_ADMIN_URL = os.environ.get(
    "LMSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(autouse=True)
def _english_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts in the POSIX "C" locale, whatever the developer's shell says: the CLI
    speaks the locale's language, and most tests read its English. A test that wants French
    sets LANG itself."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not reachable ({reason}); set LMSYNC_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database for this test session, migrated once, dropped at the end."""
    name = f"lmsync_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _unavailable(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# The job queue's tables (migration 0006): a test's jobs must not reach the next test.
JOB_TABLES = (
    "procrastinate_jobs",
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_workers",
)


def _truncate_all(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join([*(f'"{t.name}"' for t in Base.metadata.sorted_tables), *JOB_TABLES])
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """The URL of an empty, migrated database on the parametrized backend."""
    if request.param == "sqlite":
        path = tmp_path / "lmsync.sqlite3"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    _truncate_all(url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session in a transaction that the test may commit (the database is emptied per test)."""
    with transaction(make_session_factory(engine)) as s:
        yield s


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data", log_json=True)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner for ``lmsync`` commands on the test's database (run them with ``run`` from
    ``tests.db.test_cli``)."""
    monkeypatch.setenv("LMSYNC_DATABASE_URL", database_url)
    monkeypatch.setenv("LMSYNC_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


@dataclass
class World:
    """Two accounts (A, B), each with an MHR; A also has a viewer; plus a platform operator."""

    account_a: str
    account_b: str
    mhr_a: str
    viewer_a: str
    mhr_b: str
    operator: str

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(engine: Engine) -> World:
    return make_world(engine)


def make_world(engine: Engine) -> World:
    with transaction(make_session_factory(engine)) as s:
        a = accounts.create_account(s, AccountCreateIn(name="A", company_name="Alpha inc."))
        b = accounts.create_account(s, AccountCreateIn(name="B", company_name="Beta ltée"))
        tokens = {}
        for label, account, role in [
            ("mhr_a", a, "MHR"),
            ("viewer_a", a, "viewer"),
            ("mhr_b", b, "MHR"),
        ]:
            user = accounts.create_user(s, email=f"{label}@example.com", password="correct horse")
            accounts.set_membership(s, user, account, role)  # type: ignore[arg-type]
            tokens[label] = accounts.create_token(s, user).token
        op = accounts.create_user(s, email="ops@example.com", password=None, is_operator=True)
        tokens["operator"] = accounts.create_token(s, op).token
        return World(account_a=a.id, account_b=b.id, **tokens)
