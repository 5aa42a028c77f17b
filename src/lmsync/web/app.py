"""The ASGI application: wiring of settings, database, routers, error handlers and request logs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client.exposition import choose_encoder
from sqlalchemy import text

import lmsync
from lmsync import metrics
from lmsync.hr.imports import ImportService
from lmsync.i18n import _
from lmsync.jobs import stats as jobs_stats
from lmsync.jobs import wiring
from lmsync.jobs.runner import JobRunner
from lmsync.jobs.worker import BackgroundWorker
from lmsync.lms.registry import ConnectorFactory, Connectors
from lmsync.notify.mail import Mailer
from lmsync.notify.notifier import Notifier
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory
from lmsync.storage.tables import utcnow
from lmsync.sync.engine import SyncEngine
from lmsync.sync.service import SyncService
from lmsync.sync.worker import SyncWorker
from lmsync.web import api_accounts, api_docs, api_employees, api_lms, problems
from lmsync.web.address_check import AddressCheckMiddleware
from lmsync.web.body_limit import BodyLimitMiddleware
from lmsync.web.deps import AppState, State
from lmsync.web.locale_middleware import LocaleMiddleware
from lmsync.web.pages import (
    auth_pages,
    employee_pages,
    lms_pages,
    overview_pages,
    preference_pages,
    token_pages,
)
from lmsync.web.pages.common import TEMPLATES, CsrfRejected, LoginRequired, login_redirect
from lmsync.web.security_headers import SecurityHeadersMiddleware

log = structlog.get_logger("lmsync.web")
STATIC = Path(__file__).parent / "static"
_TITLES = {
    401: _("Sign in needed"),
    403: _("Not allowed"),
    404: _("Not found"),
    409: _("Not possible now"),
}


def html_error(request: Request, status: int, message: str) -> Response:
    """The pages' error page (the API answers problem details instead)."""
    title = _TITLES.get(
        status, _("Something went wrong") if status >= 500 else _("Invalid request")
    )
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"title": title, "message": message, "browser": None},
        status_code=status,
    )


def create_app(
    settings: Settings | None = None,
    *,
    upgrade_schema: bool = False,
    run_worker: bool = True,
    connector_factory: ConnectorFactory | None = None,
    poll_seconds: float = 2.0,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """The app. ``run_worker``: run the in-process sync worker (due employees, hourly passes).
    ``clock``: "now" for the sync's rules (tests drive it across a date boundary)."""
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url())
    if upgrade_schema:
        migrate.upgrade(engine)
    sessions = make_session_factory(engine)
    secrets = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    connector_factory = connector_factory or Connectors.from_settings(settings)
    sync_engine = SyncEngine(
        sessions,
        secrets,
        connector_factory=connector_factory,
        lock_lease=timedelta(seconds=settings.sync_lease_seconds),
        clock=clock,
    )
    deferrer = wiring.deferrer_for(settings)  # None: the in-process queue
    wiring.install(sessions, deferrer)
    in_process = run_worker and deferrer is None
    worker = SyncWorker(sync_engine, sessions, poll_seconds=poll_seconds) if in_process else None
    jobs_worker = (
        BackgroundWorker(
            settings.resolved_database_url(),
            JobRunner(sync_engine, sessions, deferrer),
            concurrency=settings.worker_concurrency,
            stall_seconds=settings.job_stall_seconds,
        )
        if run_worker and deferrer is not None
        else None
    )
    sync = SyncService(sessions, secrets, sync_engine, worker, deferrer=deferrer)
    mailer = Mailer.from_settings(settings)
    notifier = (
        Notifier(
            sessions,
            mailer,
            clock=clock,
            down_after=timedelta(minutes=settings.alert_lms_down_minutes),
            digest_hour=settings.digest_hour_utc,
            public_url=settings.public_url,
            poll_seconds=settings.notify_poll_seconds,
        )
        if mailer is not None and run_worker
        else None
    )
    imports = ImportService(sessions, on_change=sync.changed)  # background CSV imports
    # This process's metrics (its in-process worker's included) and, on the PostgreSQL queue,
    # the queue's depth read at each scrape.
    registry = metrics.app_registry(
        metrics.QueueCollector(sessions, metrics.lmsync_tasks(deferrer.app))
        if deferrer is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        for started in (worker, jobs_worker, notifier):
            if started is not None:
                started.start()
        if run_worker:
            sync.start()  # recovery of runs whose server stopped; heartbeats of queued runs
        imports.start()
        yield
        imports.stop()
        for stopped in (worker, jobs_worker, notifier):
            if stopped is not None:
                stopped.stop()
        sync.close()
        engine.dispose()

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: api_docs.install, offline
        redoc_url=None,
        title="lmsync",
        version=lmsync.__version__,
        summary="Keeps an LMS's users in step with the HR system's employees.",
        description="All `/api/v1` endpoints take `Authorization: Bearer <token>` and act in the "
        "token's account. Errors are RFC 9457 problem details (`application/problem+json`).",
    )
    app.state.lmsync = AppState(
        settings=settings, sessions=sessions, secrets=secrets, sync=sync, imports=imports
    )
    problems.install(app, html_error=html_error)
    api_docs.install(app)
    app.include_router(api_employees.router)
    app.include_router(api_accounts.router)
    app.include_router(api_lms.router)
    app.include_router(auth_pages.router)
    app.include_router(employee_pages.router)
    app.include_router(lms_pages.router)
    app.include_router(overview_pages.router)
    app.include_router(token_pages.router)
    app.include_router(preference_pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return login_redirect(exc)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, exc: CsrfRejected) -> Response:
        return html_error(
            request,
            403,
            _(
                "This form was not sent from an open lmsync page, or it has expired. "
                "Reload the page and try again."
            ),
        )

    @app.get("/healthz", tags=["operations"], summary="Liveness and database reachability")
    def healthz(state: State) -> dict[str, str]:
        with state.uow() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "database": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the database and the job queue are reachable",
        responses={503: {"description": "the database or the job queue cannot be reached"}},
    )
    def readyz(state: State) -> Response:
        queue = "procrastinate" if state.sync.deferrer is not None else "in-process"
        try:
            with state.uow() as session:
                session.execute(text("SELECT 1"))
                if state.sync.deferrer is not None:
                    jobs_stats.reachable(session)
        except Exception as exc:  # a readiness probe answers, it does not raise
            log.warning("not ready", error_type=type(exc).__name__)
            return JSONResponse({"status": "unavailable", "queue": queue}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok", "queue": queue})

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        """Prometheus text format; ``LMSYNC_METRICS_TOKEN`` set: a bearer token is needed."""
        token = settings.metrics_token
        if token and not metrics.authorized(request.headers.get("authorization"), token):
            return Response(
                "a bearer token is needed (LMSYNC_METRICS_TOKEN)\n",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # The format the scraper asks for (OpenMetrics, text 1.0.0), else the text format 0.0.4.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), headers={"Content-Type": content_type})

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

    # Added last, so outermost: the limit applies before anything reads a body, and every
    # answer (the other middlewares' and the 413 included) gets the headers; the 500 answer,
    # sent by Starlette from outside all middleware, gets them in problems.install.
    app.add_middleware(LocaleMiddleware)
    app.add_middleware(AddressCheckMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        SecurityHeadersMiddleware,
        docs_paths=api_docs.DOCS_PATHS,
    )
    return app
