"""Ledger queries behind `status`, `retry` and `undo`: an upload's recorded outcomes, read back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LedgerOrigin:
    """Who asked for an upload and what it did, as its first ledger row says."""

    batch_id: str
    requested_by: str
    action: str  # ADD | REMOVE


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """How many of an upload's commands ended with one outcome and reason."""

    outcome: str
    reason: str
    count: int
    batch_id: str
    dry_run: bool


@dataclass(frozen=True, slots=True)
class RejectedRow:
    line: int
    identifier: str
    id_type: str
    action: str
    reason: str


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """A membership change an upload made; ``changed_since`` when a later upload changed that member again."""

    line: int
    user_id: str
    reason: str  # ENROLLED | UNENROLLED
    changed_since: bool


def ledger_origin(cur: Any, upload_id: str) -> LedgerOrigin | None:
    cur.execute("SELECT batch_id, requested_by, action FROM command_ledger WHERE upload_id = %s LIMIT 1", (upload_id,))
    row = cur.fetchone()
    return None if row is None else LedgerOrigin(str(row[0]), str(row[1]), str(row[2]))


def outcome_counts(cur: Any, upload_id: str) -> list[OutcomeCount]:
    cur.execute(
        "SELECT outcome, reason, count(*), min(batch_id), bool_or(dry_run) FROM command_ledger "
        "WHERE upload_id = %s GROUP BY outcome, reason",
        (upload_id,),
    )
    return [OutcomeCount(str(o), str(r), int(n), str(b), bool(d)) for o, r, n, b, d in cur.fetchall()]


def rejected_rows(cur: Any, upload_id: str) -> list[RejectedRow]:
    """The upload's REJECTED commands, by line."""
    cur.execute(
        "SELECT line, identifier, id_type, action, reason FROM command_ledger "
        "WHERE upload_id = %s AND outcome = 'REJECTED' ORDER BY line",
        (upload_id,),
    )
    return [RejectedRow(int(line), str(i), str(t), str(a), str(r)) for line, i, t, a, r in cur.fetchall()]


_APPLIED_CHANGES = """
WITH mine AS (
    SELECT line, user_id, reason, processed_at, kafka_offset
    FROM command_ledger
    WHERE upload_id = %(u)s AND outcome = 'APPLIED' AND NOT dry_run AND user_id IS NOT NULL
), later AS (
    SELECT l.user_id, max(l.processed_at) AS at, max(l.kafka_offset) AS off
    FROM command_ledger l JOIN mine m ON m.user_id = l.user_id
    WHERE l.batch_id = %(b)s AND l.outcome = 'APPLIED' AND NOT l.dry_run AND l.upload_id <> %(u)s
      AND (l.processed_at, l.kafka_offset) > (m.processed_at, m.kafka_offset)
    GROUP BY l.user_id
)
SELECT m.line, m.user_id, m.reason, later.user_id IS NOT NULL
FROM mine m LEFT JOIN later ON later.user_id = m.user_id
ORDER BY m.line
"""


def applied_changes(cur: Any, upload_id: str, batch_id: str) -> list[AppliedChange]:
    """What the upload really changed in ``batch_id`` (dry runs change nothing), by line."""
    cur.execute(_APPLIED_CHANGES, {"u": upload_id, "b": batch_id})
    return [AppliedChange(int(line), str(u), str(r), bool(c)) for line, u, r, c in cur.fetchall()]


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """One command's recorded result, as a line of an upload's report."""

    line: int
    identifier: str
    id_type: str
    outcome: str
    reason: str
    message: str


def row_outcomes(cur: Any, upload_id: str) -> list[RowOutcome]:
    """Every recorded result of the upload, by line (the report served by the upload API)."""
    cur.execute(
        "SELECT line, identifier, id_type, outcome, reason, message FROM command_ledger "
        "WHERE upload_id = %s ORDER BY line",
        (upload_id,),
    )
    return [RowOutcome(int(n), str(i), str(t), str(o), str(r), str(m)) for n, i, t, o, r, m in cur.fetchall()]
