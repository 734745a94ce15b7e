"""Reading the course-progress CSV (producer/progress.py) and the demo progress file it must accept."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from participants.demo_data import write_demo_data
from producer.progress import (
    ProgressFileError,
    ProgressRow,
    RefusedProgress,
    parse_row,
    progress_record,
    read_progress,
)


def _read(text: str) -> list[ProgressRow | RefusedProgress]:
    return list(read_progress(io.BytesIO(text.encode("utf-8"))))


def test_rows_with_and_without_completion() -> None:
    rows = _read(
        "\ufeffbatch_id,user_id,progress,completed_at\r\n"
        "b1,u1,100,2026-09-01T10:00:00+00:00\r\n"
        "b1,u2,40,\r\n"
        "\r\n"
        "b1,u3,75%,\r\n"
    )
    assert rows == [
        ProgressRow(2, "b1", "u1", 100, 1788256800000, None),
        ProgressRow(3, "b1", "u2", 40, None, None),
        ProgressRow(5, "b1", "u3", 75, None, None),
    ]


def test_updated_at_column_is_used_and_defaults_to_the_run_time() -> None:
    rows = _read("Batch ID,User ID,Progress,Completed At,Updated At\nb1,u1,10,,2026-01-01\nb1,u2,20,,\n")
    assert isinstance(rows[0], ProgressRow) and rows[0].updated_at_ms == 1767225600000
    assert isinstance(rows[1], ProgressRow)
    assert progress_record(rows[1], 123)["updated_at"] == 123
    assert progress_record(rows[0], 123)["updated_at"] == 1767225600000


def test_header_names_follow_the_one_header_rule_of_every_file() -> None:
    rows = _read("\ufeffBATCH-ID,user-id,Progress,completedAt,Extra\nb1,u1,10,,x\n")
    assert rows == [ProgressRow(2, "b1", "u1", 10, None, None)]


def test_a_refused_row_names_the_line_it_starts_on() -> None:
    rows = _read('batch_id,user_id,progress,completed_at,note\nb1,u1,10,,"two\nlines"\nb1,u2,x,,\n')
    assert [(r.line, type(r).__name__) for r in rows] == [(2, "ProgressRow"), (4, "RefusedProgress")]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"batch_id": "", "user_id": "u", "progress": "1"}, "EMPTY_FIELD"),
        ({"batch_id": "b", "user_id": "u", "progress": "abc"}, "BAD_PROGRESS"),
        ({"batch_id": "b", "user_id": "u", "progress": "101"}, "BAD_PROGRESS"),
        ({"batch_id": "b", "user_id": "u", "progress": "5", "completed_at": "yesterday"}, "BAD_TIMESTAMP"),
        ({"batch_id": "b" * 129, "user_id": "u", "progress": "5"}, "TOO_LONG"),
    ],
)
def test_bad_rows_are_refused_with_a_reason(values: dict[str, str], reason: str) -> None:
    row = parse_row(7, values)
    assert isinstance(row, RefusedProgress) and row.reason == reason and row.line == 7 and row.message


def test_duplicates_and_short_rows_are_refused_but_do_not_stop_the_file() -> None:
    rows = _read("batch_id,user_id,progress,completed_at\nb1,u1,10,\nb1,u1,20,\nb1,u2\nb1,u3,30,\n")
    assert [type(r).__name__ for r in rows] == ["ProgressRow", "RefusedProgress", "RefusedProgress", "ProgressRow"]
    assert [r.reason for r in rows if isinstance(r, RefusedProgress)] == ["DUPLICATE", "BAD_ROW"]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"batch_id,user_id\nb1,u1\n", "no column progress, completed_at"),
        (b"batch_id,user_id,progress,completed_at\n\xff\xfe,x,1,\n", "not UTF-8"),
        (
            b'batch_id,user_id,progress,completed_at\nb1,u1,1,\nb1,"' + b"x" * 200_000 + b"\n",
            "not valid CSV near line 3",
        ),
    ],
)
def test_file_level_problems_raise_a_sentence(data: bytes, words: str) -> None:
    with pytest.raises(ProgressFileError, match=words):
        list(read_progress(io.BytesIO(data)))


def test_the_demo_progress_file_is_read_whole(tmp_path: Path) -> None:
    files = write_demo_data(tmp_path, teachers_per_state=300)
    with files.progress.open("rb") as f:
        rows = list(read_progress(f))
    assert len(rows) == 300 and all(isinstance(r, ProgressRow) for r in rows)
    done = [r for r in rows if isinstance(r, ProgressRow) and r.progress == 100]
    assert done and all(r.completed_at_ms is not None for r in done)
