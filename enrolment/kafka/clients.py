"""Every Kafka client of the project is built here, from the settings: one place for brokers and credentials.

Profiles, not ad-hoc dicts: a *bulk* producer (uploads, progress: large batches, idempotent), a
*transactional* producer (the processor's outputs), a *group* consumer (the processor: static membership,
little read-ahead), an *assigned* reader (the dashboard, followers, rebuilds: no group management) and an
admin client. Also here: producing through a full local queue, collecting delivery errors, and reading a
whole topic to its current end.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from enrolment.settings import Settings

Headers = list[tuple[str, str | bytes | None]]


log = logging.getLogger("enrolment.kafka")


class BrokerUnavailable(Exception):
    """Kafka could not be reached or refused the messages (exit code 1)."""


class AccessDenied(BrokerUnavailable):
    """The broker refused this component's credentials, or an operation its ACLs do not allow (exit code 1)."""


# librdkafka's codes for "who are you" and "you may not" (README "Principals and ACLs").
AUTHENTICATION_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
AUTHORIZATION_CODES = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "consumer group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
}
# The first authentication failure each identity met, recorded by the clients' error callback.
_refused: dict[str, KafkaError] = {}


def _identity(settings: Settings) -> str:
    return f"{settings.kafka_security_protocol}|{settings.kafka_bootstrap_servers}|{settings.kafka_sasl_username}"


def principal(settings: Settings) -> str:
    """Who this client is to the broker, for sentences (never the password)."""
    if settings.kafka_security_protocol.startswith("SASL_"):
        return f"principal User:{settings.kafka_sasl_username or '(no KAFKA_SASL_USERNAME)'}"
    return f"an unauthenticated client ({settings.kafka_security_protocol}; component {settings.component})"


def is_refusal(err: KafkaError) -> bool:
    return err.code() in AUTHENTICATION_CODES or err.code() in AUTHORIZATION_CODES


def refusal(settings: Settings, err: KafkaError, what: str = "the request") -> str:
    """One sentence for an authentication or authorization error (the principal, what was refused; no secret)."""
    where = f"Kafka at {settings.kafka_bootstrap_servers}"
    if err.code() in AUTHENTICATION_CODES:
        return (
            f"{where} refused the credentials of {principal(settings)} ({settings.kafka_sasl_mechanism} "
            f"authentication failed): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, or the stack's file "
            f"for {settings.component} ('scripts/stack env {settings.component}')."
        )
    kind = AUTHORIZATION_CODES.get(err.code(), "resource")
    return (
        f"{where} refused {what}: {principal(settings)} is not allowed to use that {kind} "
        f"({err.name()}; see README 'Principals and ACLs')."
    )


def check_refused(settings: Settings) -> None:
    """Raises AccessDenied when a client of these settings has been refused its credentials."""
    err = _refused.get(_identity(settings))
    if err is not None:
        raise AccessDenied(refusal(settings, err))


def _error_callback(settings: Settings) -> Callable[[KafkaError], None]:
    identity = _identity(settings)

    def on_error(err: KafkaError) -> None:
        if err.code() in AUTHENTICATION_CODES:
            _refused.setdefault(identity, err)
        log.info("kafka client error", extra={"error": err.str(), "code": err.name()})

    return on_error


def unreachable(settings: Settings, err: KafkaError) -> str:
    """The sentence for a broker that did not answer (an open client in front of a SASL listener says so)."""
    hint = ""
    if not settings.kafka_security_protocol.startswith("SASL_"):
        hint = (
            f" (no Kafka credentials are set for {settings.component}: a broker that requires SASL closes the "
            "connection; run 'scripts/stack up' or set KAFKA_SECURITY_PROTOCOL and KAFKA_SASL_*)"
        )
    return f"Cannot reach Kafka at {settings.kafka_bootstrap_servers}: {err.str()}{hint}."


def base_config(settings: Settings) -> dict[str, Any]:
    """What every client shares: where the brokers are and how this component authenticates to them.

    librdkafka's own log lines are off (they went to stderr around every CLI sentence); its errors reach the
    error callback, which logs them and remembers an authentication failure (`check_refused`).
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "error_cb": _error_callback(settings),
        "log_level": 0,
    }
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

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.errors: list[KafkaError] = []
        self.topics: list[str | None] = []

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(err)
            self.topics.append(msg.topic())

    def flush(self, producer: Producer, what: str, timeout_s: float = 120.0) -> None:
        remaining = producer.flush(timeout_s)
        if self.settings is not None:
            check_refused(self.settings)
            if self.errors and is_refusal(self.errors[0]):
                raise AccessDenied(refusal(self.settings, self.errors[0], f"{what} (topic {self.topics[0]})"))
        if remaining or self.errors:
            first = self.errors[0].str() if self.errors else f"{remaining} messages still queued"
            raise BrokerUnavailable(f"Kafka did not acknowledge {what}: {first}")


def _serve(client: Producer | Consumer) -> None:
    """Runs pending callbacks (the error callback among them); only call it on a consumer not yet assigned."""
    client.poll(0)


def check_topic(client: Producer | Consumer, settings: Settings, topic: str, timeout_s: float = 10.0) -> None:
    """Fails with one sentence when the broker is unreachable, refuses this principal, or lacks the topic.

    Asks in short rounds, so that refused credentials (reported by the error callback) end it at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            md = client.list_topics(topic, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
            break
        except KafkaException as exc:
            _serve(client)
            check_refused(settings)
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(unreachable(settings, exc.args[0])) from None
    meta = md.topics.get(topic)
    err = meta.error if meta is not None else None
    if err is not None and err.code() in AUTHORIZATION_CODES:
        raise AccessDenied(refusal(settings, err, f"access to topic {topic}"))
    if meta is None or err is not None or not meta.partitions:
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
        "max.poll.interval.ms": settings.max_poll_interval_ms,
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


def reader_group(settings: Settings, purpose: str = "reader") -> str:
    """A throwaway group for an assigned reader, under its component's prefix (ACL: describe only, acls.py)."""
    return f"{settings.component}-reader-{purpose}-{uuid.uuid4().hex[:12]}"


def reader_config(settings: Settings, group: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A consumer that assigns its partitions itself: read_committed, no auto commit, a throwaway group by default."""
    return {
        **base_config(settings),
        "group.id": group or reader_group(settings),
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
