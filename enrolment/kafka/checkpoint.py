"""Checkpointing as its own unit: positions in PostgreSQL moved with the effects, and an optional Kafka outbox.

A consumer's truth about where it has got is the stored position (``enrolment.store.positions``), moved by
compare-and-set in the same database transaction as the effects of a batch. `Checkpoint` keeps the owned
partitions' positions in memory between batches: which messages are already applied (skip them), where to
seek after an assignment, and the moves a batch makes. `Outbox` is the second half for a consumer whose
effects also go to Kafka (the processor): the batch's outputs and the consumer offsets in one Kafka
transaction. Between the two commits only the last batch can be unpublished; whoever owns the
partition next finds it (stored position ahead of the committed offset) and re-publishes it from the database
before anything newer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from sqlalchemy import Engine

from enrolment.kafka.clients import AccessDenied, Headers, is_refusal, produce, refusal
from enrolment.settings import Settings
from enrolment.store import positions
from enrolment.store.positions import Moves, Position, PositionTable, TopicPartitionKey

log = logging.getLogger("enrolment.kafka")


class Fatal(Exception):
    """The instance must stop (fenced by a newer instance with the same id, or a broken configuration)."""


class Checkpoint:
    """The stored positions of the partitions one consumer owns, and the moves of the batch in hand."""

    def __init__(self, engine: Engine, table: PositionTable, group: str) -> None:
        self.engine = engine
        self.table = table
        self.group = group
        self.positions: dict[TopicPartitionKey, Position] = {}

    def load(self, topics: Sequence[str] | None = None) -> dict[TopicPartitionKey, Position]:
        """Reads the stored positions (in a transaction of its own); does not change what is held."""
        raw = self.engine.raw_connection()
        try:
            stored = positions.read(raw.cursor(), self.table, self.group, topics)
            raw.commit()
            return stored
        finally:
            raw.close()

    def hold(self, key: TopicPartitionKey, position: Position | None) -> None:
        """Owns a partition from a stored position (None: nothing stored yet)."""
        if position is None:
            self.positions.pop(key, None)
        else:
            self.positions[key] = position

    def release(self, keys: Iterable[TopicPartitionKey]) -> None:
        for key in keys:
            self.positions.pop(key, None)

    def next_offset(self, key: TopicPartitionKey) -> int | None:
        pos = self.positions.get(key)
        return None if pos is None else pos.next_offset

    def is_new(self, topic: str, partition: int, offset: int) -> bool:
        """False for a message at or before the stored position: it was applied already."""
        pos = self.positions.get((topic, partition))
        return pos is None or offset >= pos.next_offset

    def moves(self, msgs: Sequence[Message]) -> dict[TopicPartitionKey, tuple[Position | None, Position]]:
        """Each partition of a batch: from the held position to just past its last message (first kept too)."""
        first: dict[TopicPartitionKey, int] = {}
        last: dict[TopicPartitionKey, int] = {}
        for m in msgs:
            key = (str(m.topic()), int(m.partition() or 0))
            off = int(m.offset() or 0)
            first.setdefault(key, off)
            last[key] = off
        return {key: (self.positions.get(key), Position(last[key] + 1, first[key])) for key in first}

    def claim(self, cur: Any, moves: Moves) -> None:
        """The compare-and-set, inside the caller's transaction: call it first (it takes the row locks)."""
        positions.claim(cur, self.table, self.group, moves)

    def advance(self, moves: Moves) -> None:
        """After the caller's transaction committed: the moves are now the held positions."""
        for key, (_old, new) in moves.items():
            self.positions[key] = new

    def forget_group(self) -> int:
        """Deletes this group's stored positions (a finished replay group)."""
        raw = self.engine.raw_connection()
        try:
            n = positions.forget(raw.cursor(), self.table, self.group)
            raw.commit()
            return n
        finally:
            raw.close()


# How long past its own timeout a transaction call may take before the producer is given up (`bounded`).
GRACE_S = 5.0


def bounded(what: str, call: Callable[[], object], timeout_s: float) -> None:
    """Runs a librdkafka transaction call in a thread of its own; past ``timeout_s`` + GRACE_S, raises Fatal.

    Why: while the group coordinator is away, send_offsets_to_transaction can wait past its timeout, forever
    (librdkafka issue 5456; seen here after a broker restart: a processor alive, idle, for minutes). Fatal makes
    the run loop rebuild the clients: a new producer with the same transactional id fences this one and aborts
    its open transaction; the blocked thread is abandoned with it.
    """
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"kafka-{what}", daemon=True).start()
    if not done.wait(timeout_s + GRACE_S):
        raise Fatal(f"Kafka did not answer {what} within {timeout_s + GRACE_S:g} s (the producer is given up)")
    if failure:
        raise failure[0]


# (topic, key, value, headers): plain tuples, as the processor builds four per enrolment.
OutMessage = tuple[str, bytes | None, bytes | None, Headers | None]


class Outbox:
    """A batch's outputs and the consumer offsets in one Kafka transaction (the relay's position is the offset)."""

    def __init__(self, producer: Producer, transactional_id: str, settings: Settings | None = None) -> None:
        self.producer = producer
        self.transactional_id = transactional_id
        self.settings = settings  # whose refusals are sentences (clients.AccessDenied), not retries

    def _refused(self, err: Any, what: str) -> None:
        if self.settings is not None and (is_refusal(err) or "authorization failed" in err.str().lower()):
            raise AccessDenied(refusal(self.settings, err, what))

    def init(self, timeout_s: float = 30.0) -> None:
        """Fences any earlier producer with the same transactional id (aborting what it left open).

        Fatal when the producer is unusable; a broker that does not answer raises KafkaException (retried).
        """
        try:
            bounded("init_transactions", lambda: self.producer.init_transactions(timeout_s), timeout_s)
        except KafkaException as exc:
            err = exc.args[0]
            self._refused(err, f"transactional id {self.transactional_id}")
            if err.fatal():
                raise Fatal(f"cannot initialise transactions for {self.transactional_id}: {err.str()}") from None
            raise

    def replace(self, producer: Producer) -> None:
        """A new producer after a fatal error (the old one is dropped unflushed: its transaction is aborted)."""
        old, self.producer = self.producer, producer
        try:
            old.purge()
        except (KafkaException, RuntimeError) as exc:
            log.debug("purging the old producer failed", extra={"error": str(exc)})

    def publish(
        self, consumer: Consumer, messages: Iterable[OutMessage], offsets: Mapping[TopicPartitionKey, int]
    ) -> bool:
        """True when committed; False when aborted (the caller rewinds and re-publishes); Fatal when fenced."""
        producer = self.producer
        try:
            producer.begin_transaction()
            for topic, key, value, headers in messages:
                try:
                    if headers is None:
                        producer.produce(topic, value, key)
                    else:
                        producer.produce(topic, value, key, headers=headers)
                except BufferError:
                    produce(producer, topic, value, key, headers)  # waits for room
            positions = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
            group = consumer.consumer_group_metadata()
            send = producer.send_offsets_to_transaction
            bounded("send_offsets_to_transaction", lambda: send(positions, group, 15), 15)
            bounded("commit_transaction", lambda: producer.commit_transaction(60), 60)
            return True
        except KafkaException as exc:
            err = exc.args[0]
            self._refused(err, "the processor's outputs")
            if err.fatal():
                raise Fatal(f"Kafka transaction failed fatally: {err.str()}") from None
            log.warning(
                "Kafka transaction aborted; outputs will be re-published from the ledger",
                extra={"error": err.str(), "partitions": sorted(offsets)},
            )
            self._abort()
            return False

    def _abort(self) -> None:
        try:
            bounded("abort_transaction", lambda: self.producer.abort_transaction(30), 30)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise Fatal(f"abort failed fatally: {exc.args[0].str()}") from None

    def close(self) -> None:
        self.producer.flush(10)
