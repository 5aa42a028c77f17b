"""job queue: procrastinate's schema, on PostgreSQL only

The schema procrastinate 3.10 ships (``procrastinate/sql/schema.sql``, its newest migration is
03.04.00); a later procrastinate that changes it gets a revision applying its migration files.
SQLite keeps the in-process queue and gets nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:40:00
"""

from __future__ import annotations

from alembic import op
from procrastinate.schema import SchemaManager

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

TABLES = (
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_jobs",
    "procrastinate_workers",
)
TYPES = (
    "procrastinate_job_to_defer_v1",
    "procrastinate_job_event_type",
    "procrastinate_job_status",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # The schema's RAISE messages hold '%': no parameter substitution.
    bind.execution_options(no_parameters=True).exec_driver_sql(SchemaManager.get_schema())


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TABLES:
        bind.exec_driver_sql(f"DROP TABLE IF EXISTS {table} CASCADE")
    functions = bind.exec_driver_sql(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = "
        "p.pronamespace WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%%'"
    ).scalars()
    for function in list(functions):
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function} CASCADE")
    for type_ in TYPES:
        bind.exec_driver_sql(f"DROP TYPE IF EXISTS {type_} CASCADE")
