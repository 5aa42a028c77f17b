"""Job latency metrics: a procrastinate worker middleware around every job a worker runs.

- ``lmsync_job_wait_seconds{task}``: from the job's queueing (or its scheduled time, when later)
  to a worker starting it. procrastinate's ``Job`` carries ``scheduled_at`` but not when it was
  queued; its events table does (``deferred`` on insert, ``deferred_for_retry`` and ``retried``
  on a requeue, ``started`` on fetch, all stamped by the database's clock). One statement on the
  events' job id index per job, on the worker's own pool, before the task runs; the two ends
  come from one clock, so workers' clocks do not matter.
- ``lmsync_job_seconds{task, outcome}``: the task's duration in the worker, ``succeeded``,
  ``failed`` or ``aborted`` (cancelled, or a worker shutting down).

Metrics never stop a job: a failed lookup is logged and the job runs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from procrastinate.middleware import AsyncCallNext
from procrastinate.worker import Worker

from lmsync import metrics

log = structlog.get_logger("lmsync.jobs")

_WAITED = """
    SELECT EXTRACT(EPOCH FROM
               max(at) FILTER (WHERE type = 'started')
               - GREATEST(
                   max(at) FILTER (WHERE type IN ('deferred', 'deferred_for_retry', 'retried')),
                   %(scheduled_at)s::timestamptz
               )
           ) AS seconds
    FROM procrastinate_events
    WHERE job_id = %(job_id)s
"""


async def waited(context: JobContext) -> float | None:
    """Seconds the job of ``context`` waited before this start; None when unknown."""
    job = context.job
    row = await context.app.connector.execute_query_one_async(
        _WAITED, job_id=job.id, scheduled_at=job.scheduled_at
    )
    seconds = row["seconds"]
    return None if seconds is None else float(seconds)


async def observe_job(call_next: AsyncCallNext, context: JobContext, worker: Worker) -> Any:
    """A procrastinate worker middleware: the job's wait, then its duration and outcome."""
    task = context.job.task_name
    try:
        seconds = await waited(context)
    except Exception as exc:  # metrics never stop a job
        log.warning("job wait unknown", task=task, error_type=type(exc).__name__)
    else:
        if seconds is not None:
            metrics.job_waited(task, seconds)
    started = time.perf_counter()
    outcome = "failed"
    try:
        result = await call_next()
    except (JobAborted, asyncio.CancelledError):
        outcome = "aborted"
        raise
    else:
        outcome = "succeeded"
        return result
    finally:
        metrics.job_finished(task, outcome, time.perf_counter() - started)
