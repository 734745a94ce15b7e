"""`participants dead-letters list|replay`: what was dead-lettered and why, and sending it back once fixed.

The processor and the dashboard's read-model consumer record each dead letter in the store (and on the
dead-letter topic). A replay publishes the original bytes to the topic they came from (commands, or one of the
dashboard's topics), with the original key, and marks the row replayed: a message that fails again becomes a
new dead letter (at its new offset), so nothing ever loops by itself. Course progress is the exception: the
processor's principal may not write it, so those dead letters are held back with a sentence telling the
operator to republish the corrected rows with `participants progress publish`.
"""

from __future__ import annotations

from typing import Any

from enrolment.kafka import clients
from enrolment.settings import Settings
from enrolment.store.dead_letters import DeadLetterRow, dead_letter_rows, mark_replayed, replayable

__all__ = ["DeadLetterRow", "list_dead_letters", "replay_dead_letters"]


def list_dead_letters(cur: Any, include_replayed: bool = False) -> list[DeadLetterRow]:
    return dead_letter_rows(cur, include_replayed)


def replay_dead_letters(settings: Settings, raw: Any, ids: list[int] | None) -> tuple[list[int], list[int]]:
    """Publishes the chosen (default: all not yet replayed) dead letters to the topics they came from.

    Returns (replayed, held back). Course progress is held back: only the progress component may write that
    topic (README "Principals and ACLs"), so the operator republishes it with `participants progress publish`.
    """
    cur = raw.cursor()
    chosen = replayable(cur, ids)
    rows = [r for r in chosen if r.source_topic != settings.topics.course_progress]
    held = [r.id for r in chosen if r.source_topic == settings.topics.course_progress]
    if not rows:
        return [], held
    producer = clients.bulk_producer(settings)
    for topic in sorted({r.source_topic or settings.topics.commands for r in rows}):
        clients.check_topic(producer, settings, topic)
    on_delivery = clients.Deliveries(settings)
    for _id, key, value, source_topic in rows:
        clients.produce(
            producer,
            source_topic or settings.topics.commands,
            bytes(value) if value is not None else None,
            bytes(key) if key is not None else None,
            on_delivery=on_delivery,
        )
    on_delivery.flush(producer, "the replayed dead letters", 60)
    done = [r.id for r in rows]
    mark_replayed(cur, done)
    raw.commit()
    return done, held
