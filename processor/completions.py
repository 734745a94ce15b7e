"""The completion rule's input: course completions read from the course-progress topic, exactly once.

Both topics are keyed by batch id and have as many partitions, so a batch's progress is in the course-progress
partition with the number of its commands partition. The instance that owns commands partition p follows
course-progress partition p with an assigned reader of its own (no group of its own), and its positions live in
``consumer_positions`` under the processor's group. What it reads is written in the *same* database
transaction, after the *same* compare-and-set, as the commands of the poll (`processor.handler`), so a
completion is recorded exactly once and a zombie owner fails for both.

Ordering guarantee: before the commands of a poll that holds a remove are applied, each of their partitions of
course-progress is read up to its high watermark as asked *after* those commands arrived. A completion the
broker acknowledged before a remove was published therefore has a lower offset than that watermark, and the
remove sees it. (A completion published after the remove, or at the same time, may or may not be seen.) When
idle, the follower applies whatever it has fetched, so the backlog a remove waits for stays small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from sqlalchemy import Engine

from enrolment.kafka import clients
from enrolment.kafka.checkpoint import Checkpoint, Fatal
from enrolment.kafka.loop import usable
from enrolment.messages.codec import Codec, DecodeError
from enrolment.settings import Settings
from enrolment.store import completions
from enrolment.store.completions import CompletionKey
from enrolment.store.db import rollback
from enrolment.store.positions import Moves, Position

log = logging.getLogger("processor")


class PartitionMismatch(Fatal):
    """course-progress and commands have different partition counts: a batch's two partitions would differ."""


@dataclass
class Pending:
    """Completions read but not yet applied, and the position moves that cover them."""

    completions: dict[CompletionKey, int] = field(default_factory=dict)
    moves: dict[tuple[str, int], tuple[Position | None, Position]] = field(default_factory=dict)
    undecodable: int = 0

    @property
    def empty(self) -> bool:
        return not self.moves


class CompletionFollower:
    """Follows the course-progress partitions matching the owned command partitions (see the module doc)."""

    def __init__(self, settings: Settings, engine: Engine, codec: Codec, checkpoint: Checkpoint) -> None:
        self.settings = settings
        self.engine = engine
        self.codec = codec
        self.checkpoint = checkpoint
        self.topic = settings.topics.course_progress
        self.consumer: Consumer | None = None
        self.assigned: frozenset[int] = frozenset()
        self.dirty = True  # re-read the stored positions and seek before reading again

    def check(self, commands_topic: str) -> None:
        """At start: the topic is readable by this principal and partitioned like the commands topic."""
        consumer = self._consumer()
        clients.check_topic(consumer, self.settings, self.topic)
        mine = len(clients.partitions_of(consumer, self.topic))
        theirs = len(clients.partitions_of(consumer, commands_topic))
        if mine != theirs:
            raise PartitionMismatch(
                f"{self.topic} has {mine} partitions and {commands_topic} {theirs}: the completion rule reads a "
                "batch's progress from the partition of its commands, so both topics need the same count."
            )

    def sync(self, owned: Iterable[int]) -> None:
        """Follows exactly the owned partitions, from their stored positions (after a change or a failure)."""
        wanted = frozenset(owned)
        if wanted == self.assigned and not self.dirty:
            return
        consumer = self._consumer()
        stored = self.checkpoint.load([self.topic])
        self.checkpoint.release((self.topic, p) for p in self.assigned - wanted)
        parts = []
        for p in sorted(wanted):
            pos = stored.get((self.topic, p))
            self.checkpoint.hold((self.topic, p), pos)
            parts.append(TopicPartition(self.topic, p, OFFSET_BEGINNING if pos is None else pos.next_offset))
        consumer.assign(parts)
        self.assigned, self.dirty = wanted, False

    def read_to_end(self, partitions: Iterable[int], timeout_s: float = 60.0) -> Pending:
        """Reads the partitions up to their high watermarks as of now (the ordering guarantee)."""
        consumer = self._consumer()
        ends: dict[int, int] = {}
        for p in sorted(set(partitions) & self.assigned):
            _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            if (self.checkpoint.next_offset((self.topic, p)) or 0) < high:
                ends[p] = high
        return self._read(consumer, ends, timeout_s)

    def fetched(self) -> Pending:
        """Whatever has been fetched already, without waiting (idle catch-up)."""
        return self._read(self._consumer(), {}, 0.0)

    def _read(self, consumer: Consumer, ends: dict[int, int], timeout_s: float) -> Pending:
        out = Pending()
        last: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            for m in consumer.consume(1000, 0.1 if ends else 0):
                p, off = int(m.partition() or 0), int(m.offset() or 0)
                if usable(m, self.settings) and self.checkpoint.is_new(self.topic, p, off):
                    self._take(out, m, last)
            ends = {p: e for p, e in ends.items() if not self._reached(consumer, p, e, last)}
            if not ends:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic} could not be read to its end within {timeout_s:g} s")
        for p, off in last.items():
            key = (self.topic, p)
            out.moves[key] = (self.checkpoint.positions.get(key), Position(off + 1, off + 1))
        return out

    def _take(self, out: Pending, m: Message, last: dict[int, int]) -> None:
        p, off = int(m.partition() or 0), int(m.offset() or 0)
        last[p] = off
        try:
            _name, rec = self.codec.decode(m.value(), expect="CourseProgress")
            found = completions.completion_of(rec)
        except (DecodeError, KeyError, TypeError, ValueError) as exc:
            out.undecodable += 1  # the dashboard skips it too; a progress update is not a command
            log.warning(
                "skipping an unusable progress update", extra={"partition": p, "offset": off, "error": str(exc)}
            )
            return
        if found is not None:
            completions.merge(out.completions, *found)

    def _reached(self, consumer: Consumer, p: int, end: int, last: dict[int, int]) -> bool:
        if last.get(p, -1) + 1 >= end:
            return True
        return int(consumer.position([TopicPartition(self.topic, p)])[0].offset) >= end  # past transaction markers

    def caught_up(self) -> bool:
        """Every followed partition recorded up to its high watermark (for --until-idle)."""
        consumer = self._consumer()
        for p in sorted(self.assigned):
            tp = TopicPartition(self.topic, p)
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            held = self.checkpoint.next_offset((self.topic, p)) or 0
            if high > 0 and held < high and consumer.position([tp])[0].offset < high:
                return False
        return True

    def applied(self, pending: Pending) -> None:
        """After the transaction that recorded ``pending`` committed: its moves are the held positions."""
        self.checkpoint.advance(pending.moves)

    def catch_up(self) -> None:
        """Idle: records what was fetched in a transaction of its own; a failure only means re-reading later."""
        try:
            pending = self.fetched()
            if pending.empty:
                return
            raw = self.engine.raw_connection()
            try:
                cur = raw.cursor()
                self.checkpoint.claim(cur, pending.moves)
                completions.record(cur, pending.completions)
                raw.commit()
            except BaseException:
                rollback(raw)
                raise
            finally:
                raw.close()
            self.applied(pending)
        except clients.AccessDenied:
            raise
        except Exception as exc:  # noqa: BLE001 - idle work: any failure means reading again later
            self.dirty = True
            log.warning("course progress catch-up failed; will re-read", extra={"error": str(exc)})

    def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            consumer.close()

    def _consumer(self) -> Consumer:
        if self.consumer is None:
            self.consumer = clients.reader(self.settings, clients.reader_group(self.settings, "progress"))
        return self.consumer


def record_pending(cur: Any, checkpoint: Checkpoint, pending: Pending, moves: Moves, dry: bool) -> None:
    """Inside the poll's transaction: one compare-and-set for commands and progress, then the completions."""
    if not dry:
        checkpoint.claim(cur, {**moves, **pending.moves})
        completions.record(cur, pending.completions)
