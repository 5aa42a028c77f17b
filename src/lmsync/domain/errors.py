"""Typed domain errors; entry points (web, cli) turn them into HTTP statuses or messages.

Their messages are :class:`lmsync.i18n.Msg` values where a person reads them: English as a
``str``, said in the reader's language by ``i18n.localize`` / ``i18n.text``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmsync.i18n import Msg, _


@dataclass(frozen=True)
class FieldError:
    """One message about one input field (``field`` is the JSON name, "" for the whole input)."""

    field: str
    message: str


class DomainError(Exception):
    """Base of every error the HR core raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(DomainError):
    """The input was refused; nothing was written."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(_joined(errors))
        self.errors = errors


def _joined(errors: list[FieldError]) -> Msg:
    """ "field: message; field: message", each message in the reader's language (field names are
    the API's, not translated; the template is built here, so the catalogue has no entry)."""
    parts = {
        f"e{n}": Msg("{field}: {message}", field=e.field, message=e.message)
        for n, e in enumerate(errors)
    }
    return Msg("; ".join(f"{{{name}}}" for name in parts), **parts)


class NotFound(DomainError):
    """The object does not exist, or belongs to another account (the two are not told apart)."""


class Forbidden(DomainError):
    """The caller is known but its role does not allow this."""


class Conflict(DomainError):
    """The request clashes with the current state (already terminated, duplicate number...)."""


@dataclass(frozen=True)
class CheckFinding:
    """One finding of an LMS connection test: ``level`` ok | warning | error."""

    level: str
    message: str


class LmsCheckFailed(Conflict):
    """The LMS failed its connection test, so the activation (or its preview) was refused before
    anything was written. ``findings`` are the test's, already bounded and redacted by the
    connector (``lmsync.lms.remote_text``)."""

    def __init__(self, findings: list[CheckFinding]) -> None:
        errors = [f.message for f in findings if f.level == "error"]
        if not errors:
            message = _(
                "activation refused: the LMS failed its connection test (0 errors); nothing was "
                "written. Fix the interface's settings, then test the connection again"
            )
        elif len(errors) == 1:
            message = _(
                "activation refused: the LMS failed its connection test (1 error: {first}); "
                "nothing was written. Fix the interface's settings, then test the connection again",
                first=errors[0],
            )
        else:
            message = _(
                "activation refused: the LMS failed its connection test ({count} errors: "
                "{first}); nothing was written. Fix the interface's settings, then test the "
                "connection again",
                count=len(errors),
                first=errors[0],
            )
        super().__init__(message)
        self.findings = findings
