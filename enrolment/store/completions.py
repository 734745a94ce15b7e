"""Course completions the processor has learned (``course_completions``): the facts behind COURSE_COMPLETED.

The processor writes them in the same transaction (and position compare-and-set) as the commands of a poll,
from the course-progress topic; `store rebuild` restores them from that topic. A completion is a fact that
stays: a later update without ``completed_at`` does not undo it, and of two completion times the earliest is
kept, so applying the same updates again, or in another order, leaves the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from enrolment.messages.millis import from_ms, to_ms

CompletionKey = tuple[str, str]  # (batch id, user id)


def completion_of(record: Mapping[str, Any]) -> tuple[CompletionKey, int] | None:
    """The completion a CourseProgress record reports, or None (no ``completed_at``: not completed)."""
    done = record.get("completed_at")
    if done is None:
        return None
    return (str(record["batch_id"]), str(record["user_id"])), to_ms(done)


def merge(into: dict[CompletionKey, int], key: CompletionKey, completed_at_ms: int) -> None:
    """Keeps the earliest completion time per learner (the table's rule, applied before it)."""
    have = into.get(key)
    if have is None or completed_at_ms < have:
        into[key] = completed_at_ms


def record(cur: Any, completions: Mapping[CompletionKey, int]) -> int:
    """Upserts completions (the course id from the batch, where known); returns how many rows changed."""
    if not completions:
        return 0
    keys = sorted(completions)
    stamps = [from_ms(completions[k]) for k in keys]
    cur.execute(
        """
        INSERT INTO course_completions AS c (batch_id, user_id, course_id, completed_at)
        SELECT i.batch_id, i.user_id, b.course_id, i.completed_at
        FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS i(batch_id, user_id, completed_at)
        LEFT JOIN course_batches b ON b.batch_id = i.batch_id
        ON CONFLICT (batch_id, user_id) DO UPDATE SET completed_at = EXCLUDED.completed_at,
            course_id = coalesce(c.course_id, EXCLUDED.course_id), recorded_at = now()
        WHERE EXCLUDED.completed_at < c.completed_at
        """,
        ([k[0] for k in keys], [k[1] for k in keys], stamps),
    )
    return int(cur.rowcount)


def count(cur: Any) -> int:
    cur.execute("SELECT count(*) FROM course_completions")
    row = cur.fetchone()
    return int(row[0]) if row is not None else 0
