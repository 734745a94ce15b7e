"""The bench's PLAINTEXT listener (bench/secure.py) is no back door: ANONYMOUS reaches the bench's names only.

A private one-node broker (scripts/stack in a temporary folder, stopped afterwards even after a failure) is
started with ``STACK_BENCH_PLAINTEXT_PORT``; the suite's own broker is left alone.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from enrolment.kafka.admin import TopicSpec, create_topics
from enrolment.settings import Settings
from tests.support.cluster import private_stack
from tests.support.stackmode import CONTAINERS_REASON

pytestmark = pytest.mark.integration
DENIED = KafkaError.TOPIC_AUTHORIZATION_FAILED


def _produce_error(bootstrap: str, topic: str) -> int | None:
    """The delivery error code of one anonymous message (None: delivered)."""
    codes: list[int | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 20000})
    producer.produce(topic, b"probe", on_delivery=lambda err, _msg: codes.append(err.code() if err else None))
    producer.flush(30)
    assert codes, f"no delivery report for {topic} within 30 s"
    return codes[0]


def _consume_error(bootstrap: str, topic: str, group: str) -> int:
    """The error an anonymous consumer of ``topic`` gets; running out of time fails the test."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is not None and msg.error() is not None:
                return int(msg.error().code())
            assert msg is None, f"an anonymous consumer read {topic}"
        raise AssertionError(f"no error for an anonymous read of {topic} within 30 s")
    except KafkaException as exc:
        return int(exc.args[0].code())
    finally:
        consumer.close()


def test_anonymous_on_the_bench_listener_cannot_touch_the_real_commands(
    base_settings: Settings, tmp_path: Path, unique: str
) -> None:
    if base_settings.kafka_sasl_username != "admin":
        pytest.skip(CONTAINERS_REASON)
    with private_stack(tmp_path / "stack", brokers=1, bench=True) as cluster:
        props = (cluster.folder / "kafka.properties").read_text()
        assert f"BENCH://127.0.0.1:{cluster.bench_port}" in props and "ANONYMOUS" not in props
        up = cluster.stack("up")
        assert f"WARNING: unauthenticated PLAINTEXT bench listener open on 127.0.0.1:{cluster.bench_port}" in up.stderr
        status = cluster.stack("status").stdout
        assert f"bench PLAINTEXT listener open on 127.0.0.1:{cluster.bench_port}" in status, status

        admin = replace(base_settings, kafka_bootstrap_servers=f"localhost:{cluster.base}")
        own = f"bench{unique}.probe"
        create_topics(admin, [TopicSpec(own, 1, {}, "the bench's own topic")])
        plain = f"127.0.0.1:{cluster.bench_port}"
        assert _produce_error(plain, own) is None, "the bench's own topic must stay writable"
        assert _produce_error(plain, "participants.commands") == DENIED
        assert _consume_error(plain, "participants.commands", f"bench-{unique}") == DENIED
