"""Employees: their fields (the one list of them), the API/CSV input shapes and the
normalization rules applied to them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import date
from typing import Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails

from lmsync.domain import validation
from lmsync.domain.errors import FieldError, ValidationFailed
from lmsync.domain.normalize import (
    NormalizationError,
    clean_text,
    normalize_country,
    normalize_email,
    normalize_language,
    normalize_name,
    normalize_phone,
    normalize_province,
)
from lmsync.i18n import _

EXCLUDE_LABEL = (
    "Check this box to exclude this employee from the Learning Management System (LMS) interface"
)

EmployeeStatus = Literal["active", "leaving", "terminated"]


@dataclass
class EmployeeData:
    """An employee's own fields, validated and normalized, as stored: the one list of them and
    their order. The sync's snapshot (``sync.snapshot.EmployeeRecord``) and the API's answer
    (``web.schemas.EmployeeOut``) extend this class; ``EDITABLE_FIELDS`` are derived from it."""

    employee_number: str
    first_name: str
    last_name: str
    language: str | None
    work_email: str | None
    work_email_key: str | None
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
    lms_excluded: bool


EMPLOYEE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EmployeeData))
# Computed from another field when it is stored (the email's lookup key, the phones' E.164).
COMPUTED_FIELDS: frozenset[str] = frozenset(
    {"work_email_key", "home_phone_e164", "cell_phone_e164"}
)
# Fields an HR manager edits directly; status and termination change only through
# terminate (and its change or cancellation) and rehire.
EDITABLE_FIELDS: tuple[str, ...] = tuple(f for f in EMPLOYEE_FIELDS if f not in COMPUTED_FIELDS)

# Changes to these mark the employee as due for the LMS (docs/field-mapping.md, and the
# exclusion switch).
LMS_RELEVANT_FIELDS: frozenset[str] = frozenset(EDITABLE_FIELDS) - {"employee_number", "hire_date"}

_TEXT_LIMITS: dict[str, int] = {
    "company_name": 200,
    "job_title": 200,
    "address": 300,
    "city": 100,
    "postal_code": 20,
}


class EmployeeFieldsIn(BaseModel):
    """Types of the editable fields (``EDITABLE_FIELDS``, in their order), shared by create and
    patch (all optional here).

    A request with a wrongly typed field is refused with the domain's errors of its other fields
    too (``ValidationError``: pydantic's errors, then ``validation.DOMAIN_ERROR`` ones), so that
    one answer lists every field error."""

    model_config = ConfigDict(extra="forbid", str_max_length=1000)
    # A patch: the fields absent keep their stored values (not required, and not known here).
    partial: ClassVar[bool] = True

    employee_number: str | None = Field(default=None, examples=["E-1042"])
    first_name: str | None = Field(default=None, examples=["Zoë"])
    last_name: str | None = Field(default=None, examples=["Lévesque-Ngô"])
    language: str | None = Field(default=None, examples=["fr-CA"])
    work_email: str | None = Field(default=None, examples=["zoe.levesque@example.ca"])
    company_name: str | None = Field(default=None, examples=["Cangaroo Québec inc."])
    job_title: str | None = Field(default=None, examples=["Payroll clerk"])
    home_phone: str | None = Field(default=None, examples=["514 555-0199"])
    cell_phone: str | None = Field(default=None, examples=["+1 (438) 555-0142"])
    address: str | None = Field(default=None, examples=["1000 rue Sherbrooke O."])
    city: str | None = Field(default=None, examples=["Montréal"])
    province: str | None = Field(default=None, examples=["QC"])
    country: str | None = Field(default=None, examples=["CA"])
    postal_code: str | None = Field(default=None, examples=["H3A 3G4"])
    hire_date: date | None = Field(default=None, examples=["2026-11-02"])
    lms_excluded: bool | None = Field(
        default=None,
        description=EXCLUDE_LABEL + " (true: lmsync never creates, updates or deactivates "
        "this employee's LMS user).",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _every_field_error(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        try:
            return handler(data)
        except ValidationError as exc:
            if not isinstance(data, Mapping):
                raise
            errors = exc.errors()
            wrong = {str(error["loc"][0]) for error in errors if error["loc"]}
            more = _other_field_errors(data, wrong, partial=cls.partial)
            if not more:
                raise
            every = [*validation.line_errors(errors), *more]
            raise ValidationError.from_exception_data(exc.title, every) from exc


# Checked with the country (the phones' region; the province among the country's).
_READ_WITH_COUNTRY = frozenset({"province", "home_phone", "cell_phone"})


def _other_field_errors(
    raw: Mapping[str, Any], wrong: set[str], *, partial: bool
) -> list[InitErrorDetails]:
    """The domain's errors of the fields of ``raw`` that are not ``wrong`` (wrongly typed).

    A patch's errors are those of the fields it sends; a field read with the country is left
    alone when the country is wrong, or (a patch) stored rather than sent."""
    values = {k: v for k, v in raw.items() if k in EDITABLE_FIELDS and k not in wrong}
    try:
        normalize_employee(values, today=date.today())
    except ValidationFailed as failed:
        judged = set(values) if partial else set(EDITABLE_FIELDS) - wrong
        if "country" in wrong or (partial and "country" not in raw):
            judged -= _READ_WITH_COUNTRY
        return [
            validation.custom(e.field, e.message, raw.get(e.field))
            for e in failed.errors
            if e.field in judged
        ]
    return []


class EmployeeCreateIn(EmployeeFieldsIn):
    """``POST /employees``: the editable fields; number and names are required."""

    partial: ClassVar[bool] = False


class EmployeePatchIn(EmployeeFieldsIn):
    """``PATCH /employees/{id}``: only the fields sent change; ``null`` clears an optional one."""


LAST_DAY_HELP = (
    "The employee's last day worked. Access to the LMS ends when that day ends (00:00 the next "
    "day in the account's time zone); until then the employee stays active, leaving on that date."
)
IMMEDIATE_HELP = (
    "Effective immediately (e.g. a dismissal): the LMS user is deactivated within seconds, "
    "whatever the termination date."
)


class TerminateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    termination_date: date = Field(description=LAST_DAY_HELP, examples=["2026-11-30"])
    reason: str | None = Field(default=None, max_length=500, examples=["Resignation"])
    effective_immediately: bool = Field(default=False, description=IMMEDIATE_HELP)


class TerminationChangeIn(BaseModel):
    """``PATCH /employees/{id}/termination``: change a scheduled termination (fields sent only)."""

    model_config = ConfigDict(extra="forbid")

    termination_date: date | None = Field(
        default=None, description=LAST_DAY_HELP, examples=["2027-01-15"]
    )
    reason: str | None = Field(default=None, max_length=500, examples=["Resignation"])
    effective_immediately: bool | None = Field(default=None, description=IMMEDIATE_HELP)


class CancelTerminationIn(BaseModel):
    """``POST /employees/{id}/cancel-termination``: undo a termination recorded by mistake (or
    a resignation withdrawn). Unlike a rehire, no new period of employment starts."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500, examples=["Resignation withdrawn"])


class RehireIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hire_date: date = Field(examples=["2027-01-04"])


def normalize_employee(raw: Mapping[str, Any], *, today: date) -> EmployeeData:
    """Validate every editable field of ``raw``; raise ``ValidationFailed`` listing all errors.

    ``hire_date`` defaults to ``today`` (the account's local date) when absent.
    """
    errors: list[FieldError] = []

    def field(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except NormalizationError as exc:
            errors.append(FieldError(name, exc.message))
            return None

    def opt(name: str) -> str | None:
        value = raw.get(name)
        return value if isinstance(value, str) and value.strip() else None

    number = field(
        "employee_number", lambda: normalize_name(raw.get("employee_number"), max_length=50)
    )
    first = field("first_name", lambda: normalize_name(raw.get("first_name")))
    last = field("last_name", lambda: normalize_name(raw.get("last_name")))
    language = field("language", lambda: _maybe(opt("language"), normalize_language))
    email = field("work_email", lambda: _maybe(opt("work_email"), normalize_email))
    country = field("country", lambda: _maybe(opt("country"), normalize_country))
    province = field(
        "province", lambda: _maybe(opt("province"), lambda v: normalize_province(v, country))
    )
    home = field(
        "home_phone", lambda: _maybe(opt("home_phone"), lambda v: normalize_phone(v, country))
    )
    cell = field(
        "cell_phone", lambda: _maybe(opt("cell_phone"), lambda v: normalize_phone(v, country))
    )
    address = raw.get("address")
    if isinstance(address, str):
        # A multi-line address (a CSV cell, a textarea) is kept as one line.
        raw = {**raw, "address": ", ".join(p.strip() for p in address.splitlines() if p.strip())}
    texts: dict[str, str | None] = {}
    for name, limit in _TEXT_LIMITS.items():
        try:
            texts[name] = clean_text(raw.get(name), max_length=limit)
        except NormalizationError as exc:
            errors.append(FieldError(name, exc.message))
    hire_date = _as_date(raw.get("hire_date") or today)
    if hire_date is None:
        errors.append(FieldError("hire_date", validation.MUST_BE_A_DATE))
    if errors:
        raise ValidationFailed(errors)
    return EmployeeData(
        employee_number=number,
        first_name=first,
        last_name=last,
        language=language,
        work_email=email[0] if email else None,
        work_email_key=email[1] if email else None,
        company_name=texts["company_name"],
        job_title=texts["job_title"],
        home_phone=home[0] if home else None,
        home_phone_e164=home[1] if home else None,
        cell_phone=cell[0] if cell else None,
        cell_phone_e164=cell[1] if cell else None,
        address=texts["address"],
        city=texts["city"],
        province=province,
        country=country,
        postal_code=texts["postal_code"],
        hire_date=hire_date or today,
        lms_excluded=bool(raw.get("lms_excluded") or False),
    )


def _as_date(value: object) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _maybe(value: str | None, fn: Callable[[str], Any]) -> Any:
    return None if value is None else fn(value)


def check_termination(hire_date: date, termination_date: date) -> None:
    if termination_date < hire_date:
        raise ValidationFailed(
            [
                FieldError(
                    "termination_date",
                    _(
                        "must not be before the hire date ({hire_date})",
                        hire_date=hire_date.isoformat(),
                    ),
                )
            ]
        )


def check_rehire(termination_date: date | None, hire_date: date) -> None:
    if termination_date is not None and hire_date < termination_date:
        raise ValidationFailed(
            [
                FieldError(
                    "hire_date",
                    _(
                        "must not be before the termination date ({termination_date})",
                        termination_date=termination_date.isoformat(),
                    ),
                )
            ]
        )
