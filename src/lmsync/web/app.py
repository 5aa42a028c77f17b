"""The ASGI application: wiring of settings, database, routers, error handlers and request logs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
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
from lmsync.web.pages import auth_pages, employee_pages, lms_pages
from lmsync.web.pages.common import TEMPLATES, CsrfRejected, LoginRequired, login_redirect

log = structlog.get_logger("lmsync.web")
STATIC = Path(__file__).parent / "static"
_TITLES = {401: "Sign in needed", 403: "Not allowed", 404: "Not found", 409: "Not possible now"}


def html_error(request: Request, status: int, message: str) -> Response:
    """The pages' error page (the API answers problem details instead)."""
    title = _TITLES.get(status, "Something went wrong" if status >= 500 else "Invalid request")
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
    problems.install(app, html_error=html_error)
    app.include_router(api_employees.router)
    app.include_router(api_accounts.router)
    app.include_router(api_lms.router)
    app.include_router(auth_pages.router)
    app.include_router(employee_pages.router)
    app.include_router(lms_pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(_: Request, exc: LoginRequired) -> Response:
        return login_redirect(exc)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _: CsrfRejected) -> Response:
        return html_error(
            request,
            403,
            "This form was not sent from an open lmsync page, or it has expired. "
            "Reload the page and try again.",
        )

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
