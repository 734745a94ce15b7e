"""The naive processor: the baseline the real one is compared with.

What a first implementation usually looks like: for every message, decode it, run one database transaction
(ledger check; batch, mentors, requester, user and membership looked up with single-row queries; insert the
ledger row; insert or delete the enrolment; update the count; COMMIT), produce its result with a plain
idempotent producer, then commit the consumer offset of that one message synchronously.  The rules are the
same (``enrolment.domain.rules.decide`` on a Snapshot built from those lookups) and so is the result record;
it emits only the result (not the enrolment event and telemetry the real processor also publishes), which
favours the baseline.  Seals are skipped (offset committed, nothing else).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from sqlalchemy import Engine

from enrolment.domain.model import Batch, Command, Decision, IdType, Reason, User
from enrolment.domain.outputs import Recorded, result_record
from enrolment.domain.rules import Snapshot, decide
from enrolment.kafka.clients import base_config
from enrolment.messages.codec import Codec
from enrolment.messages.records import command_from_record
from enrolment.settings import Settings
from enrolment.store.step import Positioned, recorded_from

_LEDGER_INSERT = """
INSERT INTO command_ledger (command_id, upload_id, batch_id, kafka_topic, group_id, kafka_partition, kafka_offset,
    line, identifier, id_type, action, outcome, reason, message, user_id, course_id, participant_count, dry_run,
    source, requested_by, processed_at, origin_upload_id, origin_line)
VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
"""
_USER_COLUMNS = "user_id, state_id, state, status, roles"


@dataclass
class NaiveStats:
    commands: int = 0
    other_messages: int = 0
    duplicates: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    assigned_at: float | None = None  # perf_counter
    last_commit_at: float | None = None
    wall_s: float = 0.0

    @property
    def span_s(self) -> float | None:
        """From the partition assignment to the last offset commit (the processor's span, measured alike)."""
        if self.assigned_at is None or self.last_commit_at is None:
            return None
        return self.last_commit_at - self.assigned_at

    def to_json(self) -> dict[str, Any]:
        return {
            "commands": self.commands,
            "other_messages": self.other_messages,
            "duplicates": self.duplicates,
            "outcomes": dict(self.outcomes),
            "span_s": self.span_s,
            "wall_s": self.wall_s,
        }


def _user(row: tuple[Any, ...] | None) -> User | None:
    if row is None:
        return None
    user_id, state_id, state, status, roles = row
    return User(user_id, state, status, frozenset(roles or ()), state_id)


def apply_one(cur: Any, cmd: Command, partition: int, offset: int, topic: str, group: str, ui_limit: int) -> Recorded:
    """One command, one round-trip per lookup and per write (the caller commits)."""
    cur.execute(
        "SELECT batch_id, course_id, state, enrollment_type, status, participant_count FROM course_batches "
        "WHERE batch_id = %s",
        (cmd.batch_id,),
    )
    row = cur.fetchone()
    batches: dict[str, Batch] = {}
    users_by_id: dict[str, User] = {}
    users_by_state_id: dict[tuple[str, str], User] = {}
    requesters: dict[str, User] = {}
    members: set[tuple[str, str]] = set()
    if row is not None:
        cur.execute("SELECT user_id FROM batch_mentors WHERE batch_id = %s", (cmd.batch_id,))
        mentors = frozenset(r[0] for r in cur.fetchall())
        batch = Batch(row[0], row[1], row[2], row[3], row[4], mentors, int(row[5]))
        batches[batch.batch_id] = batch
        cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = %s", (cmd.requested_by,))
        requester = _user(cur.fetchone())
        if requester is not None:
            requesters[requester.user_id] = requester
        if cmd.id_type is IdType.USER_ID:
            cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = %s", (cmd.identifier,))
        else:
            cur.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE state = %s AND state_id = %s", (batch.state, cmd.identifier)
            )
        user = _user(cur.fetchone())
        if user is not None:
            users_by_id[user.user_id] = user
            if user.state_id is not None:
                users_by_state_id[(user.state, user.state_id)] = user
            cur.execute("SELECT 1 FROM enrolments WHERE batch_id = %s AND user_id = %s", (cmd.batch_id, user.user_id))
            if cur.fetchone() is not None:
                members.add((cmd.batch_id, user.user_id))
    snapshot = Snapshot(
        batches=batches,
        users_by_id=users_by_id,
        users_by_state_id=users_by_state_id,
        requesters=requesters,
        members=members,
    )
    d = decide(cmd, snapshot, ui_limit)
    now_ms = int(time.time() * 1000)
    rec = recorded(d, partition, offset, batches[cmd.batch_id].state if cmd.batch_id in batches else None, now_ms)
    cur.execute(
        _LEDGER_INSERT,
        (
            rec.command_id,
            rec.upload_id,
            rec.batch_id,
            topic,
            group,
            partition,
            offset,
            rec.line,
            rec.identifier,
            rec.id_type,
            rec.action,
            rec.outcome,
            rec.reason,
            rec.message,
            rec.user_id,
            rec.course_id,
            rec.participant_count,
            rec.dry_run,
            rec.source,
            rec.requested_by,
            datetime.fromtimestamp(now_ms / 1000, UTC),
            rec.origin_upload_id,
            rec.origin_line,
        ),
    )
    if d.change is Reason.ENROLLED:
        cur.execute(
            "INSERT INTO enrolments (batch_id, user_id, added_via, enrolled_at, enrolled_by, command_id) "
            "VALUES (%s,%s,%s,now(),%s,%s)",
            (rec.batch_id, rec.user_id, "ui" if rec.source == "UI" else "backend", rec.requested_by, rec.command_id),
        )
        cur.execute(
            "UPDATE course_batches SET participant_count = participant_count + 1, updated_at = now() "
            "WHERE batch_id = %s",
            (rec.batch_id,),
        )
    elif d.change is Reason.UNENROLLED:
        cur.execute("DELETE FROM enrolments WHERE batch_id = %s AND user_id = %s", (rec.batch_id, rec.user_id))
        cur.execute(
            "UPDATE course_batches SET participant_count = participant_count - 1, updated_at = now() "
            "WHERE batch_id = %s",
            (rec.batch_id,),
        )
    return rec


def recorded(d: Decision, partition: int, offset: int, state: str | None, now_ms: int) -> Recorded:
    """The same ledger row as the real processor's."""
    return recorded_from(d, Positioned(d.command, partition, offset), state, now_ms)


def run_naive(settings: Settings, engine: Engine, codec: Codec, total: int, timeout_s: float = 600.0) -> NaiveStats:
    """Processes the ``total`` messages (commands and seals) of the commands topic one by one."""
    started = time.perf_counter()
    stats = NaiveStats()
    topic = settings.topics.commands
    group = settings.consumer_group
    consumer = Consumer(
        {
            **base_config(settings),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    producer = Producer({**base_config(settings), "enable.idempotence": True, "acks": "all"})

    def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
        stats.assigned_at = time.perf_counter()

    consumer.subscribe([topic], on_assign=on_assign)
    schema = codec.current["CommandResult"]
    raw = engine.raw_connection()
    handled = 0
    deadline = time.monotonic() + timeout_s
    try:
        cur = raw.cursor()
        while handled < total and time.monotonic() < deadline:
            m: Message | None = consumer.poll(0.5)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"naive consumer: {err.str()}")
                continue
            handled += 1
            name, rec = codec.decode(m.value())
            if name != "ParticipantCommand":
                stats.other_messages += 1
                consumer.commit(message=m, asynchronous=False)
                continue
            cmd = command_from_record(rec)
            cur.execute("SELECT 1 FROM command_ledger WHERE command_id = %s", (cmd.command_id,))
            if cur.fetchone() is not None:
                raw.commit()
                stats.duplicates += 1
                consumer.commit(message=m, asynchronous=False)
                continue
            result = apply_one(
                cur, cmd, int(m.partition() or 0), int(m.offset() or 0), topic, group, settings.ui_participant_limit
            )
            raw.commit()
            while True:
                try:
                    producer.produce(
                        settings.topics.results, codec.encode_with(schema, result_record(result)), cmd.batch_id.encode()
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            consumer.commit(message=m, asynchronous=False)
            stats.last_commit_at = time.perf_counter()
            stats.commands += 1
            stats.outcomes[result.reason] += 1
        producer.flush(30)
    finally:
        raw.close()
        consumer.close()
    stats.wall_s = time.perf_counter() - started
    if handled < total:
        raise RuntimeError(f"naive processor timed out after {handled} of {total} messages")
    return stats
