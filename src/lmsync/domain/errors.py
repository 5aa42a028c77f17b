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
