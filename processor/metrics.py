"""Prometheus metrics of the processor (METRICS_HOST:METRICS_PORT when a port is set; 127.0.0.1 by default)."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from enrolment.domain.outputs import Recorded
from enrolment.kafka.checkpoint import Checkpoint

COMMANDS = Counter("participants_commands_total", "Commands processed, by outcome", ["outcome"])
DUPLICATES = Counter("participants_duplicate_commands_total", "Commands skipped because already in the ledger")
BATCH_SECONDS = Histogram(
    "participants_batch_seconds",
    "Time to apply and publish one consumed batch",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG = Gauge("participants_consumer_lag", "Commands not yet applied, per partition", ["partition"])


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Starts the metrics endpoint on ``host`` (only this machine unless configured otherwise); 0 = off."""
    if port > 0:
        start_http_server(port, addr=host)


def observe_batch(recorded: Iterable[Recorded], duplicates: int, seconds: float) -> None:
    for r in recorded:
        COMMANDS.labels(r.outcome).inc()
    DUPLICATES.inc(duplicates)
    BATCH_SECONDS.observe(seconds)


def update_lag(consumer: Consumer, topic: str, owned: set[int], checkpoint: Checkpoint) -> None:
    for p in owned:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=True)
        LAG.labels(str(p)).set(max(0, high - (checkpoint.next_offset((topic, p)) or 0)))
