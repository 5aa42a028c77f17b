"""The procrastinate tasks: one line each around ``JobRunner`` (tests call the runner directly).

``register`` declares them, by explicit name, on an app: both the defer app and the worker app
need them (see ``queue.py``). The runner is the worker process's (``install``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import procrastinate
from procrastinate import JobContext
from procrastinate.exceptions import UniqueViolation
from procrastinate.jobs import Status

from lmsync.jobs.queue import (
    DEACTIVATE_QUEUE,
    DEACTIVATE_TASK,
    DUE_TASK,
    PASS_TASK,
    QUEUE,
    RUN_TASK,
    STALLED_TASK,
    TICK_TASK,
    WAKE_TASK,
)
from lmsync.jobs.runner import JobRunner

_runner: JobRunner | None = None
_stall_seconds = 60.0  # LMSYNC_JOB_STALL_SECONDS


def install(runner: JobRunner, stall_seconds: float = 60.0) -> None:
    """The runner this process's worker carries jobs out with, and how long a silent worker
    has before its jobs are retried elsewhere."""
    global _runner, _stall_seconds
    _runner, _stall_seconds = runner, stall_seconds


def runner() -> JobRunner:
    if _runner is None:
        raise RuntimeError("no job runner installed in this process (lmsync worker installs one)")
    return _runner


def stalled_check_seconds(stall_seconds: float) -> int:
    """How often workers look for stalled jobs: a quarter of the stall timeout, 5 to 30 s (a
    dead worker's job is retried within about 1.25 stall timeouts, at little idle cost)."""
    return int(min(30.0, max(5.0, stall_seconds / 4)))


def register(app: procrastinate.App, *, periodic_stall_seconds: float | None = None) -> None:
    """The tasks; with ``periodic_stall_seconds``, the periodic ones too (the minute's hourly
    tick, and the stalled-jobs check at ``stalled_check_seconds`` of it): only an app that runs
    a worker needs them, and one app per process is enough."""

    @app.task(name=DEACTIVATE_TASK, queue=DEACTIVATE_QUEUE)
    def sync_deactivate(account_id: str) -> None:
        runner().deactivate(account_id)

    @app.task(name=DUE_TASK, queue=QUEUE)
    def sync_due(account_id: str) -> None:
        runner().due(account_id)

    @app.task(name=PASS_TASK, queue=QUEUE)
    def sync_pass(account_id: str) -> None:
        runner().full_pass(account_id)

    @app.task(name=RUN_TASK, queue=QUEUE)
    def run_queued(account_id: str, run_id: str) -> None:
        runner().run_queued(account_id, run_id)

    @app.task(name=WAKE_TASK, queue=QUEUE)
    def wake_at(account_id: str, termination: bool = False) -> None:
        runner().wake(account_id, termination=termination)

    if periodic_stall_seconds is None:
        return
    every = stalled_check_seconds(periodic_stall_seconds)

    @app.periodic(cron="* * * * *")
    @app.task(name=TICK_TASK, queue=QUEUE, queueing_lock=TICK_TASK)
    def hourly_tick(timestamp: int) -> None:
        runner().tick(datetime.fromtimestamp(timestamp, UTC))

    @app.periodic(cron=f"* * * * * */{every}")
    @app.task(name=STALLED_TASK, queue=QUEUE, queueing_lock=STALLED_TASK, pass_context=True)
    async def retry_stalled_jobs(context: JobContext, timestamp: int) -> None:
        """Jobs of a worker that died (no heartbeat) go back to the queue; the rules make a
        second attempt harmless, and the run the dead worker left is ended by recovery."""
        manager = context.app.job_manager
        for job in await manager.get_stalled_jobs(seconds_since_heartbeat=_stall_seconds):
            try:
                await manager.retry_job(job)
            except UniqueViolation:  # its queueing lock has a waiting job: that one does it
                await manager.finish_job(job, status=Status.FAILED, delete_job=False)
