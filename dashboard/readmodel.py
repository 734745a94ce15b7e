"""The dashboard read model's decisions, without I/O.

The consumer turns each Kafka message into one of four message types and asks :func:`plan` what a batch of
them changes, given a :class:`Snapshot` of the current rows they touch.  Keeping this pure means replay and
ordering rules are unit-tested without Kafka or PostgreSQL, and the SQL adapter only loads and writes.

Idempotence, by message type:

* membership events and command results carry a unique id (event id = command id); an id already applied
  is ignored, so a replayed event changes nothing (and cannot re-enrol someone removed since);
* progress updates are last-writer-wins on ``updated_at``: an update not newer than the stored one is ignored,
  so an out-of-order (older) update never overwrites a newer one and a replay is a no-op;
* upload records set values (never add), so applying one twice gives the same row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from enrolment.messages.millis import to_ms

MemberKey = tuple[str, str]  # (batch id, user id)

ENROLLED = "ENROLLED"
UNENROLLED = "UNENROLLED"
COMPLETED = "COMPLETED"


# ------------------------------------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    """An EnrollmentEvent: one real membership change made by the processor."""

    event_id: str
    batch_id: str
    course_id: str
    user_id: str
    change: str  # ENROLLED | UNENROLLED
    source: str  # BACKEND | UI
    occurred_at_ms: int

    @property
    def message_id(self) -> str:
        return f"event:{self.event_id}"


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """A CourseProgress record from the learning platform."""

    batch_id: str
    user_id: str
    progress: int
    completed_at_ms: int | None
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class ResultSeen:
    """A CommandResult: counts towards its upload's live progress until the upload's summary arrives."""

    command_id: str
    upload_id: str
    batch_id: str
    outcome: str
    reason: str
    dry_run: bool
    processed_at_ms: int

    @property
    def message_id(self) -> str:
        return f"result:{self.command_id}"


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """An UploadSummary: PUBLISHED by the producer, COMPLETED (with the final counts) by the processor."""

    upload_id: str
    batch_id: str
    phase: str
    kind: str
    requested_by: str
    dry_run: bool
    file_name: str | None
    parent_upload_id: str | None
    commands_published: int
    refused: tuple[Mapping[str, Any], ...]
    outcomes: Mapping[str, int]
    reasons: Mapping[str, int]
    created_at_ms: int
    completed_at_ms: int | None
    submitted_by: str | None = None


Message = MembershipEvent | ProgressUpdate | ResultSeen | UploadRecord


# -------------------------------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Member:
    course_id: str
    enrolled_at_ms: int
    added_via: str  # "ui" | "backend"
    event_id: str


@dataclass(frozen=True, slots=True)
class ProgressState:
    progress: int
    completed_at_ms: int | None
    updated_at_ms: int


@dataclass(frozen=True)
class UploadRow:
    """An upload as the dashboard knows it; ``processed`` counts results until the summary makes it final."""

    upload_id: str
    batch_id: str
    first_seen_at_ms: int
    kind: str | None = None
    requested_by: str | None = None
    dry_run: bool = False
    file_name: str | None = None
    parent_upload_id: str | None = None
    commands_published: int | None = None
    refused: tuple[Mapping[str, Any], ...] = ()
    processed: int = 0
    outcomes: Mapping[str, int] = field(default_factory=dict)
    reasons: Mapping[str, int] = field(default_factory=dict)
    created_at_ms: int | None = None
    completed_at_ms: int | None = None
    submitted_by: str | None = None

    @property
    def completed(self) -> bool:
        return self.completed_at_ms is not None


@dataclass
class Snapshot:
    """The current rows a batch of messages touches (or, in tests, the whole model)."""

    applied: set[str] = field(default_factory=set)
    members: dict[MemberKey, Member] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    progress: dict[MemberKey, ProgressState] = field(default_factory=dict)
    uploads: dict[str, UploadRow] = field(default_factory=dict)

    def updated(self, changes: Changes) -> Snapshot:
        """The snapshot after ``changes`` (what the SQL adapter writes, done in memory)."""
        members = {k: v for k, v in self.members.items() if k not in changes.members_deleted}
        members.update(changes.members_put)
        counts = dict(self.counts)
        for batch_id, touched in changes.batches.items():
            counts[batch_id] = touched.participant_count
        progress = dict(self.progress)
        progress.update(changes.progress_put)
        uploads = dict(self.uploads)
        uploads.update(changes.uploads_put)
        return Snapshot(self.applied | set(changes.applied), members, counts, progress, uploads)


@dataclass(frozen=True, slots=True)
class BatchTouched:
    course_id: str
    participant_count: int
    last_event_at_ms: int


@dataclass
class Changes:
    """What a batch of messages changes; empty when every message was a replay or stale."""

    applied: list[str] = field(default_factory=list)
    members_put: dict[MemberKey, Member] = field(default_factory=dict)
    members_deleted: set[MemberKey] = field(default_factory=set)
    batches: dict[str, BatchTouched] = field(default_factory=dict)
    progress_put: dict[MemberKey, ProgressState] = field(default_factory=dict)
    uploads_put: dict[str, UploadRow] = field(default_factory=dict)
    ignored: Counter[str] = field(default_factory=Counter)

    def changes_state(self) -> bool:
        return bool(self.members_put or self.members_deleted or self.batches or self.progress_put or self.uploads_put)


@dataclass(frozen=True)
class Needs:
    """The keys whose current rows :func:`plan` needs for these messages."""

    message_ids: list[str]
    member_keys: list[MemberKey]
    batch_ids: list[str]
    progress_keys: list[MemberKey]
    upload_ids: list[str]


def needs(messages: Iterable[Message]) -> Needs:
    ids: set[str] = set()
    members: set[MemberKey] = set()
    progress: set[MemberKey] = set()
    uploads: set[str] = set()
    for m in messages:
        if isinstance(m, MembershipEvent):
            ids.add(m.message_id)
            members.add((m.batch_id, m.user_id))
        elif isinstance(m, ProgressUpdate):
            progress.add((m.batch_id, m.user_id))
        elif isinstance(m, ResultSeen):
            ids.add(m.message_id)
            uploads.add(m.upload_id)
        else:
            uploads.add(m.upload_id)
    return Needs(sorted(ids), sorted(members), sorted({b for b, _ in members}), sorted(progress), sorted(uploads))


def progress_is_valid(update: ProgressUpdate) -> bool:
    return 0 <= update.progress <= 100


def newer(update: ProgressUpdate, current: ProgressState | None) -> bool:
    """Last writer wins on updated_at; equal is a replay, older is out of order: both are ignored."""
    return current is None or update.updated_at_ms > current.updated_at_ms


def merge_upload(row: UploadRow | None, rec: UploadRecord) -> UploadRow:
    """Sets what the record knows; a COMPLETED record also fixes the final counts (and stops result counting)."""
    base = row or UploadRow(upload_id=rec.upload_id, batch_id=rec.batch_id, first_seen_at_ms=rec.created_at_ms)
    new = replace(
        base,
        batch_id=rec.batch_id,
        first_seen_at_ms=min(base.first_seen_at_ms, rec.created_at_ms),
        kind=rec.kind,
        requested_by=rec.requested_by,
        submitted_by=rec.submitted_by or base.submitted_by,
        dry_run=rec.dry_run,
        file_name=rec.file_name,
        parent_upload_id=rec.parent_upload_id,
        commands_published=rec.commands_published,
        refused=tuple(dict(r) for r in rec.refused),
        created_at_ms=rec.created_at_ms,
    )
    if rec.phase == COMPLETED:
        new = replace(
            new,
            outcomes=dict(rec.outcomes),
            reasons=dict(rec.reasons),
            processed=sum(rec.outcomes.values()),
            completed_at_ms=rec.completed_at_ms if rec.completed_at_ms is not None else rec.created_at_ms,
        )
    return new


def count_result(row: UploadRow | None, result: ResultSeen) -> UploadRow:
    """One more result for a running upload; once completed the summary's counts are final and stay."""
    base = row or UploadRow(
        upload_id=result.upload_id, batch_id=result.batch_id, first_seen_at_ms=result.processed_at_ms
    )
    base = replace(base, first_seen_at_ms=min(base.first_seen_at_ms, result.processed_at_ms))
    if base.completed:
        return base
    outcomes = Counter(base.outcomes)
    outcomes[result.outcome] += 1
    reasons = Counter(base.reasons)
    reasons[result.reason] += 1
    return replace(
        base,
        processed=base.processed + 1,
        outcomes=dict(outcomes),
        reasons=dict(reasons),
        dry_run=base.dry_run or result.dry_run,
    )


@dataclass
class _Planner:
    """The working state of :func:`plan`: the rows as the batch's earlier messages left them."""

    snapshot: Snapshot
    ch: Changes = field(default_factory=Changes)
    seen: set[str] = field(default_factory=set)
    members: dict[MemberKey, Member | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    batch_info: dict[str, tuple[str, int]] = field(default_factory=dict)  # batch -> (course id, last event)
    progress: dict[MemberKey, ProgressState] = field(default_factory=dict)
    uploads: dict[str, UploadRow] = field(default_factory=dict)

    def first_time(self, message_id: str) -> bool:
        """Records a message id as applied; False (and counted as a replay) when it was applied before."""
        if message_id in self.snapshot.applied or message_id in self.seen:
            self.ch.ignored["replayed"] += 1
            return False
        self.seen.add(message_id)
        self.ch.applied.append(message_id)
        return True

    def membership(self, m: MembershipEvent) -> None:
        if not self.first_time(m.message_id):
            return
        key = (m.batch_id, m.user_id)
        current = self.members[key] if key in self.members else self.snapshot.members.get(key)
        count = self.counts.get(m.batch_id, self.snapshot.counts.get(m.batch_id, 0))
        if m.change == ENROLLED and current is None:
            via = "ui" if m.source == "UI" else "backend"
            self.members[key] = Member(m.course_id, m.occurred_at_ms, via, m.event_id)
            self.counts[m.batch_id] = count + 1
        elif m.change == UNENROLLED and current is not None:
            self.members[key] = None
            self.counts[m.batch_id] = max(count - 1, 0)
        else:
            self.ch.ignored["no_change"] += 1
            return
        course, last = self.batch_info.get(m.batch_id, ("", 0))
        self.batch_info[m.batch_id] = (m.course_id or course, max(last, m.occurred_at_ms))

    def progress_update(self, m: ProgressUpdate) -> None:
        if not progress_is_valid(m):
            self.ch.ignored["invalid"] += 1
            return
        key = (m.batch_id, m.user_id)
        if not newer(m, self.progress.get(key) or self.snapshot.progress.get(key)):
            self.ch.ignored["stale"] += 1
            return
        self.progress[key] = ProgressState(m.progress, m.completed_at_ms, m.updated_at_ms)

    def upload_row(self, upload_id: str) -> UploadRow | None:
        return self.uploads.get(upload_id) or self.snapshot.uploads.get(upload_id)

    def result(self, m: ResultSeen) -> None:
        if self.first_time(m.message_id):
            self.uploads[m.upload_id] = count_result(self.upload_row(m.upload_id), m)

    def upload(self, m: UploadRecord) -> None:
        self.uploads[m.upload_id] = merge_upload(self.upload_row(m.upload_id), m)

    def changes(self) -> Changes:
        """The rows that differ from the snapshot once every message is planned."""
        ch = self.ch
        for key, member in self.members.items():
            before = self.snapshot.members.get(key)
            if member is None:
                if before is not None:
                    ch.members_deleted.add(key)
            elif member != before:
                ch.members_put[key] = member
        for batch_id, (course_id, last) in self.batch_info.items():
            ch.batches[batch_id] = BatchTouched(course_id, self.counts[batch_id], last)
        ch.progress_put = self.progress
        ch.uploads_put = {k: v for k, v in self.uploads.items() if v != self.snapshot.uploads.get(k)}
        return ch


def plan(messages: Iterable[Message], snapshot: Snapshot) -> Changes:
    """Decides, in message order, what changes; ``snapshot`` must hold the rows named by :func:`needs`."""
    planner = _Planner(snapshot)
    for m in messages:
        if isinstance(m, MembershipEvent):
            planner.membership(m)
        elif isinstance(m, ProgressUpdate):
            planner.progress_update(m)
        elif isinstance(m, ResultSeen):
            planner.result(m)
        else:
            planner.upload(m)
    return planner.changes()


# ---------------------------------------------------------------------------------------- record mapping


def _membership(rec: Mapping[str, Any]) -> MembershipEvent:
    return MembershipEvent(
        event_id=str(rec["event_id"]),
        batch_id=str(rec["batch_id"]),
        course_id=str(rec.get("course_id") or ""),
        user_id=str(rec["user_id"]),
        change=str(rec["change"]),
        source=str(rec.get("source") or "BACKEND"),
        occurred_at_ms=to_ms(rec["occurred_at"]),
    )


def _progress(rec: Mapping[str, Any]) -> ProgressUpdate:
    completed = rec.get("completed_at")
    return ProgressUpdate(
        batch_id=str(rec["batch_id"]),
        user_id=str(rec["user_id"]),
        progress=int(rec["progress"]),
        completed_at_ms=None if completed is None else to_ms(completed),
        updated_at_ms=to_ms(rec["updated_at"]),
    )


def _result(rec: Mapping[str, Any]) -> ResultSeen:
    return ResultSeen(
        command_id=str(rec["command_id"]),
        upload_id=str(rec["upload_id"]),
        batch_id=str(rec["batch_id"]),
        outcome=str(rec["outcome"]),
        reason=str(rec["reason"]),
        dry_run=bool(rec.get("dry_run")),
        processed_at_ms=to_ms(rec["processed_at"]),
    )


def _upload(rec: Mapping[str, Any]) -> UploadRecord:
    completed = rec.get("completed_at")
    return UploadRecord(
        upload_id=str(rec["upload_id"]),
        batch_id=str(rec["batch_id"]),
        phase=str(rec["phase"]),
        kind=str(rec.get("kind") or "add"),
        requested_by=str(rec.get("requested_by") or ""),
        dry_run=bool(rec.get("dry_run")),
        file_name=rec.get("file_name"),
        parent_upload_id=rec.get("parent_upload_id"),
        commands_published=int(rec.get("commands_published") or 0),
        refused=tuple(dict(r) for r in rec.get("refused") or ()),
        outcomes={str(k): int(v) for k, v in (rec.get("outcomes") or {}).items()},
        reasons={str(k): int(v) for k, v in (rec.get("reasons") or {}).items()},
        created_at_ms=to_ms(rec["created_at"]),
        completed_at_ms=None if completed is None else to_ms(completed),
        submitted_by=rec.get("submitted_by"),
    )


_FROM_RECORD: dict[str, Callable[[Mapping[str, Any]], Message]] = {
    "EnrollmentEvent": _membership,
    "CourseProgress": _progress,
    "CommandResult": _result,
    "UploadSummary": _upload,
}


def from_record(name: str, rec: Mapping[str, Any]) -> Message | None:
    """Maps a decoded Avro record to a message; None for record types the read model does not use."""
    build = _FROM_RECORD.get(name)
    return None if build is None else build(rec)
