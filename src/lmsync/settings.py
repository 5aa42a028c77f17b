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
    # The address users reach lmsync at (e.g. https://lms-sync.example.com); the API's `next`
    # links are built from it. Unset: links are relative (the request's Host is never copied).
    public_url: str | None = None
    # Largest request body accepted, in bytes (a CSV import is the largest legitimate one).
    max_body_bytes: int = 25 * 1024 * 1024
    # API tokens: lifetime when none is asked for, and the longest that may be asked for.
    token_default_days: int = Field(default=90, ge=1)
    token_max_days: int = Field(default=365, ge=1)
    # Which LMS hosts an interface may reach: comma-separated host names (``*.example.com``)
    # and networks (``10.0.0.0/8``). Empty allow list: any host not denied. The deny list wins;
    # link-local addresses (cloud metadata services) are denied by default.
    lms_allowed_hosts: str = ""
    lms_denied_hosts: str = "169.254.0.0/16,fe80::/10"

    def resolved_database_url(self) -> str:
        """The configured URL, else a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'lmsync.sqlite3'}"
