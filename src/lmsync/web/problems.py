"""RFC 9457 problem details: every error the API returns, and the handlers that produce them.

``title``, ``detail`` and each field error's ``message`` are said in the request's language
(Accept-Language); a field error's ``code`` is the same message in English without its values,
for programs to rely on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmsync import i18n
from lmsync.domain.errors import (
    CheckFinding,
    Conflict,
    DomainError,
    FieldError,
    Forbidden,
    LmsCheckFailed,
    NotFound,
    ValidationFailed,
)
from lmsync.domain.validation import field_errors
from lmsync.i18n import _
from lmsync.web import api_docs
from lmsync.web.schemas import FieldMessageOut
from lmsync.web.security_headers import add_security_headers

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("lmsync.web")


class Problem(BaseModel):
    """An error response (RFC 9457); ``errors`` lists field-level messages for validation errors."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldMessageOut] = []


class FindingMessage(BaseModel):
    level: str = Field(description="ok | warning | error")
    message: str


class LmsCheckProblem(Problem):
    """A 409 that may come from the LMS connection test: ``findings`` are its findings (empty
    for the other conflicts)."""

    findings: list[FindingMessage] = Field(
        default=[],
        description="The connection test's findings when the LMS failed it (what the LMS "
        "answered is quoted only from a SCIM error document, sanitized, without credentials).",
    )


_REFUSED = "authentication failed: GET /Users: the LMS refused the credentials (HTTP status 401)"
LMS_CHECK_409: dict[int | str, dict[str, Any]] = {
    409: {
        "model": LmsCheckProblem,
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": "#/components/schemas/LmsCheckProblem"},
                "example": {
                    "type": "/problems/409",
                    "title": "Conflict",
                    "status": 409,
                    "detail": "activation refused: the LMS failed its connection test (1 error: "
                    f"{_REFUSED}); nothing was written. Fix the interface's settings, then test "
                    "the connection again",
                    "errors": [],
                    "findings": [
                        {
                            "level": "ok",
                            "message": "the server answers as a SCIM 2.0 service provider",
                        },
                        {"level": "error", "message": _REFUSED},
                    ],
                },
            }
        },
        "description": "Conflicts with the current state; when the LMS failed its connection "
        "test, the refusal lists its `findings` (nothing was written)",
    }
}

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": text}
    for code, text in {
        400: "Malformed request",
        401: "Missing or invalid bearer token",
        403: "The token's role does not allow this",
        404: "Not found (or in another account)",
        409: "Conflicts with the current state",
        413: "The request body is larger than the limit (`LMSYNC_MAX_BODY_BYTES`)",
        422: "Invalid fields, listed in `errors`",
    }.items()
}

_TITLES = {
    400: _("Bad request"),
    401: _("Unauthorized"),
    403: _("Forbidden"),
    404: _("Not found"),
    405: _("Method not allowed"),
    409: _("Conflict"),
    413: _("Content too large"),
    415: _("Unsupported media type"),
    422: _("Invalid input"),
    500: _("Internal error"),
}
INVALID_FIELDS = _("some fields are invalid")
MALFORMED_JSON = _("malformed JSON")
UNEXPECTED = _("an unexpected error occurred; it has been logged")


def problem(
    status: int,
    detail: str | None = None,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    findings: list[CheckFinding] | None = None,
) -> JSONResponse:
    """A problem details answer, said in the request's language."""
    body = Problem(
        type=f"/problems/{status}",
        title=i18n.text(_TITLES.get(status, _("Error"))),
        status=status,
        detail=None if detail is None else i18n.text(detail),
        errors=FieldMessageOut.of(errors or []),
    )
    if findings is not None:
        body = LmsCheckProblem(
            **body.model_dump(),
            findings=[
                FindingMessage(level=f.level, message=i18n.text(f.message)) for f in findings
            ],
        )
    return JSONResponse(
        body.model_dump(), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def request_field_errors(exc: RequestValidationError) -> tuple[int, list[FieldError]]:
    """FastAPI's validation errors as field messages in our words; a body that is not JSON is a
    400."""
    errors: list[FieldError] = []
    for err in exc.errors():
        loc = err.get("loc", ())
        if err.get("type") == "json_invalid":
            # FastAPI puts where the JSON broke (a character offset) after "body".
            at = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
            message = (
                MALFORMED_JSON
                if at is None
                else _("malformed JSON (at character {position})", position=at)
            )
            return 400, [FieldError("body", message)]
        skip = 1 if loc and loc[0] in {"body", "query", "path", "header", "cookie"} else 0
        errors.extend(field_errors([err], skip=skip))
    return 422, errors


HtmlError = Callable[[Request, int, str], Response]


def is_api_path(path: str) -> bool:
    """Whether ``path`` answers in JSON (problem details) rather than with a page."""
    return path.startswith(("/api/", "/healthz", "/openapi.json"))


def _is_api(request: Request) -> bool:
    return is_api_path(request.url.path)


def install(app: FastAPI, html_error: HtmlError | None = None) -> None:
    """Problem details for the API; ``html_error`` renders the same errors for the pages."""

    def answer(request: Request, status: int, detail: str, **kwargs: Any) -> Response:
        if html_error is not None and not _is_api(request):
            return html_error(request, status, detail)
        return problem(status, detail, **kwargs)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        status, errors = request_field_errors(exc)
        detail = MALFORMED_JSON if status == 400 else INVALID_FIELDS
        if html_error is not None and not _is_api(request):
            said = "; ".join(f"{e.field}: {i18n.text(e.message)}" for e in errors)
            return html_error(request, status, said)
        return problem(status, detail, errors)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if isinstance(exc, ValidationFailed):
            return answer(request, 422, INVALID_FIELDS, errors=exc.errors)
        if isinstance(exc, NotFound):
            return answer(request, 404, exc.message)
        if isinstance(exc, Forbidden):
            return answer(request, 403, exc.message)
        if isinstance(exc, LmsCheckFailed):
            return answer(request, 409, exc.message, findings=exc.findings)
        if isinstance(exc, Conflict):
            return answer(request, 409, exc.message)
        return answer(request, 400, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return answer(request, exc.status_code, detail, headers=exc.headers)

    docs_paths = api_docs.DOCS_PATHS

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", path=request.url.path, error_type=type(exc).__name__)
        response = answer(request, 500, UNEXPECTED)
        # Starlette sends this answer from outside every middleware: add the headers here.
        add_security_headers(response.headers, request.url.path, docs_paths)
        return response
