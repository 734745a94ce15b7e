"""Builds the output records (result, enrolment event, telemetry, upload summary) from recorded outcomes.

The same functions serve the normal path and crash recovery (which rebuilds outputs from the ledger),
so a re-published output is identical to the one that was lost. Pure: no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PDATA = {"id": "participants.processor", "pid": "bulk-enrolment", "ver": "0.1.0"}


@dataclass(frozen=True, slots=True)
class Recorded:
    """One ledger row: a command and its recorded outcome (what the store keeps per command id)."""

    command_id: str
    upload_id: str
    batch_id: str
    kafka_partition: int
    kafka_offset: int
    line: int
    identifier: str
    id_type: str
    action: str
    outcome: str
    reason: str
    message: str
    user_id: str | None
    course_id: str | None
    state: str | None
    participant_count: int | None
    dry_run: bool
    source: str
    requested_by: str
    processed_at_ms: int
    origin_upload_id: str | None = None
    origin_line: int | None = None

    @property
    def change(self) -> str | None:
        if self.dry_run or self.outcome != "APPLIED":
            return None
        return self.reason  # ENROLLED or UNENROLLED


def result_record(r: Recorded) -> dict[str, Any]:
    return {
        "command_id": r.command_id,
        "upload_id": r.upload_id,
        "batch_id": r.batch_id,
        "line": r.line,
        "identifier": r.identifier,
        "id_type": r.id_type,
        "action": r.action,
        "outcome": r.outcome,
        "reason": r.reason,
        "message": r.message,
        "user_id": r.user_id,
        "participant_count": r.participant_count,
        "dry_run": r.dry_run,
        "source": r.source,
        "processed_at": r.processed_at_ms,
        "origin_upload_id": r.origin_upload_id,
        "origin_line": r.origin_line,
        "requested_by": r.requested_by,
    }


def event_record(r: Recorded) -> dict[str, Any] | None:
    change = r.change
    if change is None or r.user_id is None or r.participant_count is None:
        return None
    return {
        "event_id": r.command_id,
        "batch_id": r.batch_id,
        "course_id": r.course_id or "",
        "user_id": r.user_id,
        "change": change,
        "participant_count": r.participant_count,
        "source": r.source,
        "upload_id": r.upload_id,
        "requested_by": r.requested_by,
        "occurred_at": r.processed_at_ms,
    }


def changelog_key(batch_id: str, user_id: str) -> bytes:
    return f"{batch_id}/{user_id}".encode()


def changelog_record(r: Recorded) -> tuple[bytes, dict[str, Any] | None] | None:
    """The compacted-changelog message of a change: current membership, or a tombstone (None) on removal."""
    change = r.change
    if change is None or r.user_id is None:
        return None
    key = changelog_key(r.batch_id, r.user_id)
    if change == "UNENROLLED":
        return key, None
    return key, {
        "batch_id": r.batch_id,
        "user_id": r.user_id,
        "added_via": "ui" if r.source == "UI" else "backend",
        "enrolled_at": r.processed_at_ms,
        "enrolled_by": r.requested_by,
        "command_id": r.command_id,
    }


def _context(state: str | None, cdata: list[dict[str, str]], rollup: dict[str, str]) -> dict[str, Any]:
    """The telemetry v3 context of our events: the state is the channel, the module is Course."""
    return {
        "channel": state or "",
        "pdata": dict(PDATA),
        "env": "Course",
        "sid": None,
        "did": None,
        "cdata": cdata,
        "rollup": rollup,
    }


def audit_record(r: Recorded) -> dict[str, Any] | None:
    """Sunbird AUDIT event for an enrolment change: the learner is the object (rolled up to the course),
    the batch is in cdata, as in Sunbird's own course-enrolment audit events."""
    change = r.change
    if change is None or r.user_id is None:
        return None
    enrolled = change == "ENROLLED"
    return {
        "eid": "AUDIT",
        "ets": r.processed_at_ms,
        "ver": "3.0",
        "mid": f"AUDIT:{r.command_id}",
        "actor": {"id": r.requested_by, "type": "User"},
        "context": _context(
            r.state,
            [
                {"id": r.batch_id, "type": "CourseBatch"},
                {"id": r.upload_id, "type": "Upload"},
                {"id": r.source, "type": "Source"},
            ],
            {"l1": r.course_id or ""},
        ),
        "object": {"id": r.user_id, "type": "User", "ver": None, "rollup": {"l1": r.course_id or ""}},
        "edata": {
            "type": "course-enroll" if enrolled else "course-unenroll",
            "state": "enrolled" if enrolled else "unenrolled",
            "prevstate": "unenrolled" if enrolled else "enrolled",
            "props": ["batch.participants"],
            "level": None,
            "message": None,
            "params": {},
        },
        "tags": [],
    }


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """An upload as the store knows it when it completes."""

    upload_id: str
    batch_id: str
    kind: str
    requested_by: str
    dry_run: bool
    file_name: str | None
    parent_upload_id: str | None
    commands_published: int
    refused: list[dict[str, Any]]
    created_at_ms: int
    completed_at_ms: int
    outcomes: Mapping[str, int]
    reasons: Mapping[str, int]
    state: str | None = None
    submitted_by: str | None = None
    include_completed: bool = False
    plan_id: str | None = None  # v4: the plan it applied
    content_hash: str | None = None  # v4: SHA-256 of its file


def summary_record(u: UploadInfo) -> dict[str, Any]:
    return {
        "upload_id": u.upload_id,
        "batch_id": u.batch_id,
        "phase": "COMPLETED",
        "kind": u.kind,
        "requested_by": u.requested_by,
        "submitted_by": u.submitted_by,
        "dry_run": u.dry_run,
        "include_completed": u.include_completed,
        "file_name": u.file_name,
        "parent_upload_id": u.parent_upload_id,
        "plan_id": u.plan_id,
        "content_hash": u.content_hash,
        "commands_published": u.commands_published,
        "refused": [
            {
                "line": int(x["line"]),
                "identifier": str(x["identifier"]),
                "reason": str(x["reason"]),
                "message": str(x["message"]),
                "id_type": None if x.get("id_type") is None else str(x["id_type"]),
            }
            for x in u.refused
        ],
        "outcomes": dict(u.outcomes),
        "reasons": dict(u.reasons),
        "created_at": u.created_at_ms,
        "completed_at": u.completed_at_ms,
    }


def log_record(u: UploadInfo) -> dict[str, Any]:
    """Sunbird LOG event for an upload summary, for operators."""
    processed = sum(u.outcomes.values())
    rejected = u.outcomes.get("REJECTED", 0)
    return {
        "eid": "LOG",
        "ets": u.completed_at_ms,
        "ver": "3.0",
        "mid": f"LOG:{u.upload_id}",
        "actor": {"id": u.requested_by, "type": "User"},
        "context": _context(
            u.state, [{"id": u.batch_id, "type": "CourseBatch"}, {"id": u.upload_id, "type": "Upload"}], {}
        ),
        "object": {"id": u.batch_id, "type": "CourseBatch", "ver": None, "rollup": {}},
        "edata": {
            "type": "upload-summary",
            "level": "WARN" if rejected or u.refused else "INFO",
            "message": f"Upload {u.upload_id} ({u.kind}) processed {processed} of {u.commands_published} commands",
            "params": {
                **{f"outcome.{k}": str(v) for k, v in sorted(u.outcomes.items())},
                **{f"reason.{k}": str(v) for k, v in sorted(u.reasons.items())},
                "refused": str(len(u.refused)),
                "dry_run": str(u.dry_run).lower(),
            },
            "state": None,
            "prevstate": None,
            "props": [],
        },
        "tags": [],
    }
