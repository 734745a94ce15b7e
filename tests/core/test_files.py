"""Unit tests for enrolment.files: participant files as states really send them."""

from __future__ import annotations

import gc
import io
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from enrolment.domain.model import MAX_ID_LENGTH, IdTypeValue
from enrolment.files import (
    BrokenCsv,
    InputError,
    InputRow,
    NotUtf8,
    RefusedRow,
    column_key,
    csv_records,
    locate_columns,
    open_input,
    read_participants,
)


def read(data: bytes, id_type: IdTypeValue | None = None) -> list[InputRow | RefusedRow]:
    return list(read_participants(io.BytesIO(data), id_type))


def accepted(rows: list[InputRow | RefusedRow]) -> list[tuple[int, str, str]]:
    return [(r.line, r.identifier, r.id_type) for r in rows if isinstance(r, InputRow)]


def refused(rows: list[InputRow | RefusedRow]) -> list[RefusedRow]:
    return [r for r in rows if isinstance(r, RefusedRow)]


def input_error(data: bytes, id_type: IdTypeValue | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        read(data, id_type)
    return info.value


# --- the one header rule and text rule every file reader uses -------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["user_id", "User ID", "userid", "user-id", "USER-ID", "  User_Id  ", "\ufeffuser_id", "user\tid", "u_s-e r_id"],
)
def test_one_header_rule_for_every_file(name: str) -> None:
    assert column_key(name) == "userid"
    assert locate_columns(["name", name], ["user_id"]) == ({"user_id": 1}, [])


def test_header_keys_that_differ_stay_different() -> None:
    keys = [column_key(n) for n in ("user_id", "state_id", "state", "users", "user_ids", "name")]
    assert len(set(keys)) == len(keys)


def test_external_id_is_another_name_for_state_id_but_state_id_wins() -> None:
    assert locate_columns(["External ID", "name"], ["user_id", "state_id"]) == ({"state_id": 0}, [])
    assert locate_columns(["external_id", "State-ID"], ["state_id"]) == ({"state_id": 1}, [])


def test_a_column_named_twice_is_found_first_and_reported() -> None:
    assert locate_columns(["User ID", "x", "user_id", "userid"], ["user_id", "x", "y"]) == (
        {"user_id": 0, "x": 1},
        ["user_id"],
    )


def _records(data: bytes, **kw: object) -> list[tuple[int, list[str]]]:
    return list(csv_records(io.BytesIO(data), **kw))  # type: ignore[arg-type]


def test_records_skip_blank_rows_keep_physical_lines_and_strip_the_bom() -> None:
    data = b'\xef\xbb\xbfa,b\r\n\r\n , \r\n1,"x\r\ny"\r\n,,\n2,z'
    assert _records(data) == [(1, ["a", "b"]), (4, ["1", "x\r\ny"]), (7, ["2", "z"])]


def test_records_name_the_line_and_byte_that_is_not_utf8() -> None:
    with pytest.raises(NotUtf8) as info:
        _records(b"a\nok\nn" + "é".encode() + b"\xff\n")
    assert (info.value.line, info.value.byte) == (3, 4)  # n, é (2 bytes), then the bad byte


def test_broken_records_can_be_skipped_but_not_an_open_quote_at_the_end() -> None:
    broken: list[BrokenCsv] = []
    data = b'h\n"a"b\nok\n'
    assert _records(data, strict=True, on_broken=broken.append) == [(1, ["h"]), (3, ["ok"])]
    assert [(b.line, b.at_end) for b in broken] == [(2, False)]
    with pytest.raises(BrokenCsv) as info:
        _records(b'h\n"never closed\nx\n', strict=True, on_broken=broken.append)
    assert (info.value.line, info.value.at_end) == (2, True)
    with pytest.raises(BrokenCsv):
        _records(data, strict=True)  # without on_broken, the first broken record stops the file


# --- encoding and line endings -------------------------------------------------------------------------------


def test_bom_and_crlf() -> None:
    rows = read(b"\xef\xbb\xbfuser_id,name\r\nu-1,Asha\r\nu-2,Ravi\r\n")
    assert rows == [InputRow(2, "u-1", "USER_ID"), InputRow(3, "u-2", "USER_ID")]


def test_lf_without_bom_and_no_final_newline() -> None:
    assert accepted(read(b"state_id\nS1\nS2")) == [(2, "S1", "STATE_ID"), (3, "S2", "STATE_ID")]


def test_non_ascii_ids_are_fine() -> None:
    assert accepted(read("user_id\nराम-01\n".encode())) == [(2, "राम-01", "USER_ID")]


def test_invalid_utf8_names_the_line() -> None:
    error = input_error(b"user_id\nu-1\nu-2\n\xe9t\xe9\nu-3\n")
    assert error.reason == "NOT_UTF8"
    assert "Line 4" in error.message


def test_latin1_header_is_not_utf8() -> None:
    assert input_error(b"Identifiant \xe9l\xe8ve\nx\n", "USER_ID").reason == "NOT_UTF8"


# --- header detection ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["user_id", "User ID", "userid", "User-Id", "  USER_ID  ", "user id"])
def test_loose_user_id_header(header: str) -> None:
    data = f"{header}\nu-1\n".encode()
    assert accepted(read(data)) == [(2, "u-1", "USER_ID")]


@pytest.mark.parametrize("header", ["state_id", "State ID", "external_id", "External Id", "stateid", "EXTERNAL-ID"])
def test_loose_state_id_header(header: str) -> None:
    data = f"{header}\nS-1\n".encode()
    assert accepted(read(data)) == [(2, "S-1", "STATE_ID")]


def test_extra_columns_are_ignored() -> None:
    rows = read(b"Name,District,State ID,Phone\nAsha,Pune,MH-001,98\nRavi,Nagpur,MH-002,97\n")
    assert accepted(rows) == [(2, "MH-001", "STATE_ID"), (3, "MH-002", "STATE_ID")]


def test_short_row_has_an_empty_id() -> None:
    rows = read(b"name,user_id\nAsha\n")
    assert [(r.line, r.reason, r.id_type) for r in refused(rows)] == [(2, "EMPTY_ID", "USER_ID")]


def test_header_wins_over_id_type() -> None:
    assert accepted(read(b"state_id\nS-1\n", "USER_ID")) == [(2, "S-1", "STATE_ID")]
    assert accepted(read(b"user_id\nu-1\n", "STATE_ID")) == [(2, "u-1", "USER_ID")]


def test_header_with_no_usable_column() -> None:
    error = input_error(b"name,email,phone\nAsha,a@x.in,98\n")
    assert error.reason == "NO_USABLE_COLUMN"
    assert "'name', 'email', 'phone'" in error.message
    assert "user_id" in error.message and "state_id" in error.message and "external_id" in error.message


def test_header_error_is_raised_on_first_next() -> None:
    rows = read_participants(io.BytesIO(b"name,email\nAsha,a@x.in\n"))
    with pytest.raises(InputError):
        next(rows)


# --- blank lines and line numbers ----------------------------------------------------------------------------


def test_blank_lines_are_skipped_and_lines_stay_physical() -> None:
    data = b"\n  \nuser_id,name\r\n\r\nu-1,Asha\r\n,\r\n , ,\r\n\r\nu-2,Ravi\r\n"
    rows = read(data)
    assert rows == [InputRow(5, "u-1", "USER_ID"), InputRow(9, "u-2", "USER_ID")]


def test_quoted_newline_keeps_later_lines_physical() -> None:
    data = b'user_id,address\nu-1,"12 MG Road\nPune\n411001"\nu-2,Nagpur\n"u-3","a\r\nb"\nu-4,x\n'
    assert accepted(read(data)) == [
        (2, "u-1", "USER_ID"),
        (5, "u-2", "USER_ID"),
        (6, "u-3", "USER_ID"),
        (8, "u-4", "USER_ID"),
    ]


def test_surrounding_spaces_are_trimmed() -> None:
    assert accepted(read(b"user_id , name\n  u-1  ,Asha\n\tu-2\t,Ravi\n")) == [
        (2, "u-1", "USER_ID"),
        (3, "u-2", "USER_ID"),
    ]


# --- both columns --------------------------------------------------------------------------------------------


def test_both_columns_prefer_user_id_then_state_id() -> None:
    data = b"user_id,state_id,name\nu-1,S-1,Asha\n,S-2,Ravi\nu-3,,Meena\n , ,Nobody\n"
    rows = read(data)
    assert accepted(rows) == [(2, "u-1", "USER_ID"), (3, "S-2", "STATE_ID"), (4, "u-3", "USER_ID")]
    (empty,) = refused(rows)
    assert (empty.line, empty.reason, empty.id_type, empty.identifier) == (5, "EMPTY_ID", None, "")
    assert empty.message == "Line 5: both the user id and the state id are empty."


def test_same_text_as_user_id_and_state_id_is_not_a_duplicate() -> None:
    rows = read(b"user_id,external_id\n123,\n,123\n")
    assert accepted(rows) == [(2, "123", "USER_ID"), (3, "123", "STATE_ID")]


# --- plain lists ---------------------------------------------------------------------------------------------


def test_plain_list_with_id_type() -> None:
    rows = read(b"u-1\r\nu-2\r\n\r\nu-3,\r\n", "USER_ID")
    assert accepted(rows) == [(1, "u-1", "USER_ID"), (2, "u-2", "USER_ID"), (4, "u-3", "USER_ID")]


def test_plain_list_of_state_ids() -> None:
    assert accepted(read(b"\nMH-1\nMH-2\n", "STATE_ID")) == [(2, "MH-1", "STATE_ID"), (3, "MH-2", "STATE_ID")]


def test_plain_list_without_id_type() -> None:
    error = input_error(b"u-1\nu-2\n")
    assert error.reason == "ID_TYPE_REQUIRED"
    assert error.message == "This file has no header; pass --id-type user_id or --id-type state_id."


def test_plain_list_with_two_values_on_a_row_cannot_be_guessed() -> None:
    rows = read_participants(io.BytesIO(b"u-1\nu-2\nu-3,Asha\n"), "USER_ID")
    assert next(rows) == InputRow(1, "u-1", "USER_ID")
    assert next(rows) == InputRow(2, "u-2", "USER_ID")
    with pytest.raises(InputError) as info:
        next(rows)
    assert info.value.reason == "NO_USABLE_COLUMN"
    assert "Line 3" in info.value.message


# --- per-row refusals ----------------------------------------------------------------------------------------


def test_empty_id() -> None:
    rows = read(b"name,state_id\nAsha,\nRavi,S-2\n")
    (row,) = refused(rows)
    assert (row.line, row.reason, row.id_type, row.identifier) == (2, "EMPTY_ID", "STATE_ID", "")
    assert row.message == "Line 2: the state id is empty."
    assert accepted(rows) == [(3, "S-2", "STATE_ID")]


def test_id_too_long() -> None:
    ok, long = "a" * MAX_ID_LENGTH, "b" * (MAX_ID_LENGTH + 1)
    rows = read(f"user_id\n{ok}\n{long}\n".encode())
    assert accepted(rows) == [(2, ok, "USER_ID")]
    (row,) = refused(rows)
    assert (row.line, row.reason, row.identifier) == (3, "ID_TOO_LONG", long)
    assert str(MAX_ID_LENGTH) in row.message


@pytest.mark.parametrize(
    "bad",
    ["u\x001", "u\x07", "u\t1", "u 1", "u\u200b1", "u\ufeff1", "u\u00a01", "u\u20281", '"u\n1"', "u\x7f"],
)
def test_invalid_characters(bad: str) -> None:
    rows = read(f"user_id\n{bad}\nu-ok\n".encode())
    (row,) = refused(rows)
    control = any(ord(c) < 32 or 127 <= ord(c) < 160 for c in bad.strip('"'))
    reason = "CONTROL_CHARACTER" if control else "INVALID_CHARACTERS"
    assert (row.line, row.reason, row.id_type) == (2, reason, "USER_ID")
    assert row.identifier.isprintable() or not control
    assert row.message.startswith("Line 2: the user id contains ")
    assert accepted(rows)[-1][1] == "u-ok"


def test_accented_and_symbol_ids_are_valid() -> None:
    assert len(accepted(read("user_id\nJosé.O'Brien_1@x\n".encode()))) == 1


def test_duplicates_are_reported_once_each_and_first_occurrence_kept() -> None:
    data = b"user_id\nu-1\nu-2\nu-1\n u-2 \nu-1\nu-3\n"
    rows = read(data)
    assert accepted(rows) == [(2, "u-1", "USER_ID"), (3, "u-2", "USER_ID"), (7, "u-3", "USER_ID")]
    dups = refused(rows)
    assert [(r.line, r.identifier, r.reason) for r in dups] == [
        (4, "u-1", "DUPLICATE_IN_FILE"),
        (5, "u-2", "DUPLICATE_IN_FILE"),
        (6, "u-1", "DUPLICATE_IN_FILE"),
    ]
    assert "line 2" in dups[0].message and "line 3" in dups[1].message and "line 2" in dups[2].message


def test_duplicates_are_found_after_the_table_grows() -> None:
    ids = [f"id-{i}" for i in range(5000)]
    data = "\n".join(["user_id", *ids, "id-0", "id-4999", "id-2500"]).encode()
    rows = read(data)
    assert len(accepted(rows)) == 5000
    assert [(r.line, r.reason) for r in refused(rows)] == [
        (5002, "DUPLICATE_IN_FILE"),
        (5003, "DUPLICATE_IN_FILE"),
        (5004, "DUPLICATE_IN_FILE"),
    ]
    assert [r.message.rsplit(" ", 1)[-1] for r in refused(rows)] == ["2.", "5001.", "2502."]


def test_refused_rows_do_not_count_as_seen() -> None:
    rows = read(b"user_id\nu 1\nu 1\n")
    assert [r.reason for r in refused(rows)] == ["INVALID_CHARACTERS", "INVALID_CHARACTERS"]


def test_duplicates_are_case_sensitive() -> None:
    assert len(accepted(read(b"user_id\nAbc\nabc\n"))) == 2


# --- files with no rows --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\r\n  \n,,\n", b"user_id\n", b"User ID,Name\r\n\r\n,\r\n"])
def test_no_rows(data: bytes) -> None:
    error = input_error(data, "USER_ID")
    assert (error.reason, error.message) == ("NO_ROWS", "The file has no participant rows.")


def test_rows_that_are_all_refused_are_still_rows() -> None:
    assert [r.reason for r in refused(read(b"user_id,name\n,Asha\n"))] == ["EMPTY_ID"]


def test_unreadable_csv() -> None:
    huge = b"x" * 200_000
    error = input_error(b'user_id\nu-1\n"' + huge + b"\n", "USER_ID")
    assert error.reason == "MALFORMED_CSV"
    assert "line 3" in error.message


def test_caller_stream_is_left_open() -> None:
    stream = io.BytesIO(b"user_id\nu-1\n")
    assert len(list(read_participants(stream))) == 1
    assert not stream.closed
    abandoned = read_participants(stream := io.BytesIO(b"user_id\nu-1\nu-2\n"))
    next(abandoned)
    del abandoned  # the generator is closed and collected here
    gc.collect()
    assert not stream.closed


# --- open_input ----------------------------------------------------------------------------------------------


def test_open_input_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(b"state_id\nS-1\n")
    with open_input(str(path)) as stream:
        assert accepted(list(read_participants(stream))) == [(2, "S-1", "STATE_ID")]


def test_open_input_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        open_input(str(tmp_path / "nope.csv"))
    assert info.value.reason == "UNREADABLE_FILE"
    assert "nope.csv" in info.value.message


def test_open_input_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        open_input(str(tmp_path))
    assert info.value.reason == "UNREADABLE_FILE"
    assert "directory" in info.value.message


def test_open_input_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.csv"
    path.write_bytes(b"user_id\nu-1\n")
    path.chmod(0)

    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    if os.geteuid() == 0:  # root reads any file: make open() answer as it would for anyone else
        monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(InputError) as info:
        open_input(str(path))
    assert info.value.reason == "UNREADABLE_FILE"
    assert "permission denied" in info.value.message


# --- streaming -----------------------------------------------------------------------------------------------


class _GeneratedFile(io.RawIOBase):
    """A large participant file produced on demand, never held in memory as a whole."""

    def __init__(self, rows: int) -> None:
        generated = (f"user-{i:07d},Participant {i}\r\n".encode() for i in range(rows))
        self._lines: Iterator[bytes] = itertools.chain([b"User ID,Name\r\n"], generated)
        self._pending = b""
        self.bytes_served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer):
            chunk = next(self._lines, None)
            if chunk is None:
                break
            self._pending += chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.bytes_served += size
        return size


def test_streams_200k_rows_without_building_a_list() -> None:
    total = 200_000
    source = _GeneratedFile(total)
    stream = io.BufferedReader(source)
    rows = read_participants(stream)
    first = next(rows)
    assert first == InputRow(2, "user-0000000", "USER_ID")
    # After the first row only a small part of the file has been read: the reader does not slurp it.
    assert source.bytes_served < 64 * 1024
    count, last = 1, first
    for row in rows:
        assert isinstance(row, InputRow), row
        count, last = count + 1, row
    assert count == total
    assert last == InputRow(total + 1, f"user-{total - 1:07d}", "USER_ID")
