"""Runtime configuration, read once from ``LMSYNC_*`` environment variables."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Literal

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The SQLite file in the data directory used when no LMSYNC_DATABASE_URL is set.
DEFAULT_DATABASE_FILE = "lmsync.sqlite3"


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
    # The account's sync lock is a lease of this many seconds, renewed while a run lives: a
    # server that stops frees the account (and its runs are recovered) within about 1.5 leases.
    sync_lease_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    # Which LMS hosts an interface may reach: comma-separated host names (``*.example.com``)
    # and networks (``10.0.0.0/8``). Empty allow list: any host not denied. The deny list wins;
    # link-local addresses (cloud metadata services) are denied by default.
    lms_allowed_hosts: str = ""
    # What runs the sync work. ``in-process``: one thread in ``lmsync serve`` (SQLite or one
    # machine). ``procrastinate`` (PostgreSQL only): jobs in the database, carried out by any
    # number of ``lmsync worker`` processes and by ``lmsync serve`` unless ``--no-worker``.
    # ``auto``: procrastinate on PostgreSQL, in-process on SQLite.
    job_queue: Literal["auto", "in-process", "procrastinate"] = "auto"
    # Accounts one worker process syncs at once (procrastinate).
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    # A worker silent (no heartbeat) this long is gone: its jobs go back to the queue.
    job_stall_seconds: float = Field(default=60.0, ge=2.0, le=3600.0)
    lms_denied_hosts: str = "169.254.0.0/16,fe80::/10"
    # When set, ``GET /metrics`` (Prometheus) asks for ``Authorization: Bearer <this token>``;
    # unset, it is open (its labels name no account, employee or email).
    metrics_token: str | None = None
    # The LMS failing (failed runs, no success since) this many minutes raises the "LMS down"
    # alert: a banner on every page, and an email when SMTP is configured.
    alert_lms_down_minutes: int = Field(default=15, ge=1, le=10080)
    # Email notifications to each account's HR managers (a held run, the LMS down, a daily
    # digest of new conflicts and errors): off while no SMTP host is set.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "lmsync <lmsync@localhost>"
    notify_poll_seconds: float = Field(default=30.0, ge=0.05, le=3600.0)
    digest_hour_utc: int = Field(default=7, ge=0, le=23)

    def resolved_database_url(self) -> str:
        """The configured URL, else a SQLite file in the data directory.

        The directory is created private (0700): it holds personal data, password hashes and the
        secret key. One that already exists is left as it is (it may be a directory chosen and
        shared on purpose) but a warning is logged when others can enter or read it.
        """
        if self.database_url:
            return self.database_url
        try:
            self.data_dir.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            mode = stat.S_IMODE(self.data_dir.stat().st_mode)
            if mode & 0o077:
                structlog.get_logger("lmsync.settings").warning(
                    "data directory is accessible to other users; chmod 700 it",
                    data_dir=str(self.data_dir),
                    mode=oct(mode),
                )
        return f"sqlite:///{self.data_dir / DEFAULT_DATABASE_FILE}"
