"""Reads a whole topic, from the beginning to its end as of now, with read_committed (for rebuilds and checks)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, Message, TopicPartition

from enrolment.settings import Settings


def read_all(settings: Settings, topic: str, timeout: float = 120.0, batch: int = 10000) -> Iterator[Message]:
    """Yields every committed message of `topic` up to the end it had when called (tombstones included)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise LookupError(f"Kafka has no topic {topic}")
        parts = sorted(md.topics[topic].partitions)
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
            starts.append(TopicPartition(topic, p, low))
        consumer.assign(starts)
        pending = {p for p in parts if ends[p] > 0}
        for tp in starts:
            if tp.offset >= ends[tp.partition]:
                pending.discard(tp.partition)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout:.0f}s")
            for m in consumer.consume(batch, 0.5):
                if m.error() is not None:
                    continue
                p, off = m.partition(), m.offset()
                if p is None or off is None or off >= ends[p]:
                    continue
                yield m
                if off + 1 >= ends[p]:
                    pending.discard(p)
            # Transaction markers occupy the last offsets: a partition whose position passed its end is done.
            for p in list(pending):
                if consumer.position([TopicPartition(topic, p)])[0].offset >= ends[p]:
                    pending.discard(p)
    finally:
        consumer.close()
