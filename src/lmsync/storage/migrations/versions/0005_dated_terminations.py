"""dated terminations: the instant access ends replaces the stored status

An employee's status is now decided as of now from ``access_ends_at`` (NULL: no termination;
later than now: leaving; earlier: terminated). Terminations recorded before this revision were
carried out at once, so their access ended when they were recorded (``updated_at``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_ends_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "termination_immediate", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    employees = sa.table(
        "employees",
        sa.column("status", sa.String()),
        sa.column("updated_at", sa.DateTime()),
        sa.column("access_ends_at", sa.DateTime()),
        sa.column("termination_immediate", sa.Boolean()),
    )
    op.execute(
        employees.update()
        .where(employees.c.status == "terminated")
        .values(access_ends_at=employees.c.updated_at, termination_immediate=True)
    )
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.drop_column("status")


def downgrade() -> None:
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="active")
        )
    # A scheduled termination becomes an effective one: the old schema knew no other kind.
    op.execute("UPDATE employees SET status = 'terminated' WHERE access_ends_at IS NOT NULL")
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.drop_column("termination_immediate")
        batch_op.drop_column("access_ends_at")
