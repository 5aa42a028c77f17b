"""Alembic environment: migrations run on the engine handed over by ``lmsync.storage.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from lmsync.storage.tables import Base

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):  # pragma: no cover - only reached through the alembic CLI
    raise RuntimeError("run migrations with `lmsync db upgrade`")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # procrastinate's tables (0006) are its own, not lmsync's models.
        include_name=lambda name, kind, _parent: (
            not (kind == "table" and str(name).startswith("procrastinate_"))
        ),
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
