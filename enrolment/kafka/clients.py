"""Every Kafka client of the project is built here, from the settings: one place for brokers and credentials.

Profiles, not ad-hoc dicts: a *bulk* producer (uploads, progress: large batches, idempotent), a
*transactional* producer (the processor's outputs), a *group* consumer (the processor: static membership,
little read-ahead), an *assigned* reader (the dashboard, followers, rebuilds: no group management) and an
admin client. Also here: producing through a full local queue, collecting delivery errors, and reading a
whole topic to its current end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from enrolment.settings import Settings

Headers = list[tuple[str, str | bytes | None]]


class BrokerUnavailable(Exception):
    """Kafka could not be reached or refused the messages (exit code 1)."""


def base_config(settings: Settings) -> dict[str, Any]:
    """What every client shares: where the brokers are and how this component authenticates to them."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    protocol = settings.kafka_security_protocol
    if protocol != "PLAINTEXT":
        config["security.protocol"] = protocol
    if protocol.startswith("SASL_"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password
    if protocol.endswith("SSL") and settings.kafka_ssl_ca_location:
        config["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return config


# ---------------------------------------------------------------------------------------------- producers
def bulk_producer_config(settings: Settings) -> dict[str, Any]:
    """Uploads and progress: throughput first (big batches, lz4), idempotent, quiet on a terminal."""
    return {
        **base_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "message.max.bytes": 10485760,
        "socket.timeout.ms": 10000,
        "message.timeout.ms": 60000,
        "log_level": 0,  # librdkafka's own log lines are noise for a CLI; failures raise BrokerUnavailable
    }


def transactional_producer_config(settings: Settings, transactional_id: str) -> dict[str, Any]:
    """The processor's outputs: one transaction per consumed batch, together with the consumer offsets."""
    return {
        **base_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 10485760,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": settings.transaction_timeout_ms,
    }


def bulk_producer(settings: Settings) -> Producer:
    return Producer(bulk_producer_config(settings))


def transactional_producer(settings: Settings, transactional_id: str) -> Producer:
    return Producer(transactional_producer_config(settings, transactional_id))


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    headers: Headers | None = None,
    on_delivery: Any = None,
) -> None:
    """Produces one message, waiting for room while the local queue is full (never drops, never raises)."""
    while True:
        try:
            if headers is None:
                producer.produce(topic, value, key, on_delivery=on_delivery)
            else:
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


class Deliveries:
    """Collects delivery errors of a non-transactional producer; `flush` raises if anything was not acknowledged."""

    def __init__(self) -> None:
        self.errors: list[KafkaError] = []

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.errors.append(err)

    def flush(self, producer: Producer, what: str, timeout_s: float = 120.0) -> None:
        remaining = producer.flush(timeout_s)
        if remaining or self.errors:
            first = self.errors[0].str() if self.errors else f"{remaining} messages still queued"
            raise BrokerUnavailable(f"Kafka did not acknowledge {what}: {first}")


def check_topic(client: Producer | Consumer, settings: Settings, topic: str) -> None:
    """Fails with one sentence when the broker is unreachable or the topic is missing."""
    try:
        md = client.list_topics(timeout=10)
    except KafkaException as exc:
        raise BrokerUnavailable(
            f"Cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc.args[0].str()}"
        ) from None
    if topic not in md.topics:
        raise BrokerUnavailable(
            f"Kafka at {settings.kafka_bootstrap_servers} has no topic {topic} (run 'scripts/stack up' to create "
            "the topics)."
        )


# ---------------------------------------------------------------------------------------------- consumers
def group_consumer_config(settings: Settings, group: str, instance_id: str | None) -> dict[str, Any]:
    """The processor's group member: manual offsets (in the Kafka transaction), read_committed, static membership."""
    cfg: dict[str, Any] = {
        **base_config(settings),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 300000,
        "fetch.wait.max.ms": 100,
        # Read ahead little: over a 1M-command backlog this keeps the processor near 150 MB instead of ~460 MB
        # (measured in bench/), at about the same speed.
        "queued.max.messages.kbytes": 4096,
        "queued.min.messages": 10000,
        "fetch.max.bytes": 1048576,
    }
    if instance_id:
        cfg["group.instance.id"] = instance_id
    return cfg


def reader_config(settings: Settings, group: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A consumer that assigns its partitions itself: read_committed, no auto commit, a throwaway group by default."""
    return {
        **base_config(settings),
        "group.id": group or f"reader-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Start offsets are explicit; should one ever be out of range, re-read rather than skip.
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",  # outputs count only once their transaction commits
        "fetch.wait.max.ms": 50,
        **overrides,
    }


def group_consumer(settings: Settings, group: str, instance_id: str | None) -> Consumer:
    return Consumer(group_consumer_config(settings, group, instance_id))


def reader(settings: Settings, group: str | None = None, **overrides: Any) -> Consumer:
    return Consumer(reader_config(settings, group, **overrides))


def admin_client(settings: Settings, **overrides: Any) -> AdminClient:
    return AdminClient({**base_config(settings), "socket.timeout.ms": 10000, **overrides})


def partitions_of(client: Consumer, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The partition numbers of a topic; LookupError when the broker does not know it."""
    md = client.list_topics(topic, timeout=timeout_s)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise LookupError(f"Kafka has no topic {topic}")
    return sorted(meta.partitions)


def committed_offsets(client: Consumer, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """The calling consumer's group's committed offset per partition (-1001 where none)."""
    if not partitions:
        return {}
    found = client.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    return {tp.partition: tp.offset for tp in found}


# ---------------------------------------------------------------------------------------------- topic reader
def read_all(settings: Settings, topic: str, timeout: float = 120.0, batch: int = 10000) -> Iterator[Message]:
    """Yields every committed message of `topic` up to the end it had when called (tombstones included)."""
    consumer = reader(settings)
    try:
        ends, starts = _bounds(consumer, topic)
        consumer.assign(starts)
        pending = {tp.partition for tp in starts if tp.offset < ends[tp.partition]}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout:.0f}s")
            for m in consumer.consume(batch, 0.5):
                p, off = m.partition(), m.offset()
                if m.error() is not None or p is None or off is None or off >= ends[p]:
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


def _bounds(consumer: Consumer, topic: str) -> tuple[dict[int, int], list[TopicPartition]]:
    ends: dict[int, int] = {}
    starts: list[TopicPartition] = []
    for p in partitions_of(consumer, topic):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = high
        starts.append(TopicPartition(topic, p, low))
    return ends, starts
