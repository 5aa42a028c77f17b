"""incremental hourly pass: the daily sweep's hour and time, the LMS change watermark

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("lms_interfaces") as batch:
        # The hour (account's time zone) of the daily full sweep that re-reads every LMS user.
        batch.add_column(sa.Column("sweep_hour", sa.Integer(), nullable=False, server_default="3"))
        batch.add_column(sa.Column("last_sweep_at", sa.DateTime(), nullable=True))
        # The next hourly pass reads the LMS users changed after this time (the LMS's clock).
        batch.add_column(sa.Column("lms_changes_since", sa.DateTime(), nullable=True))
        # Whether the LMS filters on meta.lastModified (null: not probed yet).
        batch.add_column(sa.Column("modified_filter", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lms_interfaces") as batch:
        batch.drop_column("modified_filter")
        batch.drop_column("lms_changes_since")
        batch.drop_column("last_sweep_at")
        batch.drop_column("sweep_hour")
