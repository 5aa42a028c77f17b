"""Account, user and token input shapes and their validation."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmsync.domain.normalize import NormalizationError, normalize_language, normalize_name
from lmsync.i18n import _

Role = Literal["MHR", "viewer"]
ROLES: tuple[Role, ...] = ("MHR", "viewer")


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise NormalizationError(
            _('unknown time zone "{value}"; use an IANA name such as America/Toronto', value=value)
        ) from exc
    return value


def _name(value: str) -> str:
    try:
        return normalize_name(value, max_length=200)
    except NormalizationError as exc:
        raise ValueError(exc.message) from exc


def _language(value: str) -> str:
    try:
        return normalize_language(value)
    except NormalizationError as exc:
        raise ValueError(exc.message) from exc


def _timezone(value: str) -> str:
    try:
        return check_timezone(value)
    except NormalizationError as exc:
        raise ValueError(exc.message) from exc


class AccountCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(examples=["Acme Québec"])
    company_name: str = Field(examples=["Acme Québec inc."])
    default_language: str = Field(default="en", examples=["fr-CA"])
    timezone: str = Field(default="UTC", examples=["America/Toronto"])

    @field_validator("name", "company_name")
    @classmethod
    def _v_name(cls, value: str) -> str:
        return _name(value)

    @field_validator("default_language")
    @classmethod
    def _v_language(cls, value: str) -> str:
        return _language(value)

    @field_validator("timezone")
    @classmethod
    def _v_timezone(cls, value: str) -> str:
        return _timezone(value)


class AccountPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    company_name: str | None = None
    default_language: str | None = None
    timezone: str | None = None
    user_sync_enabled: bool | None = Field(
        default=None,
        description="Only a platform operator may switch user synchronization on or off.",
    )

    @field_validator("name", "company_name")
    @classmethod
    def _v_name(cls, value: str | None) -> str | None:
        return None if value is None else _name(value)

    @field_validator("default_language")
    @classmethod
    def _v_language(cls, value: str | None) -> str | None:
        return None if value is None else _language(value)

    @field_validator("timezone")
    @classmethod
    def _v_timezone(cls, value: str | None) -> str | None:
        return None if value is None else _timezone(value)
