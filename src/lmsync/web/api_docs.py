"""The API's interactive docs, served with no internet: Swagger UI at ``/docs`` and ReDoc at
``/redoc`` load their bundles from ``static/api-docs`` (its README.md says where they come from
and which versions), never from a CDN; and ``/favicon.ico`` answers the site's icon.

FastAPI's own pages are turned off (``docs_url=None, redoc_url=None``): its Swagger page starts
the UI with an inline script, which the docs' Content-Security-Policy does not allow; this one
hands the configuration to ``static/api-docs/swagger-init.js`` in a data attribute instead.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import get_redoc_html, swagger_ui_default_parameters
from fastapi.responses import FileResponse, HTMLResponse

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
DOCS_PATHS = (DOCS_URL, REDOC_URL)  # the pages that get security_headers.DOCS_POLICY
FAVICON_URL = "/static/favicon.svg"
_ASSETS = "/static/api-docs"
_FAVICON_FILE = Path(__file__).parent / "static" / "favicon.svg"

_SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
<link rel="icon" href="{favicon}" type="image/svg+xml">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-config="{config}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""


def _root(request: Request) -> str:
    """The prefix a proxy serves the app under (``root_path``), as FastAPI's own pages use it."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def swagger_ui_html(
    *, title: str, openapi_url: str, root: str = "", parameters: dict[str, Any] | None = None
) -> HTMLResponse:
    """The Swagger UI page: FastAPI's defaults and ``parameters``; no validator badge (it would
    send the spec's URL to an outside validator)."""
    config: dict[str, Any] = {
        "url": openapi_url,
        **swagger_ui_default_parameters,
        **(parameters or {}),
        "validatorUrl": None,
    }
    page = _SWAGGER_PAGE.format(
        title=html.escape(title),
        favicon=html.escape(root + FAVICON_URL),
        assets=html.escape(root + _ASSETS),
        config=html.escape(json.dumps(jsonable_encoder(config)), quote=True),
    )
    return HTMLResponse(page)


def install(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and ``/favicon.ico`` to ``app`` (made with ``docs_url=None,
    redoc_url=None``). The app serves ``static/`` at ``/static``."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the API docs need the OpenAPI document (openapi_url)")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return swagger_ui_html(
            title=f"{app.title} - Swagger UI",
            openapi_url=root + openapi_url,
            root=root,
            parameters=app.swagger_ui_parameters,
        )

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=root + FAVICON_URL,
            with_google_fonts=False,
        )

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        # Browsers ask for /favicon.ico on their own; the SVG answers (every current browser
        # reads an SVG icon whatever the name). Cacheable: the middleware's no-store is for
        # answers that may carry personal data.
        return FileResponse(
            _FAVICON_FILE,
            media_type="image/svg+xml",
            headers={"cache-control": "public, max-age=86400"},
        )
