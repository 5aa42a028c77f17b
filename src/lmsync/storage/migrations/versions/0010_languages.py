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
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("ui_language")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("ui_language")
