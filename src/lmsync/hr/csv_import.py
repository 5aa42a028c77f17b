"""CSV import of employees: valid rows are hired, invalid ones reported by line and field."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from lmsync.domain import validation
from lmsync.domain.employees import EDITABLE_FIELDS, EmployeeCreateIn
from lmsync.domain.errors import FieldError, ValidationFailed
from lmsync.hr import employees
from lmsync.hr.principal import Principal
from lmsync.i18n import Msg, _

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 100_000
REQUIRED_COLUMNS = ("employee_number", "first_name", "last_name")
_FRENCH_BOOLEANS = {"oui": "true", "non": "false", "vrai": "true", "faux": "false"}


@dataclass(frozen=True)
class ImportedRow:
    line: int
    employee_number: str
    employee_id: str | None  # None in a dry run


@dataclass(frozen=True)
class RejectedRow:
    line: int
    employee_number: str | None
    errors: list[FieldError]


@dataclass
class ImportReport:
    dry_run: bool
    imported: list[ImportedRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


def _file_error(message: Msg) -> ValidationFailed:
    return ValidationFailed([FieldError("file", message)])


def iter_rows(content: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows as (line, {column: value}), read lazily; an unreadable file raises
    ``ValidationFailed`` (a bad header on the first row asked for, a bad row when reached)."""
    if len(content) > MAX_BYTES:
        raise _file_error(_("file is larger than {size} MB", size=MAX_BYTES // (1024 * 1024)))
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _file_error(_("file is not UTF-8 text (byte {offset})", offset=exc.start)) from exc
    if not text.strip():
        raise _file_error(_("file is empty; the first line must name the columns"))
    first_line = text.splitlines()[0]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [name.strip() for name in next(reader)]
        unknown = [name for name in header if name not in EDITABLE_FIELDS]
        if unknown:
            raise _file_error(
                _(
                    "unknown columns: {unknown}; columns are: {columns}",
                    unknown=", ".join(unknown),
                    columns=", ".join(EDITABLE_FIELDS),
                )
            )
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise _file_error(_("missing required columns: {columns}", columns=", ".join(missing)))
        if len(set(header)) != len(header):
            raise _file_error(_("a column is named twice in the header"))
        count = 0
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if count >= MAX_ROWS:
                raise _file_error(_("file has more than {count} rows; split it", count=MAX_ROWS))
            count += 1
            line = reader.line_num
            if len(values) != len(header):
                width = _(
                    "{values} values for {columns} columns", values=len(values), columns=len(header)
                )
                yield line, {"__width__": width}
                continue
            yield line, dict(zip(header, values, strict=True))
    except csv.Error as exc:
        raise _file_error(
            _("line {line}: {problem}", line=reader.line_num, problem=_csv_problem(exc))
        ) from exc


# The csv module's messages (its English) for a malformed file, said in the reader's language.
_END_OF_DATA = "unexpected end of data"
_AFTER_QUOTE = re.compile(r"'(.)' expected after '\"'", re.S)


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if text == _END_OF_DATA:
        return _("unexpected end of data")
    found = _AFTER_QUOTE.fullmatch(text)
    if found:
        return _("'{delimiter}' expected after '\"'", delimiter=found[1])
    return text


def parse_csv(content: bytes) -> list[tuple[int, dict[str, str]]]:
    """All rows as (line, {column: value}); an unreadable file raises ``ValidationFailed``."""
    return list(iter_rows(content))


def count_rows(content: bytes) -> int:
    """Check the whole file without keeping its rows; an unreadable file raises."""
    return sum(1 for _row in iter_rows(content))


def _row_input(values: dict[str, str]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for name, value in values.items():
        value = value.strip()
        if not value:
            continue
        if name == "lms_excluded":
            value = _FRENCH_BOOLEANS.get(value.casefold(), value)
        raw[name] = value
    return EmployeeCreateIn.model_validate(raw).model_dump(exclude_none=True)


def pydantic_field_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic's errors as field messages, in lmsync's translatable words
    (``domain.validation``)."""
    return validation.field_errors(exc.errors())


def import_rows(
    session: Session,
    principal: Principal | None,
    account_id: str,
    rows: Iterable[tuple[int, dict[str, str]]],
    *,
    dry_run: bool,
    seen: set[str] | None = None,
) -> ImportReport:
    """Hire every valid row (each in a savepoint); report the others. A dry run writes nothing.

    ``seen``: the employee numbers a dry run already accepted in earlier chunks of the same file
    (a real import finds them in the database)."""
    report = ImportReport(dry_run=dry_run)
    account = employees._account(session, account_id)
    seen = set() if seen is None else seen
    for line, values in rows:
        number = values.get("employee_number", "").strip() or None
        if "__width__" in values:
            report.rejected.append(RejectedRow(line, None, [FieldError("", values["__width__"])]))
            continue
        try:
            raw = _row_input(values)
            if dry_run:
                data = employees.validate_new(session, account, raw)
                if data.employee_number in seen:
                    raise ValidationFailed(
                        [FieldError("employee_number", _("appears twice in this file"))]
                    )
                seen.add(data.employee_number)
                report.imported.append(ImportedRow(line, data.employee_number, None))
            else:
                with session.begin_nested():
                    employee = employees.hire(session, principal, account_id, raw)
                report.imported.append(ImportedRow(line, employee.employee_number, employee.id))
        except ValidationError as exc:
            report.rejected.append(RejectedRow(line, number, pydantic_field_errors(exc)))
        except ValidationFailed as exc:
            report.rejected.append(RejectedRow(line, number, exc.errors))
    return report


def import_employees(
    session: Session,
    principal: Principal | None,
    account_id: str,
    content: bytes,
    *,
    dry_run: bool,
) -> ImportReport:
    """The whole file in the caller's transaction (small files; large ones go through
    ``lmsync.hr.imports`` in chunks)."""
    return import_rows(session, principal, account_id, parse_csv(content), dry_run=dry_run)
