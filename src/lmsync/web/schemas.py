"""Response shapes of the JSON API (the OpenAPI contract)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from lmsync.domain.errors import FieldError

T = TypeVar("T")


class Paged(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next: str | None = Field(description="URL of the next page, null on the last one.")


class EmployeeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    employee_number: str
    first_name: str
    last_name: str
    language: str | None
    work_email: str | None
    company_name: str | None
    job_title: str | None
    home_phone: str | None
    home_phone_e164: str | None
    cell_phone: str | None
    cell_phone_e164: str | None
    address: str | None
    city: str | None
    province: str | None
    country: str | None
    postal_code: str | None
    hire_date: date
    status: str
    termination_date: date | None
    termination_reason: str | None
    lms_excluded: bool
    lms_due_at: datetime | None = Field(
        description="When set, the employee has LMS work waiting for the sync engine."
    )
    created_at: datetime
    updated_at: datetime


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
    field: str
    message: str

    @classmethod
    def of(cls, errors: list[FieldError]) -> list[FieldMessageOut]:
        return [cls(field=e.field, message=e.message) for e in errors]


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
