"""The dead_letters table: what the processor could not use, recorded once, listed, and marked when replayed.

The processor (commands) and the dashboard's read-model consumer (its input topics) record a dead letter in the
same transaction as the batch it came in; the operator lists them and sends them back to the topic they came
from (`participants dead-letters`); recovery re-reads a batch's letters to publish them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from enrolment.messages.millis import from_ms


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message to dead-letter, as the processor found it."""

    source_topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    key: bytes | None
    value: bytes | None
    at_ms: int


@dataclass(frozen=True)
class DeadLetterRow:
    """A recorded dead letter as the operator sees it (no payload, only its size)."""

    id: int
    source_topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    dead_lettered_at: datetime
    replayed_at: datetime | None
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source_topic": self.source_topic,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "detail": self.detail,
            "dead_lettered_at": self.dead_lettered_at.astimezone(UTC).isoformat(),
            "replayed_at": self.replayed_at.astimezone(UTC).isoformat() if self.replayed_at else None,
            "bytes": self.size,
        }


class Replayable(NamedTuple):
    """A dead letter not yet replayed: its id, the topic it came from, and the original key and value bytes."""

    id: int
    key: bytes | None
    value: bytes | None
    source_topic: str = ""


def dead_letter_headers(d: DeadLetter) -> list[tuple[str, bytes]]:
    """Why and where from, so a dead letter can be understood and replayed without the store."""
    return [
        ("dlq.reason", d.reason.encode()),
        ("dlq.detail", d.detail.encode()[:1000]),
        ("dlq.source.topic", d.source_topic.encode()),
        ("dlq.source.partition", str(d.partition).encode()),
        ("dlq.source.offset", str(d.offset).encode()),
        ("dlq.at", str(d.at_ms).encode()),
    ]


def record_dead_letters(cur: Any, letters: Iterable[DeadLetter]) -> None:
    """Records each letter once: a batch applied again after a crash finds its letters already there."""
    for d in letters:
        cur.execute(
            """
            INSERT INTO dead_letters (source_topic, kafka_partition, kafka_offset, reason, detail, key, value,
                                      dead_lettered_at)
            VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING
            """,
            (d.source_topic, d.partition, d.offset, d.reason, d.detail, d.key, d.value, from_ms(d.at_ms)),
        )


def letters_between(cur: Any, topic: str, partition: int, start: int, end: int) -> list[DeadLetter]:
    """The letters recorded for offsets [start, end) of a partition, to publish them again after a crash."""
    cur.execute(
        """
        SELECT source_topic, kafka_partition, kafka_offset, reason, detail, key, value,
               (extract(epoch FROM dead_lettered_at) * 1000)::bigint
        FROM dead_letters WHERE source_topic = %s AND kafka_partition = %s AND kafka_offset >= %s AND kafka_offset < %s
        ORDER BY kafka_offset
        """,
        (topic, partition, start, end),
    )
    return [
        DeadLetter(
            r[0],
            int(r[1]),
            int(r[2]),
            r[3],
            r[4],
            bytes(r[5]) if r[5] else None,
            bytes(r[6]) if r[6] else None,
            int(r[7]),
        )
        for r in cur.fetchall()
    ]


def dead_letter_rows(cur: Any, include_replayed: bool = False) -> list[DeadLetterRow]:
    """Every dead letter not yet replayed (or every one), oldest first."""
    cur.execute(
        """
        SELECT id, source_topic, kafka_partition, kafka_offset, reason, detail, dead_lettered_at, replayed_at,
               coalesce(length(value), 0)
        FROM dead_letters WHERE %s OR replayed_at IS NULL ORDER BY id
        """,
        (include_replayed,),
    )
    return [DeadLetterRow(*r) for r in cur.fetchall()]


def replayable(cur: Any, ids: Sequence[int] | None) -> list[Replayable]:
    """The chosen (default: all) dead letters not yet replayed, oldest first."""
    if ids:
        cur.execute(
            "SELECT id, key, value, source_topic FROM dead_letters WHERE id = ANY(%s) AND replayed_at IS NULL "
            "ORDER BY id",
            (list(ids),),
        )
    else:
        cur.execute("SELECT id, key, value, source_topic FROM dead_letters WHERE replayed_at IS NULL ORDER BY id")
    return [
        Replayable(int(i), bytes(k) if k is not None else None, bytes(v) if v is not None else None, str(t))
        for i, k, v, t in cur.fetchall()
    ]


def mark_replayed(cur: Any, ids: Sequence[int]) -> None:
    cur.execute("UPDATE dead_letters SET replayed_at = now() WHERE id = ANY(%s)", (list(ids),))
