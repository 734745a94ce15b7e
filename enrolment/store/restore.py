"""The store's side of `participants store rebuild|verify`: restoring enrolments, ledger and uploads, and checks.

The rows come from Kafka (the processor app reads the topics); this module only owns the SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from enrolment.messages.millis import from_ms, to_ms
from enrolment.store.copy import copy_rows

LEDGER_COLUMNS = (
    "command_id, upload_id, batch_id, kafka_partition, kafka_offset, line, identifier, id_type, action, "
    "outcome, reason, message, user_id, participant_count, dry_run, source, requested_by, processed_at, "
    "origin_upload_id, origin_line"
)


def counts(cur: Any) -> tuple[int, int]:
    """(enrolments, ledger rows): rebuild restores an empty store only."""
    cur.execute("SELECT (SELECT count(*) FROM enrolments), (SELECT count(*) FROM command_ledger)")
    row = cur.fetchone()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def copy_enrolments(cur: Any, states: Iterable[dict[str, Any]]) -> int:
    """EnrollmentState records (the changelog's latest values) into enrolments."""
    rows = (
        (
            s["batch_id"],
            s["user_id"],
            s["added_via"],
            from_ms(to_ms(s["enrolled_at"])).isoformat(),
            s["enrolled_by"],
            s["command_id"],
        )
        for s in states
    )
    return copy_rows(cur, "enrolments (batch_id, user_id, added_via, enrolled_at, enrolled_by, command_id)", rows)


def copy_ledger(cur: Any, results: Iterable[dict[str, Any]]) -> int:
    """CommandResult records into the ledger (one row per command id; partition and offset unknown: -1)."""
    cur.execute("CREATE TEMP TABLE ledger_in (LIKE command_ledger INCLUDING DEFAULTS) ON COMMIT DROP")
    copy_rows(cur, f"ledger_in ({LEDGER_COLUMNS})", (_ledger_row(r) for r in results))
    cur.execute(
        f"""
        INSERT INTO command_ledger ({LEDGER_COLUMNS}, course_id)
        SELECT DISTINCT ON (l.command_id) {", ".join("l." + c for c in LEDGER_COLUMNS.split(", "))}, b.course_id
        FROM ledger_in l LEFT JOIN course_batches b ON b.batch_id = l.batch_id
        ORDER BY l.command_id, l.processed_at DESC
        """
    )
    return int(cur.rowcount)


def _ledger_row(r: dict[str, Any]) -> Sequence[object]:
    return (
        r["command_id"], r["upload_id"], r["batch_id"], -1, -1, r["line"], r["identifier"], r["id_type"],
        r["action"], r["outcome"], r["reason"], r["message"], r["user_id"], r["participant_count"], r["dry_run"],
        r["source"], r.get("requested_by", ""), from_ms(to_ms(r["processed_at"])).isoformat(),
        r["origin_upload_id"], r["origin_line"],
    )  # fmt: skip


def put_upload(cur: Any, rec: dict[str, Any]) -> bool:
    """An UploadSummary (the producer's record, then the processor's summary); True for a record, False a summary."""
    completed = rec["phase"] == "COMPLETED"
    cur.execute(
        """
        INSERT INTO uploads (upload_id, batch_id, kind, requested_by, dry_run, file_name, parent_upload_id,
                             commands_published, refused, created_at, completed_at, outcomes, reasons, submitted_by,
                             include_completed, plan_id, content_hash)
        VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
        ON CONFLICT (upload_id) DO UPDATE SET
            completed_at = coalesce(EXCLUDED.completed_at, uploads.completed_at),
            outcomes = coalesce(EXCLUDED.outcomes, uploads.outcomes),
            reasons = coalesce(EXCLUDED.reasons, uploads.reasons)
        """,
        (
            rec["upload_id"], rec["batch_id"], rec["kind"], rec["requested_by"], rec["dry_run"], rec["file_name"],
            rec["parent_upload_id"], rec["commands_published"], json.dumps(rec["refused"]), rec["created_at"],
            rec["completed_at"] if completed else None,
            json.dumps(rec["outcomes"]) if completed else None,
            json.dumps(rec["reasons"]) if completed else None,
            rec.get("submitted_by"), bool(rec.get("include_completed", False)),
            rec.get("plan_id"), rec.get("content_hash"),
        ),
    )  # fmt: skip
    return not completed


def recount_batches(cur: Any) -> int:
    """Sets every batch's participant_count from its enrolments; returns how many changed."""
    cur.execute(
        """
        UPDATE course_batches b SET participant_count = coalesce(c.n, 0)
        FROM course_batches b2 LEFT JOIN (SELECT batch_id, count(*) AS n FROM enrolments GROUP BY batch_id) c
             ON c.batch_id = b2.batch_id
        WHERE b.batch_id = b2.batch_id AND b.participant_count IS DISTINCT FROM coalesce(c.n, 0)
        """
    )
    return int(cur.rowcount)


def enrolment_rows(raw: Any, only: list[str] | None) -> Iterator[tuple[str, str, str, str, str]]:
    """(batch, user, added_via, enrolled_by, command_id) of every enrolment (of some batches), streamed."""
    named = raw.cursor("verify")  # server-side cursor: the store may be large
    named.itersize = 20000
    try:
        named.execute(
            "SELECT batch_id, user_id, added_via, enrolled_by, command_id FROM enrolments"
            " WHERE %s::text[] IS NULL OR batch_id = ANY(%s::text[])",
            (only, only),
        )
        yield from named
    finally:
        named.close()


def wrong_counts(cur: Any, only: list[str] | None, limit: int) -> list[tuple[str, int, int]]:
    """Batches whose participant_count differs from their enrolments: (batch, stored count, enrolments)."""
    cur.execute(
        """
        SELECT b.batch_id, b.participant_count, count(e.user_id)
        FROM course_batches b LEFT JOIN enrolments e ON e.batch_id = b.batch_id
        WHERE %s::text[] IS NULL OR b.batch_id = ANY(%s::text[])
        GROUP BY b.batch_id HAVING b.participant_count <> count(e.user_id)
        """,
        (only, only),
    )
    return [(r[0], int(r[1]), int(r[2])) for r in cur.fetchall()[:limit]]
