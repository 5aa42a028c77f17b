"""Runtime configuration, read once from ``LMSYNC_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.cwd() / ".lmsync"


class Settings(BaseSettings):
    """lmsync's settings; every one has a default that works on a single machine."""

    model_config = SettingsConfigDict(env_prefix="LMSYNC_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    secret_key: str | None = None
    log_level: str = "INFO"
    log_json: bool = True

    def resolved_database_url(self) -> str:
        """The configured URL, else a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'lmsync.sqlite3'}"
