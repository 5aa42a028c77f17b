"""``GET /metrics`` after a real activation against the real SCIM server: the LMS requests and
the run are counted, on PostgreSQL the job's wait and duration and the queue's depth too (read
from procrastinate's table), and no label names an account or an email."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lmsync.settings import Settings
from lmsync.storage.database import make_engine
from lmsync.web.app import create_app
from tests.conftest import _truncate_all, make_world
from tests.integration.conftest import Harness, configure, wait_for
from tests.lms_peer import LmsProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> tuple[str, Samples]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Samples, name: str) -> set[frozenset[tuple[str, str]]]:
    return {labels for (n, labels) in samples if n == name}


def test_an_activation_is_counted(harness: Harness, database_url: str) -> None:
    postgres = database_url.startswith("postgresql")
    employee = harness.hire("E-1", "zoe.metrics@example.com")
    _, before = scrape(harness.client)

    run = harness.activate()
    assert run["status"] == "succeeded", run
    assert len(harness.lms.by_email("zoe.metrics@example.com")) == 1

    runs = {"connector": "scim", "trigger": "activation", "status": "succeeded"}
    job = {"task": "lmsync.run_queued", "outcome": "succeeded"}

    def settled() -> tuple[str, Samples] | None:
        """The scrape once the run (and, on PostgreSQL, its job) is counted: both are recorded
        just after the run's row says it ended."""
        body, after = scrape(harness.client)
        run_counted = get(after, "lmsync_sync_runs_total", **runs) > get(
            before, "lmsync_sync_runs_total", **runs
        )
        job_counted = get(after, "lmsync_job_seconds_count", **job) > get(
            before, "lmsync_job_seconds_count", **job
        )
        return (body, after) if run_counted and (job_counted or not postgres) else None

    try:
        body, after = wait_for(settled)
    except AssertionError:  # the assertions below say what is missing
        body, after = scrape(harness.client)

    def grew(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert grew("lmsync_sync_runs_total", **runs) == 1, (
        "the activation run was not counted: SyncEngine._finish calls metrics.run_finished"
    )
    assert grew("lmsync_sync_run_seconds_count", connector="scim", trigger="activation") == 1
    # The SCIM requests of the activation: look-ups (GET) and the user's creation (POST).
    assert grew("lmsync_lms_requests_total", connector="scim", method="GET", outcome="2xx") >= 1
    assert grew("lmsync_lms_requests_total", connector="scim", method="POST", outcome="2xx") == 1
    assert grew("lmsync_lms_request_seconds_count", connector="scim", method="POST") == 1

    if postgres:  # the activation was a procrastinate job; the queue is read at each scrape
        assert grew("lmsync_job_seconds_count", **job) >= 1
        assert grew("lmsync_job_wait_seconds_count", task="lmsync.run_queued") >= 1
        queue = labelled(after, "lmsync_queue_jobs")
        for status in ("todo", "doing", "failed"):
            assert frozenset({("task", "lmsync.sync_due"), ("status", status)}) in queue
            assert frozenset({("task", "lmsync.run_queued"), ("status", status)}) in queue
        assert ("lmsync_queue_oldest_waiting_seconds", frozenset()) in after
    else:  # the in-process queue: no queue metrics
        assert "lmsync_queue_jobs" not in body
        assert grew("lmsync_job_seconds_count", **job) == 0

    # Labels name connectors, triggers, statuses and tasks: never a tenant's data.
    for secret in (harness.world.account_a, employee["id"], "zoe.metrics", "example.com"):
        assert secret not in body


# -- the queue's depth, with jobs nobody carries out ------------------------------------------


@pytest.fixture
def web_only(postgres_database: str, tmp_path: Path, lms: LmsProcess) -> Iterator[Harness]:
    """``serve --no-worker`` on PostgreSQL: jobs are deferred, nobody carries them out."""
    _truncate_all(postgres_database)
    engine = make_engine(postgres_database)
    world = make_world(engine)
    engine.dispose()
    settings = Settings(
        database_url=postgres_database, data_dir=tmp_path / "data", job_queue="procrastinate"
    )
    with TestClient(create_app(settings, run_worker=False)) as client:
        configure(client, world, lms)
        yield Harness(client, world, lms)


def test_the_queue_gauges_show_the_waiting_jobs(web_only: Harness) -> None:
    due = {"task": "lmsync.sync_due", "status": "todo"}
    queued = {"task": "lmsync.run_queued", "status": "todo"}
    _, before = scrape(web_only.client)
    assert get(before, "lmsync_queue_jobs", **due) == 1  # enabling the account's sync made work due
    assert get(before, "lmsync_queue_jobs", **queued) == 0
    first = get(before, "lmsync_queue_oldest_waiting_seconds")
    assert 0 < first < 30

    response = web_only.client.post(
        "/api/v1/lms/interface/activate", json={"dry_run": False}, headers=web_only.mhr
    )
    assert response.status_code == 202, response.text
    time.sleep(1.1)
    _, after = scrape(web_only.client)
    assert get(after, "lmsync_queue_jobs", **queued) == 1
    assert get(after, "lmsync_queue_jobs", **due) == 1
    for task in ("lmsync.sync_due", "lmsync.run_queued"):
        assert get(after, "lmsync_queue_jobs", task=task, status="doing") == 0
        assert get(after, "lmsync_queue_jobs", task=task, status="failed") == 0
    # still the first job, waiting since before the sleep
    assert first + 1.0 <= get(after, "lmsync_queue_oldest_waiting_seconds") < first + 30
