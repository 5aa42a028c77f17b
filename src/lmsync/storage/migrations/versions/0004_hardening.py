"""hardening: token expiry, idempotency per account, guard window, run fencing and heartbeats,
background imports

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:30:00
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Tokens made before expiries existed get the default lifetime from the upgrade.
_EXISTING_TOKEN_LIFETIME = timedelta(days=90)


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
    expiry = (datetime.now(UTC) + _EXISTING_TOKEN_LIFETIME).replace(tzinfo=None)
    op.execute(
        sa.text("UPDATE api_tokens SET expires_at = :at WHERE expires_at IS NULL").bindparams(
            at=expiry
        )
    )

    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("account_id", sa.String(length=36), nullable=False, server_default="")
        )
        batch_op.drop_constraint("uq_idempotency_user_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_idempotency_user_account_key", ["user_id", "account_id", "key"]
        )

    with op.batch_alter_table("lms_interfaces", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("guard_window_minutes", sa.Integer(), nullable=False, server_default="60")
        )
        batch_op.add_column(
            sa.Column("lock_fence", sa.Integer(), nullable=False, server_default="0")
        )

    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("fence", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("options", sa.JSON(), nullable=True))

    with op.batch_alter_table("sync_outcomes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_outcomes_account_action", ["account_id", "action", "at"], unique=False
        )

    op.create_table(
        "employee_imports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("actor_user_id", sa.String(length=36), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("done_rows", sa.Integer(), nullable=False),
        sa.Column("imported_count", sa.Integer(), nullable=False),
        sa.Column("rejected_count", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_employee_imports_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_employee_imports")),
    )
    with op.batch_alter_table("employee_imports", schema=None) as batch_op:
        batch_op.create_index(
            "ix_employee_imports_account", ["account_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("employee_imports", schema=None) as batch_op:
        batch_op.drop_index("ix_employee_imports_account")
    op.drop_table("employee_imports")
    with op.batch_alter_table("sync_outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_outcomes_account_action")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        for name in ("options", "fence", "heartbeat_at", "owner"):
            batch_op.drop_column(name)
    with op.batch_alter_table("lms_interfaces", schema=None) as batch_op:
        batch_op.drop_column("lock_fence")
        batch_op.drop_column("guard_window_minutes")
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_constraint("uq_idempotency_user_account_key", type_="unique")
        batch_op.create_unique_constraint("uq_idempotency_user_key", ["user_id", "key"])
        batch_op.drop_column("account_id")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
