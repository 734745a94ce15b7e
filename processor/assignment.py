"""Partition assignment and crash recovery: where to resume each partition, and which batch to re-publish.

The stored position (PostgreSQL) is the truth; the group's committed offset (Kafka) says what was published.
On assignment, per partition:
- nothing stored: resume at the committed offset (the beginning when none; a replay's start time if given);
- committed == stored: the last batch was published; resume there;
- committed == start of the last applied batch: it was applied but its Kafka transaction did not commit
  (a crash between the two commits): resume past it and re-publish its outputs from the ledger first. No
  committed offset at all counts as the partition's first offset (where the group started): the very first
  batch of a partition can be the one in doubt (a processor stopped between its two commits);
- anything else: offsets were moved by hand; resume at the stored position without re-publishing.
`plan` decides (pure); `Assignments` applies it to a consumer and the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from enrolment.kafka.checkpoint import Checkpoint
from enrolment.store.positions import Position

log = logging.getLogger("processor")


@dataclass
class Plan:
    seek: dict[int, int] = field(default_factory=dict)  # partition -> offset to resume at
    held: dict[int, Position | None] = field(default_factory=dict)  # partition -> stored position (None: none)
    recover: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> in-doubt [start, end)
    moved_by_hand: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, committed, stored)


def plan(
    partitions: list[int],
    stored: Mapping[int, Position],
    committed: Mapping[int, int],
    replay_starts: Mapping[int, int] | None = None,
    replay_ends: Mapping[int, int] | None = None,
    lows: Mapping[int, int] | None = None,
) -> Plan:
    """Decides where each partition resumes and which in-doubt batch must be re-published.

    ``lows``: the first offset of the partitions that have a stored position but no committed offset.
    """
    out = Plan()
    for p in partitions:
        pos = stored.get(p)
        out.held[p] = pos
        x = committed.get(p, -1)
        if x < 0 and pos is not None and lows is not None and p in lows:
            x = lows[p]  # nothing committed yet: the group started at the partition's beginning
        if pos is None and replay_starts is not None and p in replay_starts:
            start = replay_starts[p]
            out.seek[p] = start if start >= 0 else (replay_ends or {}).get(p, 0)
        elif pos is None:
            out.seek[p] = x if x >= 0 else OFFSET_BEGINNING
        else:
            out.seek[p] = pos.next_offset
            if x == pos.batch_start and pos.batch_start < pos.next_offset:
                out.recover[p] = (pos.batch_start, pos.next_offset)
            elif x != pos.next_offset:
                out.moved_by_hand.append((p, x, pos.next_offset))
    return out


class Assignments:
    """The partitions this instance owns, their held positions, and the in-doubt batches still to re-publish."""

    def __init__(
        self,
        topic: str,
        checkpoint: Checkpoint,
        start_time_ms: int | None = None,
        replay_ends: Mapping[int, int] | None = None,
    ) -> None:
        self.topic = topic
        self.checkpoint = checkpoint
        self.start_time_ms = start_time_ms
        self.replay_ends = replay_ends
        self.owned: set[int] = set()
        self.pending_recovery: dict[int, tuple[int, int]] = {}
        self.needs_reassign = False

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = [tp.partition for tp in partitions]
        # Owned from now on, but owed a re-seek until the positions below are read: should reading them fail,
        # the client assigns at the committed offsets by itself, and nothing may be applied from there.
        self.owned = set(parts)
        self.needs_reassign = True
        stored = {p: pos for (t, p), pos in self.checkpoint.load([self.topic]).items() if t == self.topic}
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=30)}
        lows = {
            p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[0]
            for p in parts
            if p in stored and committed.get(p, -1) < 0
        }
        decided = plan(parts, stored, committed, self._replay_starts(consumer, partitions), self.replay_ends, lows)
        for tp in partitions:
            tp.offset = decided.seek[tp.partition]
            self.checkpoint.hold((self.topic, tp.partition), decided.held[tp.partition])
        self.pending_recovery.update(decided.recover)
        for p, x, pos in decided.moved_by_hand:
            log.warning(
                "committed offset differs from the stored position; resuming at the stored position "
                "without re-publishing (offsets were moved by hand?)",
                extra={"partition": p, "committed": x, "stored": pos},
            )
        consumer.assign(partitions)
        self.needs_reassign = False
        log.info("partitions assigned", extra={"partitions": parts, "recover": sorted(self.pending_recovery)})

    def _replay_starts(self, consumer: Consumer, partitions: list[TopicPartition]) -> dict[int, int] | None:
        if self.start_time_ms is None:
            return None
        wanted = [TopicPartition(self.topic, tp.partition, self.start_time_ms) for tp in partitions]
        return {found.partition: found.offset for found in consumer.offsets_for_times(wanted, timeout=30)}

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.owned.discard(tp.partition)
            self.pending_recovery.pop(tp.partition, None)
        self.checkpoint.release((self.topic, tp.partition) for tp in partitions)
        consumer.unassign()
        log.info("partitions revoked", extra={"partitions": [tp.partition for tp in partitions]})

    def reassign_if_needed(self, consumer: Consumer) -> None:
        """After a failed batch: re-read stored positions and committed offsets, seek, recover."""
        if not self.needs_reassign:
            return
        self.needs_reassign = False
        parts = [TopicPartition(self.topic, p) for p in sorted(self.owned)]
        if parts:
            consumer.unassign()
            self.on_assign(consumer, parts)

    def forget(self) -> None:
        """The consumer was dropped (a fatal state): nothing is owned until the next assignment."""
        self.checkpoint.release([(self.topic, p) for p in self.owned])
        self.owned = set()
        self.pending_recovery = {}
        self.needs_reassign = False

    def take_recovery(self) -> dict[int, tuple[int, int]]:
        pending, self.pending_recovery = self.pending_recovery, {}
        return pending
