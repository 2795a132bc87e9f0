"""One CSV writer for everything the product emits, one reader for what it reads."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from core import csvfile

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+33 6 12 34 56 78", "'+33 6 12 34 56 78"),
        ("-2+3", "'-2+3"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("Latitude 7450", "Latitude 7450"),
        ("a=b", "a=b"),
        (None, ""),
        (42, "42"),
    ],
)
def test_cells_that_start_like_a_formula_are_neutralised(value: object, written: str) -> None:
    assert csvfile.escape_cell(value) == written
    text = csvfile.write_csv(["h"], [[value]])
    assert text.endswith("\r\n")
    assert list(csv.reader(io.StringIO(text, newline="")))[1] == [written]


def test_the_header_is_escaped_too_and_separators_are_quoted() -> None:
    text = csvfile.write_csv(["=a", "b"], [["x,y", 'say "hi"']])
    assert text == '\'=a,b\r\n"x,y","say ""hi"""\r\n'


def test_the_reader_numbers_physical_lines_and_reports_instead_of_raising() -> None:
    errors: list[tuple[int | None, str]] = []
    data = 'a;b\n\n"multi\nline";2\n  ;  \nlast;3\n'.encode("utf-16")
    records = list(csvfile.read_records(data, lambda line, msg: errors.append((line, msg))))
    assert records == [(1, ["a", "b"]), (3, ["multi\nline", "2"]), (6, ["last", "3"])]
    assert errors == []
    for bad, message in (
        (b"", "the file is empty"),
        (b"a,b\n\x81\x8d\x8f\n", "not UTF-8 or Windows-1252"),
    ):
        errors.clear()
        assert list(csvfile.read_records(bad, lambda line, msg: errors.append((line, msg)))) in (
            [],
            [(1, ["a", "b"])],
        )
        assert len(errors) == 1 and message in errors[0][1]


def test_nothing_else_in_the_product_writes_or_parses_csv_by_hand() -> None:
    """Every CSV goes through core.csvfile (the Autopilot file, whose format forbids
    quoting, renders its checked rows itself in logistics/autopilot.py)."""
    offenders = []
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in (".venv", "tests", "bench") or rel == Path("core/csvfile.py"):
            continue
        text = path.read_text()
        if re.search(r"\bcsv\.(writer|DictWriter|reader|DictReader)\b", text):
            offenders.append(str(rel))
    assert offenders == []
