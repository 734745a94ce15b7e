"""Reference data reads: batches with their mentors, and users, as the domain's types.

The imports load ``course_batches``, ``batch_mentors`` and ``users``; everything else only reads them, through
here, so the row-to-domain mapping exists once.  Functions take a DB-API cursor (the processor's hot path works
on raw psycopg2 cursors; SQLAlchemy callers pass ``conn.connection.cursor()``) and answer for one or many ids
in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from enrolment.domain.model import Batch, User


@dataclass(frozen=True, slots=True)
class BatchDetails:
    """A batch with what people see of it besides the rules' view: course name, dates, mentors in order."""

    batch: Batch
    course_name: str
    start_date: date | None
    end_date: date | None
    mentors: tuple[str, ...]  # sorted by the database, as every page lists them


_BATCHES = """
SELECT b.batch_id, b.course_id, b.state, b.enrollment_type, b.status, b.participant_count,
       coalesce(array_agg(m.user_id ORDER BY m.user_id) FILTER (WHERE m.user_id IS NOT NULL), '{}'),
       b.course_name, b.start_date, b.end_date
FROM course_batches b LEFT JOIN batch_mentors m ON m.batch_id = b.batch_id
WHERE b.batch_id = ANY(%s) GROUP BY b.batch_id
"""
_USERS = "SELECT user_id, state, status, roles, state_id FROM users WHERE user_id = ANY(%s)"


def batch_details(cur: Any, batch_ids: Iterable[str]) -> dict[str, BatchDetails]:
    """The batches that exist among ``batch_ids``, by id."""
    cur.execute(_BATCHES, (sorted(set(batch_ids)),))
    return {
        r[0]: BatchDetails(
            Batch(r[0], r[1], r[2], r[3], r[4], frozenset(r[6]), int(r[5])), r[7], r[8], r[9], tuple(r[6])
        )
        for r in cur.fetchall()
    }


def batches(cur: Any, batch_ids: Iterable[str]) -> dict[str, Batch]:
    """The batches that exist among ``batch_ids`` (mentors included), by id."""
    return {batch_id: d.batch for batch_id, d in batch_details(cur, batch_ids).items()}


def batch(cur: Any, batch_id: str) -> Batch | None:
    return batches(cur, [batch_id]).get(batch_id)


def users(cur: Any, user_ids: Iterable[str]) -> dict[str, User]:
    """The users that exist among ``user_ids`` (roles included), by id."""
    cur.execute(_USERS, (sorted(set(user_ids)),))
    return {r[0]: User(r[0], r[1], r[2], frozenset(r[3]), r[4]) for r in cur.fetchall()}


def user(cur: Any, user_id: str) -> User | None:
    return users(cur, [user_id]).get(user_id)
