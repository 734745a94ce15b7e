"""`participants dead-letters list|replay`: what was dead-lettered and why, and sending it back once fixed.

The processor records each dead letter in the store (and on the dead-letter topic). A replay publishes the
original bytes to the commands topic again, with the original key, and marks the row replayed: a message that
fails again becomes a new dead letter (at its new offset), so nothing ever loops by itself.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from enrolment.settings import Settings
from enrolment.store.dead_letters import DeadLetterRow, dead_letter_rows, mark_replayed, replayable
from producer.publish import BrokerUnavailable, check_broker, producer_config

__all__ = ["DeadLetterRow", "list_dead_letters", "replay_dead_letters"]


def list_dead_letters(cur: Any, include_replayed: bool = False) -> list[DeadLetterRow]:
    return dead_letter_rows(cur, include_replayed)


def replay_dead_letters(settings: Settings, raw: Any, ids: list[int] | None) -> list[int]:
    """Publishes the chosen (default: all not yet replayed) dead letters to the commands topic again."""
    cur = raw.cursor()
    rows = replayable(cur, ids)
    if not rows:
        return []
    producer = Producer(producer_config(settings))
    check_broker(producer, settings)
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for _id, key, value in rows:
        producer.produce(
            settings.topics.commands,
            bytes(value) if value is not None else None,
            bytes(key) if key is not None else None,
            on_delivery=on_delivery,
        )
    if producer.flush(60) or errors:
        raise BrokerUnavailable(f"Kafka did not acknowledge the replayed dead letters: {errors[:1]}")
    done = [r.id for r in rows]
    mark_replayed(cur, done)
    raw.commit()
    return done
