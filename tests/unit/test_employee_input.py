"""The pure employee-input rules: all errors at once, defaults, dates, and the permission checks."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from lmsync import i18n
from lmsync.domain import validation
from lmsync.domain.employees import (
    EDITABLE_FIELDS,
    EMPLOYEE_FIELDS,
    EmployeeCreateIn,
    EmployeeFieldsIn,
    EmployeePatchIn,
    check_rehire,
    check_termination,
    normalize_employee,
)
from lmsync.domain.errors import FieldError, Forbidden, ValidationFailed
from lmsync.hr.principal import Principal
from lmsync.i18n import Msg
from lmsync.sync import snapshot
from lmsync.web.schemas import EmployeeOut

TODAY = date(2026, 11, 26)


def test_minimal_employee_gets_defaults() -> None:
    data = normalize_employee(
        {"employee_number": " E-1 ", "first_name": "Zoë", "last_name": "Ngô"}, today=TODAY
    )
    assert data.employee_number == "E-1"
    assert data.hire_date == TODAY
    assert data.lms_excluded is False
    assert data.work_email is None
    assert data.language is None


def test_phone_uses_country_as_region() -> None:
    raw = {
        "employee_number": "1",
        "first_name": "A",
        "last_name": "B",
        "cell_phone": "514 555-0199",
    }
    with pytest.raises(ValidationFailed) as no_country:
        normalize_employee(raw, today=TODAY)
    assert no_country.value.errors[0].field == "cell_phone"
    data = normalize_employee({**raw, "country": "Canada"}, today=TODAY)
    assert data.cell_phone_e164 == "+15145550199"


def test_every_error_is_reported() -> None:
    with pytest.raises(ValidationFailed) as exc:
        normalize_employee(
            {"first_name": "", "work_email": "x@", "country": "Atlantis", "language": "zz"},
            today=TODAY,
        )
    fields = [e.field for e in exc.value.errors]
    assert fields == [
        "employee_number",
        "first_name",
        "last_name",
        "language",
        "work_email",
        "country",
    ]


def test_multiline_address_becomes_one_line() -> None:
    data = normalize_employee(
        {
            "employee_number": "1",
            "first_name": "A",
            "last_name": "B",
            "address": "12 rue A\n app 3\n",
        },
        today=TODAY,
    )
    assert data.address == "12 rue A, app 3"


def test_termination_and_rehire_dates() -> None:
    check_termination(date(2024, 1, 1), date(2024, 1, 1))
    with pytest.raises(ValidationFailed) as exc:
        check_termination(date(2024, 1, 2), date(2024, 1, 1))
    assert exc.value.errors == [
        FieldError("termination_date", "must not be before the hire date (2024-01-02)")
    ]
    check_rehire(date(2024, 1, 1), date(2024, 1, 1))
    with pytest.raises(ValidationFailed):
        check_rehire(date(2024, 1, 2), date(2024, 1, 1))


def test_the_employee_fields_are_defined_once() -> None:
    assert EMPLOYEE_FIELDS[:3] == ("employee_number", "first_name", "last_name")
    assert "work_email_key" in EMPLOYEE_FIELDS
    assert "work_email_key" not in EDITABLE_FIELDS
    # The input shape is written out (its types and examples are the API's), in the same order.
    assert tuple(EmployeeFieldsIn.model_fields) == EDITABLE_FIELDS
    # The sync's snapshot and the API's answer extend the one definition.
    record = [f.name for f in fields(snapshot.EmployeeRecord)]
    assert tuple(record[: len(EMPLOYEE_FIELDS)]) == EMPLOYEE_FIELDS
    assert [c.name for c in snapshot.EMPLOYEE_COLUMNS] == record
    assert tuple(EmployeeOut.model_fields)[: len(EMPLOYEE_FIELDS)] == EMPLOYEE_FIELDS
    shown = EmployeeOut.model_json_schema(mode="serialization")["properties"]
    assert set(EMPLOYEE_FIELDS) - set(shown) == {"work_email_key"}


def _type_and_field(exc: ValidationError) -> list[tuple[str, str]]:
    return [(e["type"], ".".join(map(str, e["loc"]))) for e in exc.errors()]


def test_a_type_error_comes_with_the_domain_errors_of_the_other_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        EmployeeCreateIn.model_validate(
            {"employee_number": "1", "first_name": "A", "hire_date": [], "work_email": "x@"}
        )
    assert _type_and_field(exc.value) == [
        ("date_type", "hire_date"),
        (validation.DOMAIN_ERROR, "last_name"),
        (validation.DOMAIN_ERROR, "work_email"),
    ]
    messages = validation.field_errors(exc.value.errors())
    assert [(e.field, e.message) for e in messages][1] == ("last_name", "is required")
    assert isinstance(messages[1].message, Msg)
    # A patch: only the fields it sends.
    with pytest.raises(ValidationError) as patch:
        EmployeePatchIn.model_validate({"lms_excluded": "maybe", "country": "Atlantis"})
    assert _type_and_field(patch.value) == [
        ("bool_parsing", "lms_excluded"),
        (validation.DOMAIN_ERROR, "country"),
    ]
    # Without a type error, the domain's rules run where they always did (after the model).
    assert EmployeeCreateIn.model_validate({"work_email": "x@"}).work_email == "x@"


def _error(kind: str, **ctx: Any) -> ErrorDetails:
    return ErrorDetails(type=kind, loc=("f",), msg="pydantic's words", input=None, ctx=ctx)


@pytest.mark.parametrize(
    ("error", "english"),
    [
        (_error("missing"), "is required"),
        (_error("string_too_long", max_length=50), "must be at most 50 characters"),
        (_error("string_too_short", min_length=1), "must not be empty"),
        (_error("less_than_equal", le=200), "must be at most 200"),
        (_error("literal_error", expected="'a', 'b' or 'c'"), "must be one of: a, b, c"),
        (_error("value_error", error=ValueError(i18n._("is required"))), "is required"),
        (_error("no_such_attribute", attribute="x"), "invalid value"),
    ],
)
def test_pydantic_errors_in_our_words(error: ErrorDetails, english: str) -> None:
    said = validation.message(error)
    assert said == english
    assert isinstance(said, Msg)


def test_principal_permissions() -> None:
    mhr = Principal("u", "e", is_operator=False, account_id="a", role="MHR")
    viewer = Principal("u", "e", is_operator=False, account_id="a", role="viewer")
    operator = Principal("u", "e", is_operator=True, account_id=None, role=None)
    assert mhr.writable_account() == "a"
    assert viewer.account() == "a"
    with pytest.raises(Forbidden):
        viewer.writable_account()
    with pytest.raises(Forbidden):
        operator.account()
    with pytest.raises(Forbidden):
        mhr.require_operator()
    operator.require_operator()
