"""Uploads derived from an earlier one: `retry` (only the rows rejected for given reasons) and `undo`.

Both are uploads themselves: new upload id, new command ids, the same pipeline, `--wait`, reports and
status.  Each row keeps the original line number (and names the original upload), so a state can match
the report with the file it sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from enrolment.files import IdType, InputRow, RefusedRow

UNDO_DRIFT = "CHANGED_SINCE"


class UnknownUpload(Exception):
    """No such upload in the store (nothing to retry or undo)."""


@dataclass
class Derived:
    """What a derived upload will publish."""

    batch_id: str
    action: str  # ADD | REMOVE
    requested_by: str
    kind: str  # retry | undo
    parent_upload_id: str
    rows: list[InputRow | RefusedRow] = field(default_factory=list)

    def origin(self, line: int) -> tuple[str | None, int | None]:
        return self.parent_upload_id, line


def _upload_row(cur: Any, upload_id: str) -> tuple[str, str, str]:
    """(batch id, requester, kind) of an upload, from its record or else its ledger rows."""
    cur.execute("SELECT batch_id, requested_by, kind FROM uploads WHERE upload_id = %s", (upload_id,))
    row = cur.fetchone()
    if row is not None and row[1]:
        return str(row[0]), str(row[1]), str(row[2])
    cur.execute("SELECT batch_id, requested_by, action FROM command_ledger WHERE upload_id = %s LIMIT 1", (upload_id,))
    row = cur.fetchone()
    if row is None:
        raise UnknownUpload(f"No upload {upload_id} has results in the store.")
    return str(row[0]), str(row[1]), str(row[2]).lower()


def plan_retry(cur: Any, upload_id: str, reasons: set[str] | None, requester: str | None) -> Derived:
    """The rows of `upload_id` that were REJECTED (for one of `reasons`, if given), to publish again."""
    batch_id, original_requester, _kind = _upload_row(cur, upload_id)
    cur.execute(
        "SELECT line, identifier, id_type, action, reason FROM command_ledger "
        "WHERE upload_id = %s AND outcome = 'REJECTED' ORDER BY line",
        (upload_id,),
    )
    rows = [r for r in cur.fetchall() if reasons is None or r[4] in reasons]
    actions = {r[3] for r in rows}
    action = actions.pop() if len(actions) == 1 else "ADD"
    derived = Derived(batch_id, action, requester or original_requester, "retry", upload_id)
    for line, identifier, id_type, _action, _reason in rows:
        derived.rows.append(InputRow(int(line), str(identifier), _id_type(id_type)))
    return derived


def plan_undo(cur: Any, upload_id: str, requester: str | None) -> Derived:
    """Reverses what `upload_id` changed; participants changed again since then are left alone (drift)."""
    batch_id, original_requester, _kind = _upload_row(cur, upload_id)
    cur.execute(
        """
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
        """,
        {"u": upload_id, "b": batch_id},
    )
    rows = cur.fetchall()
    reasons = {r[2] for r in rows}
    action = "REMOVE" if reasons <= {"ENROLLED"} else "ADD" if reasons <= {"UNENROLLED"} else "MIXED"
    if action == "MIXED":
        raise UnknownUpload(f"Upload {upload_id} both added and removed participants; undo it in two steps.")
    derived = Derived(batch_id, action, requester or original_requester, "undo", upload_id)
    for line, user_id, _reason, drift in rows:
        if drift:
            derived.rows.append(
                RefusedRow(
                    int(line),
                    str(user_id),
                    "USER_ID",
                    UNDO_DRIFT,
                    f"Line {line}: {user_id}'s membership of {batch_id} was changed by a later upload; left alone.",
                )
            )
        else:
            derived.rows.append(InputRow(int(line), str(user_id), "USER_ID"))
    return derived


def _id_type(value: str) -> IdType:
    return "STATE_ID" if value == "STATE_ID" else "USER_ID"
