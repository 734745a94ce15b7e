"""The read model's pure decisions: idempotent events, last-writer-wins progress, upload summaries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from dashboard.readmodel import (
    MembershipEvent,
    Message,
    ProgressState,
    ProgressUpdate,
    ResultSeen,
    Snapshot,
    UploadRecord,
    from_record,
    needs,
    plan,
)
from enrolment.messages.millis import to_ms

T0 = 1_760_000_000_000


def enrol(event_id: str, user: str, *, batch: str = "b1", at: int = T0, source: str = "BACKEND") -> MembershipEvent:
    return MembershipEvent(event_id, batch, "c1", user, "ENROLLED", source, at)


def unenrol(event_id: str, user: str, *, batch: str = "b1", at: int = T0) -> MembershipEvent:
    return MembershipEvent(event_id, batch, "c1", user, "UNENROLLED", "BACKEND", at)


def progress(user: str, pct: int, updated: int, *, completed: int | None = None, batch: str = "b1") -> ProgressUpdate:
    return ProgressUpdate(batch, user, pct, completed, updated)


def apply_all(snapshot: Snapshot, messages: Iterable[Message]) -> Snapshot:
    """One batch, as the consumer does it: plan against the snapshot, then write."""
    return snapshot.updated(plan(list(messages), snapshot))


def test_enrolment_events_build_membership_and_count() -> None:
    s = apply_all(Snapshot(), [enrol("e1", "u1"), enrol("e2", "u2", source="UI")])
    assert set(s.members) == {("b1", "u1"), ("b1", "u2")}
    assert s.members[("b1", "u2")].added_via == "ui"
    assert s.members[("b1", "u1")].added_via == "backend"
    assert s.counts == {"b1": 2}


def test_a_replayed_event_changes_nothing() -> None:
    s = apply_all(Snapshot(), [enrol("e1", "u1"), enrol("e2", "u2")])
    again = plan([enrol("e1", "u1"), enrol("e2", "u2")], s)
    assert not again.changes_state()
    assert again.applied == []
    assert again.ignored["replayed"] == 2
    assert s.updated(again) == s


def test_a_replayed_old_enrolment_does_not_re_enrol_someone_removed_since() -> None:
    s = apply_all(Snapshot(), [enrol("e1", "u1"), unenrol("e2", "u1")])
    assert s.members == {} and s.counts == {"b1": 0}
    replay = plan([enrol("e1", "u1")], s)
    assert not replay.changes_state()
    assert s.updated(replay).members == {}


def test_duplicates_inside_one_batch_count_once() -> None:
    ch = plan([enrol("e1", "u1"), enrol("e1", "u1")], Snapshot())
    assert ch.batches["b1"].participant_count == 1
    assert ch.applied == ["event:e1"]


def test_add_remove_add_in_one_batch_ends_enrolled_with_the_last_event() -> None:
    ch = plan([enrol("e1", "u1", at=T0), unenrol("e2", "u1", at=T0 + 1), enrol("e3", "u1", at=T0 + 2)], Snapshot())
    assert ch.members_put[("b1", "u1")].event_id == "e3"
    assert ch.members_put[("b1", "u1")].enrolled_at_ms == T0 + 2
    assert ch.batches["b1"].participant_count == 1
    assert ch.batches["b1"].last_event_at_ms == T0 + 2


def test_removal_in_a_later_batch_deletes_the_member() -> None:
    s = apply_all(Snapshot(), [enrol("e1", "u1"), enrol("e2", "u2")])
    ch = plan([unenrol("e3", "u1")], s)
    assert ch.members_deleted == {("b1", "u1")}
    assert ch.batches["b1"].participant_count == 1


def test_an_enrolment_of_a_member_is_recorded_but_changes_nothing() -> None:
    s = apply_all(Snapshot(), [enrol("e1", "u1")])
    ch = plan([enrol("e9", "u1")], s)
    assert ch.applied == ["event:e9"] and not ch.changes_state()


def test_progress_out_of_order_keeps_the_newest() -> None:
    s = apply_all(Snapshot(), [progress("u1", 80, T0 + 2000)])
    older = plan([progress("u1", 40, T0 + 1000)], s)
    assert not older.changes_state()
    assert older.ignored["stale"] == 1
    assert s.updated(older).progress[("b1", "u1")] == ProgressState(80, None, T0 + 2000)


def test_progress_within_one_batch_out_of_order_keeps_the_newest() -> None:
    ch = plan([progress("u1", 90, T0 + 3000, completed=T0 + 2999), progress("u1", 10, T0 + 1000)], Snapshot())
    assert ch.progress_put[("b1", "u1")] == ProgressState(90, T0 + 2999, T0 + 3000)


def test_progress_replay_is_a_no_op_and_newer_wins() -> None:
    s = apply_all(Snapshot(), [progress("u1", 50, T0)])
    assert not plan([progress("u1", 50, T0)], s).changes_state()
    newer = plan([progress("u1", 100, T0 + 1, completed=T0 + 1)], s)
    assert newer.progress_put[("b1", "u1")].progress == 100


def test_invalid_progress_is_ignored() -> None:
    ch = plan([progress("u1", 101, T0), progress("u2", -1, T0)], Snapshot())
    assert not ch.changes_state() and ch.ignored["invalid"] == 2


def test_progress_for_someone_not_enrolled_yet_is_kept_for_when_they_are() -> None:
    s = apply_all(Snapshot(), [progress("u1", 30, T0)])
    s = apply_all(s, [enrol("e1", "u1")])
    assert s.progress[("b1", "u1")].progress == 30 and ("b1", "u1") in s.members


def _summary(phase: str, outcomes: dict[str, int], *, completed: int | None = None) -> UploadRecord:
    return UploadRecord(
        upload_id="up1",
        batch_id="b1",
        phase=phase,
        kind="add",
        requested_by="admin",
        dry_run=False,
        file_name="f.csv",
        parent_upload_id=None,
        commands_published=3,
        refused=({"line": 9, "identifier": "x", "reason": "DUPLICATE", "message": "dup"},),
        outcomes=outcomes,
        reasons={"ENROLLED": outcomes.get("APPLIED", 0)},
        created_at_ms=T0,
        completed_at_ms=completed,
    )


def _result(cid: str, outcome: str = "APPLIED", reason: str = "ENROLLED", at: int = T0 + 10) -> ResultSeen:
    return ResultSeen(cid, "up1", "b1", outcome, reason, False, at)


def test_results_count_live_progress_once_each() -> None:
    s = apply_all(Snapshot(), [_summary("PUBLISHED", {}), _result("up1:2"), _result("up1:2")])
    row = s.uploads["up1"]
    assert (row.processed, row.commands_published, row.completed) == (1, 3, False)
    s = apply_all(s, [_result("up1:2"), _result("up1:3", "REJECTED", "USER_NOT_FOUND")])
    assert s.uploads["up1"].processed == 2
    assert s.uploads["up1"].outcomes == {"APPLIED": 1, "REJECTED": 1}


def test_completed_summary_is_final_whatever_the_order() -> None:
    final = _summary("COMPLETED", {"APPLIED": 3}, completed=T0 + 50)
    live = apply_all(
        Snapshot(), [_summary("PUBLISHED", {}), _result("up1:2"), _result("up1:3"), _result("up1:4"), final]
    )
    rebuilt = apply_all(
        Snapshot(), [final, _result("up1:2"), _result("up1:3"), _result("up1:4"), _summary("PUBLISHED", {})]
    )
    assert live.uploads["up1"] == rebuilt.uploads["up1"]
    assert rebuilt.uploads["up1"].processed == 3 and rebuilt.uploads["up1"].completed
    assert rebuilt.uploads["up1"].first_seen_at_ms == T0


def test_needs_lists_every_key_once() -> None:
    n = needs(
        [enrol("e1", "u1"), enrol("e1", "u1"), progress("u2", 5, T0), _result("up1:2"), _summary("PUBLISHED", {})]
    )
    assert n.message_ids == ["event:e1", "result:up1:2"]
    assert n.member_keys == [("b1", "u1")] and n.batch_ids == ["b1"]
    assert n.progress_keys == [("b1", "u2")] and n.upload_ids == ["up1"]


def test_from_record_reads_avro_timestamps_as_datetimes() -> None:
    when = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
    msg = from_record(
        "CourseProgress",
        {"batch_id": "b1", "user_id": "u1", "progress": 100, "completed_at": when, "updated_at": when},
    )
    assert msg == ProgressUpdate("b1", "u1", 100, 1788256800000, 1788256800000)
    assert to_ms(when) == 1788256800000
    unfinished = {"batch_id": "b1", "user_id": "u1", "progress": 5, "completed_at": None, "updated_at": when}
    assert from_record("CourseProgress", unfinished) == ProgressUpdate("b1", "u1", 5, None, 1788256800000)
    assert from_record("TelemetryEvent", {}) is None
