"""The processor: a consumer group on the commands topic with exactly-once effects and outputs.

Design (README, "Exactly once"): PostgreSQL holds the truth about what was applied: each consumed
batch is one database transaction that applies the commands set-based, records every command's outcome
in the ledger (unique command id) and moves the partition's stored position with a compare-and-set.
The outputs of that batch are then published in one Kafka transaction together with the consumer
offsets.  Only the last applied batch of a partition can be unpublished (a crash between the two
commits); on assignment the stored position is compared with the committed offset, and when the
committed offset is exactly the start of the last applied batch, that batch's outputs are rebuilt from
the ledger and published before anything else.  A replayed command hits the ledger and emits nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from sqlalchemy import Engine

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
from enrolment.messages.codec import Codec, DecodeError
from enrolment.messages.records import command_from_record
from enrolment.settings import Settings
from enrolment.store.step import (
    DeadLetter,
    Position,
    PositionConflict,
    Positioned,
    apply_commands,
    claim_positions,
    load_in_doubt,
    read_positions,
    record_dead_letters,
    seal_upload,
)
from processor import metrics

log = logging.getLogger("processor")


class Fatal(Exception):
    """The instance must stop (fenced by a newer instance with the same id, or a broken configuration)."""


@dataclass
class ReplayRange:
    """A replay: its own group, a start, and an end per partition (where the main group has got to).

    Commands at or past the end belong to the running processor and are left alone.
    """

    end_offsets: dict[int, int]
    start_time_ms: int | None = None  # None: from the beginning
    upload_id: str | None = None  # only this upload's commands
    dry_run: bool = False  # evaluate and report; write and publish nothing


@dataclass
class Outputs:
    """Encoded messages of one batch, produced inside one Kafka transaction."""

    messages: list[tuple[str, bytes, bytes | None, list[tuple[str, str | bytes | None]] | None]] = field(
        default_factory=list
    )
    counts: Counter[str] = field(default_factory=Counter)


_FAILPOINT = os.environ.get("PARTICIPANTS_FAILPOINT", "")
_failpoint_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Test hook: PARTICIPANTS_FAILPOINT=NAME:N kills the process (like SIGKILL) at the N-th pass of NAME.

    Lets tests crash deterministically between the database commit and the Kafka commit.
    """
    if not _FAILPOINT:
        return
    target, _, nth = _FAILPOINT.partition(":")
    if target == name:
        _failpoint_hits[name] += 1
        if _failpoint_hits[name] >= int(nth or "1"):
            log.warning("failpoint reached, exiting abruptly", extra={"failpoint": _FAILPOINT})
            os._exit(137)


def now_ms() -> int:
    return int(time.time() * 1000)


def consumer_config(settings: Settings, group: str, instance_id: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 300000,
        "fetch.wait.max.ms": 100,
        # Read ahead little: over a 1M-command backlog this keeps the processor near 150 MB instead of ~460 MB
        # (measured in bench/), at about the same speed.
        "queued.max.messages.kbytes": 4096,
        "queued.min.messages": 10000,
        "fetch.max.bytes": 1048576,
    }
    if instance_id:
        cfg["group.instance.id"] = instance_id
    return cfg


def producer_config(settings: Settings, transactional_id: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 10485760,
    }
    if transactional_id:
        cfg["transactional.id"] = transactional_id
        cfg["transaction.timeout.ms"] = settings.transaction_timeout_ms
    return cfg


class Processor:
    """Consumes commands, applies them exactly once, publishes results/events/telemetry transactionally."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        codec: Codec,
        *,
        group: str | None = None,
        instance_id: str | None = None,
        until_idle: bool = False,
        idle_grace_s: float = 1.0,
        replay: ReplayRange | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.codec = codec
        self.group = group or settings.consumer_group
        self.instance_id = instance_id or settings.instance_id
        self.until_idle = until_idle
        self.idle_grace_s = idle_grace_s
        self.topic = settings.topics.commands
        self.stopping = False
        self.positions: dict[int, Position] = {}
        self.owned: set[int] = set()
        self.pending_recovery: dict[int, tuple[int, int]] = {}  # partition -> in-doubt [start, end)
        self.needs_reassign = False
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.processed = Counter[str]()
        self.replay = replay
        self.report: Counter[tuple[str, str]] = Counter()  # (status, reason) for replays

    # ------------------------------------------------------------------ lifecycle
    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal received, stopping after the current batch", extra={"signal": signum})
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> int:
        """Runs until stopped (or idle with --until-idle); returns the process exit code."""
        txn_id = f"{self.group}.{self.instance_id}"
        self.producer = Producer(producer_config(self.settings, txn_id))
        try:
            self.producer.init_transactions(30)
        except KafkaException as exc:
            raise Fatal(f"cannot initialise transactions for {txn_id}: {exc.args[0].str()}") from None
        self.consumer = Consumer(consumer_config(self.settings, self.group, self.instance_id))
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("processor started", extra={"group": self.group, "instance": self.instance_id, "topic": self.topic})
        idle_since: float | None = None
        try:
            while not self.stopping:
                msgs = self.consumer.consume(self.settings.max_batch, self.settings.batch_timeout_s)
                if self.needs_reassign:
                    self._reassign_all()
                    continue
                if self.pending_recovery:
                    self._recover()
                msgs = [m for m in msgs if self._keep(m)]
                if msgs:
                    idle_since = None
                    self._process(msgs)
                    continue
                metrics.update_lag(self.consumer, self.topic, self.owned, self.positions)
                if self.until_idle:
                    if self._caught_up():
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since >= self.idle_grace_s:
                            log.info("caught up, exiting (--until-idle)", extra=dict(self.processed))
                            break
                    else:
                        idle_since = None
        finally:
            self._close()
        return 0

    def _close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except KafkaException as exc:
                log.warning("consumer close failed", extra={"error": str(exc)})
        if self.producer is not None:
            self.producer.flush(10)

    # ------------------------------------------------------------------ assignment
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = [tp.partition for tp in partitions]
        stored = self._read_positions()
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=30)}
        starts: dict[int, int] = {}
        if self.replay is not None and self.replay.start_time_ms is not None:
            wanted = [TopicPartition(self.topic, tp.partition, self.replay.start_time_ms) for tp in partitions]
            for found in consumer.offsets_for_times(wanted, timeout=30):
                starts[found.partition] = found.offset
        for tp in partitions:
            p = tp.partition
            pos = stored.get(p)
            x = committed.get(p, -1)
            if pos is None and p in starts:
                tp.offset = starts[p] if starts[p] >= 0 else self.replay.end_offsets.get(p, 0) if self.replay else 0
                self.positions.pop(p, None)
            elif pos is None:
                tp.offset = x if x >= 0 else OFFSET_BEGINNING
                self.positions.pop(p, None)
            else:
                tp.offset = pos.next_offset
                self.positions[p] = pos
                if x == pos.next_offset:
                    pass
                elif x == pos.batch_start and pos.batch_start < pos.next_offset:
                    self.pending_recovery[p] = (pos.batch_start, pos.next_offset)
                else:
                    log.warning(
                        "committed offset differs from the stored position; resuming at the stored position "
                        "without re-publishing (offsets were moved by hand?)",
                        extra={"partition": p, "committed": x, "stored": pos.next_offset},
                    )
        self.owned = set(parts)
        consumer.assign(partitions)
        log.info("partitions assigned", extra={"partitions": parts, "recover": sorted(self.pending_recovery)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.owned.discard(tp.partition)
            self.positions.pop(tp.partition, None)
            self.pending_recovery.pop(tp.partition, None)
        consumer.unassign()
        log.info("partitions revoked", extra={"partitions": [tp.partition for tp in partitions]})

    def _reassign_all(self) -> None:
        """After a failed batch: re-read stored positions and committed offsets, seek, recover."""
        assert self.consumer is not None
        self.needs_reassign = False
        parts = [TopicPartition(self.topic, p) for p in sorted(self.owned)]
        if parts:
            self.consumer.unassign()
            self._on_assign(self.consumer, parts)

    def _read_positions(self) -> dict[int, Position]:
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            positions = read_positions(cur, self.group, self.topic)
            raw.commit()
            return positions
        finally:
            raw.close()

    def _keep(self, msg: Message) -> bool:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", extra={"error": err.str()})
            return False
        p = msg.partition()
        if p is None or p not in self.owned:
            return False
        pos = self.positions.get(p)
        offset = msg.offset()
        if self.replay is not None and offset is not None and offset >= self.replay.end_offsets.get(p, 0):
            return False
        return not (pos is not None and offset is not None and offset < pos.next_offset)

    def _caught_up(self) -> bool:
        """True when the whole group is caught up: every partition's position has reached its high watermark.

        Own partitions are judged by the stored positions, the others by the group's committed offsets
        (a partition held by a stopped member is not caught up until someone processes it).  Cached
        watermarks answer cheaply first; only a "yes" is confirmed with the broker.
        """
        assert self.consumer is not None
        if not self.owned:
            return False
        if self.replay is not None:
            return all(self._replay_done(p) for p in self.owned)
        md = self.consumer.list_topics(self.topic, timeout=10)
        everyone = sorted(md.topics[self.topic].partitions)
        others = [TopicPartition(self.topic, p) for p in everyone if p not in self.owned]
        committed = {tp.partition: tp.offset for tp in self.consumer.committed(others, timeout=10)} if others else {}
        for cached in (True, False):
            for p in everyone:
                tp = TopicPartition(self.topic, p)
                mine = p in self.owned
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=cached and mine)
                if high <= 0:
                    continue
                if mine:
                    pos = self.positions.get(p)
                    done = pos.next_offset if pos is not None else self.consumer.position([tp])[0].offset
                else:
                    done = committed.get(p, -1)
                if done < high:
                    return False
        return True

    def _replay_done(self, p: int) -> bool:
        assert self.replay is not None and self.consumer is not None
        end = self.replay.end_offsets.get(p, 0)
        pos = self.positions.get(p)
        if end <= 0 or (pos is not None and pos.next_offset >= end):
            return True
        low, _high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
        position = self.consumer.position([TopicPartition(self.topic, p)])[0].offset
        return max(position, low) >= end if position >= 0 else low >= end

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        assert self.producer is not None and self.consumer is not None
        pending = dict(self.pending_recovery)
        self.pending_recovery.clear()
        for p, (start, end) in sorted(pending.items()):
            raw = self.engine.raw_connection()
            try:
                doubt = load_in_doubt(raw.cursor(), self.group, self.topic, p, start, end)
                raw.commit()
            finally:
                raw.close()
            out = Outputs()
            self._outputs_for(out, doubt.recorded, doubt.uploads, doubt.dead_letters)
            self._publish(out, {p: end})
            log.info(
                "re-published the outputs of an in-doubt batch",
                extra={"partition": p, "offsets": [start, end], "messages": len(out.messages)},
            )

    # ------------------------------------------------------------------ the batch
    def _process(self, msgs: list[Message]) -> None:
        started = time.perf_counter()
        replay = self.replay
        ts = now_ms()
        items: list[Positioned] = []
        seals: list[tuple[dict[str, Any], int, int]] = []
        letters: list[DeadLetter] = []
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for m in msgs:
            p, off = int(m.partition() or 0), int(m.offset() or 0)
            first.setdefault(p, off)
            last[p] = off
            try:
                name, rec = self.codec.decode(m.value())
                if replay is not None and replay.upload_id is not None and rec.get("upload_id") != replay.upload_id:
                    continue  # a replay of one upload leaves the others alone
                if name == "ParticipantCommand":
                    command = command_from_record(rec)
                    if replay is not None and replay.dry_run:
                        command = dataclasses.replace(command, dry_run=True)
                    items.append(Positioned(command, p, off))
                elif name == "UploadSummary" and rec["phase"] == "PUBLISHED":
                    if replay is None or not replay.dry_run:
                        seals.append((rec, p, off))
                else:
                    raise DecodeError("UNEXPECTED_SCHEMA", f"{name} is not a command")
            except DecodeError as exc:
                letters.append(DeadLetter(self.topic, p, off, exc.reason, exc.detail, m.key(), m.value(), ts))
            except (KeyError, ValueError, TypeError) as exc:
                letters.append(DeadLetter(self.topic, p, off, "INVALID_COMMAND", str(exc), m.key(), m.value(), ts))
        if replay is not None:
            # History was dead-lettered by the processor when it first came by; a replay only counts it.
            if letters:
                self.report[("dead-lettered", "UNDECODABLE")] += len(letters)
            letters = []
        moves = {p: (self.positions.get(p), Position(last[p] + 1, first[p])) for p in first}
        t_decoded = time.perf_counter()
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            dry = replay is not None and replay.dry_run
            if not dry:
                claim_positions(cur, self.group, self.topic, moves)
            step = apply_commands(cur, items, self.settings.ui_participant_limit, ts, self.topic, self.group)
            record_dead_letters(cur, letters)
            completed = [
                u
                for rec, p, off in seals
                if (u := seal_upload(cur, rec, p, off, ts, self.topic, self.group)) is not None
            ]
            if dry:
                raw.rollback()  # a dry-run replay reports what would happen and keeps nothing
            else:
                raw.commit()
        except PositionConflict as exc:
            raw.rollback()
            log.warning("position conflict, another owner applied these partitions", extra={"error": str(exc)})
            self.needs_reassign = True
            return
        except Exception:
            raw.rollback()
            log.exception("database step failed; the batch will be consumed again", extra={"partitions": sorted(first)})
            self.needs_reassign = True
            time.sleep(1)
            return
        finally:
            raw.close()
        for p, (_old, new) in moves.items():
            self.positions[p] = new
        failpoint("after-db-commit")
        t_db = time.perf_counter()
        if replay is not None:
            for reason in step.recorded_reasons:
                self.report[("already applied", reason)] += 1
            for r in step.recorded:
                self.report[("would apply" if replay.dry_run else "applied now", r.reason)] += 1
        out = Outputs()
        t_encoded = t_published = t_db
        if not dry:
            self._outputs_for(out, step.recorded, completed, letters)
            t_encoded = time.perf_counter()
            self._publish(out, {p: new.next_offset for p, (_o, new) in moves.items()})
            t_published = time.perf_counter()
        elapsed = t_published - started
        metrics.observe_batch(step.recorded, step.duplicates, elapsed)
        for r in step.recorded:
            self.processed[r.outcome] += 1
        self.processed["DUPLICATE"] += step.duplicates
        log.info(
            "batch applied",
            extra={
                "offsets": {p: [first[p], last[p]] for p in sorted(first)},
                "commands": len(items),
                "duplicates": step.duplicates,
                "dead_letters": len(letters),
                "uploads": sorted({r.upload_id for r in step.recorded})[:20],
                "batches": sorted({r.batch_id for r in step.recorded})[:20],
                "completed_uploads": [u.upload_id for u in completed],
                "seconds": round(elapsed, 4),
                "phases": {
                    "decode": round(t_decoded - started, 4),
                    "database": round(t_db - t_decoded, 4),
                    "encode": round(t_encoded - t_db, 4),
                    "kafka": round(t_published - t_encoded, 4),
                },
            },
        )
        for u in completed:
            log.info(
                "upload completed",
                extra={"upload_id": u.upload_id, "batch_id": u.batch_id, "outcomes": dict(u.outcomes)},
            )

    def _outputs_for(
        self, out: Outputs, recorded: list[Recorded], uploads: list[UploadInfo], letters: list[DeadLetter]
    ) -> None:
        t = self.settings.topics
        c = self.codec
        result_schema = c.current["CommandResult"]
        event_schema = c.current["EnrollmentEvent"]
        telemetry_schema = c.current["TelemetryEvent"]
        state_schema = c.current["EnrollmentState"]
        for r in recorded:
            key = r.batch_id.encode()
            out.messages.append((t.results, key, c.encode_with(result_schema, result_record(r)), None))
            ev = event_record(r)
            if ev is not None:
                out.messages.append((t.enrollment_events, key, c.encode_with(event_schema, ev), None))
                audit = audit_record(r)
                if audit is not None:
                    out.messages.append((t.telemetry, key, c.encode_with(telemetry_schema, audit), None))
                changelog = changelog_record(r)
                if changelog is not None:
                    ckey, state = changelog
                    value = None if state is None else c.encode_with(state_schema, state)
                    out.messages.append((t.enrollments, ckey, value, None))
        for u in uploads:
            key = u.batch_id.encode()
            out.messages.append((t.uploads, key, c.encode("UploadSummary", summary_record(u)), None))
            out.messages.append((t.telemetry, key, c.encode("TelemetryEvent", log_record(u)), None))
        for d in letters:
            headers: list[tuple[str, str | bytes | None]] = [
                ("dlq.reason", d.reason.encode()),
                ("dlq.detail", d.detail.encode()[:1000]),
                ("dlq.source.topic", d.source_topic.encode()),
                ("dlq.source.partition", str(d.partition).encode()),
                ("dlq.source.offset", str(d.offset).encode()),
                ("dlq.at", str(d.at_ms).encode()),
            ]
            out.messages.append((t.dead_letters, d.key or b"", d.value or b"", headers))

    def _publish(self, out: Outputs, offsets: dict[int, int]) -> None:
        """One Kafka transaction: the outputs plus the consumer offsets (the relay position)."""
        assert self.producer is not None and self.consumer is not None
        producer = self.producer
        try:
            producer.begin_transaction()
            for topic, key, value, headers in out.messages:
                while True:
                    try:
                        if headers is None:
                            producer.produce(topic, value, key)
                        else:
                            producer.produce(topic, value, key, headers=headers)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.send_offsets_to_transaction(
                [TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())],
                self.consumer.consumer_group_metadata(),
                30,
            )
            producer.commit_transaction(60)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise Fatal(f"Kafka transaction failed fatally: {err.str()}") from None
            log.warning(
                "Kafka transaction aborted; outputs will be re-published from the ledger",
                extra={"error": err.str(), "partitions": sorted(offsets)},
            )
            try:
                producer.abort_transaction(30)
            except KafkaException as abort_exc:
                if abort_exc.args[0].fatal():
                    raise Fatal(f"abort failed fatally: {abort_exc.args[0].str()}") from None
            self.needs_reassign = True
