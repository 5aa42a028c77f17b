"""Response shapes of the JSON API (the OpenAPI contract)."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Generic, Literal, Self, TypeVar

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmsync import i18n
from lmsync.domain.employees import EmployeeData
from lmsync.domain.errors import FieldError
from lmsync.i18n import Msg
from lmsync.sync.service import LmsStateName

T = TypeVar("T")


def created(what: str) -> dict[str, Any]:
    """The OpenAPI description of a 201: ``what`` was created, at its ``Location``."""
    return {
        "description": f"Created: the {what}, whose URL is in `Location`.",
        "headers": {
            "Location": {
                "description": f"The created {what}'s URL (its path).",
                "schema": {"type": "string"},
            }
        },
    }


def with_location(response: Response, collection: str) -> Response:
    """A 201 (new or replayed) with ``Location``: ``collection``/the created object's id."""
    if response.status_code == 201:
        created_id = json.loads(bytes(response.body))["id"]
        response.headers["Location"] = f"{collection}/{created_id}"
    return response


class Paged(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next: str | None = Field(description="URL of the next page, null on the last one.")


class EmployeeOut(BaseModel, EmployeeData):
    """An employee: its own fields (``EmployeeData``, their one definition, first) and its
    identity, status, termination and sync markers."""

    model_config = ConfigDict(from_attributes=True)

    # The work email's lookup key is lmsync's own, not part of the answer.
    work_email_key: str | None = Field(default=None, exclude=True)
    id: str
    status: Literal["active", "terminated"] = Field(
        description="As of now. An employee whose termination has not taken effect yet is "
        "active (see leaving_on)."
    )
    leaving_on: date | None = Field(
        description="The last day worked of a scheduled termination; the LMS user is "
        "deactivated when that day ends (account's time zone). Null otherwise."
    )
    termination_date: date | None = Field(
        description="The last day worked, once a termination is recorded (scheduled or in effect)."
    )
    termination_reason: str | None
    termination_effective_immediately: bool = Field(
        validation_alias="termination_immediate",
        description="The termination ended access when it was recorded (e.g. a dismissal).",
    )
    access_ends_at: datetime | None = Field(
        description="When access to the LMS ends (or ended) for the recorded termination."
    )
    lms_due_at: datetime | None = Field(
        description="When set, the employee has LMS work waiting for the sync engine (at that "
        "time: a scheduled termination is due when it takes effect)."
    )
    created_at: datetime
    updated_at: datetime


class ListedEmployeeOut(EmployeeOut):
    """An employee as the list shows it: with its LMS state."""

    model_config = ConfigDict(validate_by_name=True)

    lms_state: LmsStateName = Field(
        description="As the employees page shows it (details: `GET /employees/{id}/lms`): "
        "not_linked | linked | deactivated | skipped | conflict | error | held (a deactivation "
        "waiting for approval) | excluded."
    )


class EmployeeEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    at: datetime
    actor_user_id: str | None
    details: dict[str, object]


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    company_name: str
    default_language: str
    timezone: str
    user_sync_enabled: bool
    created_at: datetime
    updated_at: datetime


class MeOut(BaseModel):
    user_id: str
    email: str
    is_operator: bool
    account_id: str | None
    role: str | None


class FieldMessageOut(BaseModel):
    """One field's error, in a problem's ``errors`` and in an import's rejected rows."""

    field: str = Field(
        description='The field\'s JSON name ("a.b" when nested); "" for the whole input.'
    )
    code: str = Field(
        default="",
        description="The message in English, without its values (limits, names): stable, for "
        'programs (e.g. "must be at most {max_length} characters").',
    )
    message: str = Field(description="What is wrong, in the request's language.")

    @model_validator(mode="after")
    def _code_of_stored_message(self) -> Self:
        # A row kept by a background import has its English message only.
        self.code = self.code or self.message
        return self

    @classmethod
    def of(cls, errors: list[FieldError]) -> list[FieldMessageOut]:
        return [cls(**field_message(e)) for e in errors]


def field_message(error: FieldError) -> dict[str, str]:
    """A field error for the API: its stable English ``code`` (a :class:`Msg`'s template, else the
    message itself) and its ``message`` in the request's language."""
    code = error.message.code if isinstance(error.message, Msg) else error.message
    return {"field": error.field, "code": code, "message": i18n.text(error.message)}


class ImportedRowOut(BaseModel):
    line: int
    employee_number: str
    employee_id: str | None


class RejectedRowOut(BaseModel):
    line: int
    employee_number: str | None
    errors: list[FieldMessageOut]


class ImportReportOut(BaseModel):
    dry_run: bool
    imported_count: int
    rejected_count: int
    imported: list[ImportedRowOut]
    rejected: list[RejectedRowOut]


class ScimOptionsOut(BaseModel):
    user_name_field: str = "email"
    extension_urn: str | None = None
    extension_attributes: dict[str, str] = {}
    use_patch: bool = True
    use_bulk: bool = True
    max_concurrency: int = 16
    portal_id_in: str = Field(default="header", description="header | path")
    portal_id_header: str = "X-Portal-Id"


class MoodleOptionsOut(BaseModel):
    auth_method: str = "manual"
    create_password: bool = True
    languages: list[str] = ["en"]
    job_title_field: str | None = None
    profile_fields: dict[str, str | None] = {}
    batch_size: int = 100
    max_input_vars: int = 5000
    extended_username_chars: bool = False
    max_concurrency: int = 4


class InterfaceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    connector: str
    base_url: str
    auth_type: str
    auth_header: str
    username: str | None
    secret_set: bool = Field(description="Whether a secret is stored; it is never returned.")
    portal_id: str | None
    hourly_transfer: bool
    sync_users: bool
    deactivate_terminated: bool
    options: ScimOptionsOut | MoodleOptionsOut = Field(
        description="The connector's options (SCIM's or Moodle's, as `connector` says)."
    )
    guard_percent: int
    guard_minimum: int
    guard_window_minutes: int
    active: bool
    activated_at: datetime | None
    minute_of_hour: int
    last_full_pass_at: datetime | None = Field(description="The last hourly pass.")
    sweep_hour: int = Field(
        description="The hour (the account's time zone) of the daily full sweep."
    )
    last_sweep_at: datetime | None = Field(
        description="The last full sweep: every LMS user read (deletions found, drift corrected)."
    )
    modified_filter: bool | None = Field(
        description="Whether the LMS filters users on meta.lastModified, so that the hourly "
        "pass reads only those changed (null: not known yet; found by Test connection or the "
        "next pass)."
    )


class FindingOut(BaseModel):
    level: str = Field(description="ok | warning | error")
    message: str = Field(
        description="What was found. What the LMS answered is only quoted from a SCIM error "
        "document (its detail, sanitized, without the credentials); any other answer or "
        "connection failure is described by its category."
    )


class ConnectionReportOut(BaseModel):
    ok: bool
    findings: list[FindingOut]


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    trigger: str
    dry_run: bool
    full: bool
    status: str = Field(
        description="queued | running | succeeded | partial | failed | held | approved | rejected "
        "| interrupted (its server stopped; see the message for what resumed it)"
    )
    counts: dict[str, int]
    message: str | None
    progress_done: int
    progress_total: int
    approved_run_id: str | None
    started_at: datetime
    finished_at: datetime | None


class OutcomeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    employee_id: str
    employee_number: str | None = Field(
        default=None, description="The employee's, as of now (null: no such employee now)."
    )
    employee_name: str | None = Field(
        default=None, description="First and last name, as of now (null: no such employee now)."
    )
    action: str
    outcome: str
    reason: str
    lms_user_id: str | None
    before: dict[str, object] | None
    after: dict[str, object] | None
    at: datetime


class RunDetailOut(BaseModel):
    run: RunOut
    outcomes: Paged[OutcomeOut]


class RunStartedOut(BaseModel):
    run_id: str
    status: str


class PreviewOut(BaseModel):
    """What the first activation would do (nothing was written)."""

    run_id: str
    to_link: int
    to_create: int
    skipped_no_email: int
    conflicts: int
    excluded: int
    nothing_to_do: int = Field(description="e.g. terminated and never in the LMS")
    other: dict[str, int]
    create_only: dict[str, object] = Field(
        description="Written only when a user is created, never updated afterwards: "
        "`registration_date` (today, account's time zone), `expiration_date` (forced to 100 "
        "years later) and `access_mode` (`Request`). Each planned creation in the run's outcomes "
        "(`GET /lms/runs/{run_id}`) lists every field it will write, these included.",
        examples=[
            {
                "registration_date": "2026-12-02T00:00:00-05:00",
                "expiration_date": "2126-12-02T00:00:00-05:00",
                "access_mode": "Request",
            }
        ],
    )


class EmployeeLmsOut(BaseModel):
    state: str = Field(
        description="not_linked | linked | deactivated | skipped | conflict | error | held "
        "(a deactivation waiting for approval) | excluded"
    )
    made_by: str | None = Field(description="created | matched (by email)")
    lms_user_id: str | None
    lms_active: bool | None
    reason: str
    last_sync_at: datetime | None
    next_action: str
    next_action_at: datetime | None
    next_action_when: str


class ImportStatusOut(BaseModel):
    """A CSV import carried out in the background."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    status: str = Field(
        description="queued | running | succeeded (rejected rows included) | failed | "
        "interrupted (stopped by its user; the rows done were kept)"
    )
    dry_run: bool
    total_rows: int
    done_rows: int = Field(description="Rows handled so far, in file order.")
    imported_count: int = Field(description="Rows hired so far (a dry run: rows that would be).")
    rejected_count: int
    message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ImportDetailOut(ImportStatusOut):
    rejected: list[RejectedRowOut] = Field(
        description="The first 1,000 rejected rows with their line and field messages "
        "(`rejected_count` counts them all)."
    )
