"""Uploads derived from an earlier one: `retry` (only the rows rejected for given reasons) and `undo`.

Both are uploads themselves: new upload id, new command ids, the same pipeline, `--wait`, reports and
status.  Each row keeps the original line number (and names the original upload), so a state can match
the report with the file it sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from enrolment.domain.model import IdTypeValue, Reason
from enrolment.files import InputRow, RefusedRow
from enrolment.store.ledger import applied_changes, ledger_origin, rejected_rows
from enrolment.store.uploads import find_upload

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


def reason_set(text: str | None) -> set[str] | None:
    """``--reasons`` (comma-separated codes, any case) as a set; None (every rejected row) when not given."""
    return {r.strip().upper() for r in text.split(",") if r.strip()} if text else None


def parent_of(cur: Any, upload_id: str) -> tuple[str, str, str]:
    """(batch id, requester, kind) of an upload, from its record or else its ledger rows."""
    record = find_upload(cur, upload_id)
    if record is not None and record.requested_by:
        return record.batch_id, record.requested_by, record.kind
    origin = ledger_origin(cur, upload_id)
    if origin is None:
        raise UnknownUpload(f"No upload {upload_id} has results in the store.")
    return origin.batch_id, origin.requested_by, origin.action.lower()


def plan_retry(cur: Any, upload_id: str, reasons: set[str] | None, requester: str) -> Derived:
    """The rows of `upload_id` that were REJECTED (for one of `reasons`, if given), to publish again."""
    batch_id, _requester, _kind = parent_of(cur, upload_id)
    rows = [r for r in rejected_rows(cur, upload_id) if reasons is None or r.reason in reasons]
    actions = {r.action for r in rows}
    action = actions.pop() if len(actions) == 1 else "ADD"
    derived = Derived(batch_id, action, requester, "retry", upload_id)
    for r in rows:
        derived.rows.append(InputRow(r.line, r.identifier, _id_type(r.id_type)))
    return derived


def plan_undo(cur: Any, upload_id: str, requester: str) -> Derived:
    """Reverses what `upload_id` changed; participants changed again since then are left alone (drift)."""
    batch_id, _requester, _kind = parent_of(cur, upload_id)
    changes = applied_changes(cur, upload_id, batch_id)
    reasons = {c.reason for c in changes}
    if reasons <= {Reason.ENROLLED}:
        action = "REMOVE"
    elif reasons <= {Reason.UNENROLLED}:
        action = "ADD"
    else:
        raise UnknownUpload(f"Upload {upload_id} both added and removed participants; undo it in two steps.")
    derived = Derived(batch_id, action, requester, "undo", upload_id)
    for c in changes:
        if c.changed_since:
            derived.rows.append(
                RefusedRow(
                    c.line,
                    c.user_id,
                    "USER_ID",
                    UNDO_DRIFT,
                    f"Line {c.line}: {c.user_id}'s membership of {batch_id} was changed by a later upload; left alone.",
                )
            )
        else:
            derived.rows.append(InputRow(c.line, c.user_id, "USER_ID"))
    return derived


def _id_type(value: str) -> IdTypeValue:
    return "STATE_ID" if value == "STATE_ID" else "USER_ID"
