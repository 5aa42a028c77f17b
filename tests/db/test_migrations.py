"""Migrations build the schema from empty on both databases, match the models, and go back down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from lmsync.storage import migrate
from lmsync.storage.database import make_engine
from lmsync.storage.tables import Base
from tests.conftest import POSTGRES_ADMIN_URL, _unavailable


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    name = "lmsync_migr_" + tmp_path.name[-20:].replace("-", "_").lower()
    try:
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _unavailable(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_from_empty_matches_models_and_downgrades(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert inspect(engine).get_table_names() == []
        migrate.upgrade(engine)
        tables = set(inspect(engine).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        with engine.connect() as conn:
            ours = {  # procrastinate's tables are its own (migration 0006, PostgreSQL only)
                "include_name": lambda name, kind, _p: not str(name).startswith("procrastinate_")
            }
            context = MigrationContext.configure(conn, opts=ours)
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
        migrate.upgrade(engine)  # a second upgrade is a no-op
        migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)
        assert {t.name for t in Base.metadata.sorted_tables} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_terminations_recorded_before_0005_stay_in_effect(empty_url: str) -> None:
    """0005 replaces the stored status by the instant access ends: an employee terminated under
    0004 (deactivated at once then) is terminated after the upgrade, and back after a downgrade."""
    engine = make_engine(empty_url)
    try:
        migrate.upgrade(engine, "0004")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (id, name, company_name, default_language, timezone, "
                    "user_sync_enabled, created_at, updated_at) VALUES ('a', 'A', 'A', 'en', "
                    "'UTC', false, '2026-01-01', '2026-01-01')"
                )
            )
            for number, status in (("1", "active"), ("2", "terminated")):
                conn.execute(
                    text(
                        "INSERT INTO employees (id, account_id, employee_number, first_name, "
                        "last_name, hire_date, status, termination_date, lms_excluded, "
                        "created_at, updated_at) VALUES (:id, 'a', :n, 'F', 'L', '2024-01-01', "
                        ":status, :ended, false, '2026-01-01', '2026-11-20 10:00:00')"
                    ),
                    {
                        "id": f"e{number}",
                        "n": number,
                        "status": status,
                        "ended": "2027-06-30" if status == "terminated" else None,
                    },
                )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, access_ends_at, termination_immediate FROM employees ORDER BY id")
            ).all()
        assert [(r[0], r[1] is not None, bool(r[2])) for r in rows] == [
            ("e1", False, False),
            ("e2", True, True),  # ended when it was recorded, although dated 2027
        ]
        assert str(rows[1][1]).startswith("2026-11-20 10:00:00")
        migrate.downgrade(engine, "0004")
        with engine.connect() as conn:
            statuses = conn.execute(text("SELECT status FROM employees ORDER BY id")).scalars()
            assert list(statuses) == ["active", "terminated"]
    finally:
        engine.dispose()


@pytest.mark.parametrize("empty_url", ["postgresql"], indirect=True)
def test_processes_started_together_upgrade_the_schema_once(empty_url: str) -> None:
    """A fleet starting at once (web tier and workers each upgrade at start) on an empty
    PostgreSQL database: every process succeeds, the schema is built once."""
    env = {**os.environ, "LMSYNC_DATABASE_URL": empty_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lmsync", "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    engine = make_engine(empty_url)
    try:
        assert {t.name for t in Base.metadata.sorted_tables} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()
