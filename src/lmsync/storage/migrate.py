"""Running the Alembic migrations programmatically (``lmsync db upgrade`` and server start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock that serializes upgrades: a fleet of web and worker processes
# starting at once upgrades the schema once, the others wait and find it done.
UPGRADE_LOCK = 0x6C6D73796E63  # "lmsync"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is already there. On PostgreSQL, one
    process at a time (processes started together would otherwise race to create the tables)."""
    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine), revision)
        return
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": UPGRADE_LOCK})
        lock.commit()  # the lock is the session's: it outlives this transaction
        try:
            command.upgrade(alembic_config(engine), revision)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": UPGRADE_LOCK})
            lock.commit()


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)
