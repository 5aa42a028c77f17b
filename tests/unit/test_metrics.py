"""The Prometheus metrics: LMS requests counted by outcome at the transport, runs counted, job
latency recorded by the worker middleware, the queue collector surviving a database that cannot
answer, and ``/metrics`` behind ``LMSYNC_METRICS_TOKEN``."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient
from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from procrastinate.worker import Worker
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from lmsync import metrics
from lmsync.jobs.observe import observe_job
from lmsync.lms.host_policy import HostNotAllowed
from lmsync.settings import Settings
from lmsync.web.app import create_app


def value(name: str, **labels: str) -> float:
    """A sample's value in the process's registry; 0 when it does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests(connector: str, method: str, outcome: str) -> float:
    return value("lmsync_lms_requests_total", connector=connector, method=method, outcome=outcome)


# -- LMS requests ---------------------------------------------------------------------------


def answering(status: int) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, json={})


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("handler", "outcome"),
    [
        (answering(200), "2xx"),
        (answering(201), "2xx"),
        (answering(304), "3xx"),
        (answering(404), "4xx"),
        (answering(429), "429"),
        (answering(503), "5xx"),
        (raising(httpx.ReadTimeout("slow")), "timeout"),
        (raising(httpx.ConnectTimeout("slow")), "timeout"),
        (raising(httpx.ConnectError("refused")), "connect_error"),
        (raising(HostNotAllowed()), "refused"),
        (raising(httpx.RemoteProtocolError("garbled")), "error"),
    ],
)
def test_counting_transport_counts_each_request_by_outcome(
    handler: Callable[[httpx.Request], httpx.Response], outcome: str
) -> None:
    connector = f"test-{uuid.uuid4().hex[:8]}"  # its own series: other tests count too
    transport = metrics.CountingTransport(httpx.MockTransport(handler), connector)
    with httpx.Client(transport=transport, base_url="https://lms.example") as http:
        for method, path in [("GET", "/Users"), ("GET", "/Users?count=1"), ("PATCH", "/Users/1")]:
            with contextlib.suppress(httpx.HTTPError, HostNotAllowed):
                http.request(method, path)
    assert requests(connector, "GET", outcome) == 2
    assert requests(connector, "PATCH", outcome) == 1
    others = {"2xx", "3xx", "4xx", "429", "5xx", "timeout", "connect_error", "refused", "error"}
    assert all(requests(connector, "GET", o) == 0 for o in others - {outcome})
    seconds = value("lmsync_lms_request_seconds_count", connector=connector, method="GET")
    assert seconds == 2


def test_counting_transport_passes_answers_and_errors_through() -> None:
    transport = metrics.CountingTransport(
        httpx.MockTransport(lambda r: httpx.Response(418, text=r.url.path)), "test-passes"
    )
    with httpx.Client(transport=transport) as http:
        response = http.get("https://lms.example/Users/7")
    assert (response.status_code, response.text) == (418, "/Users/7")
    failing = metrics.CountingTransport(
        httpx.MockTransport(raising(httpx.ConnectError("nope"))), "test-passes"
    )
    with httpx.Client(transport=failing) as http, pytest.raises(httpx.ConnectError):
        http.get("https://lms.example/Users")


def test_an_unusual_method_is_labelled_other() -> None:
    transport = metrics.CountingTransport(httpx.MockTransport(answering(200)), "test-method")
    with httpx.Client(transport=transport) as http:
        http.request("PROPFIND", "https://lms.example/")
    assert requests("test-method", "other", "2xx") == 1
    assert requests("test-method", "PROPFIND", "2xx") == 0


# -- runs -----------------------------------------------------------------------------------


def test_run_finished_counts_the_run_and_its_duration() -> None:
    connector = f"test-{uuid.uuid4().hex[:8]}"
    metrics.run_finished(connector, "manual", "succeeded", 2.0)
    metrics.run_finished(connector, "manual", "succeeded", 4.0)
    metrics.run_finished(connector, "manual", "failed", None)  # duration unknown
    metrics.run_finished(connector, "hourly", "partial", 1.0)
    runs = "lmsync_sync_runs_total"
    assert value(runs, connector=connector, trigger="manual", status="succeeded") == 2
    assert value(runs, connector=connector, trigger="manual", status="failed") == 1
    assert value(runs, connector=connector, trigger="hourly", status="partial") == 1
    assert value(runs, connector=connector, trigger="hourly", status="succeeded") == 0
    timed = {"connector": connector, "trigger": "manual"}
    assert value("lmsync_sync_run_seconds_count", **timed) == 2  # not the unknown one
    assert value("lmsync_sync_run_seconds_sum", **timed) == 6.0


# -- jobs -----------------------------------------------------------------------------------


class FakeConnector:
    def __init__(self, seconds: float | Exception | None) -> None:
        self.seconds = seconds
        self.asked: list[dict[str, Any]] = []

    async def execute_query_one_async(self, query: str, **arguments: Any) -> dict[str, Any]:
        self.asked.append(arguments)
        if isinstance(self.seconds, Exception):
            raise self.seconds
        return {"seconds": self.seconds}


def context_of(task: str, connector: FakeConnector) -> JobContext:
    job = SimpleNamespace(id=42, task_name=task, scheduled_at=None)
    return cast(JobContext, SimpleNamespace(job=job, app=SimpleNamespace(connector=connector)))


def observe(context: JobContext, call_next: Callable[[], Any]) -> Any:
    async def next_() -> Any:
        return call_next()

    # A thread and a loop of its own: the browser tests' Playwright keeps an event loop running
    # in the main thread for the rest of the session, and asyncio.run refuses to nest.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, observe_job(next_, context, cast(Worker, None))).result()


def test_a_job_records_its_wait_then_its_duration_and_outcome() -> None:
    task = f"test.{uuid.uuid4().hex[:8]}"
    connector = FakeConnector(2.5)
    assert observe(context_of(task, connector), lambda: "done") == "done"
    assert connector.asked == [{"job_id": 42, "scheduled_at": None}]
    assert value("lmsync_job_wait_seconds_count", task=task) == 1
    assert value("lmsync_job_wait_seconds_sum", task=task) == 2.5
    assert value("lmsync_job_seconds_count", task=task, outcome="succeeded") == 1

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        observe(context_of(task, FakeConnector(0.1)), fail)
    assert value("lmsync_job_seconds_count", task=task, outcome="failed") == 1

    def abort() -> None:
        raise JobAborted()

    with pytest.raises(JobAborted):
        observe(context_of(task, FakeConnector(0.1)), abort)
    assert value("lmsync_job_seconds_count", task=task, outcome="aborted") == 1
    assert value("lmsync_job_wait_seconds_count", task=task) == 3


def test_a_failed_wait_lookup_does_not_stop_the_job() -> None:
    task = f"test.{uuid.uuid4().hex[:8]}"
    ran: list[bool] = []
    observe(context_of(task, FakeConnector(OSError("database gone"))), lambda: ran.append(True))
    assert ran == [True]
    assert value("lmsync_job_wait_seconds_count", task=task) == 0
    assert value("lmsync_job_seconds_count", task=task, outcome="succeeded") == 1


# -- the queue collector --------------------------------------------------------------------


def test_a_scrape_leaves_the_queue_out_when_the_database_cannot_answer() -> None:
    # SQLite has no procrastinate table: the statement fails, as it would on a database down.
    sessions = sessionmaker(create_engine("sqlite://"))
    collector = metrics.QueueCollector(sessions, ["lmsync.sync_due"])
    assert list(collector.collect()) == []
    registry = metrics.app_registry(collector)
    assert registry.get_sample_value("lmsync_queue_oldest_waiting_seconds") is None
    # the process's metrics are still there
    metrics.run_finished("test-down", "manual", "succeeded", 1.0)
    labels = {"connector": "test-down", "trigger": "manual", "status": "succeeded"}
    assert registry.get_sample_value("lmsync_sync_runs_total", labels) == 1


def test_app_registries_may_be_made_many_times() -> None:
    sessions = sessionmaker(create_engine("sqlite://"))
    for _ in range(3):
        registry = metrics.app_registry(metrics.QueueCollector(sessions, []))
        assert isinstance(registry, CollectorRegistry)


# -- /metrics and its token -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer s3cret-token", True),
        ("bearer s3cret-token", True),
        ("Bearer s3cret-token2", False),
        ("Bearer s3cret", False),
        ("Basic s3cret-token", False),
        ("s3cret-token", False),
        ("", False),
        (None, False),
    ],
)
def test_authorized(header: str | None, expected: bool) -> None:
    assert metrics.authorized(header, "s3cret-token") is expected


def scrape(tmp_path: Path, token: str | None, headers: dict[str, str]) -> httpx.Response:
    settings = Settings(data_dir=tmp_path / "data", metrics_token=token)
    # No lifespan (no ``with``): /metrics needs no schema, and this database has none.
    client = TestClient(create_app(settings, run_worker=False))
    response: httpx.Response = client.get("/metrics", headers=headers)
    return response


def test_metrics_open_without_a_token(tmp_path: Path) -> None:
    metrics.run_finished("test-open", "manual", "succeeded", 1.0)
    response = scrape(tmp_path, None, {})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    line = 'lmsync_sync_runs_total{connector="test-open",status="succeeded",trigger="manual"}'
    assert line in response.text
    assert "# TYPE lmsync_lms_requests_total counter" in response.text
    assert "lmsync_queue_jobs" not in response.text  # SQLite: the in-process queue
    openmetrics = scrape(tmp_path, None, {"Accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


def test_metrics_token_is_required_when_set(tmp_path: Path) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        refused = scrape(tmp_path, "s3cret-token", headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "lmsync_" not in refused.text
    allowed = scrape(tmp_path, "s3cret-token", {"Authorization": "Bearer s3cret-token"})
    assert allowed.status_code == 200
    assert "lmsync_sync_runs_total" in allowed.text


def test_metrics_is_not_in_the_openapi_document(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    spec = TestClient(create_app(settings, run_worker=False)).get("/openapi.json").json()
    assert "/metrics" not in spec["paths"]
    assert "/healthz" in spec["paths"]
