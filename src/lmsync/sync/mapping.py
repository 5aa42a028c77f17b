"""The LMS fields of an employee, in LMS-neutral names; each connector maps them (see
docs/field-mapping.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from lmsync.storage.tables import Account, Employee
from lmsync.sync.snapshot import EmployeeRecord

# Maintained: written at creation and kept up to date afterwards.
MAINTAINED_FIELDS: tuple[str, ...] = (
    "external_id",
    "employee_number",
    "first_name",
    "last_name",
    "language",
    "email",
    "company_name",
    "job_title",
    "home_phone",
    "cell_phone",
    "address",
    "city",
    "province",
    "country",
    "postal_code",
    "notifications_enabled",
)
# Create-only: never overwritten by an update.
CREATE_ONLY_FIELDS: tuple[str, ...] = ("registration_date", "expiration_date", "access_mode")

EXPIRATION_YEARS = 100
ACCESS_MODE = "Request"


def desired_fields(
    employee: Employee | EmployeeRecord,
    account: Account,
    shape: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The maintained fields for ``employee``; the account fills the language and company.
    ``shape`` (``lms.registry.shaper``) turns them into what the account's LMS can hold."""
    desired = {
        "external_id": employee.id,
        "employee_number": employee.employee_number,
        "first_name": employee.first_name,
        "last_name": employee.last_name,
        "language": employee.language or account.default_language,
        "email": employee.work_email,
        "company_name": employee.company_name or account.company_name,
        "job_title": employee.job_title,
        # E.164 where the number parsed, else as entered (docs/field-mapping.md).
        "home_phone": employee.home_phone_e164 or employee.home_phone,
        "cell_phone": employee.cell_phone_e164 or employee.cell_phone,
        "address": employee.address,
        "city": employee.city,
        "province": employee.province,
        "country": employee.country,
        "postal_code": employee.postal_code,
        "notifications_enabled": True,
    }
    return shape(desired) if shape is not None else desired


def create_only_fields(account: Account, now: datetime) -> dict[str, Any]:
    """Registration today (account's time zone), expiration forced to 100 years later."""
    zone = ZoneInfo(account.timezone)
    registered: date = now.astimezone(zone).date()
    try:
        expires = registered.replace(year=registered.year + EXPIRATION_YEARS)
    except ValueError:  # 29 February
        expires = registered.replace(year=registered.year + EXPIRATION_YEARS, day=28)
    return {
        "registration_date": datetime.combine(registered, time(0, 0), tzinfo=zone),
        "expiration_date": datetime.combine(expires, time(0, 0), tzinfo=zone),
        "access_mode": ACCESS_MODE,
    }


def shown(create_only: Mapping[str, Any]) -> dict[str, Any]:
    """Create-only values as a run's history shows them (ISO 8601 for the dates)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in create_only.items()}
