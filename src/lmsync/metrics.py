"""Prometheus metrics of an lmsync process, and the small functions the rest of the code records
them with.

What is measured, with its labels (never an account, an employee or an email: labels name the
connector, the trigger, the status, the HTTP method and outcome, or the job's task only):

- ``lmsync_sync_runs_total{connector, trigger, status}`` and
  ``lmsync_sync_run_seconds{connector, trigger}``: runs ended (``run_finished``);
- ``lmsync_lms_requests_total{connector, method, outcome}`` and
  ``lmsync_lms_request_seconds{connector, method}``: every HTTP request a connector sends,
  retries included (``CountingTransport``, installed by ``lms.registry.Connectors``);
- ``lmsync_job_wait_seconds{task}`` and ``lmsync_job_seconds{task, outcome}``: procrastinate
  jobs, from their queueing (or scheduled time) to a worker starting them, and their duration
  (``job_waited``, ``job_finished``; the worker middleware in ``jobs/worker.py`` calls them);
- ``lmsync_queue_jobs{task, status}`` and ``lmsync_queue_oldest_waiting_seconds``: the
  PostgreSQL job queue, read from procrastinate's table at each scrape (``QueueCollector``).

The counters and histograms live in prometheus_client's default registry (one per process, with
its ``process_*`` metrics): the web app's ``/metrics`` shows it together with its queue collector
(``app_registry``, one registry per app, so tests may create many apps), ``lmsync worker
--metrics-port`` serves it as it is.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import httpx
import prometheus_client
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from lmsync.lms.base import LmsError

if TYPE_CHECKING:
    import procrastinate

log = structlog.get_logger("lmsync.metrics")

# The ``*_created`` series (one per label set: when it first appeared) double the output and
# nothing here reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

_RUN_BUCKETS: Final = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
_REQUEST_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_WAIT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

SYNC_RUNS = Counter(
    "lmsync_sync_runs",
    "Sync runs ended, by connector, trigger and final status.",
    ["connector", "trigger", "status"],
)
SYNC_RUN_SECONDS = Histogram(
    "lmsync_sync_run_seconds",
    "Duration of ended sync runs, from start to end.",
    ["connector", "trigger"],
    buckets=_RUN_BUCKETS,
)
LMS_REQUESTS = Counter(
    "lmsync_lms_requests",
    "HTTP requests sent to LMSs (each retry counts), by connector, method and outcome: 2xx, "
    "3xx, 4xx, 429, 5xx, timeout, connect_error, refused (lmsync's host policy), error.",
    ["connector", "method", "outcome"],
)
LMS_REQUEST_SECONDS = Histogram(
    "lmsync_lms_request_seconds",
    "Time from sending an LMS request to its response's headers (or its failure).",
    ["connector", "method"],
    buckets=_REQUEST_BUCKETS,
)
JOB_WAIT_SECONDS = Histogram(
    "lmsync_job_wait_seconds",
    "Time a job waited in the queue: from being queued (or its scheduled time, if later) to a "
    "worker starting it.",
    ["task"],
    buckets=_WAIT_BUCKETS,
)
JOB_SECONDS = Histogram(
    "lmsync_job_seconds",
    "Duration of jobs, by task and outcome (succeeded, failed, aborted).",
    ["task", "outcome"],
    buckets=_RUN_BUCKETS,
)

_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def run_finished(connector: str, trigger: str, status: str, seconds: float | None) -> None:
    """Count a sync run that ended.

    ``connector``: the interface's connector name (``LmsInterface.connector``, e.g. ``scim``);
    ``trigger``: the run's trigger (hourly, manual, change, activation, approval); ``status``:
    its final status (succeeded, partial, failed, held, interrupted); ``seconds``: from its
    start to its end, None when unknown (then only the counter moves).
    """
    SYNC_RUNS.labels(connector, trigger, status).inc()
    if seconds is not None and seconds >= 0:
        SYNC_RUN_SECONDS.labels(connector, trigger).observe(seconds)


def job_waited(task: str, seconds: float) -> None:
    """A worker started a ``task`` job that had waited ``seconds`` in the queue."""
    JOB_WAIT_SECONDS.labels(task).observe(max(seconds, 0.0))


def job_finished(task: str, outcome: str, seconds: float) -> None:
    """A ``task`` job ended (``outcome``: succeeded, failed, aborted) after ``seconds``."""
    JOB_SECONDS.labels(task, outcome).observe(max(seconds, 0.0))


def outcome_of(status_code: int) -> str:
    """The ``outcome`` label of an HTTP answer: ``429`` on its own, else its class (``4xx``)."""
    return "429" if status_code == 429 else f"{status_code // 100}xx"


class CountingTransport(httpx.BaseTransport):
    """Counts and times every request ``inner`` carries, as ``connector``'s.

    The outcome is decided when the response's headers arrive (a failure while its body is read
    afterwards is not seen here): its status class, or what the request raised.
    """

    def __init__(self, inner: httpx.BaseTransport, connector: str) -> None:
        self.inner = inner
        self.connector = connector

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        method = request.method if request.method in _METHODS else "other"
        started = time.perf_counter()
        outcome = "error"
        try:
            response = self.inner.handle_request(request)
            outcome = outcome_of(response.status_code)
            return response
        except httpx.TimeoutException:
            outcome = "timeout"
            raise
        except httpx.ConnectError:
            outcome = "connect_error"
            raise
        except LmsError:  # refused before leaving the process (the operator's host policy)
            outcome = "refused"
            raise
        finally:
            LMS_REQUESTS.labels(self.connector, method, outcome).inc()
            LMS_REQUEST_SECONDS.labels(self.connector, method).observe(
                time.perf_counter() - started
            )

    def close(self) -> None:
        self.inner.close()


# -- the job queue --------------------------------------------------------------------------

QUEUE_STATUSES: Final = ("todo", "doing", "failed")
# One aggregate statement over procrastinate's table (which keeps waiting, running and failed
# jobs only: succeeded ones are deleted): jobs per task and status, and the oldest job that may
# run now, waiting since its queueing (its latest ``deferred``-like event, looked up by the
# events' job id index for the waiting jobs only) or its scheduled time if later.
_QUEUE = text(
    """
    SELECT j.task_name AS task,
           j.status::text AS status,
           count(*) AS jobs,
           EXTRACT(EPOCH FROM now() - min(GREATEST(q.at, j.scheduled_at))
                                       FILTER (WHERE q.at IS NOT NULL)) AS oldest
    FROM procrastinate_jobs j
    LEFT JOIN LATERAL (
        SELECT max(e.at) AS at
        FROM procrastinate_events e
        WHERE e.job_id = j.id
          AND e.type IN ('deferred', 'deferred_for_retry', 'retried')
          AND j.status = 'todo'
          AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
    ) q ON true
    WHERE j.status IN ('todo', 'doing', 'failed')
    GROUP BY 1, 2
    """
)


_TIMEOUT = text("SELECT set_config('statement_timeout', :ms, true)")  # this transaction only


class QueueCollector(Collector):
    """``lmsync_queue_jobs{task, status}`` and ``lmsync_queue_oldest_waiting_seconds``, read
    from the PostgreSQL job queue at each scrape.

    ``tasks``: the task names always reported (0 when none), so that series do not come and go.
    A scrape costs one statement, cut off after ``timeout_ms``; when the database cannot answer
    the queue metrics are left out of that scrape (and a warning logged), the others remain.
    """

    def __init__(
        self, sessions: sessionmaker[Session], tasks: Iterable[str], timeout_ms: int = 5000
    ) -> None:
        self.sessions = sessions
        self.tasks = tuple(tasks)
        self.timeout_ms = int(timeout_ms)

    def collect(self) -> Iterable[prometheus_client.Metric]:
        try:
            with self.sessions() as session, session.begin():
                session.execute(_TIMEOUT, {"ms": str(self.timeout_ms)})
                rows = session.execute(_QUEUE).all()
        except Exception as exc:  # a scrape answers with what it has; it does not raise
            log.warning("queue metrics unavailable", error_type=type(exc).__name__)
            return
        counts = {(task, status): 0 for task in self.tasks for status in QUEUE_STATUSES}
        oldest = 0.0
        for row in rows:
            counts[(str(row.task), str(row.status))] = int(row.jobs)
            if row.oldest is not None:
                oldest = max(oldest, float(row.oldest))
        jobs = GaugeMetricFamily(
            "lmsync_queue_jobs",
            "Jobs in the PostgreSQL queue by task and status (todo: waiting, including "
            "scheduled ones; doing: running; failed: kept for inspection).",
            labels=["task", "status"],
        )
        for (task, status), count in sorted(counts.items()):
            jobs.add_metric([task, status], count)
        yield jobs
        yield GaugeMetricFamily(
            "lmsync_queue_oldest_waiting_seconds",
            "Age of the oldest job that may run now and waits (0: none waits).",
            value=oldest,
        )


class _ProcessMetrics(Collector):
    """The process's default registry, seen from another registry."""

    def collect(self) -> Iterable[prometheus_client.Metric]:
        return REGISTRY.collect()


def app_registry(queue: QueueCollector | None) -> CollectorRegistry:
    """The registry a web app's ``/metrics`` shows: the process's metrics, and its queue's.

    A registry per app (not the default one) so that each app reads its own database and tests
    can create many apps in one process without registering a collector twice.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics())
    if queue is not None:
        registry.register(queue)
    return registry


def lmsync_tasks(app: procrastinate.App) -> list[str]:
    """lmsync's task names registered on ``app`` (procrastinate's built-in ones left out)."""
    return sorted(name for name in app.tasks if name.startswith("lmsync."))


def authorized(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (the token compared in
    constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
