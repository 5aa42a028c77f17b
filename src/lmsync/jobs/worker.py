"""Running procrastinate workers: in a thread of ``lmsync serve``, or as ``lmsync worker``.

A worker fetches jobs by priority (terminations, then due work, then hourly passes), one at a
time per account (the ``account:<id>`` lock), wakes on the queue's NOTIFY and polls every second
for scheduled jobs (a termination taking effect at midnight). Sync tasks run in the worker's
threads, so ``concurrency`` accounts are synced at once.

Every process runs two procrastinate workers on one app: the main one on every queue, and a
*termination lane* of one slot on the ``deactivate`` queue only. When the main slots are all
busy with long runs (a 20,000-employee activation, hourly passes), a termination still starts
at once in the lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import procrastinate
from procrastinate import signals
from procrastinate.worker import Worker

from lmsync.jobs import tasks
from lmsync.jobs.observe import observe_job
from lmsync.jobs.queue import DEACTIVATE_QUEUE, QUEUE, conninfo
from lmsync.jobs.runner import JobRunner

# How often a worker looks for jobs besides NOTIFY's wake-ups (procrastinate notifies new jobs
# only): for scheduled ones (a termination at midnight), and for jobs whose account lock another
# job just released, which must not wait. The lane's app has no periodic tasks: at idle, a worker
# process costs two small queries a second and a stalled-jobs check every 15 s.
LANE_POLL_SECONDS = 1.0
MAIN_POLL_SECONDS = 1.0
LANE_CONCURRENCY = 1  # the termination lane's slots


def worker_app(
    database_url: str, concurrency: int, stall_seconds: float | None = None
) -> procrastinate.App:
    """An app to run a worker with; ``stall_seconds``: with the periodic tasks (one app per
    process has them)."""
    # The worker holds a connection to LISTEN and one to fetch or finish a job.
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo(database_url), min_size=1, max_size=concurrency + 3
    )
    app = procrastinate.App(connector=connector)
    tasks.register(app, periodic_stall_seconds=stall_seconds)
    return app


def options(
    concurrency: int,
    name: str,
    stall_seconds: float = 60.0,
    queues: list[str] | None = None,
    poll_seconds: float = MAIN_POLL_SECONDS,
) -> dict[str, Any]:
    return {
        # Heartbeats often enough that a live worker is never taken for a dead one.
        "update_heartbeat_interval": stall_seconds / 4,
        "stalled_worker_timeout": stall_seconds,
        "queues": queues or [DEACTIVATE_QUEUE, QUEUE],
        "concurrency": concurrency,
        "name": name,
        "fetch_job_polling_interval": poll_seconds,
        "delete_jobs": "successful",
        "shutdown_graceful_timeout": 30,
        "worker_middleware": [observe_job],  # job wait and duration metrics
        "install_signal_handlers": False,  # run() stops both workers on a signal
    }


async def run(
    database_url: str,
    concurrency: int,
    name: str,
    stall_seconds: float,
    *,
    install_signal_handlers: bool = True,
) -> None:
    """The main worker and the termination lane, until a signal (or a cancel) stops both."""
    main = worker_app(database_url, concurrency, stall_seconds)
    lane = worker_app(database_url, LANE_CONCURRENCY)
    async with main.open_async(), lane.open_async():
        workers = [
            Worker(app=main, **options(concurrency, name, stall_seconds)),
            Worker(
                app=lane,
                **options(
                    LANE_CONCURRENCY,
                    f"{name}/terminations",
                    stall_seconds,
                    [DEACTIVATE_QUEUE],
                    LANE_POLL_SECONDS,
                ),
            ),
        ]

        def stop() -> None:
            for worker in workers:
                worker.stop()  # type: ignore[no-untyped-call]

        stopping = signals.on_stop(stop) if install_signal_handlers else contextlib.nullcontext()
        with stopping:
            await asyncio.gather(*(worker.run() for worker in workers))  # type: ignore[no-untyped-call]


class BackgroundWorker:
    """A procrastinate worker in a thread of its own (its own event loop)."""

    def __init__(
        self,
        database_url: str,
        runner: JobRunner,
        *,
        concurrency: int = 2,
        stall_seconds: float = 60.0,
    ) -> None:
        self.database_url = database_url
        self.concurrency = concurrency
        self.stall_seconds = stall_seconds
        tasks.install(runner, stall_seconds)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="lmsync-jobs", daemon=True
        )
        self._thread.start()
        self._ready.wait(30)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(
            run(
                self.database_url,
                self.concurrency,
                "lmsync-serve",
                self.stall_seconds,
                install_signal_handlers=False,
            )
        )
        self._ready.set()
        with contextlib.suppress(asyncio.CancelledError):  # stop() cancels: a graceful stop
            await self._task

    def stop(self, timeout: float = 60.0) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)
