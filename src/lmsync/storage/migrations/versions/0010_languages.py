"""languages: the language a user and an account chose for lmsync's pages and emails

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # "en" | "fr_CA"; null: the account's language, else the browser's (Accept-Language).
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("ui_language", sa.String(16), nullable=True))
    # null: each browser's language (the emails: English).
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("ui_language", sa.String(16), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), not a batch: on SQLite a batch copies the table and
    # drops the old one, and dropping ``accounts`` would cascade to every employee.
    op.drop_column("accounts", "ui_language")
    op.drop_column("users", "ui_language")
