"""The pure employee-input rules: all errors at once, defaults, dates, and the permission checks."""

from __future__ import annotations

from datetime import date

import pytest

from lmsync.domain.employees import check_rehire, check_termination, normalize_employee
from lmsync.domain.errors import FieldError, Forbidden, ValidationFailed
from lmsync.hr.principal import Principal

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
