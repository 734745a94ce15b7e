"""Partition assignment and crash recovery, with fake consumer/producer objects (no Kafka, no database).

The kill-the-process integration tests reach these branches only by chance; here each one is driven directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from enrolment.domain.outputs import Recorded
from enrolment.kafka.checkpoint import Checkpoint, OutMessage
from enrolment.kafka.loop import Rewind
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from enrolment.store.positions import PROCESSOR_POSITIONS, Position, TopicPartitionKey
from enrolment.store.step import InDoubt
from processor import handler as handler_module
from processor.assignment import Assignments, plan
from processor.handler import CommandHandler

TOPIC = "t.commands"


# ---------------------------------------------------------------------------------------------- plan (pure)
def test_nothing_stored_resumes_at_the_committed_offset_or_the_beginning() -> None:
    decided = plan([0, 1], stored={}, committed={0: 42, 1: -1001})
    assert decided.seek == {0: 42, 1: OFFSET_BEGINNING}
    assert decided.held == {0: None, 1: None}
    assert decided.recover == {} and decided.moved_by_hand == []


def test_published_batch_resumes_at_the_stored_position_without_recovery() -> None:
    decided = plan([3], stored={3: Position(100, 60)}, committed={3: 100})
    assert decided.seek == {3: 100}
    assert decided.recover == {}
    assert decided.moved_by_hand == []


def test_committed_at_the_start_of_the_last_batch_means_it_is_in_doubt() -> None:
    decided = plan([3], stored={3: Position(100, 60)}, committed={3: 60})
    assert decided.seek == {3: 100}
    assert decided.recover == {3: (60, 100)}


def test_an_empty_last_batch_is_never_in_doubt() -> None:
    decided = plan([3], stored={3: Position(60, 60)}, committed={3: 60})
    assert decided.recover == {}
    assert decided.moved_by_hand == []


def test_nothing_committed_and_a_first_batch_stored_means_the_first_batch_is_in_doubt() -> None:
    # a processor stopped between the two commits of a partition's very first batch (the bounded stop's test)
    decided = plan([3], stored={3: Position(200, 0)}, committed={3: -1001}, lows={3: 0})
    assert decided.seek == {3: 200}
    assert decided.recover == {3: (0, 200)} and decided.moved_by_hand == []


def test_nothing_committed_past_the_first_batch_is_moved_by_hand() -> None:
    # committed offsets gone (expired, deleted) after several batches: never re-published on a guess
    decided = plan([3], stored={3: Position(400, 200)}, committed={3: -1001}, lows={3: 0})
    assert decided.recover == {} and decided.moved_by_hand == [(3, 0, 400)]


def test_offsets_moved_by_hand_resume_at_the_stored_position_without_republishing() -> None:
    decided = plan([3], stored={3: Position(100, 60)}, committed={3: 7})
    assert decided.seek == {3: 100}
    assert decided.recover == {}
    assert decided.moved_by_hand == [(3, 7, 100)]


def test_a_replay_starts_at_its_time_offset_or_at_its_end_when_nothing_is_that_recent() -> None:
    decided = plan([0, 1], stored={}, committed={}, replay_starts={0: 5, 1: -1}, replay_ends={0: 9, 1: 30})
    assert decided.seek == {0: 5, 1: 30}


def test_a_replay_partition_with_a_stored_position_resumes_there() -> None:
    decided = plan([0], stored={0: Position(8, 4)}, committed={0: 8}, replay_starts={0: 2}, replay_ends={0: 9})
    assert decided.seek == {0: 8}


# ---------------------------------------------------------------------------------------------- fakes
class FakeCheckpoint(Checkpoint):
    """The real checkpoint with its database read replaced by positions given by the test."""

    def __init__(self, stored: dict[TopicPartitionKey, Position]) -> None:
        super().__init__(None, PROCESSOR_POSITIONS, "g")  # type: ignore[arg-type]  # never touches a database
        self.stored = stored

    def load(self, topics: Sequence[str] | None = None) -> dict[TopicPartitionKey, Position]:
        return dict(self.stored)


class FakeConsumer:
    def __init__(self, committed: dict[int, int]) -> None:
        self.committed_offsets = committed
        self.assigned: list[tuple[int, int]] | None = None
        self.unassigned = 0

    def committed(self, partitions: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        return [
            TopicPartition(TOPIC, tp.partition, self.committed_offsets.get(tp.partition, -1001)) for tp in partitions
        ]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = 0) -> tuple[int, int]:
        return 0, 1000

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = sorted((tp.partition, tp.offset) for tp in partitions)

    def unassign(self) -> None:
        self.unassigned += 1

    def consumer_group_metadata(self) -> str:
        return "group-metadata"


class FakeOutbox:
    def __init__(self, commits: bool = True) -> None:
        self.commits = commits
        self.published: list[tuple[list[OutMessage], dict[TopicPartitionKey, int]]] = []

    def publish(self, consumer: Any, messages: list[OutMessage], offsets: dict[TopicPartitionKey, int]) -> bool:
        self.published.append((list(messages), dict(offsets)))
        return self.commits


class FakeRaw:
    def cursor(self) -> object:
        return object()

    def commit(self) -> None:
        return None

    def close(self) -> None:
        return None


class FakeEngine:
    def raw_connection(self) -> FakeRaw:
        return FakeRaw()


def _assignments(stored: dict[int, Position]) -> tuple[Assignments, FakeCheckpoint]:
    checkpoint = FakeCheckpoint({(TOPIC, p): pos for p, pos in stored.items()})
    return Assignments(TOPIC, checkpoint), checkpoint


# ---------------------------------------------------------------------------------------------- Assignments
def test_on_assign_seeks_holds_positions_and_queues_the_in_doubt_batch() -> None:
    assignments, checkpoint = _assignments({0: Position(100, 60), 1: Position(50, 40)})
    consumer = FakeConsumer({0: 60, 1: 50, 2: 7})
    assignments.on_assign(consumer, [TopicPartition(TOPIC, p) for p in (0, 1, 2)])  # type: ignore[arg-type]
    assert consumer.assigned == [(0, 100), (1, 50), (2, 7)]
    assert assignments.owned == {0, 1, 2}
    assert assignments.pending_recovery == {0: (60, 100)}
    assert checkpoint.positions == {(TOPIC, 0): Position(100, 60), (TOPIC, 1): Position(50, 40)}


def test_on_revoke_forgets_positions_and_pending_recovery() -> None:
    assignments, checkpoint = _assignments({0: Position(100, 60)})
    consumer = FakeConsumer({0: 60})
    assignments.on_assign(consumer, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    assignments.on_revoke(consumer, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    assert assignments.owned == set()
    assert assignments.pending_recovery == {}
    assert checkpoint.positions == {}
    assert consumer.unassigned == 1


def test_reassign_after_a_failure_rereads_the_store_and_finds_the_batch_in_doubt() -> None:
    assignments, checkpoint = _assignments({0: Position(10, 0)})
    consumer = FakeConsumer({0: 10})
    assignments.on_assign(consumer, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    assert assignments.pending_recovery == {}
    # The next batch was committed to PostgreSQL, then its Kafka transaction aborted.
    checkpoint.stored = {(TOPIC, 0): Position(25, 10)}
    assignments.reassign_if_needed(consumer)  # type: ignore[arg-type]
    assert assignments.pending_recovery == {}, "nothing happens unless a failure asked for it"
    assignments.needs_reassign = True
    assignments.reassign_if_needed(consumer)  # type: ignore[arg-type]
    assert consumer.unassigned == 1
    assert consumer.assigned == [(0, 25)]
    assert assignments.pending_recovery == {0: (10, 25)}
    assert not assignments.needs_reassign


# ---------------------------------------------------------------------------------------------- recovery
def _recorded(line: int) -> Recorded:
    return Recorded(
        command_id=f"u1:{line}",
        upload_id="u1",
        batch_id="b1",
        kafka_partition=0,
        kafka_offset=60 + line,
        line=line,
        identifier=f"user-{line}",
        id_type="USER_ID",
        action="ADD",
        outcome="APPLIED",
        reason="ENROLLED",
        message="added",
        user_id=f"user-{line}",
        course_id="c1",
        participant_count=line,
        dry_run=False,
        source="BACKEND",
        requested_by="admin",
        processed_at_ms=1_717_171_717_171,
        origin_upload_id=None,
        origin_line=None,
        state="KA",
    )


def _handler(
    outbox: FakeOutbox, stored: dict[int, Position], committed: dict[int, int]
) -> tuple[CommandHandler, FakeConsumer]:
    base = Settings.from_env()
    settings = dataclasses.replace(base, topics=dataclasses.replace(base.topics, commands=TOPIC))
    assignments, checkpoint = _assignments(stored)
    handler = CommandHandler(
        settings,
        FakeEngine(),  # type: ignore[arg-type]
        default_codec(),
        checkpoint,
        assignments,
        outbox,  # type: ignore[arg-type]
    )
    consumer = FakeConsumer(committed)
    assignments.on_assign(consumer, [TopicPartition(TOPIC, p) for p in sorted(stored)])  # type: ignore[arg-type]
    return handler, consumer


def test_prepare_republishes_the_in_doubt_batch_from_the_ledger_with_its_end_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str, int, int, int]] = []

    def load_in_doubt(cur: Any, group: str, topic: str, partition: int, start: int, end: int) -> InDoubt:
        calls.append((group, topic, partition, start, end))
        return InDoubt([_recorded(1), _recorded(2)], [], [])

    monkeypatch.setattr(handler_module, "load_in_doubt", load_in_doubt)
    outbox = FakeOutbox()
    handler, consumer = _handler(outbox, {0: Position(100, 60)}, {0: 60})
    handler.prepare(consumer)  # type: ignore[arg-type]
    assert calls == [("g", TOPIC, 0, 60, 100)]
    assert len(outbox.published) == 1
    messages, offsets = outbox.published[0]
    assert offsets == {(TOPIC, 0): 100}
    topics = [m[0] for m in messages]
    settings = handler.settings.topics
    # Two enrolments: a result, an event, an AUDIT and a changelog entry each.
    assert topics.count(settings.results) == 2
    assert topics.count(settings.enrollment_events) == 2
    assert topics.count(settings.telemetry) == 2
    assert topics.count(settings.enrollments) == 2
    handler.prepare(consumer)  # type: ignore[arg-type]
    assert len(outbox.published) == 1, "a recovered batch is re-published once"


def test_an_aborted_recovery_asks_for_a_reassignment_and_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module, "load_in_doubt", lambda *a: InDoubt([_recorded(1)], [], []))
    outbox = FakeOutbox(commits=False)
    handler, consumer = _handler(outbox, {0: Position(100, 60)}, {0: 60})
    handler.prepare(consumer)  # type: ignore[arg-type]
    assert handler.assignments.needs_reassign
    outbox.commits = True
    # the reassignment finds the same batch in doubt (committed is still 60)
    handler.prepare(consumer)  # type: ignore[arg-type]
    assert len(outbox.published) == 2
    assert outbox.published[1][1] == {(TOPIC, 0): 100}
    assert not handler.assignments.needs_reassign


# ---------------------------------------------------------------------------------------------- inside consume()
class FakeMessage:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"b1"

    def value(self) -> bytes:
        return b"not avro"

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return 0, -1  # TIMESTAMP_NOT_AVAILABLE: the oldest-command clock starts at the time it is read


class Stop(Exception):
    """Ends a handle() once the fake database step has been reached."""


def test_an_assignment_inside_consume_is_recovered_before_its_messages_are_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """librdkafka runs on_assign inside consume() and returns messages from the same call: recovery goes first."""
    events: list[object] = []
    monkeypatch.setattr(handler_module, "load_in_doubt", lambda *a: InDoubt([_recorded(1)], [], []))
    outbox = FakeOutbox()

    def publish(consumer: Any, messages: list[OutMessage], offsets: dict[TopicPartitionKey, int]) -> bool:
        events.append(("publish", dict(offsets)))
        return True

    outbox.publish = publish  # type: ignore[method-assign]
    handler, consumer = _handler(outbox, {0: Position(100, 60)}, {0: 60})  # the assignment, as consume() runs it

    def apply(decoded: Any, moves: Any, ts: int, pending: Any) -> Any:
        events.append(("apply", sorted(moves)))
        raise Stop

    monkeypatch.setattr(handler, "_apply", apply)
    with pytest.raises(Stop):
        handler.handle(consumer, [FakeMessage(0, 100), FakeMessage(0, 101)])  # type: ignore[arg-type, list-item]
    assert events == [("publish", {(TOPIC, 0): 100}), ("apply", [(TOPIC, 0)])]


def test_a_failed_recovery_applies_nothing_until_the_partitions_are_reread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module, "load_in_doubt", lambda *a: InDoubt([_recorded(1)], [], []))
    outbox = FakeOutbox(commits=False)
    handler, consumer = _handler(outbox, {0: Position(100, 60)}, {0: 60})
    applied: list[object] = []
    monkeypatch.setattr(handler, "_apply", lambda *a: applied.append(a))
    with pytest.raises(Rewind):
        handler.handle(consumer, [FakeMessage(0, 100)])  # type: ignore[arg-type, list-item]
    assert applied == [], "the batch after an unpublished in-doubt batch must wait for the re-seek"
    assert handler.assignments.needs_reassign


class FlakyCheckpoint(FakeCheckpoint):
    def __init__(self, stored: dict[TopicPartitionKey, Position], failures: int) -> None:
        super().__init__(stored)
        self.failures = failures

    def load(self, topics: Sequence[str] | None = None) -> dict[TopicPartitionKey, Position]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database is restarting")
        return super().load(topics)


def test_an_error_while_assigning_leaves_the_partitions_owned_and_owed_a_reseek() -> None:
    checkpoint = FlakyCheckpoint({(TOPIC, 0): Position(100, 60)}, failures=1)
    assignments = Assignments(TOPIC, checkpoint)
    consumer = FakeConsumer({0: 60})
    with pytest.raises(ConnectionError):
        assignments.on_assign(consumer, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    assert assignments.owned == {0}
    assert assignments.needs_reassign, "the client assigned at the committed offset by itself: re-seek first"
    assignments.reassign_if_needed(consumer)  # type: ignore[arg-type]
    assert consumer.assigned == [(0, 100)]
    assert assignments.pending_recovery == {0: (60, 100)}
    assert not assignments.needs_reassign
