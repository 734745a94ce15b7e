"""CSV cells safe to open in a spreadsheet (enrolment.csvsafe): formulas are neutralised, by every writer."""

from __future__ import annotations

import ast
import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dashboard.queries import Participant
from dashboard.web.downloads import csv_chunks
from enrolment import csvsafe
from enrolment.csvsafe import BOM, cell, is_formula
from enrolment.files import RefusedRow
from producer.follow import RowResult, write_report

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize(
    "text",
    [
        "\uff1d1+1",  # full-width = + - @
        "\uff0b91 98450 00000",
        "\uff0d2",
        "\uff20SUM(A1:A2)",
        "\ufe66cmd",  # small form =
        "\u207a1",  # superscript +
        "\u22125",  # MINUS SIGN
        "\u200b=1+1",  # zero-width space
        "\ufeff=1+1",  # BOM
        "\u200b\ufeff\u2060\u200e=cmd",  # several invisible characters
        "\u00ad@x",  # soft hyphen
        "\u202e=x",  # bidi override
        " =1+1",  # a space (some spreadsheets trim it)
        "\u00a0+1",  # no-break space
        "\u3000\uff1dcmd",  # ideographic space, then full-width =
        "\n=1",  # a leading line feed
        "\u2028-1",  # line separator
        "\u200b\tcmd=1",  # an invisible character hiding a tab that hides a formula
    ],
)
def test_look_alikes_and_invisible_prefixes_are_caught_and_the_text_kept(text: str) -> None:
    assert is_formula(text)
    assert cell(text) == "'" + text  # the original text, not the normalised one


@pytest.mark.parametrize(
    "text",
    ["\u200b", "\ufeff", " ", "\u200bu-1", "\uff41=1", "\u00e9=1", "Ａ-1", "'\u200b=1", "\u2010x"],
)
def test_invisible_or_look_alike_text_that_is_no_formula_is_unchanged(text: str) -> None:
    assert not is_formula(text)
    assert cell(text) == text


def test_the_writer_guards_every_cell_with_a_bom_and_crlf() -> None:
    buf = io.StringIO()
    w = csvsafe.writer(buf)
    w.writerow(["h1", "h2", "h3"])
    w.writerow(["\uff1dx", None, -1])
    assert buf.getvalue() == BOM + "h1,h2,h3\r\n'\uff1dx,,'-1\r\n"
    plain = io.StringIO()
    csvsafe.writer(plain, bom=False).writerow(["=1"])
    assert plain.getvalue() == "'=1\r\n"


DANGEROUS = ["=1", "\u200b=2", "\uff0b3", "\ufeff@4", "-5"]


def test_the_upload_report_goes_through_the_guard() -> None:
    buf = io.StringIO()
    results = {n: RowResult(n, text, "user_id", "REJECTED", "USER_NOT_FOUND", text) for n, text in enumerate(DANGEROUS)}
    refused = [RefusedRow(99, "\uff1drefused", None, "BAD_ID", "\u200b=bad")]
    write_report(buf, results, refused, {100: ("\uff20pending", "user_id")})
    rows = list(csv.reader(io.StringIO(buf.getvalue().removeprefix(BOM))))
    cells = [c for row in rows[1:] for c in (row[1], row[5]) if c != "No result yet."]
    assert len(cells) == 2 * len(DANGEROUS) + 3
    assert all(c.startswith("'") for c in cells), cells


def test_the_participants_download_goes_through_the_guard() -> None:
    when = datetime(2026, 9, 1, tzinfo=UTC)
    people = [Participant(t, t, t, when, t, None, None) for t in DANGEROUS]
    data = b"".join(csv_chunks(iter(people))).decode("utf-8").removeprefix(BOM)
    rows = list(csv.reader(io.StringIO(data)))[1:]
    assert len(rows) == len(DANGEROUS)
    assert all(row[i].startswith("'") for row in rows for i in (0, 1, 2, 4)), rows


# Files that may build a csv.writer themselves: the guard itself, and the demo-data generator, which writes
# input files to import (a quote would change the identifiers the import reads), not data read back out.
OWN_WRITERS = {"enrolment/csvsafe.py", "participants/demo_data.py"}


def test_no_other_module_writes_a_csv_past_the_guard() -> None:
    """Every csv.writer/DictWriter outside the guard is a CSV that could skip it."""
    offenders = []
    for folder in ("enrolment", "processor", "producer", "dashboard", "participants", "bench", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            offenders += [
                f"{rel}:{node.lineno}"
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if _csv_writer(node)
            ]
    assert any(o.startswith("enrolment/csvsafe.py:") for o in offenders), "the scan finds the guard's own writer"
    assert [o for o in offenders if o.split(":")[0] not in OWN_WRITERS] == []


def _csv_writer(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr in ("writer", "DictWriter")
        and isinstance(node.value, ast.Name)
        and node.value.id == "csv"
    )
