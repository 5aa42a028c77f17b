"""The ASGI application: wiring of settings, database, routers, error handlers and request logs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from sqlalchemy import text

import lmsync
from lmsync.lms.registry import ConnectorFactory, build_connector
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory
from lmsync.sync.engine import SyncEngine
from lmsync.sync.service import SyncService
from lmsync.sync.worker import SyncWorker
from lmsync.web import api_accounts, api_employees, api_lms, problems
from lmsync.web.deps import AppState, State

log = structlog.get_logger("lmsync.web")


def create_app(
    settings: Settings | None = None,
    *,
    upgrade_schema: bool = False,
    run_worker: bool = True,
    connector_factory: ConnectorFactory = build_connector,
    poll_seconds: float = 2.0,
) -> FastAPI:
    """The app. ``run_worker``: run the in-process sync worker (due employees, hourly passes)."""
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url())
    if upgrade_schema:
        migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    secrets = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    sync_engine = SyncEngine(sessions, secrets, connector_factory=connector_factory)
    worker = SyncWorker(sync_engine, sessions, poll_seconds=poll_seconds) if run_worker else None
    sync = SyncService(sessions, secrets, sync_engine, worker)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if worker is not None:
            worker.start()
        yield
        if worker is not None:
            worker.stop()
        sync.close()
        engine.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="lmsync",
        version=lmsync.__version__,
        summary="Keeps an LMS's users in step with the HR system's employees.",
        description="All `/api/v1` endpoints take `Authorization: Bearer <token>` and act in the "
        "token's account. Errors are RFC 9457 problem details (`application/problem+json`).",
    )
    app.state.lmsync = AppState(settings=settings, sessions=sessions, secrets=secrets, sync=sync)
    problems.install(app)
    app.include_router(api_employees.router)
    app.include_router(api_accounts.router)
    app.include_router(api_lms.router)

    @app.get("/healthz", tags=["operations"], summary="Liveness and database reachability")
    def healthz(state: State) -> dict[str, str]:
        with state.uow() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "database": "ok"}

    @app.middleware("http")
    async def access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        log.info(
            "request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

    return app
