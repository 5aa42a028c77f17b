"""Typed domain errors; entry points (web, cli) turn them into HTTP statuses or messages."""

from __future__ import annotations

from dataclasses import dataclass


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
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


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
        plural = "s" if len(errors) != 1 else ""
        first = f": {errors[0]}" if errors else ""
        super().__init__(
            f"activation refused: the LMS failed its connection test ({len(errors)} "
            f"error{plural}{first}); nothing was written. Fix the interface's settings, then "
            "test the connection again"
        )
        self.findings = findings
