"""Read the files people send, as streams, with one rule for text and one for headers.

Every file (participant lists, course progress, users and batches) is UTF-8 with or without a BOM, CRLF or
LF; blank lines and all-empty rows are skipped and every row keeps the physical line it starts on (1-based,
the header is line 1): :func:`csv_records`.  Header names are matched loosely, whatever the file: case,
spaces, ``_``, ``-`` and a BOM do not count, so ``user_id``, ``User ID``, ``userid`` and ``user-id`` name
the same column, and ``external_id`` is another name for ``state_id``: :func:`locate_columns`.  Each reader
words its own errors (reason codes and sentences) from :class:`NotUtf8` and :class:`BrokenCsv`.

A participant list is either a CSV with a header naming the id column or a plain list with one id per line,
in which case the caller says which kind of id it holds.  Rows are yielded one by one: :class:`InputRow` for
a usable id, :class:`RefusedRow` for a row that cannot be used (empty id, too long, invalid characters,
duplicate).  Problems that make the whole file unusable raise :class:`InputError`; header problems surface on
the first ``next()``, but some (invalid UTF-8, broken CSV, an extra value in a plain list) can only be found
where they occur, after rows have been yielded — so a caller that must publish nothing for an unusable file
has to read the file to the end before publishing.

Memory stays flat whatever the file size: lines are decoded and parsed one at a time, and duplicate detection
keeps an 8-byte BLAKE2b digest and a 4-byte line number per id in flat arrays (about 25 MB for a million ids).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import sys
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from enrolment.domain.model import MAX_ID_LENGTH, IdTypeValue
from enrolment.domain.text import CONTROL_CHARACTER, control_sentence, printable

# --------------------------------------------------------------------------------------------- text and CSV


class NotUtf8(Exception):
    """A line of the file is not UTF-8 text."""

    def __init__(self, line: int, byte: int) -> None:
        super().__init__(f"line {line} is not valid UTF-8 (byte {byte})")
        self.line = line
        self.byte = byte  # 1-based, in the line


class BrokenCsv(Exception):
    """A record the csv module cannot read; ``at_end`` when a quoted field is still open at the end of the file."""

    def __init__(self, line: int, detail: str, at_end: bool) -> None:
        super().__init__(f"line {line}: {detail}")
        self.line = line
        self.detail = detail
        self.at_end = at_end


def csv_records(
    stream: BinaryIO, *, strict: bool = False, on_broken: Callable[[BrokenCsv], None] | None = None
) -> Iterator[tuple[int, list[str]]]:
    """Non-blank CSV records of ``stream``, header included, each with the physical line it starts on.

    A record the csv module cannot read raises :class:`BrokenCsv`, unless ``on_broken`` takes it and reading
    goes on (never at the end of the file, where an open quote swallowed the rest).  Raises :class:`NotUtf8`.
    ``strict`` is the csv module's own (a quote inside an unquoted field is an error).  The caller's stream
    is left open.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    lines = _Lines(text)
    reader = csv.reader(lines, strict=strict)
    start = 1
    try:
        while True:
            try:
                for row in reader:
                    # Skip rows of nothing but empty cells, spaces or commas (the first cell usually decides).
                    if row and (row[0].strip() or "".join(row).strip()):
                        yield start, row
                    start = reader.line_num + 1
                return
            except csv.Error as exc:
                broken = BrokenCsv(start, str(exc), lines.done)
                if on_broken is None or broken.at_end:
                    raise broken from None
                on_broken(broken)
                start = reader.line_num + 1
    finally:
        # Do not let the wrapper close a stream it does not own (e.g. sys.stdin.buffer) when it is collected.
        with contextlib.suppress(ValueError):  # already detached or closed
            text.detach()


class _Lines:
    """Physical lines; bytes that were not UTF-8 were decoded as lone surrogates, which cannot be re-encoded."""

    def __init__(self, text: Iterable[str]) -> None:
        self._text = text
        self.done = False

    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(self._text, start=1):
            if not line.isascii():
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise NotUtf8(number, len(line[: exc.start].encode("utf-8")) + 1) from None
            yield line
        self.done = True


# ------------------------------------------------------------------------------------------------ headers

# Other names a column goes by (matched by the same loose rule).
COLUMN_ALIASES: Mapping[str, tuple[str, ...]] = {"state_id": ("external_id",)}
_NOT_COUNTED = str.maketrans("", "", "_-\ufeff")


def column_key(name: str) -> str:
    """The one header rule: ``" User-ID "``, ``user_id`` and ``userid`` are all ``userid``."""
    return "".join(name.translate(_NOT_COUNTED).lower().split())


def locate_columns(header: Sequence[str], columns: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """Where each of ``columns`` is in ``header``, and which of them the header names more than once.

    A column's own name wins over its aliases; among equal spellings the first (leftmost) wins.  Columns the
    header does not name are absent from the result; columns nobody asked for are ignored.
    """
    keys = [column_key(name) for name in header]
    found: dict[str, int] = {}
    repeated: list[str] = []
    for column in columns:
        for spelling in (column, *COLUMN_ALIASES.get(column, ())):
            places = [i for i, key in enumerate(keys) if key == column_key(spelling)]
            if places:
                found[column] = places[0]
                if len(places) > 1:
                    repeated.append(column)
                break
    return found, repeated


# ------------------------------------------------------------------------------------------ participant lists

ACCEPTED_COLUMN_NAMES = "user_id (or User ID), state_id (or State ID) or external_id (or External ID)"

_LABELS: dict[IdTypeValue, str] = {"USER_ID": "user id", "STATE_ID": "state id"}
_INVALID_CATEGORIES = frozenset({"Cc", "Cf"})
_MAX_LINE = 0xFFFFFFFF
_USER: IdTypeValue = "USER_ID"
_STATE: IdTypeValue = "STATE_ID"
# Digests are keyed by id type (BLAKE2b "person"), so user id "123" and state id "123" differ.
_HASHERS = {kind: hashlib.blake2b(digest_size=8, person=kind.encode()) for kind in ("USER_ID", "STATE_ID")}


@dataclass(frozen=True, slots=True)
class InputRow:
    """A usable id, with the physical line of the file it starts on (1-based)."""

    line: int
    identifier: str
    id_type: IdTypeValue


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A row that cannot be used; ``id_type`` is None when the row gave no way to tell."""

    line: int
    identifier: str
    id_type: IdTypeValue | None
    reason: str
    message: str


class InputError(Exception):
    """The file is unusable as a whole: nothing from it must be published."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def open_input(path: str) -> BinaryIO:
    """Open ``path`` for binary reading; ``-`` means standard input."""
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # the caller owns and closes it
    except FileNotFoundError:
        raise InputError("UNREADABLE_FILE", f"Cannot open {path!r}: there is no such file.") from None
    except IsADirectoryError:
        raise InputError("UNREADABLE_FILE", f"Cannot open {path!r}: it is a directory, not a file.") from None
    except PermissionError:
        raise InputError("UNREADABLE_FILE", f"Cannot open {path!r}: permission denied.") from None
    except OSError as exc:
        raise InputError("UNREADABLE_FILE", f"Cannot open {path!r}: {exc.strerror or exc}.") from None


def read_participants(stream: BinaryIO, id_type: IdTypeValue | None = None) -> Iterator[InputRow | RefusedRow]:
    """Yield one :class:`InputRow` or :class:`RefusedRow` per non-blank data row of ``stream``.

    ``id_type`` says what a plain list (no header) holds; when the file has a header, the header decides.
    Raises :class:`InputError` (NOT_UTF8, NO_USABLE_COLUMN, ID_TYPE_REQUIRED, NO_ROWS, MALFORMED_CSV).
    """
    try:
        yield from _read(csv_records(stream), id_type)
    except (NotUtf8, BrokenCsv) as exc:
        raise _input_error(exc) from None


def validate_file(stream: BinaryIO, id_type: IdTypeValue | None = None) -> None:
    """Reads the whole file as `read_participants` would, to raise its InputError before anything is published.

    Skips the duplicate check (row-level, and the costliest part), so a pre-check costs less than a real read.
    """
    try:
        for _row in _read(csv_records(stream), id_type, dedupe=False):
            pass
    except (NotUtf8, BrokenCsv) as exc:
        raise _input_error(exc) from None


def _input_error(exc: NotUtf8 | BrokenCsv) -> InputError:
    if isinstance(exc, NotUtf8):
        return InputError(
            "NOT_UTF8",
            f"Line {exc.line} is not valid UTF-8 text; save the file as UTF-8 (e.g. 'CSV UTF-8') and try again.",
        )
    return InputError(
        "MALFORMED_CSV",
        f"The row starting on line {exc.line} could not be read as CSV ({exc.detail}); check for an unclosed quote.",
    )


class _NoSeen:
    """Stands in for _SeenIds when duplicates do not matter (validate_file)."""

    def add(self, id_type: IdTypeValue, identifier: str, line: int) -> int | None:
        return None


def _read(
    rows: Iterator[tuple[int, list[str]]], id_type: IdTypeValue | None, dedupe: bool = True
) -> Iterator[InputRow | RefusedRow]:
    seen: Any = _SeenIds() if dedupe else _NoSeen()
    first: tuple[int, list[str]] | None = next(rows, None)
    if first is None:
        raise InputError("NO_ROWS", "The file has no participant rows.")
    header_line, header = first
    found, _repeated = locate_columns(header, ("user_id", "state_id"))  # the first of repeated columns is used
    user_col, state_col = found.get("user_id"), found.get("state_id")

    if user_col is None and state_col is None:
        found_names = [cell.strip() for cell in header if cell.strip()]
        if len(found_names) > 1:
            columns = ", ".join(repr(name) for name in found_names)
            raise InputError(
                "NO_USABLE_COLUMN",
                f"Line {header_line} has the columns {columns}, but none of them is an id column; "
                f"name the id column {ACCEPTED_COLUMN_NAMES}.",
            )
        if id_type is None:
            message = "This file has no header; pass --id-type user_id or --id-type state_id."
            raise InputError("ID_TYPE_REQUIRED", message)
        yield from _plain_list(first, rows, id_type, seen)
        return

    produced = False
    if user_col is not None and state_col is not None:
        for line, row in rows:
            produced = True
            yield _check_both(line, row, user_col, state_col, seen)
    else:
        col, kind = (user_col, _USER) if user_col is not None else (cast(int, state_col), _STATE)
        for line, row in rows:
            produced = True
            yield _check(line, row[col].strip() if col < len(row) else "", kind, seen)
    if not produced:
        raise InputError("NO_ROWS", "The file has no participant rows.")


def _check_both(line: int, row: list[str], user_col: int, state_col: int, seen: _SeenIds) -> InputRow | RefusedRow:
    """A file with both columns: the user id where there is one, else the state id."""
    user_id = row[user_col].strip() if user_col < len(row) else ""
    if user_id:
        return _check(line, user_id, _USER, seen)
    state_id = row[state_col].strip() if state_col < len(row) else ""
    if state_id:
        return _check(line, state_id, _STATE, seen)
    message = f"Line {line}: both the user id and the state id are empty."
    return RefusedRow(line, "", None, "EMPTY_ID", message)


def _plain_list(
    first: tuple[int, list[str]], rows: Iterator[tuple[int, list[str]]], id_type: IdTypeValue, seen: _SeenIds
) -> Iterator[InputRow | RefusedRow]:
    for line, row in _chain_one(first, rows):
        values = [cell.strip() for cell in row if cell.strip()]
        if len(values) > 1:
            raise InputError(
                "NO_USABLE_COLUMN",
                f"Line {line} has more than one value, but the file has no header saying which is the id; "
                f"add a header naming the id column {ACCEPTED_COLUMN_NAMES}.",
            )
        # Blank rows never get here, so there is exactly one value (normally the first cell).
        yield _check(line, values[0], id_type, seen)


def _chain_one(first: tuple[int, list[str]], rest: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
    yield first
    yield from rest


def _check(line: int, identifier: str, id_type: IdTypeValue, seen: _SeenIds) -> InputRow | RefusedRow:
    label = _LABELS[id_type]
    if not identifier:
        return RefusedRow(line, identifier, id_type, "EMPTY_ID", f"Line {line}: the {label} is empty.")
    if len(identifier) > MAX_ID_LENGTH:
        message = f"Line {line}: the {label} is {len(identifier)} characters long; the limit is {MAX_ID_LENGTH}."
        return RefusedRow(line, identifier, id_type, "ID_TOO_LONG", message)
    control = control_sentence(label, identifier)
    if control is not None:
        return RefusedRow(line, printable(identifier), id_type, CONTROL_CHARACTER, f"Line {line}: t{control[1:]}")
    bad = _invalid_character(identifier)
    if bad is not None:
        message = (
            f"Line {line}: the {label} contains {_describe(bad)} (U+{ord(bad):04X}); "
            "ids cannot contain spaces, invisible or control characters."
        )
        return RefusedRow(line, identifier, id_type, "INVALID_CHARACTERS", message)
    earlier = seen.add(id_type, identifier, line)
    if earlier is not None:
        message = f"Line {line}: the {label} {identifier!r} is already listed on line {earlier}."
        return RefusedRow(line, identifier, id_type, "DUPLICATE_IN_FILE", message)
    return InputRow(line, identifier, id_type)


def _invalid_character(identifier: str) -> str | None:
    """The first whitespace, control (Cc) or format (Cf) character of ``identifier``, if any."""
    # Fast path: isprintable() is False for every Cc, Cf and whitespace character except the ASCII space.
    if identifier.isprintable() and " " not in identifier:
        return None
    for char in identifier:
        if char.isspace() or unicodedata.category(char) in _INVALID_CATEGORIES:
            return char
    return None


def _describe(char: str) -> str:
    if char == " ":
        return "a space"
    if char == "\t":
        return "a tab"
    if char in "\r\n":
        return "a line break"
    if char.isspace():
        return "a whitespace character"
    if unicodedata.category(char) == "Cf":
        return "an invisible formatting character"
    return "a control character"


class _SeenIds:
    """Ids already seen, as 8-byte BLAKE2b digests with the first line of each, in an open-addressing table.

    Two flat arrays (8 + 4 bytes a slot, at most half full) instead of a dict of bytes objects: a million ids
    take about 25 MB rather than 120 MB.  Two different ids share a digest with probability ~n²/2⁶⁵.
    """

    __slots__ = ("_count", "_digests", "_lines", "_mask")

    def __init__(self, capacity: int = 1024) -> None:
        self._digests = array("Q", bytes(8 * capacity))
        self._lines = array("I", bytes(array("I").itemsize * capacity))
        self._mask = capacity - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, id_type: IdTypeValue, identifier: str, line: int) -> int | None:
        """Remember ``identifier`` at ``line``; if it was seen before, return the earlier line instead."""
        hasher = _HASHERS[id_type].copy()
        hasher.update(identifier.encode())
        digest = int.from_bytes(hasher.digest(), "little") or 1  # 0 marks an empty slot
        digests, mask = self._digests, self._mask
        slot = digest & mask
        while found := digests[slot]:
            if found == digest:
                return self._lines[slot]
            slot = (slot + 1) & mask
        digests[slot] = digest
        self._lines[slot] = line if line <= _MAX_LINE else _MAX_LINE
        self._count += 1
        if self._count > (mask >> 1):
            self._grow()
        return None

    def _grow(self) -> None:
        old_digests, old_lines = self._digests, self._lines
        capacity = 2 * len(old_digests)
        digests = array("Q", bytes(8 * capacity))
        lines = array("I", bytes(old_lines.itemsize * capacity))
        mask = capacity - 1
        for digest, line in zip(old_digests, old_lines, strict=True):
            if digest:
                slot = digest & mask
                while digests[slot]:
                    slot = (slot + 1) & mask
                digests[slot] = digest
                lines[slot] = line
        self._digests, self._lines, self._mask = digests, lines, mask


# ---------------------------------------------------------------------------- opening files for the commands
def open_binary(path: str) -> BinaryIO:
    """``open_input`` for a command: an unusable path is a :class:`UserError` carrying the reader's sentence."""
    from enrolment.errors import UserError

    try:
        return open_input(path)
    except InputError as exc:
        raise UserError(exc.message) from None


def rereadable(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself when it can seek, else (a pipe on stdin) its bytes spooled to a temporary file."""
    import shutil
    import tempfile
    from typing import cast

    if stream.seekable():
        return stream
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    shutil.copyfileobj(stream, spool, 1 << 20)
    stream.close()
    spool.seek(0)
    return cast(BinaryIO, spool)
