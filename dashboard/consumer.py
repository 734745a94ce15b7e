"""The read-model consumer: enrolment events, course progress, command results and upload records into dash_ tables.

It runs on the shared loop (`enrolment.kafka.loop`) with a handler of its own. It assigns itself every
partition of its topics (no group rebalancing) and keeps its positions in ``dash_positions``, moved in the
same PostgreSQL transaction as the rows a batch of messages changes (`Checkpoint`). So a crash between the
database commit and anything else replays nothing, and a rebuild is deterministic: delete this group's rows
(positions included) and consume from the beginning again. The group's Kafka offsets are also committed
after each applied batch, but only so lag shows in the usual Kafka tools.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition
from sqlalchemy import Engine

from dashboard import readstore
from dashboard.readmodel import Message as ModelMessage
from dashboard.readmodel import from_record
from enrolment.kafka import clients
from enrolment.kafka.checkpoint import Checkpoint
from enrolment.kafka.health import DEAD_LETTERS, Health
from enrolment.kafka.loop import Backoff, Rewind, RunLoop, at_end
from enrolment.kafka.poison import apply_isolating_refused
from enrolment.messages.codec import Codec, DecodeError
from enrolment.messages.millis import now_ms
from enrolment.settings import Settings
from enrolment.store.dead_letters import DeadLetter, dead_letter_headers, record_dead_letters
from enrolment.store.positions import DASHBOARD_POSITIONS, Moves, PositionConflict, TopicPartitionKey

TopicPartitionOffset = tuple[str, int, int]

log = logging.getLogger("dashboard.consumer")


def read_model_topics(settings: Settings) -> dict[str, str]:
    """Topic -> the record type expected on it."""
    t = settings.topics
    return {
        t.enrollment_events: "EnrollmentEvent",
        t.course_progress: "CourseProgress",
        t.results: "CommandResult",
        t.uploads: "UploadSummary",
    }


class NotCaughtUp(Exception):
    """The read model did not reach the end of its topics within the time given."""


@dataclass
class Stats:
    batches: int = 0
    messages: int = 0
    undecodable: int = 0
    ignored: Counter[str] = field(default_factory=Counter)


class ReadModelHandler:
    """Applies the topics to the read model, one PostgreSQL transaction per batch; a `Handler` for `RunLoop`."""

    def __init__(
        self, settings: Settings, engine: Engine, codec: Codec, checkpoint: Checkpoint, names_refresh_s: float
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.codec = codec
        self.checkpoint = checkpoint
        self.group = checkpoint.group
        self.expected = read_model_topics(settings)
        self.assigned: list[TopicPartitionKey] = []
        self.missing_topics: set[str] = set()
        self.last_topic_check = 0.0
        self.names_refresh_s = names_refresh_s
        self.last_names_refresh: float | None = None
        self.stats = Stats()
        self.producer: Producer | None = None  # for dead letters, built when the first one comes

    # ------------------------------------------------------------------ assignment
    def assign(self, consumer: Consumer) -> None:
        """Assigns every partition of the topics at the stored positions (the beginning where none is stored)."""
        try:
            md = consumer.list_topics(timeout=10)
        except KafkaException as exc:
            consumer.poll(0)  # not assigned yet: only runs the error callback
            clients.check_refused(self.settings)
            raise ConnectionError(f"Cannot reach Kafka at {self.settings.kafka_bootstrap_servers}: {exc}") from None
        stored = self.checkpoint.load()
        assignment: list[TopicPartition] = []
        self.assigned, self.missing_topics = [], set()
        for topic in self.expected:
            meta = md.topics.get(topic)
            if meta is None or not meta.partitions:
                self.missing_topics.add(topic)
                continue
            for p in sorted(meta.partitions):
                pos = stored.get((topic, p))
                self.checkpoint.hold((topic, p), pos)
                self.assigned.append((topic, p))
                assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING if pos is None else pos.next_offset))
        if self.missing_topics:
            log.warning("topics missing; will look again", extra={"topics": sorted(self.missing_topics)})
        consumer.assign(assignment)
        self.last_topic_check = time.monotonic()
        log.info("read model assigned", extra={"group": self.group, "partitions": len(assignment)})

    # ------------------------------------------------------------------ the sink contract
    def prepare(self, consumer: Consumer) -> None:
        if self.missing_topics and time.monotonic() - self.last_topic_check > 10:
            self.assign(consumer)
        if self.last_names_refresh is None or time.monotonic() - self.last_names_refresh >= self.names_refresh_s:
            self.refresh_names()

    def wants(self, msg: Message) -> bool:
        return True

    def handle(self, consumer: Consumer, msgs: list[Message]) -> None:
        self._handle_part(consumer, msgs, {})

    def _handle_part(self, consumer: Consumer, msgs: list[Message], refused: dict[TopicPartitionOffset, str]) -> None:
        """Applies ``msgs``, splitting out a message PostgreSQL refuses (enrolment.kafka.poison) as a dead letter."""
        apply_isolating_refused(
            msgs,
            lambda part: self._apply(consumer, part, refused),
            refused,
            lambda m: (str(m.topic()), int(m.partition() or 0), int(m.offset() or 0)),
        )

    def _apply(self, consumer: Consumer, msgs: list[Message], refused: dict[TopicPartitionOffset, str]) -> None:
        moves = self.checkpoint.moves(msgs)
        at = now_ms()
        messages: list[ModelMessage] = []
        letters: list[DeadLetter] = []
        for msg in msgs:
            topic, p, off = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
            why = refused.get((topic, p, off))
            if why is not None:
                letters.append(DeadLetter(topic, p, off, "DATABASE_REFUSED", why, msg.key(), msg.value(), at))
                continue
            decoded = self._decoded(msg, at, letters)
            if decoded is not None:
                messages.append(decoded)

        def claim(cur: Any) -> None:
            self.checkpoint.claim(cur, moves)
            if letters:
                record_dead_letters(cur, letters)
                self._send_letters(letters)  # before the commit: at least once on the topic, once in the table

        raw = self.engine.raw_connection()
        try:
            changes = readstore.apply_batch(raw, self.group, messages, claim)
        except PositionConflict as exc:
            log.warning("another instance moved the read model; re-reading positions", extra={"error": str(exc)})
            self.assign(consumer)
            raise Rewind(str(exc)) from None
        finally:
            raw.close()
        self.checkpoint.advance(moves)
        self.stats.batches += 1
        self.stats.messages += len(msgs)
        self.stats.ignored.update(changes.ignored)
        for d in letters:
            DEAD_LETTERS.labels("dashboard", d.reason).inc()
        _commit_offsets(consumer, moves)

    def _send_letters(self, letters: list[DeadLetter]) -> None:
        if self.producer is None:
            self.producer = clients.bulk_producer(self.settings)
        deliveries = clients.Deliveries(self.settings)  # refused ACLs: a sentence, not a retry
        for d in letters:
            headers: clients.Headers = list(dead_letter_headers(d))
            clients.produce(
                self.producer, self.settings.topics.dead_letters, d.value or b"", d.key or b"", headers, deliveries
            )
        deliveries.flush(self.producer, f"{len(letters)} dead letters", 30)

    def caught_up(self, consumer: Consumer) -> bool:
        """True when every assigned partition is read up to its end (last stable offset, read_committed)."""
        return not self.missing_topics and at_end(consumer, self.checkpoint, self.assigned)

    def idle(self, consumer: Consumer) -> None:
        return None

    def failed(self, exc: Exception) -> bool:
        """Kafka or database trouble: drop the consumer; the next attempt builds and assigns a new one."""
        return True

    # ------------------------------------------------------------------ helpers
    def _decoded(self, m: Message, at_ms: int, letters: list[DeadLetter]) -> ModelMessage | None:
        """The read model's message, or None: a record it does not use, or a dead letter (appended)."""
        topic, p, offset = str(m.topic()), int(m.partition() or 0), int(m.offset() or 0)
        try:
            name, rec = self.codec.decode(m.value(), expect=self.expected.get(topic))
            return from_record(name, rec)
        except DecodeError as exc:
            reason, detail = exc.reason, exc.detail
        except (KeyError, TypeError, ValueError) as exc:
            reason, detail = "INVALID_RECORD", f"{type(exc).__name__}: {exc}"
        self.stats.undecodable += 1
        log.warning(
            "dead-lettering an unusable message",
            extra={"topic": topic, "partition": p, "offset": offset, "reason": reason, "detail": detail},
        )
        letters.append(DeadLetter(topic, p, offset, reason, detail, m.key(), m.value(), at_ms))
        return None

    def refresh_names(self) -> int:
        """Brings the members' copies of names and state ids up to date with the users table."""
        raw = self.engine.raw_connection()
        try:
            changed = readstore.refresh_names(raw, self.group)
        finally:
            raw.close()
        self.last_names_refresh = time.monotonic()
        if changed:
            log.info("participant names refreshed", extra={"rows": changed})
        return changed


def _commit_offsets(consumer: Consumer, moves: Moves) -> None:
    """Informational only (lag in Kafka tools); the truth is dash_positions."""
    offsets = [TopicPartition(t, p, new.next_offset) for (t, p), (_old, new) in sorted(moves.items())]
    try:
        consumer.commit(offsets=offsets, asynchronous=True)
    except KafkaException as exc:
        log.debug("offset commit failed", extra={"error": str(exc)})


class ReadModelConsumer:
    """The dashboard's consumer: the read-model handler on the shared run loop."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        codec: Codec,
        *,
        group: str | None = None,
        max_batch: int = 5000,
        poll_timeout_s: float = 0.2,
        names_refresh_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.group = group or settings.dashboard_group
        self.checkpoint = Checkpoint(engine, DASHBOARD_POSITIONS, self.group)
        self.handler = ReadModelHandler(settings, engine, codec, self.checkpoint, names_refresh_s)
        self.health = Health("dashboard")
        self.loop = RunLoop(
            self._connect,
            self.handler,
            self.checkpoint,
            max_batch=max_batch,
            poll_timeout_s=poll_timeout_s,
            backoff=Backoff(first_s=1.0, cap_s=10.0),
            health=self.health,
            ready=lambda: bool(self.handler.assigned),
            max_rebuilds=settings.max_rebuilds,
            settings=settings,
        )

    @property
    def stats(self) -> Stats:
        return self.handler.stats

    def _connect(self) -> Consumer:
        consumer = clients.reader(
            self.settings,
            self.group,
            **{"fetch.wait.max.ms": 100, "queued.max.messages.kbytes": 32768, "socket.timeout.ms": 10000},
        )
        try:
            self.handler.assign(consumer)
        except BaseException:
            consumer.close()
            raise
        return consumer

    def step(self) -> int:
        """Consumes one batch and applies it; returns the number of messages consumed."""
        try:
            return self.loop.step()
        except Rewind:
            return 0

    def refresh_names(self) -> int:
        return self.handler.refresh_names()

    def caught_up(self) -> bool:
        return self.handler.caught_up(self.loop.ensure_consumer())

    def catch_up(self, timeout_s: float = 120.0) -> Stats:
        """Consumes until caught up (the CLI's rebuild and the tests); raises NotCaughtUp after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.step() == 0 and self.caught_up():
                return self.stats
        raise NotCaughtUp(f"the read model did not catch up within {timeout_s:g} s")

    def check_access(self) -> None:
        """Raises clients.AccessDenied at once when this principal's credentials or ACLs are refused."""
        probe = clients.reader(self.settings, self.group)
        try:
            for topic in self.handler.expected:
                clients.check_topic(probe, self.settings, topic)
        except clients.AccessDenied:
            raise
        except clients.BrokerUnavailable:
            return  # unreachable or a topic missing: the consumer waits and looks again, as before
        finally:
            probe.close()

    def run(self, stop: threading.Event) -> None:
        """Runs until ``stop`` is set; Kafka or database trouble is logged and retried, refused access logged."""
        self.loop.stop = stop
        try:
            self.loop.run()
        except clients.AccessDenied as exc:
            log.error("the read model stopped: Kafka refused access", extra={"error": str(exc)})

    def close(self) -> None:
        self.loop.close()


def rebuild(
    settings: Settings, engine: Engine, codec: Codec, *, timeout_s: float = 600.0
) -> tuple[dict[str, int], Stats]:
    """Empties this group's read model and replays every topic from the start until caught up."""
    raw = engine.raw_connection()
    try:
        deleted = readstore.clear(raw, settings.dashboard_group)
    finally:
        raw.close()
    consumer = ReadModelConsumer(settings, engine, codec)
    try:
        stats = consumer.catch_up(timeout_s)
    finally:
        consumer.close()
    return deleted, stats
