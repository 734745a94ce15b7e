"""Output records (enrolment.domain.outputs) built from recorded outcomes and completed uploads."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastavro.validation import validate

from enrolment.domain import outputs
from enrolment.domain.outputs import (
    Recorded,
    UploadInfo,
    audit_record,
    changelog_record,
    event_record,
    log_record,
    result_record,
    summary_record,
)
from enrolment.messages.codec import default_codec

T0 = 1_717_171_717_171
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def recorded(**kw: Any) -> Recorded:
    base: dict[str, Any] = {
        "command_id": "up-1:2",
        "upload_id": "up-1",
        "batch_id": "b-1",
        "kafka_partition": 3,
        "kafka_offset": 41,
        "line": 2,
        "identifier": "KA-0001",
        "id_type": "STATE_ID",
        "action": "ADD",
        "outcome": "APPLIED",
        "reason": "ENROLLED",
        "message": "User u-1 was added to batch b-1.",
        "user_id": "u-1",
        "course_id": "course-1",
        "state": "KA",
        "participant_count": 6,
        "dry_run": False,
        "source": "BACKEND",
        "requested_by": "admin-1",
        "processed_at_ms": T0,
    }
    base.update(kw)
    return Recorded(**base)


ENROLLED = recorded()
UNENROLLED = recorded(
    command_id="up-1:3",
    line=3,
    action="REMOVE",
    reason="UNENROLLED",
    message="User u-1 was removed from batch b-1.",
    participant_count=5,
    source="UI",
)
SKIPPED = recorded(outcome="SKIPPED", reason="ALREADY_ENROLLED", message="User u-1 is already in batch b-1.")
REJECTED = recorded(
    outcome="REJECTED",
    reason="USER_NOT_FOUND",
    message="No user has state id KA-0001 in state KA.",
    user_id=None,
    participant_count=None,
)
REJECTED_NO_BATCH = recorded(
    outcome="REJECTED",
    reason="BATCH_NOT_FOUND",
    message="Batch b-1 does not exist.",
    user_id=None,
    course_id=None,
    state=None,
    participant_count=None,
)
DRY_ADD = recorded(dry_run=True, message="User u-1 would be added to batch b-1.")
DRY_REMOVE = replace(UNENROLLED, dry_run=True, message="User u-1 would be removed from batch b-1.")
RETRY = recorded(origin_upload_id="up-0", origin_line=17, upload_id="up-9", command_id="up-9:2")

ALL = [ENROLLED, UNENROLLED, SKIPPED, REJECTED, REJECTED_NO_BATCH, DRY_ADD, DRY_REMOVE, RETRY]
IDS = ["enrolled", "unenrolled", "skipped", "rejected", "rejected-no-batch", "dry-add", "dry-remove", "retry"]
CHANGES = [ENROLLED, UNENROLLED, RETRY]
NO_CHANGE = [SKIPPED, REJECTED, REJECTED_NO_BATCH, DRY_ADD, DRY_REMOVE]


def roundtrip(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Validates the record against its schema (strictly, with fastavro), encodes it and decodes it back."""
    codec = default_codec()
    assert validate(record, codec.current[name].parsed, raise_errors=True, strict=True)
    got_name, back = codec.decode(codec.encode(name, record), expect=name)
    assert got_name == name
    return back


# -------------------------------------------------------------------------------------------- change


def test_change_is_the_reason_only_for_applied_non_dry_run() -> None:
    assert ENROLLED.change == "ENROLLED"
    assert UNENROLLED.change == "UNENROLLED"
    for r in NO_CHANGE:
        assert r.change is None, r


# -------------------------------------------------------------------------------------------- result


@pytest.mark.parametrize("r", ALL, ids=IDS)
def test_result_record_copies_the_outcome_and_encodes(r: Recorded) -> None:
    rec = result_record(r)
    assert rec["command_id"] == r.command_id and rec["upload_id"] == r.upload_id and rec["batch_id"] == r.batch_id
    assert rec["line"] == r.line and rec["identifier"] == r.identifier and rec["id_type"] == r.id_type
    assert rec["action"] == r.action and rec["outcome"] == r.outcome and rec["reason"] == r.reason
    assert rec["message"] == r.message and rec["message"]
    assert rec["user_id"] == r.user_id and rec["participant_count"] == r.participant_count
    assert rec["dry_run"] is r.dry_run and rec["source"] == r.source
    assert rec["processed_at"] == r.processed_at_ms
    assert rec["origin_upload_id"] == r.origin_upload_id and rec["origin_line"] == r.origin_line
    assert roundtrip("CommandResult", rec) == {**rec, "processed_at": ts(r.processed_at_ms)}


def test_result_record_covers_every_field_of_the_schema() -> None:
    fields = {f["name"] for f in default_codec().current["CommandResult"].parsed["fields"]}
    assert set(result_record(ENROLLED)) == fields


# --------------------------------------------------------------------------------------------- event


@pytest.mark.parametrize("r", CHANGES, ids=["enrolled", "unenrolled", "retry"])
def test_event_for_applied_changes(r: Recorded) -> None:
    ev = event_record(r)
    assert ev is not None
    assert ev == {
        "event_id": r.command_id,
        "batch_id": r.batch_id,
        "course_id": r.course_id,
        "user_id": r.user_id,
        "change": r.reason,
        "participant_count": r.participant_count,
        "source": r.source,
        "upload_id": r.upload_id,
        "requested_by": r.requested_by,
        "occurred_at": r.processed_at_ms,
    }
    assert roundtrip("EnrollmentEvent", ev) == {**ev, "occurred_at": ts(r.processed_at_ms)}


@pytest.mark.parametrize("r", NO_CHANGE, ids=IDS[2:7])
def test_no_event_without_a_real_change(r: Recorded) -> None:
    assert event_record(r) is None


def test_event_is_deterministic_per_command() -> None:
    assert event_record(ENROLLED) == event_record(replace(ENROLLED, kafka_offset=999, kafka_partition=0))


# --------------------------------------------------------------------------------------------- audit


@pytest.mark.parametrize("r", CHANGES, ids=["enrolled", "unenrolled", "retry"])
def test_audit_follows_sunbird_telemetry_v3(r: Recorded) -> None:
    audit = audit_record(r)
    assert audit is not None
    enrolled = r.reason == "ENROLLED"
    assert audit["eid"] == "AUDIT"
    assert audit["ver"] == "3.0"
    assert audit["ets"] == r.processed_at_ms
    assert audit["mid"] == f"AUDIT:{r.command_id}"
    assert audit["actor"] == {"id": r.requested_by, "type": "User"}
    ctx = audit["context"]
    assert ctx["channel"] == r.state
    assert ctx["env"] == "Course"
    assert ctx["pdata"] == outputs.PDATA and ctx["pdata"] is not outputs.PDATA
    assert {"id": r.batch_id, "type": "CourseBatch"} in ctx["cdata"]
    assert {"id": r.upload_id, "type": "Upload"} in ctx["cdata"]
    assert ctx["rollup"] == {"l1": r.course_id}
    # As Sunbird's course-enrolment audit: the object is the learner, rolled up to the course.
    assert audit["object"]["id"] == r.user_id and audit["object"]["type"] == "User"
    assert audit["object"]["rollup"] == {"l1": r.course_id}
    edata = audit["edata"]
    assert edata["type"] == ("course-enroll" if enrolled else "course-unenroll")
    assert edata["state"] == ("enrolled" if enrolled else "unenrolled")
    assert edata["prevstate"] == ("unenrolled" if enrolled else "enrolled")
    assert edata["props"] and all(isinstance(p, str) and p for p in edata["props"])
    back = roundtrip("TelemetryEvent", audit)
    assert back == audit


@pytest.mark.parametrize("r", NO_CHANGE, ids=IDS[2:7])
def test_no_audit_without_a_real_change(r: Recorded) -> None:
    assert audit_record(r) is None


def test_audit_mid_is_deterministic() -> None:
    first = audit_record(ENROLLED)
    again = audit_record(replace(ENROLLED, kafka_partition=7, kafka_offset=12345))
    assert first is not None and again is not None
    assert first == again and first["mid"] == again["mid"] == "AUDIT:up-1:2"
    other = audit_record(replace(ENROLLED, command_id="up-1:9"))
    assert other is not None and other["mid"] == "AUDIT:up-1:9"


def test_audit_of_unknown_state_and_course_still_encodes() -> None:
    audit = audit_record(replace(ENROLLED, state=None, course_id=None))
    assert audit is not None
    assert audit["context"]["channel"] == "" and audit["context"]["rollup"] == {"l1": ""}
    assert roundtrip("TelemetryEvent", audit) == audit


# ----------------------------------------------------------------------------------------- changelog


def test_changelog_record_is_state_or_tombstone() -> None:
    message = changelog_record(ENROLLED)
    assert message is not None
    key, value = message
    assert key == b"b-1/u-1"
    assert value is not None and value["enrolled_by"] == "admin-1" and value["command_id"] == "up-1:2"
    assert roundtrip("EnrollmentState", value) == {**value, "enrolled_at": ts(T0)}
    assert changelog_record(UNENROLLED) == (b"b-1/u-1", None)
    for r in NO_CHANGE:
        assert changelog_record(r) is None


# ----------------------------------------------------------------------------------- upload summary


def upload(**kw: Any) -> UploadInfo:
    base: dict[str, Any] = {
        "upload_id": "up-1",
        "batch_id": "b-1",
        "kind": "add",
        "requested_by": "admin-1",
        "dry_run": False,
        "file_name": "participants.csv",
        "parent_upload_id": None,
        "commands_published": 3,
        "refused": [],
        "created_at_ms": T0 - 60_000,
        "completed_at_ms": T0,
        "outcomes": {"APPLIED": 2, "SKIPPED": 1},
        "reasons": {"ENROLLED": 2, "ALREADY_ENROLLED": 1},
        "state": "KA",
    }
    base.update(kw)
    return UploadInfo(**base)


REFUSED = [
    {"line": "7", "identifier": "", "reason": "EMPTY_ID", "message": "Line 7 has no identifier."},
    {"line": 9, "identifier": 12345, "reason": "DUPLICATE", "message": "Line 9 repeats line 4.", "id_type": "USER_ID"},
]


def test_summary_record_is_completed_and_encodes() -> None:
    u = upload(refused=REFUSED, parent_upload_id="up-0", kind="retry", dry_run=True, file_name=None)
    rec = summary_record(u)
    assert rec["phase"] == "COMPLETED"
    assert rec["upload_id"] == "up-1" and rec["batch_id"] == "b-1" and rec["kind"] == "retry"
    assert rec["dry_run"] is True and rec["file_name"] is None and rec["parent_upload_id"] == "up-0"
    assert rec["commands_published"] == 3
    assert rec["refused"] == [
        {"line": 7, "identifier": "", "reason": "EMPTY_ID", "message": "Line 7 has no identifier.", "id_type": None},
        {
            "line": 9,
            "identifier": "12345",
            "reason": "DUPLICATE",
            "message": "Line 9 repeats line 4.",
            "id_type": "USER_ID",
        },
    ]
    assert rec["outcomes"] == {"APPLIED": 2, "SKIPPED": 1}
    assert rec["reasons"] == {"ENROLLED": 2, "ALREADY_ENROLLED": 1}
    assert rec["created_at"] == T0 - 60_000 and rec["completed_at"] == T0
    assert roundtrip("UploadSummary", rec) == {**rec, "created_at": ts(T0 - 60_000), "completed_at": ts(T0)}


def test_summary_outcome_maps_are_copies() -> None:
    outcomes = {"APPLIED": 1}
    rec = summary_record(upload(outcomes=outcomes))
    rec["outcomes"]["APPLIED"] = 99
    assert outcomes == {"APPLIED": 1}


def test_empty_summary_encodes() -> None:
    rec = summary_record(upload(outcomes={}, reasons={}, commands_published=0))
    assert roundtrip("UploadSummary", rec)["outcomes"] == {}


# ----------------------------------------------------------------------------------------------- log


@pytest.mark.parametrize(
    ("kw", "level"),
    [
        ({}, "INFO"),
        ({"outcomes": {"APPLIED": 2, "SKIPPED": 1, "REJECTED": 0}}, "INFO"),
        ({"outcomes": {}, "reasons": {}, "commands_published": 0}, "INFO"),
        ({"outcomes": {"APPLIED": 2, "REJECTED": 1}, "reasons": {"ENROLLED": 2, "USER_NOT_FOUND": 1}}, "WARN"),
        ({"outcomes": {"REJECTED": 3}, "reasons": {"BATCH_CLOSED": 3}}, "WARN"),
        ({"refused": REFUSED}, "WARN"),
        ({"refused": REFUSED[:1], "outcomes": {}, "reasons": {}, "commands_published": 0}, "WARN"),
    ],
)
def test_log_level_warns_on_rejections_and_refusals(kw: dict[str, Any], level: str) -> None:
    log = log_record(upload(**kw))
    assert log["edata"]["level"] == level
    assert roundtrip("TelemetryEvent", log) == log


def test_log_record_shape() -> None:
    u = upload(
        refused=REFUSED,
        outcomes={"APPLIED": 2, "REJECTED": 1},
        reasons={"ENROLLED": 2, "USER_NOT_FOUND": 1},
        commands_published=4,
        dry_run=True,
    )
    log = log_record(u)
    assert log["eid"] == "LOG" and log["ver"] == "3.0"
    assert log["ets"] == T0 and log["mid"] == "LOG:up-1"
    assert log["actor"] == {"id": "admin-1", "type": "User"}
    assert log["context"]["channel"] == "KA" and log["context"]["pdata"] == outputs.PDATA
    assert {"id": "b-1", "type": "CourseBatch"} in log["context"]["cdata"]
    assert log["object"]["id"] == "b-1" and log["object"]["type"] == "CourseBatch"
    edata = log["edata"]
    assert edata["type"] == "upload-summary"
    assert edata["message"] == "Upload up-1 (add) processed 3 of 4 commands"
    assert edata["params"] == {
        "outcome.APPLIED": "2",
        "outcome.REJECTED": "1",
        "reason.ENROLLED": "2",
        "reason.USER_NOT_FOUND": "1",
        "refused": "2",
        "dry_run": "true",
    }
    assert log_record(u) == log  # deterministic
    assert roundtrip("TelemetryEvent", log) == log


def test_log_without_state_has_empty_channel() -> None:
    log = log_record(upload(state=None))
    assert log["context"]["channel"] == ""
    assert roundtrip("TelemetryEvent", log) == log
