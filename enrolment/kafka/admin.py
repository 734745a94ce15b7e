"""Topic layout (partitions, retention) and its creation/reset with the AdminClient."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from enrolment.kafka.clients import admin_client, reader
from enrolment.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]
    why: str
    replicas: int = 1


def replication(brokers: int) -> tuple[int, dict[str, str]]:
    """Replicas and min ISR for a cluster of `brokers`: three copies, two of which must take every write.

    With acks=all a write then survives one broker's loss and the topic stays writable while one broker is down.
    """
    replicas = max(1, min(3, brokers))
    return replicas, {"min.insync.replicas": "2" if replicas >= 3 else "1"}


def topic_specs(settings: Settings, brokers: int = 1) -> list[TopicSpec]:
    """The topics, replicated to fit `brokers` (README's topic table is this list)."""
    replicas, durability = replication(brokers)
    return [TopicSpec(s.name, s.partitions, {**durability, **s.config}, s.why, replicas) for s in _layout(settings)]


def _layout(settings: Settings) -> list[TopicSpec]:
    """The topics and why each keeps what it keeps."""
    t = settings.topics
    n = settings.commands_partitions
    forever = {"retention.ms": "-1", "retention.bytes": "-1"}
    return [
        TopicSpec(
            t.commands,
            n,
            {"retention.ms": str(30 * DAY_MS), "max.message.bytes": "10485760"},
            "commands and upload seals, keyed by batch id; 30 days for replay",
        ),
        TopicSpec(t.results, n, dict(forever), "one result per command; kept forever (command ledger rebuild)"),
        TopicSpec(t.enrollment_events, n, dict(forever), "one event per real change; kept forever (read models)"),
        TopicSpec(
            t.uploads, n, {**forever, "max.message.bytes": "10485760"}, "upload records and summaries; kept forever"
        ),
        TopicSpec(t.telemetry, n, {"retention.ms": str(7 * DAY_MS)}, "Sunbird telemetry v3; 7 days"),
        TopicSpec(t.course_progress, n, dict(forever), "learners' progress; kept forever (dashboard rebuild)"),
        TopicSpec(
            t.enrollments,
            n,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "delete.retention.ms": str(DAY_MS)},
            "enrolment changelog (compacted; key batch/user; tombstone on removal): the store can be rebuilt",
        ),
        TopicSpec(t.dead_letters, 3, {"retention.ms": str(30 * DAY_MS)}, "undecodable messages with why/where headers"),
    ]


def broker_count(settings: Settings, timeout: float = 10.0) -> int:
    """How many brokers the cluster lists now (the topics' replication follows it)."""
    return len(admin_client(settings).list_topics(timeout=timeout).brokers)


def existing_topics(admin: AdminClient, timeout: float = 10.0) -> set[str]:
    return set(admin.list_topics(timeout=timeout).topics)


def create_topics(settings: Settings, specs: list[TopicSpec] | None = None, timeout: float = 60.0) -> list[str]:
    """Creates missing topics; returns the names created. Retries while a deleted topic is still going away."""
    admin = admin_client(settings)
    specs = specs if specs is not None else topic_specs(settings, broker_count(settings))
    created: list[str] = []
    deadline = time.monotonic() + timeout
    pending = [s for s in specs if s.name not in existing_topics(admin)]
    while pending:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, replication_factor=s.replicas, config=s.config) for s in pending],
            operation_timeout=30,
        )
        retry: list[TopicSpec] = []
        for spec in pending:
            try:
                futures[spec.name].result()
                created.append(spec.name)
            except KafkaException as exc:
                err = exc.args[0]
                if err.name() == "TOPIC_ALREADY_EXISTS" and spec.name in existing_topics(admin):
                    continue
                retry.append(spec)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not create topic {spec.name}: {err.str()}") from None
        pending = retry
        if pending:
            time.sleep(0.5)
    if created:
        wait_for_leaders(settings, created, max(5.0, deadline - time.monotonic()))
    return created


def wait_for_leaders(settings: Settings, topics: list[str], timeout: float) -> None:
    """New topics answer "not leader" for a moment; wait until every partition serves offsets."""
    consumer = reader(settings, "topic-probe")
    deadline = time.monotonic() + timeout
    try:
        for topic in topics:
            while True:
                try:
                    parts = consumer.list_topics(topic, timeout=5).topics[topic].partitions
                    if parts and all(p.leader >= 0 for p in parts.values()):
                        for p in parts:
                            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                        break
                except KafkaException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {topic} has no leader for every partition after {timeout:.0f}s")
                time.sleep(0.2)
    finally:
        consumer.close()


def delete_topics(settings: Settings, names: list[str], timeout: float = 60.0) -> None:
    """Deletes topics and waits until the broker no longer lists them."""
    admin = admin_client(settings)
    present = [n for n in names if n in existing_topics(admin)]
    if present:
        futures = admin.delete_topics(present, operation_timeout=30)
        for fut in futures.values():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                    raise
    deadline = time.monotonic() + timeout
    while set(present) & existing_topics(admin):
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics still present after delete: {sorted(set(present) & existing_topics(admin))}")
        time.sleep(0.3)


def delete_groups(settings: Settings) -> None:
    """Removes every consumer group (reset means an empty world)."""
    admin = admin_client(settings)
    listed = admin.list_consumer_groups(request_timeout=10).result()
    ids = [g.group_id for g in listed.valid]
    if ids:
        for fut in admin.delete_consumer_groups(ids, request_timeout=10).values():
            # A group with live members cannot be deleted; reset is meant for an idle stack.
            with contextlib.suppress(KafkaException):
                fut.result()
