"""`participants dead-letters list|replay`: what was dead-lettered and why, and sending it back once fixed.

The processor records each dead letter in the store (and on the dead-letter topic). A replay publishes the
original bytes to the commands topic again, with the original key, and marks the row replayed: a message that
fails again becomes a new dead letter (at its new offset), so nothing ever loops by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from enrolment.kafka import clients
from enrolment.settings import Settings


@dataclass(frozen=True)
class DeadLetterRow:
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


def list_dead_letters(cur: Any, include_replayed: bool = False) -> list[DeadLetterRow]:
    cur.execute(
        """
        SELECT id, source_topic, kafka_partition, kafka_offset, reason, detail, dead_lettered_at, replayed_at,
               coalesce(length(value), 0)
        FROM dead_letters WHERE %s OR replayed_at IS NULL ORDER BY id
        """,
        (include_replayed,),
    )
    return [DeadLetterRow(*r) for r in cur.fetchall()]


def replay_dead_letters(settings: Settings, raw: Any, ids: list[int] | None) -> list[int]:
    """Publishes the chosen (default: all not yet replayed) dead letters to the commands topic again."""
    cur = raw.cursor()
    if ids:
        cur.execute(
            "SELECT id, key, value FROM dead_letters WHERE id = ANY(%s) AND replayed_at IS NULL ORDER BY id", (ids,)
        )
    else:
        cur.execute("SELECT id, key, value FROM dead_letters WHERE replayed_at IS NULL ORDER BY id")
    rows = cur.fetchall()
    if not rows:
        return []
    producer = clients.bulk_producer(settings)
    clients.check_topic(producer, settings, settings.topics.commands)
    on_delivery = clients.Deliveries()
    for _id, key, value in rows:
        clients.produce(
            producer,
            settings.topics.commands,
            bytes(value) if value is not None else None,
            bytes(key) if key is not None else None,
            on_delivery=on_delivery,
        )
    on_delivery.flush(producer, "the replayed dead letters", 60)
    done = [int(r[0]) for r in rows]
    cur.execute("UPDATE dead_letters SET replayed_at = now() WHERE id = ANY(%s)", (done,))
    raw.commit()
    return done
