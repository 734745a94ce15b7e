"""Reads for the pages: the dashboard's own dash_ tables and the reference tables (read-only).

Never the processor's enrolments, ledger or uploads tables, and not course_batches.participant_count
(the processor's counter): counts, membership, progress and uploads come from the read model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from dashboard.readmodel import UploadRow
from dashboard.readstore import UPLOAD_COLUMNS_MS, upload_row
from dashboard.rules import TableQuery, like_pattern
from enrolment.domain.access import Viewer
from enrolment.domain.model import Batch, User
from enrolment.store import reference


@dataclass(frozen=True, slots=True)
class BatchInfo:
    batch_id: str
    course_id: str
    course_name: str
    state: str
    enrollment_type: str
    status: str
    start_date: date | None
    end_date: date | None
    mentors: tuple[str, ...]
    participant_count: int

    @property
    def invite_only(self) -> bool:
        return self.enrollment_type == "invite-only"

    def as_domain(self) -> Batch:
        return Batch(
            self.batch_id,
            self.course_id,
            self.state,
            self.enrollment_type,
            self.status,
            frozenset(self.mentors),
            self.participant_count,
        )


@dataclass(frozen=True, slots=True)
class Course:
    course_id: str
    course_name: str
    batches: tuple[BatchInfo, ...]


@dataclass(frozen=True, slots=True)
class Participant:
    user_id: str
    name: str
    state_id: str | None
    enrolled_at: datetime
    added_via: str
    progress: int | None
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    name: str
    state_id: str | None


# The read model's count, in the order a page lists batches; the rest of a batch comes from the reference tables.
_COUNTS = """
SELECT b.batch_id, coalesce(c.participant_count, 0)
FROM course_batches b
LEFT JOIN dash_batch_counts c ON c.group_id = :g AND c.batch_id = b.batch_id
"""
_NEWEST_FIRST = """CASE b.status WHEN 'ongoing' THEN 0 WHEN 'upcoming' THEN 1 ELSE 2 END,
    b.start_date DESC NULLS LAST, b.batch_id"""


def cursor(conn: Connection) -> closing[Any]:
    """A DB-API cursor in ``conn``'s transaction, for the store's cursor-based reads (enrolment.store)."""
    return closing(conn.connection.cursor())


def _batches(conn: Connection, where_order: str, params: dict[str, Any]) -> list[BatchInfo]:
    rows = conn.execute(text(_COUNTS + where_order), params).all()
    with cursor(conn) as cur:
        details = reference.batch_details(cur, [r[0] for r in rows])
    return [_batch_info(details[b], int(n)) for b, n in rows if b in details]


def _batch_info(d: reference.BatchDetails, count: int) -> BatchInfo:
    b = d.batch
    return BatchInfo(
        b.batch_id,
        b.course_id,
        d.course_name,
        b.state,
        b.enrollment_type,
        b.status,
        d.start_date,
        d.end_date,
        d.mentors,
        count,
    )


def batch(conn: Connection, group: str, batch_id: str) -> BatchInfo | None:
    found = _batches(conn, " WHERE b.batch_id = :b", {"g": group, "b": batch_id})
    return found[0] if found else None


# The batches a viewer may see (enrolment.domain.access.may_view_batch, as SQL).
_VISIBLE = (
    " WHERE (b.state = ANY(:states) OR EXISTS "
    "(SELECT 1 FROM batch_mentors vm WHERE vm.batch_id = b.batch_id AND vm.user_id = :me))"
)


def courses(conn: Connection, group: str, viewer: Viewer) -> list[Course]:
    """The courses with the batches ``viewer`` may see (ongoing first, then upcoming, the rest; newest first)."""
    order = _VISIBLE + " ORDER BY b.course_name, b.course_id, " + _NEWEST_FIRST
    grouped: dict[str, list[BatchInfo]] = {}
    params = {"g": group, "states": sorted(viewer.admin_states), "me": viewer.user_id}
    for b in _batches(conn, order, params):
        grouped.setdefault(b.course_id, []).append(b)
    return [Course(bs[0].course_id, bs[0].course_name or bs[0].course_id, tuple(bs)) for bs in grouped.values()]


def mentor_batches(conn: Connection, group: str, mentor: str) -> list[BatchInfo]:
    where = " WHERE b.batch_id IN (SELECT batch_id FROM batch_mentors WHERE user_id = :m) ORDER BY " + _NEWEST_FIRST
    return _batches(conn, where, {"g": group, "m": mentor})


def user(conn: Connection, user_id: str) -> User | None:
    with cursor(conn) as cur:
        return reference.user(cur, user_id)


def user_name(conn: Connection, user_id: str) -> str | None:
    row = conn.execute(text("SELECT name FROM users WHERE user_id = :u"), {"u": user_id}).first()
    return None if row is None else str(row[0])


# Name, user id and enrolment time orders follow an index of dash_members, so a page is an index range.
_ORDER = {
    "name": "m.name {d}, m.user_id {d}",
    "user_id": "m.user_id {d}",
    "state_id": "m.state_id {d} NULLS LAST, m.user_id {d}",
    "enrolled_at": "m.enrolled_at {d}, m.user_id {d}",
    "added_via": "m.added_via {d}, m.name {d}, m.user_id {d}",
    "progress": "coalesce(p.progress, 0) {d}, m.name {d}, m.user_id {d}",
    "completed_at": "p.completed_at {d} NULLS LAST, m.name {d}, m.user_id {d}",
}

_PARTICIPANTS = """
SELECT m.user_id, m.name, m.state_id, m.enrolled_at, m.added_via, p.progress, p.completed_at
FROM dash_members m
LEFT JOIN dash_progress p ON p.group_id = m.group_id AND p.batch_id = m.batch_id AND p.user_id = m.user_id
WHERE m.group_id = :g AND m.batch_id = :b
"""
_SEARCH = " AND (m.name ILIKE :q OR m.user_id ILIKE :q OR m.state_id ILIKE :q)"


def participants_page(
    conn: Connection, group: str, batch_id: str, tq: TableQuery, count: int
) -> tuple[int, list[Participant]]:
    """One page of the participant table and the number of matching rows (``count`` when not searching)."""
    params: dict[str, Any] = {"g": group, "b": batch_id, "lim": tq.size, "off": tq.offset}
    where = ""
    total = count
    if tq.q:
        where = _SEARCH
        params["q"] = like_pattern(tq.q)
        total = int(
            conn.execute(
                text("SELECT count(*) FROM dash_members m WHERE m.group_id = :g AND m.batch_id = :b" + _SEARCH),
                params,
            ).scalar_one()
        )
    order = _ORDER[tq.sort].format(d="DESC" if tq.descending else "ASC")
    rows = conn.execute(text(f"{_PARTICIPANTS}{where} ORDER BY {order} LIMIT :lim OFFSET :off"), params).all()
    return total, [Participant(*r) for r in rows]


def stream_participants(engine: Engine, group: str, batch_id: str, chunk: int = 2000) -> Iterator[Participant]:
    """Every participant, read through a server-side cursor ``chunk`` rows at a time (flat memory at 10k+)."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(
            text(_PARTICIPANTS + " ORDER BY m.name, m.user_id"), {"g": group, "b": batch_id}
        )
        for r in result:
            yield Participant(r[0], r[1], r[2], r[3], r[4], r[5], r[6])


def members(conn: Connection, group: str, batch_id: str) -> list[Person]:
    """The batch's participants for the Edit Batch list (called only at or under the UI limit)."""
    rows = conn.execute(
        text(
            "SELECT m.user_id, m.name, m.state_id FROM dash_members m WHERE m.group_id = :g AND m.batch_id = :b "
            "ORDER BY m.name, m.user_id"
        ),
        {"g": group, "b": batch_id},
    ).all()
    return [Person(r[0], r[1], r[2]) for r in rows]


def member_ids(conn: Connection, group: str, batch_id: str, user_ids: list[str]) -> set[str]:
    rows = conn.execute(
        text("SELECT user_id FROM dash_members WHERE group_id = :g AND batch_id = :b AND user_id = ANY(:u)"),
        {"g": group, "b": batch_id, "u": user_ids},
    ).all()
    return {r[0] for r in rows}


def candidates(conn: Connection, group: str, batch: BatchInfo, q: str, limit: int) -> list[Person]:
    """Active users of the batch's state not in it yet, matching ``q``: what the Edit Batch search offers to add."""
    params: dict[str, Any] = {"g": group, "b": batch.batch_id, "s": batch.state, "lim": limit}
    search = ""
    if q:
        search = " AND (u.name ILIKE :q OR u.user_id ILIKE :q OR u.state_id ILIKE :q)"
        params["q"] = like_pattern(q)
    rows = conn.execute(
        text(
            "SELECT u.user_id, u.name, u.state_id FROM users u WHERE u.state = :s AND u.status = 'active'"
            + search
            + " AND NOT EXISTS (SELECT 1 FROM dash_members m WHERE m.group_id = :g AND m.batch_id = :b "
            "AND m.user_id = u.user_id) ORDER BY u.name, u.user_id LIMIT :lim"
        ),
        params,
    ).all()
    return [Person(r[0], r[1], r[2]) for r in rows]


def existing_users(conn: Connection, state: str, user_ids: list[str]) -> set[str]:
    rows = conn.execute(
        text("SELECT user_id FROM users WHERE state = :s AND user_id = ANY(:u)"), {"s": state, "u": user_ids}
    ).all()
    return {r[0] for r in rows}


def people(conn: Connection, state: str, user_ids: list[str]) -> list[Person]:
    """Users of ``state`` among ``user_ids`` with their names, for the Edit Batch confirmation."""
    rows = conn.execute(
        text("SELECT user_id, name, state_id FROM users WHERE state = :s AND user_id = ANY(:u) ORDER BY name, user_id"),
        {"s": state, "u": user_ids},
    ).all()
    return [Person(r[0], r[1], r[2]) for r in rows]


_UPLOADS = f"SELECT {UPLOAD_COLUMNS_MS} FROM dash_uploads WHERE group_id = :g"
# The uploads a viewer may see (enrolment.domain.access.may_view_upload, as SQL).
_VISIBLE_UPLOADS = (
    " AND (requested_by = :me OR batch_id IN (SELECT batch_id FROM course_batches WHERE state = ANY(:states))"
    " OR batch_id IN (SELECT batch_id FROM batch_mentors WHERE user_id = :me))"
)


def uploads(conn: Connection, group: str, batch_id: str | None, viewer: Viewer, max_rows: int = 100) -> list[UploadRow]:
    """The newest uploads ``viewer`` may see (of one batch when ``batch_id`` is given)."""
    sql = (
        _UPLOADS
        + (" AND batch_id = :b" if batch_id else "")
        + _VISIBLE_UPLOADS
        + " ORDER BY first_seen_at DESC, upload_id LIMIT :lim"
    )
    params = {"g": group, "b": batch_id, "lim": max_rows, "me": viewer.user_id, "states": sorted(viewer.upload_states)}
    rows = conn.execute(text(sql), params).all()
    return [upload_row(r) for r in rows]


def upload(conn: Connection, group: str, upload_id: str) -> UploadRow | None:
    row = conn.execute(text(_UPLOADS + " AND upload_id = :u"), {"g": group, "u": upload_id}).first()
    return None if row is None else upload_row(row)


def read_model_ready(conn: Connection) -> bool:
    """False when the dash_ tables are missing (the store was not migrated to revision 0002)."""
    return conn.execute(text("SELECT to_regclass('public.dash_members') IS NOT NULL")).scalar_one() is True
