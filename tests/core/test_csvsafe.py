"""CSV cells safe to open in a spreadsheet (enrolment.csvsafe): formulas are neutralised."""

from __future__ import annotations

import csv
import io

import pytest

from enrolment.csvsafe import BOM, cell


@pytest.mark.parametrize(
    "text",
    [
        "=1+1",
        '=HYPERLINK("http://evil","x")',
        "+91 98450 00000",
        "-2",
        "-",
        "@SUM(A1:A2)",
        "\tcmd",
        "\rcmd",
        "=",
        "==",
    ],
)
def test_dangerous_leading_characters_get_a_quote(text: str) -> None:
    assert cell(text) == "'" + text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "u-123",
        "KA-0001",
        "admin@example.org",  # @ not at the start
        "a=b",
        "1+1",
        "x-y",
        "'=1",  # already quoted
        "é=1",
        "0",
    ],
)
def test_other_text_is_unchanged(text: str) -> None:
    assert cell(text) == text


def test_none_is_empty() -> None:
    assert cell(None) == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [(42, "42"), (0, "0"), (-5, "'-5"), (1.5, "1.5"), (-0.5, "'-0.5"), (True, "True"), (False, "False")],
)
def test_non_strings_are_stringified_then_guarded(value: object, expected: str) -> None:
    assert cell(value) == expected


def test_only_the_first_character_matters() -> None:
    assert cell("a=1+2-3@4") == "a=1+2-3@4"
    assert cell("=a=1") == "'=a=1"


def test_guarded_cells_survive_csv_quoting() -> None:
    row = [cell(v) for v in ("=cmd|' /C calc'!A0", "u-1", None, "+1", 'say "hi"')]
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    (back,) = list(csv.reader(io.StringIO(buf.getvalue())))
    assert back == ["'=cmd|' /C calc'!A0", "u-1", "", "'+1", 'say "hi"']
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in back)


def test_bom_is_the_utf8_byte_order_mark() -> None:
    assert BOM == "\ufeff"
    assert BOM.encode("utf-8") == b"\xef\xbb\xbf"
