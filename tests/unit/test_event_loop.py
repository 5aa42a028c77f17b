"""No route handler is a coroutine: FastAPI runs plain functions in its thread pool, so database
and file work never blocks the event loop (and every other tenant's requests with it)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute

from lmsync.settings import Settings
from lmsync.web.app import create_app


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every endpoint, also inside included routers (FastAPI ≥ 0.16x keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


def test_every_route_handler_runs_in_the_thread_pool(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), run_worker=False)
    routes = list(api_routes(app.routes))
    assert len(routes) > 40
    coroutines = [r.path for r in routes if inspect.iscoroutinefunction(r.endpoint)]
    assert coroutines == []
