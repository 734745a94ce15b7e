"""The read model in PostgreSQL: load the rows a batch of messages touches, write what :func:`plan` decided.

One call of :func:`apply_batch` is one transaction: the partitions' positions move with a compare-and-set
(first, so two dashboard instances on one group serialise), then the snapshot is read, planned and written.
Only ``dash_`` tables are written.  The one reference table read here is ``users`` (read-only): a member row
keeps a copy of the user's name and state id, the participant table's sort and search keys, so a page of a
10k batch is an index range; :func:`refresh_names` keeps the copies current when users are re-imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from dashboard.readmodel import (
    BatchTouched,
    Changes,
    Member,
    MemberKey,
    Message,
    ProgressState,
    Snapshot,
    UploadRow,
    needs,
    plan,
)
from enrolment.messages.millis import from_ms
from enrolment.store.db import rollback

DASH_TABLES = (
    "dash_applied_events",
    "dash_members",
    "dash_batch_counts",
    "dash_progress",
    "dash_uploads",
    "dash_positions",
)


def load_snapshot(cur: Any, group: str, messages: Sequence[Message]) -> Snapshot:
    """The current rows for the keys these messages touch: a handful of queries whatever the batch size."""
    need = needs(messages)
    snap = Snapshot()
    if need.message_ids:
        cur.execute(
            "SELECT event_id FROM dash_applied_events WHERE group_id = %s AND event_id = ANY(%s)",
            (group, need.message_ids),
        )
        snap.applied = {r[0] for r in cur.fetchall()}
    if need.member_keys:
        cur.execute(
            """
            SELECT m.batch_id, m.user_id, m.course_id, (extract(epoch FROM m.enrolled_at) * 1000)::bigint,
                   m.added_via, m.event_id
            FROM dash_members m JOIN unnest(%s::text[], %s::text[]) AS q(b, u) ON m.batch_id = q.b AND m.user_id = q.u
            WHERE m.group_id = %s
            """,
            ([k[0] for k in need.member_keys], [k[1] for k in need.member_keys], group),
        )
        snap.members = {(b, u): Member(c, int(t), via, e) for b, u, c, t, via, e in cur.fetchall()}
        cur.execute(
            "SELECT batch_id, participant_count FROM dash_batch_counts WHERE group_id = %s AND batch_id = ANY(%s)",
            (group, need.batch_ids),
        )
        snap.counts = {b: int(n) for b, n in cur.fetchall()}
    if need.progress_keys:
        cur.execute(
            """
            SELECT p.batch_id, p.user_id, p.progress, (extract(epoch FROM p.completed_at) * 1000)::bigint,
                   (extract(epoch FROM p.updated_at) * 1000)::bigint
            FROM dash_progress p JOIN unnest(%s::text[], %s::text[]) AS q(b, u) ON p.batch_id = q.b AND p.user_id = q.u
            WHERE p.group_id = %s
            """,
            ([k[0] for k in need.progress_keys], [k[1] for k in need.progress_keys], group),
        )
        snap.progress = {
            (b, u): ProgressState(int(pr), None if c is None else int(c), int(t)) for b, u, pr, c, t in cur.fetchall()
        }
    if need.upload_ids:
        cur.execute(
            f"SELECT {UPLOAD_COLUMNS_MS} FROM dash_uploads WHERE group_id = %s AND upload_id = ANY(%s)",
            (group, need.upload_ids),
        )
        snap.uploads = {r[0]: upload_row(r) for r in cur.fetchall()}
    return snap


UPLOAD_COLUMNS_MS = (
    "upload_id, batch_id, kind, requested_by, dry_run, file_name, parent_upload_id, commands_published, refused, "
    "processed, outcomes, reasons, (extract(epoch FROM created_at) * 1000)::bigint, "
    "(extract(epoch FROM completed_at) * 1000)::bigint, (extract(epoch FROM first_seen_at) * 1000)::bigint, "
    "submitted_by"
)


def upload_row(r: Sequence[Any]) -> UploadRow:
    return UploadRow(
        upload_id=r[0],
        batch_id=r[1],
        kind=r[2],
        requested_by=r[3],
        dry_run=bool(r[4]),
        file_name=r[5],
        parent_upload_id=r[6],
        commands_published=None if r[7] is None else int(r[7]),
        refused=tuple(r[8] or ()),
        processed=int(r[9]),
        outcomes={str(k): int(v) for k, v in (r[10] or {}).items()},
        reasons={str(k): int(v) for k, v in (r[11] or {}).items()},
        created_at_ms=None if r[12] is None else int(r[12]),
        completed_at_ms=None if r[13] is None else int(r[13]),
        first_seen_at_ms=int(r[14]),
        submitted_by=r[15],
    )


def write_changes(cur: Any, group: str, ch: Changes) -> None:
    """Writes the planned changes with set-based statements (one per table)."""
    if ch.applied:
        cur.execute(
            "INSERT INTO dash_applied_events (group_id, event_id) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (group, ch.applied),
        )
    if ch.members_deleted:
        delete_members(cur, group, sorted(ch.members_deleted))
    if ch.members_put:
        put_members(cur, group, sorted(ch.members_put.items()))
    if ch.batches:
        put_batch_counts(cur, group, sorted(ch.batches.items()))
    if ch.progress_put:
        put_progress(cur, group, sorted(ch.progress_put.items()))
    for row in sorted(ch.uploads_put.values(), key=lambda r: r.upload_id):
        put_upload(cur, group, row)


def delete_members(cur: Any, group: str, keys: list[MemberKey]) -> None:
    cur.execute(
        "DELETE FROM dash_members m USING unnest(%s::text[], %s::text[]) AS d(b, u) "
        "WHERE m.group_id = %s AND m.batch_id = d.b AND m.user_id = d.u",
        ([k[0] for k in keys], [k[1] for k in keys], group),
    )


def put_members(cur: Any, group: str, items: list[tuple[MemberKey, Member]]) -> None:
    """Upserts members with a copy of the user's name and state id (the table's sort and search keys)."""
    cur.execute(
        """
        INSERT INTO dash_members (group_id, batch_id, user_id, course_id, enrolled_at, added_via, event_id, name,
                                  state_id)
        SELECT %s, x.b, x.u, x.c, x.t, x.v, x.e, coalesce(r.name, ''), r.state_id
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[])
            AS x(b, u, c, t, v, e)
        LEFT JOIN users r ON r.user_id = x.u
        ON CONFLICT (group_id, batch_id, user_id) DO UPDATE SET course_id = EXCLUDED.course_id,
            enrolled_at = EXCLUDED.enrolled_at, added_via = EXCLUDED.added_via, event_id = EXCLUDED.event_id,
            name = EXCLUDED.name, state_id = EXCLUDED.state_id
        """,
        (
            group,
            [k[0] for k, _ in items],
            [k[1] for k, _ in items],
            [m.course_id for _, m in items],
            [from_ms(m.enrolled_at_ms) for _, m in items],
            [m.added_via for _, m in items],
            [m.event_id for _, m in items],
        ),
    )


def put_batch_counts(cur: Any, group: str, batches: list[tuple[str, BatchTouched]]) -> None:
    cur.execute(
        """
        INSERT INTO dash_batch_counts AS d (group_id, batch_id, course_id, participant_count, last_event_at)
        SELECT %s, b, c, n, t FROM unnest(%s::text[], %s::text[], %s::int[], %s::timestamptz[]) AS x(b, c, n, t)
        ON CONFLICT (group_id, batch_id) DO UPDATE SET participant_count = EXCLUDED.participant_count,
            course_id = CASE WHEN EXCLUDED.course_id <> '' THEN EXCLUDED.course_id ELSE d.course_id END,
            last_event_at = greatest(d.last_event_at, EXCLUDED.last_event_at)
        """,
        (
            group,
            [b for b, _ in batches],
            [t.course_id for _, t in batches],
            [t.participant_count for _, t in batches],
            [from_ms(t.last_event_at_ms) for _, t in batches],
        ),
    )


def put_progress(cur: Any, group: str, items: list[tuple[MemberKey, ProgressState]]) -> None:
    # The WHERE repeats the last-writer-wins rule in SQL, so even a stale snapshot cannot go backwards.
    cur.execute(
        """
        INSERT INTO dash_progress AS d (group_id, batch_id, user_id, progress, completed_at, updated_at)
        SELECT %s, b, u, p, c, t
        FROM unnest(%s::text[], %s::text[], %s::smallint[], %s::timestamptz[], %s::timestamptz[])
            AS x(b, u, p, c, t)
        ON CONFLICT (group_id, batch_id, user_id) DO UPDATE SET progress = EXCLUDED.progress,
            completed_at = EXCLUDED.completed_at, updated_at = EXCLUDED.updated_at
        WHERE d.updated_at < EXCLUDED.updated_at
        """,
        (
            group,
            [k[0] for k, _ in items],
            [k[1] for k, _ in items],
            [s.progress for _, s in items],
            [None if s.completed_at_ms is None else from_ms(s.completed_at_ms) for _, s in items],
            [from_ms(s.updated_at_ms) for _, s in items],
        ),
    )


_PUT_UPLOAD = """
INSERT INTO dash_uploads (group_id, upload_id, batch_id, kind, requested_by, dry_run, file_name,
    parent_upload_id, commands_published, refused, processed, outcomes, reasons, created_at, completed_at,
    first_seen_at, submitted_by)
VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb,%s,%s::jsonb,%s::jsonb,%s,%s,%s,%s)
ON CONFLICT (group_id, upload_id) DO UPDATE SET batch_id = EXCLUDED.batch_id, kind = EXCLUDED.kind,
    requested_by = EXCLUDED.requested_by, dry_run = EXCLUDED.dry_run, file_name = EXCLUDED.file_name,
    parent_upload_id = EXCLUDED.parent_upload_id, commands_published = EXCLUDED.commands_published,
    refused = EXCLUDED.refused, processed = EXCLUDED.processed, outcomes = EXCLUDED.outcomes,
    reasons = EXCLUDED.reasons, created_at = EXCLUDED.created_at, completed_at = EXCLUDED.completed_at,
    first_seen_at = EXCLUDED.first_seen_at, submitted_by = EXCLUDED.submitted_by
"""


def put_upload(cur: Any, group: str, row: UploadRow) -> None:
    """Upserts one upload (an upload record sets values, never adds, so writing it twice is harmless)."""
    cur.execute(
        _PUT_UPLOAD,
        (
            group,
            row.upload_id,
            row.batch_id,
            row.kind,
            row.requested_by,
            row.dry_run,
            row.file_name,
            row.parent_upload_id,
            row.commands_published,
            json.dumps([dict(r) for r in row.refused]),
            row.processed,
            json.dumps(dict(sorted(row.outcomes.items()))),
            json.dumps(dict(sorted(row.reasons.items()))),
            None if row.created_at_ms is None else from_ms(row.created_at_ms),
            None if row.completed_at_ms is None else from_ms(row.completed_at_ms),
            from_ms(row.first_seen_at_ms),
            row.submitted_by,
        ),
    )


def refresh_names(raw: Any, group: str) -> int:
    """Copies changed names and state ids of users into this group's member rows; returns the rows changed.

    A full comparison (one join, one short transaction) rather than a watermark on users.updated_at: an import
    that commits late can carry an updated_at older than one already seen, and a watermark would miss it.
    """
    try:
        cur = raw.cursor()
        cur.execute(
            """
            UPDATE dash_members m SET name = u.name, state_id = u.state_id
            FROM users u
            WHERE u.user_id = m.user_id AND m.group_id = %s
              AND (m.name, m.state_id) IS DISTINCT FROM (u.name, u.state_id)
            """,
            (group,),
        )
        changed = int(cur.rowcount)
        raw.commit()
    except BaseException:
        rollback(raw)
        raise
    return changed


def apply_batch(raw: Any, group: str, messages: Sequence[Message], claim: Callable[[Any], None]) -> Changes:
    """One transaction: claim the positions (the checkpoint's compare-and-set), plan, write. Rolls back on error."""
    try:
        cur = raw.cursor()
        claim(cur)
        changes = plan(messages, load_snapshot(cur, group, messages))
        write_changes(cur, group, changes)
        raw.commit()
        return changes
    except BaseException:
        rollback(raw)
        raise


def clear(raw: Any, group: str) -> dict[str, int]:
    """Deletes every row of this dashboard group (positions included) in one transaction; returns counts."""
    deleted: dict[str, int] = {}
    try:
        cur = raw.cursor()
        for table in DASH_TABLES:
            cur.execute(f"DELETE FROM {table} WHERE group_id = %s", (group,))
            deleted[table] = int(cur.rowcount)
        raw.commit()
    except BaseException:
        rollback(raw)
        raise
    return deleted
