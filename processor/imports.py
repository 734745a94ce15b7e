"""Streaming, re-runnable upsert imports of reference data: users and course batches from CSV.

How a file is loaded (one transaction per file; nothing is committed when a file-level error is raised):

1. The CSV is read record by record (``enrolment.files.csv_records``: UTF-8 with or without BOM, CRLF or
   LF, blank lines skipped) and every row is validated in
   Python; bad rows become :class:`RowError` entries (1-based physical line where the record starts,
   header = line 1) and are skipped, good rows are encoded for COPY's text format and buffered.
2. Every ``chunk_size`` good rows are COPY'd into one TEMP staging table, so memory stays bounded by the
   chunk (plus the ids seen so far, needed to reject duplicates).
3. After the last chunk, set-based SQL upserts the stage into the target table:
   ``INSERT ... SELECT ... ON CONFLICT (pk) DO UPDATE ... WHERE (row) IS DISTINCT FROM (excluded)``.
   The guard means an unchanged row is never rewritten (``updated_at`` only moves on a real change), so
   re-running a file reports 0 inserted / 0 updated.  ``RETURNING (xmax = 0)`` tells inserts from updates.

File rules: the header is required; its names are matched by the one header rule of every file
(``enrolment.files.locate_columns``: case, spaces, ``_`` and ``-`` do not count, so ``User ID``, ``userid``
and ``user-id`` all name ``user_id``; ``external_id`` names ``state_id``); extra columns are ignored, a
missing one raises :class:`ImportFileError` (MISSING_COLUMN), one named twice DUPLICATE_COLUMN.  Blank lines
and all-empty rows are skipped.  Values are trimmed; state codes are upper-cased and created on the fly
(name = code) when not yet known.

Users: ``user_id`` and ``state`` are required, ``state_id`` and ``name`` may be empty.  An optional
``served_states`` column lists the states an IMPLEMENTATION_TEAM user serves, separated by ``;`` (as roles
are); where the column is present it replaces the user's served states (empty: none), where it is absent
they are left alone.  A state no file or batch has named yet is UNKNOWN_STATE, served states on a user
without the role NOT_IMPLEMENTATION_TEAM; a user whose only change is their served states counts as updated.
The optional profile columns ``org_name``, ``district``, ``block``, ``school_name`` and ``school_udise`` (Sunbird's
course progress report) work the same way: a file with the column sets it (empty: none), one without leaves it.
The first row naming a ``user_id`` (or a ``(state, state_id)`` pair) claims it; later rows are DUPLICATE_ID errors, and
so is a row taking a ``(state, state_id)`` that the database gives to a user the file does not mention.
State ids swapped or moved between users of the same file are handled.

Batches: ``batch_id``, ``course_id``, ``state``, ``enrollment_type`` and ``status`` are required.  The
``participant_count`` the processor maintains is never written; the mentor set (``batch_mentors``) is
replaced by the file's list, and a batch whose only change is its mentor set counts as updated.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import BinaryIO

import psycopg2.extensions
import sqlalchemy

from enrolment.domain.model import BATCH_STATUSES, ENROLLMENT_TYPES, IMPLEMENTATION_TEAM, ROLES, USER_STATUSES
from enrolment.domain.text import CONTROL_CHARACTER, control_sentence
from enrolment.files import BrokenCsv, NotUtf8, csv_records, locate_columns
from enrolment.store.copy import copy_cell

__all__ = [
    "BATCH_COLUMNS",
    "PROFILE_COLUMNS",
    "USER_COLUMNS",
    "USER_OPTIONAL_COLUMNS",
    "ImportFileError",
    "ImportReport",
    "RowError",
    "format_report",
    "import_batches",
    "import_users",
]

USER_COLUMNS: tuple[str, ...] = ("user_id", "state_id", "state", "name", "roles", "status")
# The profile columns of Sunbird's course progress report (organisation, district, block, school): optional,
# and where a file has one it sets it (an empty value clears it), where it has not the stored value stays.
PROFILE_COLUMNS: tuple[str, ...] = ("org_name", "district", "block", "school_name", "school_udise")
USER_OPTIONAL_COLUMNS: tuple[str, ...] = ("served_states", *PROFILE_COLUMNS)
BATCH_COLUMNS: tuple[str, ...] = (
    "batch_id",
    "course_id",
    "course_name",
    "state",
    "enrollment_type",
    "status",
    "start_date",
    "end_date",
    "mentors",
)

# Accepted spellings (already lower-cased) -> stored value.
_BATCH_STATUS_VALUES: dict[str, str] = {
    **{s: s for s in BATCH_STATUSES},
    "0": "upcoming",  # Sunbird's numeric batch status codes
    "1": "ongoing",
    "2": "ended",
}
_BATCH_STATUS_WORDS = ", ".join(_BATCH_STATUS_VALUES)
_ENROLLMENT_TYPE_VALUES: dict[str, str] = {
    "invite-only": "invite-only",
    "invite_only": "invite-only",
    "inviteonly": "invite-only",
    "invite only": "invite-only",
    "open": "open",
}
_ROLE_SET = frozenset(ROLES)
_USER_STATUS_VALUES: dict[str, str] = {"active": "active", "inactive": "inactive", "": "active"}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_COPY_READ_SIZE = 1 << 20
_MAX_SHOWN = 80  # longest value quoted verbatim in an error message


# --------------------------------------------------------------------------------------------- API types


@dataclass(frozen=True, slots=True)
class RowError:
    """One rejected row (a row can have several): 1-based physical line of the file, reason code, message."""

    line: int
    reason: str
    message: str


@dataclass(frozen=True)
class ImportReport:
    """Outcome of one file.  ``rows_read`` counts data rows (blank lines are skipped, not counted)."""

    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    errors: list[RowError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """Number of rows not loaded (distinct lines with at least one error)."""
        return len({e.line for e in self.errors})


class ImportFileError(Exception):
    """The file as a whole cannot be imported (e.g. MISSING_COLUMN); nothing was loaded."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def format_report(report: ImportReport, kind: str) -> str:
    """A human summary, then one line per error (``line 7: BAD_STATUS — status "x" is not one of ...``)."""
    summary = (
        f"{kind} import: {report.rows_read} rows read — {report.inserted} inserted, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.rejected} rejected"
    )
    if report.errors:
        summary += f" ({len(report.errors)} error{'s' if len(report.errors) != 1 else ''})"
    return "\n".join([summary, *(f"line {e.line}: {e.reason} — {e.message}" for e in report.errors)])


def import_users(engine: sqlalchemy.Engine, stream: BinaryIO, chunk_size: int = 20000) -> ImportReport:
    """Upserts users from CSV ``user_id,state_id,state,name,roles,status`` (see the module docstring)."""
    return _run_import(engine, stream, chunk_size, _USERS)


def import_batches(engine: sqlalchemy.Engine, stream: BinaryIO, chunk_size: int = 20000) -> ImportReport:
    """Upserts course batches (and their mentor sets) from CSV
    ``batch_id,course_id,course_name,state,enrollment_type,status,start_date,end_date,mentors``."""
    return _run_import(engine, stream, chunk_size, _BATCHES)


# ---------------------------------------------------------------------------------------------- reading


def _open_csv(
    stream: BinaryIO, columns: Sequence[str], errors: list[RowError], optional: Sequence[str] = ()
) -> tuple[list[int], int, Iterator[tuple[int, list[str]]]]:
    """Reads the header; returns the index of each wanted column (then of each ``optional`` one, -1 when the
    header lacks it), the header width and the data records.

    A row whose quoting is broken mid-file becomes a MALFORMED_ROW error and reading goes on.
    """

    def malformed(broken: BrokenCsv) -> None:
        errors.append(RowError(broken.line, "MALFORMED_ROW", f"the row is not valid CSV ({broken.detail})"))

    records = csv_records(stream, strict=True, on_broken=malformed)
    header = next(records, None)
    if header is None:
        raise ImportFileError("MISSING_COLUMN", f"the file has no header row; expected columns: {', '.join(columns)}")
    positions, repeated = locate_columns(header[1], [*columns, *optional])
    if repeated:
        raise ImportFileError("DUPLICATE_COLUMN", f"column {repeated[0]} appears twice in the header")
    missing = [c for c in columns if c not in positions]
    if missing:
        found = ", ".join(n.strip() for n in header[1])
        raise ImportFileError(
            "MISSING_COLUMN",
            f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)} (header has: {found})",
        )
    return [positions[c] for c in columns] + [positions.get(c, -1) for c in optional], len(header[1]), records


def _file_error(exc: NotUtf8 | BrokenCsv) -> ImportFileError:
    """A text problem that stops the whole file (the rows before it are rolled back)."""
    if isinstance(exc, NotUtf8):
        return ImportFileError(
            "BAD_ENCODING", f"line {exc.line} is not valid UTF-8 (byte {exc.byte}); save the file as UTF-8"
        )
    # A quoted field still open at the end of the file swallowed the rest of it (mid-file, see _open_csv).
    return ImportFileError(
        "MALFORMED_CSV", f"line {exc.line}: a quoted field is never closed before the end of the file"
    )


# ------------------------------------------------------------------------------------------- validation


def _shown(value: str) -> str:
    if len(value) > _MAX_SHOWN:
        value = value[: _MAX_SHOWN - 1] + "…"
    return f'"{value}"'


def _array_literal(items: Sequence[str]) -> str:
    """A PostgreSQL array literal (before COPY escaping), every element quoted."""
    return "{" + ",".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items) + "}"


def _split_list(value: str) -> list[str]:
    """``"a; b;;a"`` -> ``["a", "b"]``: trimmed, empty parts dropped, duplicates dropped, order kept."""
    return list(dict.fromkeys(p for p in (part.strip() for part in value.split(";")) if p))


def _parse_date(name: str, value: str, line: int, errors: list[RowError]) -> tuple[bool, date | None]:
    if not value:
        return True, None
    if _ISO_DATE.fullmatch(value):
        try:
            return True, date.fromisoformat(value)
        except ValueError:
            pass
    errors.append(RowError(line, "BAD_DATE", f"{name} {_shown(value)} is not a valid date in YYYY-MM-DD form"))
    return False, None


_USER_COLUMNS = ("user_id", "state_id", "state", "name", "roles", "status", "served_states")
_BATCH_COLUMNS = (
    "batch_id",
    "course_id",
    "course_name",
    "state",
    "enrollment_type",
    "status",
    "start_date",
    "end_date",
    "mentors",
)


def _control_characters(line: int, columns: Sequence[str], values: list[str], errors: list[RowError]) -> bool:
    """True (one error per field appended) when a value holds a control character (enrolment.domain.text)."""
    found = False
    for column, value in zip(columns, values, strict=False):
        sentence = control_sentence(column, value)
        if sentence is not None:
            errors.append(RowError(line, CONTROL_CHARACTER, sentence.rstrip(".")))
            found = True
    return found


_Validator = Callable[[int, list[str], list[RowError]], list[str | None] | None]


def _served_states(line: int, text: str | None, roles: str, errors: list[RowError]) -> str | None:
    """The stage value of ``served_states``: None when the file has no such column, else an array literal."""
    if text is None:
        return None
    states = [s.upper() for s in _split_list(text)]
    if states and f'"{IMPLEMENTATION_TEAM}"' not in roles:
        errors.append(
            RowError(
                line,
                "NOT_IMPLEMENTATION_TEAM",
                f"served_states {_shown(text)} is only for {IMPLEMENTATION_TEAM} users; "
                "give the user that role or leave served_states empty",
            )
        )
    return _array_literal(states)


class _UserRows:
    """Validates user rows; returns the stage values or None (errors appended)."""

    def __init__(self, present: frozenset[str] = frozenset()) -> None:
        self.served = "served_states" in present
        self.user_lines: dict[str, int] = {}
        self.state_id_lines: dict[tuple[str, str], int] = {}
        # roles text -> (array literal, unknown roles); files repeat a handful of role lists, so parse each once.
        self.roles_cache: dict[str, tuple[str, list[str]]] = {}

    def _roles(self, roles_text: str) -> tuple[str, list[str]]:
        parsed = self.roles_cache.get(roles_text)
        if parsed is None:
            roles = [r.upper() for r in _split_list(roles_text)]
            parsed = (_array_literal(roles), [r for r in roles if r not in _ROLE_SET])
            if len(self.roles_cache) < 10_000:
                self.roles_cache[roles_text] = parsed
        return parsed

    def __call__(self, line: int, values: list[str], errors: list[RowError]) -> list[str | None] | None:
        if _control_characters(line, (*_USER_COLUMNS, *PROFILE_COLUMNS), values, errors):
            return None
        user_id, state_id, state, name, roles_text, status_text, served_text = values[:7]
        profile = [v or None for v in values[7:]]
        state = state.upper()
        before = len(errors)
        if not user_id:
            errors.append(RowError(line, "EMPTY_FIELD", "user_id is empty"))
        if not state:
            errors.append(RowError(line, "EMPTY_FIELD", "state is empty"))
        roles, unknown = self._roles(roles_text)
        if unknown:
            shown = ", ".join(_shown(r) for r in unknown)
            verb = "is not one of" if len(unknown) == 1 else "are not among"
            errors.append(
                RowError(
                    line, "UNKNOWN_ROLE", f"role{'s' if len(unknown) > 1 else ''} {shown} {verb} {', '.join(ROLES)}"
                )
            )
        status = _USER_STATUS_VALUES.get(status_text.lower())
        if status is None:
            errors.append(
                RowError(line, "BAD_STATUS", f"status {_shown(status_text)} is not one of {', '.join(USER_STATUSES)}")
            )
        # The first row naming an id claims it (even if that row has other errors); later rows are duplicates.
        duplicate = False
        if user_id:
            first = self.user_lines.get(user_id)
            if first is not None:
                duplicate = True
                errors.append(
                    RowError(line, "DUPLICATE_ID", f"user_id {_shown(user_id)} already appears on line {first}")
                )
        if state and state_id and not duplicate:
            first = self.state_id_lines.get((state, state_id))
            if first is not None:
                duplicate = True
                errors.append(
                    RowError(
                        line,
                        "DUPLICATE_ID",
                        f"state_id {_shown(state_id)} of state {state} already appears on line {first}",
                    )
                )
        if not duplicate:
            if user_id:
                self.user_lines[user_id] = line
            if state and state_id:
                self.state_id_lines[(state, state_id)] = line
        served = _served_states(line, served_text if self.served else None, roles, errors)
        if len(errors) != before:
            return None
        return [user_id, state_id or None, state, name, roles, status, served, *profile]


class _BatchRows:
    """Validates batch rows; returns the stage values or None (errors appended)."""

    def __init__(self, present: frozenset[str] = frozenset()) -> None:
        self.batch_lines: dict[str, int] = {}

    def __call__(self, line: int, values: list[str], errors: list[RowError]) -> list[str | None] | None:
        if _control_characters(line, _BATCH_COLUMNS, values, errors):
            return None
        batch_id, course_id, course_name, state, type_text, status_text, start_text, end_text, mentors_text = values
        state = state.upper()
        before = len(errors)
        for col, value in (
            ("batch_id", batch_id),
            ("course_id", course_id),
            ("state", state),
            ("enrollment_type", type_text),
            ("status", status_text),
        ):
            if not value:
                errors.append(RowError(line, "EMPTY_FIELD", f"{col} is empty"))
        enrollment_type = _ENROLLMENT_TYPE_VALUES.get(type_text.lower())
        if type_text and enrollment_type is None:
            errors.append(
                RowError(
                    line,
                    "BAD_ENROLLMENT_TYPE",
                    f"enrollment_type {_shown(type_text)} is not one of {', '.join(ENROLLMENT_TYPES)}",
                )
            )
        status = _BATCH_STATUS_VALUES.get(status_text.lower())
        if status_text and status is None:
            errors.append(
                RowError(line, "BAD_STATUS", f"status {_shown(status_text)} is not one of {_BATCH_STATUS_WORDS}")
            )
        start_ok, start = _parse_date("start_date", start_text, line, errors)
        end_ok, end = _parse_date("end_date", end_text, line, errors)
        if start_ok and end_ok and start is not None and end is not None and end < start:
            errors.append(RowError(line, "BAD_DATE_RANGE", f"end_date {end} is before start_date {start}"))
        if batch_id:
            first = self.batch_lines.setdefault(batch_id, line)
            if first != line:
                errors.append(
                    RowError(line, "DUPLICATE_ID", f"batch_id {_shown(batch_id)} already appears on line {first}")
                )
        if len(errors) != before:
            return None
        return [
            batch_id,
            course_id,
            course_name,
            state,
            enrollment_type,
            status,
            start.isoformat() if start else None,
            end.isoformat() if end else None,
            _array_literal(_split_list(mentors_text)),
        ]


# ------------------------------------------------------------------------------------------------- SQL

_Cursor = psycopg2.extensions.cursor
_Finish = Callable[[_Cursor, frozenset[str]], tuple[int, int, list[RowError]]]  # given the optional columns


@dataclass(frozen=True)
class _Kind:
    columns: tuple[str, ...]
    stage: str
    stage_ddl: str
    validator: Callable[[frozenset[str]], _Validator]  # given the optional columns the header has
    finish: _Finish
    optional: tuple[str, ...] = ()


_USERS_STAGE = "import_users_stage"
_USERS_STAGE_DDL = f"""
CREATE TEMP TABLE {_USERS_STAGE} (
    line integer NOT NULL,
    user_id text NOT NULL,
    state_id text,
    state text NOT NULL,
    name text NOT NULL,
    roles text[] NOT NULL,
    status text NOT NULL,
    served_states text[],
    org_name text,
    district text,
    block text,
    school_name text,
    school_udise text,
    outcome text
) ON COMMIT DROP
"""

_CREATE_STATES = """
INSERT INTO states (code, name)
SELECT DISTINCT state, state FROM {stage}
ON CONFLICT (code) DO NOTHING
"""

# A row taking a (state, state_id) held in the database by a user the file does not mention would break
# users_state_state_id_key: reject it.  Repeated until stable, since a rejected row keeps its user's old
# state_id in place, which can in turn block another row.
_USERS_REJECT_TAKEN = f"""
DELETE FROM {_USERS_STAGE} s
USING users u
WHERE u.state = s.state AND u.state_id = s.state_id AND u.user_id <> s.user_id
  AND NOT EXISTS (SELECT 1 FROM {_USERS_STAGE} o WHERE o.user_id = u.user_id)
RETURNING s.line, s.state, s.state_id, u.user_id
"""

# Users of the file that currently hold a state_id another row of the file takes (ids swapped or moved):
# their state_id is cleared first so the upsert never collides midway; the upsert then sets their new one.
_USERS_RELEASE_MOVED = f"""
UPDATE users u SET state_id = NULL
FROM {_USERS_STAGE} s
WHERE u.state = s.state AND u.state_id = s.state_id AND u.user_id <> s.user_id
"""

# A served state no row of the file and no earlier import has named (served_states -> states).
_USERS_REJECT_UNKNOWN_SERVED = f"""
DELETE FROM {_USERS_STAGE} s
WHERE s.served_states IS NOT NULL
  AND EXISTS (SELECT 1 FROM unnest(s.served_states) x WHERE x NOT IN (SELECT code FROM states))
RETURNING s.line, ARRAY(SELECT x FROM unnest(s.served_states) x WHERE x NOT IN (SELECT code FROM states))
"""


def _users_upsert(present: frozenset[str]) -> str:
    """The upsert for a file: the profile columns it has are set (empty clears), the others left as stored."""
    cols = ["state_id", "state", "name", "roles", "status", *(c for c in PROFILE_COLUMNS if c in present)]
    return f"""
WITH up AS (
    INSERT INTO users AS t (user_id, {", ".join(cols)})
    SELECT user_id, {", ".join(cols)} FROM {_USERS_STAGE}
    ON CONFLICT (user_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in cols)},
        updated_at = now()
    WHERE ({", ".join(f"t.{c}" for c in cols)})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in cols)})
    RETURNING t.user_id, (t.xmax = 0) AS inserted
)
UPDATE {_USERS_STAGE} s SET outcome = CASE WHEN up.inserted THEN 'inserted' ELSE 'updated' END
FROM up WHERE s.user_id = up.user_id
"""


# Where the file has the column, each user's served states become the file's, touching only what differs.
_USERS_SYNC_SERVED = f"""
WITH gone AS (
    DELETE FROM served_states v
    USING {_USERS_STAGE} s
    WHERE s.served_states IS NOT NULL AND v.user_id = s.user_id AND NOT (v.state = ANY (s.served_states))
    RETURNING v.user_id
), added AS (
    INSERT INTO served_states (user_id, state)
    SELECT s.user_id, unnest(s.served_states) FROM {_USERS_STAGE} s WHERE s.served_states IS NOT NULL
    ON CONFLICT (user_id, state) DO NOTHING
    RETURNING user_id
)
UPDATE {_USERS_STAGE} s SET outcome = 'updated'
WHERE s.outcome IS NULL AND s.user_id IN (SELECT user_id FROM gone UNION SELECT user_id FROM added)
"""

_USERS_COUNT = f"""
SELECT count(*) FILTER (WHERE outcome = 'inserted'), count(*) FILTER (WHERE outcome = 'updated')
FROM {_USERS_STAGE}
"""


def _finish_users(cur: _Cursor, present: frozenset[str]) -> tuple[int, int, list[RowError]]:
    errors: list[RowError] = []
    while True:
        cur.execute(_USERS_REJECT_TAKEN)
        taken: list[tuple[int, str, str, str]] = cur.fetchall()
        if not taken:
            break
        errors.extend(
            RowError(
                line,
                "DUPLICATE_ID",
                f"state_id {_shown(state_id)} of state {state} already belongs to user {_shown(holder)}",
            )
            for line, state, state_id, holder in taken
        )
    cur.execute(_CREATE_STATES.format(stage=_USERS_STAGE))
    cur.execute(_USERS_REJECT_UNKNOWN_SERVED)
    errors.extend(
        RowError(
            line,
            "UNKNOWN_STATE",
            f"served_states names {', '.join(_shown(s) for s in unknown)}, not a known state code "
            '(separate states with ";")',
        )
        for line, unknown in cur.fetchall()
    )
    cur.execute(_USERS_RELEASE_MOVED)
    cur.execute(_users_upsert(present))
    cur.execute(_USERS_SYNC_SERVED)
    cur.execute(_USERS_COUNT)
    inserted, updated = _two_counts(cur)
    return inserted, updated, errors


_BATCHES_STAGE = "import_batches_stage"
_BATCHES_STAGE_DDL = f"""
CREATE TEMP TABLE {_BATCHES_STAGE} (
    line integer NOT NULL,
    batch_id text NOT NULL,
    course_id text NOT NULL,
    course_name text NOT NULL,
    state text NOT NULL,
    enrollment_type text NOT NULL,
    status text NOT NULL,
    start_date date,
    end_date date,
    mentors text[] NOT NULL,
    outcome text,
    mentors_changed boolean NOT NULL DEFAULT false
) ON COMMIT DROP
"""

# participant_count is deliberately absent: new batches get the column default, existing ones keep theirs.
_BATCHES_UPSERT = f"""
WITH up AS (
    INSERT INTO course_batches AS t
        (batch_id, course_id, course_name, state, enrollment_type, status, start_date, end_date)
    SELECT batch_id, course_id, course_name, state, enrollment_type, status, start_date, end_date
    FROM {_BATCHES_STAGE}
    ON CONFLICT (batch_id) DO UPDATE SET
        course_id = EXCLUDED.course_id,
        course_name = EXCLUDED.course_name,
        state = EXCLUDED.state,
        enrollment_type = EXCLUDED.enrollment_type,
        status = EXCLUDED.status,
        start_date = EXCLUDED.start_date,
        end_date = EXCLUDED.end_date,
        updated_at = now()
    WHERE (t.course_id, t.course_name, t.state, t.enrollment_type, t.status, t.start_date, t.end_date)
        IS DISTINCT FROM (EXCLUDED.course_id, EXCLUDED.course_name, EXCLUDED.state, EXCLUDED.enrollment_type,
                          EXCLUDED.status, EXCLUDED.start_date, EXCLUDED.end_date)
    RETURNING t.batch_id, (t.xmax = 0) AS inserted
)
UPDATE {_BATCHES_STAGE} s SET outcome = CASE WHEN up.inserted THEN 'inserted' ELSE 'updated' END
FROM up WHERE s.batch_id = up.batch_id
"""

# Replace each batch's mentor set with the file's, touching only the pairs that differ.
_BATCHES_SYNC_MENTORS = f"""
WITH gone AS (
    DELETE FROM batch_mentors m
    USING {_BATCHES_STAGE} s
    WHERE m.batch_id = s.batch_id AND NOT (m.user_id = ANY (s.mentors))
    RETURNING m.batch_id
), added AS (
    INSERT INTO batch_mentors (batch_id, user_id)
    SELECT s.batch_id, unnest(s.mentors) FROM {_BATCHES_STAGE} s
    ON CONFLICT (batch_id, user_id) DO NOTHING
    RETURNING batch_id
)
UPDATE {_BATCHES_STAGE} s SET mentors_changed = true
WHERE s.batch_id IN (SELECT batch_id FROM gone UNION SELECT batch_id FROM added)
"""

# A batch whose only change is its mentor set is still an update: bump updated_at and count it.
_BATCHES_TOUCH_MENTORED = f"""
WITH touched AS (
    UPDATE course_batches b SET updated_at = now()
    FROM {_BATCHES_STAGE} s
    WHERE b.batch_id = s.batch_id AND s.mentors_changed AND s.outcome IS NULL
    RETURNING b.batch_id
)
UPDATE {_BATCHES_STAGE} s SET outcome = 'updated' FROM touched WHERE s.batch_id = touched.batch_id
"""

_BATCHES_COUNT = f"""
SELECT count(*) FILTER (WHERE outcome = 'inserted'), count(*) FILTER (WHERE outcome = 'updated')
FROM {_BATCHES_STAGE}
"""


def _finish_batches(cur: _Cursor, present: frozenset[str]) -> tuple[int, int, list[RowError]]:
    cur.execute(_CREATE_STATES.format(stage=_BATCHES_STAGE))
    cur.execute(_BATCHES_UPSERT)
    cur.execute(_BATCHES_SYNC_MENTORS)
    cur.execute(_BATCHES_TOUCH_MENTORED)
    cur.execute(_BATCHES_COUNT)
    inserted, updated = _two_counts(cur)
    return inserted, updated, []


def _two_counts(cur: _Cursor) -> tuple[int, int]:
    row = cur.fetchone()
    if row is None:  # pragma: no cover - an aggregate always returns a row
        raise RuntimeError("count query returned no row")
    return int(row[0]), int(row[1])


_USERS = _Kind(USER_COLUMNS, _USERS_STAGE, _USERS_STAGE_DDL, _UserRows, _finish_users, USER_OPTIONAL_COLUMNS)
_BATCHES = _Kind(BATCH_COLUMNS, _BATCHES_STAGE, _BATCHES_STAGE_DDL, _BatchRows, _finish_batches)


# ---------------------------------------------------------------------------------------------- driver


def _copy_line(line: int, values: list[str | None]) -> str:
    """One row in COPY text format: tab-separated, ``\\N`` for NULL, backslash/tab/newline/CR escaped."""
    text = "\t".join(["\\N" if v is None else v for v in values])
    # Fast path: no value holds a newline, CR, tab (separators only) or backslash (one per \\N marker only).
    if "\n" in text or "\r" in text or text.count("\t") != len(values) - 1 or text.count("\\") != values.count(None):
        text = "\t".join([copy_cell(v) for v in values])
    return f"{line}\t{text}\n"


def _psycopg2_connection(raw: object) -> psycopg2.extensions.connection:
    conn = getattr(raw, "driver_connection", None)
    if not isinstance(conn, psycopg2.extensions.connection):
        raise TypeError("imports need a PostgreSQL engine using the psycopg2 driver (postgresql+psycopg2://)")
    return conn


def _run_import(engine: sqlalchemy.Engine, stream: BinaryIO, chunk_size: int, kind: _Kind) -> ImportReport:
    try:
        return _load(engine, stream, chunk_size, kind)
    except (NotUtf8, BrokenCsv) as exc:
        raise _file_error(exc) from None


def _load(engine: sqlalchemy.Engine, stream: BinaryIO, chunk_size: int, kind: _Kind) -> ImportReport:
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    errors: list[RowError] = []
    index, width, records = _open_csv(stream, kind.columns, errors, kind.optional)
    present = frozenset(c for c, i in zip(kind.optional, index[len(kind.columns) :], strict=True) if i >= 0)
    validate = kind.validator(present)
    copy_sql = f"COPY {kind.stage} (line, {', '.join([*kind.columns, *kind.optional])}) FROM STDIN"
    rows_read = good = 0
    raw = engine.raw_connection()
    try:
        conn = _psycopg2_connection(raw)
        try:
            with conn.cursor() as cur:
                cur.execute(kind.stage_ddl)
                buffer: list[str] = []
                for line, fields in records:
                    rows_read += 1
                    if len(fields) != width:
                        errors.append(
                            RowError(
                                line,
                                "WRONG_COLUMN_COUNT",
                                f"expected {width} fields (as many as the header), found {len(fields)}",
                            )
                        )
                        continue
                    values = [fields[i].strip() if i >= 0 else "" for i in index]
                    if "\x00" in "".join(values):
                        errors.append(RowError(line, "BAD_CHARACTER", "the row contains a NUL character"))
                        continue
                    staged = validate(line, values, errors)
                    if staged is None:
                        continue
                    buffer.append(_copy_line(line, staged))
                    good += 1
                    if len(buffer) >= chunk_size:
                        cur.copy_expert(copy_sql, io.StringIO("".join(buffer)), size=_COPY_READ_SIZE)
                        buffer.clear()
                if buffer:
                    cur.copy_expert(copy_sql, io.StringIO("".join(buffer)), size=_COPY_READ_SIZE)
                inserted = updated = 0
                if good:
                    inserted, updated, rejected = kind.finish(cur, present)
                    good -= len(rejected)
                    errors.extend(rejected)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    finally:
        raw.close()
    rows_read += sum(1 for e in errors if e.reason == "MALFORMED_ROW")  # rows the csv module could not split
    errors.sort(key=lambda e: e.line)  # stable: a row's errors keep their order
    return ImportReport(
        rows_read=rows_read,
        inserted=inserted,
        updated=updated,
        unchanged=good - inserted - updated,
        errors=errors,
    )
