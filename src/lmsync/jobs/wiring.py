"""The one place that picks the job queue from the settings (``LMSYNC_JOB_QUEUE``)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from lmsync.jobs import due_hook
from lmsync.jobs.queue import Deferrer, defer_app, is_postgres
from lmsync.settings import Settings

NEEDS_POSTGRES = "LMSYNC_JOB_QUEUE=procrastinate needs a PostgreSQL database (LMSYNC_DATABASE_URL)"


def deferrer_for(settings: Settings) -> Deferrer | None:
    """The procrastinate deferrer when the settings ask for it (``auto``: on PostgreSQL); None
    for the in-process queue."""
    url = settings.resolved_database_url()
    if settings.job_queue == "in-process" or (
        settings.job_queue == "auto" and not is_postgres(url)
    ):
        return None
    if not is_postgres(url):
        raise ValueError(NEEDS_POSTGRES)
    return Deferrer(defer_app(url))


def install(sessions: sessionmaker[Session], deferrer: Deferrer | None) -> None:
    """Every transaction of ``sessions`` that makes employees due defers their accounts' job
    before it commits (procrastinate); the in-process queue needs nothing here."""
    if deferrer is not None:
        due_hook.install(sessions, deferrer.changed)
