"""The read-model consumer: enrolment events, course progress, command results and upload records into dash_ tables.

It assigns itself every partition of its topics (no group rebalancing) and keeps its positions in
``dash_positions``, moved in the same PostgreSQL transaction as the rows a batch of messages changes.  So a
crash between the database commit and anything else replays nothing, and a rebuild is deterministic: delete
this group's rows (positions included) and consume from the beginning again.  The group's Kafka offsets are
also committed after each applied batch, but only so lag shows in the usual Kafka tools.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy import Engine

from dashboard import readstore
from dashboard.readmodel import Message as ModelMessage
from dashboard.readmodel import from_record
from enrolment.messages.codec import Codec, DecodeError
from enrolment.settings import Settings

log = logging.getLogger("dashboard.consumer")

TopicPartitionKey = tuple[str, int]


def read_model_topics(settings: Settings) -> dict[str, str]:
    """Topic -> the record type expected on it."""
    t = settings.topics
    return {
        t.enrollment_events: "EnrollmentEvent",
        t.course_progress: "CourseProgress",
        t.results: "CommandResult",
        t.uploads: "UploadSummary",
    }


def dashboard_consumer_config(settings: Settings, group: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",  # the processor's outputs count only once their transaction commits
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 32768,
        "socket.timeout.ms": 10000,
    }


class NotCaughtUp(Exception):
    """The read model did not reach the end of its topics within the time given."""


@dataclass
class Stats:
    batches: int = 0
    messages: int = 0
    undecodable: int = 0
    ignored: Counter[str] = field(default_factory=Counter)


class ReadModelConsumer:
    """Applies the topics to the read model in batches, one PostgreSQL transaction per batch."""

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
        self.engine = engine
        self.codec = codec
        self.group = group or settings.dashboard_group
        self.max_batch = max_batch
        self.poll_timeout_s = poll_timeout_s
        self.expected = read_model_topics(settings)
        self.consumer: Consumer | None = None
        self.positions: dict[TopicPartitionKey, int | None] = {}
        self.missing_topics: set[str] = set()
        self.last_topic_check = 0.0
        self.names_refresh_s = names_refresh_s
        self.last_names_refresh: float | None = None
        self.stats = Stats()

    # ------------------------------------------------------------------------------------ assignment
    def _consumer(self) -> Consumer:
        if self.consumer is None:
            self.consumer = Consumer(dashboard_consumer_config(self.settings, self.group))
            self.assign()
        return self.consumer

    def assign(self) -> None:
        """Assigns every partition of the topics at the stored positions (the beginning where none is stored)."""
        consumer = self.consumer
        assert consumer is not None
        try:
            md = consumer.list_topics(timeout=10)
        except KafkaException as exc:
            raise ConnectionError(f"Cannot reach Kafka at {self.settings.kafka_bootstrap_servers}: {exc}") from None
        raw = self.engine.raw_connection()
        try:
            stored = readstore.read_positions(raw.cursor(), self.group)
            raw.commit()
        finally:
            raw.close()
        assignment: list[TopicPartition] = []
        self.positions = {}
        self.missing_topics = set()
        for topic in self.expected:
            meta = md.topics.get(topic)
            if meta is None or not meta.partitions:
                self.missing_topics.add(topic)
                continue
            for p in sorted(meta.partitions):
                pos = stored.get((topic, p))
                self.positions[(topic, p)] = pos
                assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING if pos is None else pos))
        if self.missing_topics:
            log.warning("topics missing; will look again", extra={"topics": sorted(self.missing_topics)})
        consumer.assign(assignment)
        self.last_topic_check = time.monotonic()
        log.info("read model assigned", extra={"group": self.group, "partitions": len(assignment)})

    # ------------------------------------------------------------------------------------ one step
    def step(self) -> int:
        """Consumes one batch and applies it; returns the number of messages consumed."""
        consumer = self._consumer()
        if self.missing_topics and time.monotonic() - self.last_topic_check > 10:
            self.assign()
        if self.last_names_refresh is None or time.monotonic() - self.last_names_refresh >= self.names_refresh_s:
            self.refresh_names()
        msgs = consumer.consume(self.max_batch, self.poll_timeout_s)
        kept: list[Message] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": err.str()})
                continue
            key = (str(m.topic()), int(m.partition() or 0))
            pos = self.positions.get(key)
            if pos is not None and int(m.offset() or 0) < pos:
                continue
            kept.append(m)
        if kept:
            self._apply(kept)
        return len(kept)

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

    def _apply(self, msgs: list[Message]) -> None:
        messages: list[ModelMessage] = []
        moves: dict[TopicPartitionKey, tuple[int | None, int]] = {}
        for m in msgs:
            topic, partition, offset = str(m.topic()), int(m.partition() or 0), int(m.offset() or 0)
            key = (topic, partition)
            expected = moves[key][0] if key in moves else self.positions.get(key)
            moves[key] = (expected, offset + 1)
            try:
                name, rec = self.codec.decode(m.value(), expect=self.expected.get(topic))
                message = from_record(name, rec)
            except DecodeError as exc:
                self.stats.undecodable += 1
                log.warning(
                    "skipping an undecodable message",
                    extra={"topic": topic, "partition": partition, "offset": offset, "reason": exc.reason},
                )
                continue
            except (KeyError, TypeError, ValueError) as exc:
                self.stats.undecodable += 1
                log.warning("skipping an unusable record", extra={"topic": topic, "offset": offset, "error": str(exc)})
                continue
            if message is not None:
                messages.append(message)
        raw = self.engine.raw_connection()
        try:
            changes = readstore.apply_batch(raw, self.group, messages, moves)
        except readstore.PositionConflict as exc:
            log.warning("another instance moved the read model; re-reading positions", extra={"error": str(exc)})
            self.assign()
            return
        finally:
            raw.close()
        for key, (_expected, new) in moves.items():
            self.positions[key] = new
        self.stats.batches += 1
        self.stats.messages += len(msgs)
        self.stats.ignored.update(changes.ignored)
        self._commit_offsets(moves)

    def _commit_offsets(self, moves: dict[TopicPartitionKey, tuple[int | None, int]]) -> None:
        """Informational only (lag in Kafka tools); the truth is dash_positions."""
        assert self.consumer is not None
        offsets = [TopicPartition(t, p, new) for (t, p), (_e, new) in sorted(moves.items())]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.debug("offset commit failed", extra={"error": str(exc)})

    # ------------------------------------------------------------------------------------ progress
    def caught_up(self) -> bool:
        """True when every assigned partition is read up to its end (last stable offset, read_committed)."""
        consumer = self._consumer()
        if self.missing_topics:
            return False
        keys = sorted(self.positions)
        if not keys:
            return True
        current = consumer.position([TopicPartition(t, p) for t, p in keys])
        for (topic, p), tp in zip(keys, current, strict=True):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            stored = self.positions.get((topic, p)) or 0
            if high > 0 and max(stored, tp.offset) < high:
                return False
        return True

    def catch_up(self, timeout_s: float = 120.0) -> Stats:
        """Consumes until caught up (the CLI's rebuild and the tests); raises NotCaughtUp after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.step() == 0 and self.caught_up():
                return self.stats
        raise NotCaughtUp(f"the read model did not catch up within {timeout_s:g} s")

    def run(self, stop: threading.Event) -> None:
        """Runs until ``stop`` is set; Kafka or database trouble is logged and retried, never raised."""
        backoff = 1.0
        while not stop.is_set():
            try:
                self.step()
                backoff = 1.0
            except Exception as exc:  # noqa: BLE001 - the web app must outlive a broker or database outage
                log.warning("read model step failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
                self.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        self.close()

    def close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.debug("consumer close failed", extra={"error": str(exc)})
            self.consumer = None


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
