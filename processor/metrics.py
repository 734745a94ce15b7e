"""Prometheus metrics of the processor, served with `/healthz` on METRICS_HOST:METRICS_PORT when a port is set
(127.0.0.1 by default; enrolment.kafka.health).

Lag is per owned partition (the high watermark less the stored position). The age of the oldest unapplied
command is the time since the producer wrote the first command this instance has read but not applied yet
(0 when none is waiting): it grows while a batch is retried, a broker or the database is away, or a poison
message would have stalled the partition.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from enrolment.domain.outputs import Recorded
from enrolment.kafka.checkpoint import Checkpoint
from enrolment.kafka.health import DEAD_LETTERS, Health
from enrolment.kafka.health import serve as serve_http
from enrolment.store.positions import Moves

COMMANDS = Counter("participants_commands_total", "Commands processed, by outcome", ["outcome"])
DUPLICATES = Counter("participants_duplicate_commands_total", "Commands skipped because already in the ledger")
BATCH_SECONDS = Histogram(
    "participants_batch_seconds",
    "Time to apply and publish one consumed batch",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG = Gauge("participants_consumer_lag", "Commands not yet applied, per partition", ["partition"])
OLDEST = Gauge(
    "participants_oldest_unapplied_command_age_seconds",
    "Seconds since the oldest command read but not yet applied by this instance was produced (0: none waiting)",
)
COMPONENT = "processor"

_pending: dict[int, float] = {}  # partition -> produce time (s) of its first command read and not applied
_pending_lock = threading.Lock()
_lag_labels: set[int] = set()


def _oldest_age() -> float:
    with _pending_lock:
        oldest = min(_pending.values(), default=None)
    return 0.0 if oldest is None else max(0.0, time.time() - oldest)


OLDEST.set_function(_oldest_age)


def serve(port: int, host: str = "127.0.0.1", health: Health | None = None) -> None:
    """Starts `/metrics` (and `/healthz`) on ``host`` (only this machine unless configured otherwise); 0 = off."""
    if port > 0:
        serve_http(port, health, host)


def note_pending(msgs: Iterable[Message]) -> None:
    """Commands read and about to be applied: the first of each partition starts (or keeps) its clock."""
    with _pending_lock:
        for m in msgs:
            p = int(m.partition() or 0)
            if p in _pending:
                continue
            kind, ts = m.timestamp()
            _pending[p] = ts / 1000 if kind != TIMESTAMP_NOT_AVAILABLE and ts > 0 else time.time()


def note_applied(moves: Moves) -> None:
    with _pending_lock:
        for _topic, p in moves:
            _pending.pop(p, None)


def observe_batch(recorded: Iterable[Recorded], duplicates: int, seconds: float, letters: Iterable[str] = ()) -> None:
    for r in recorded:
        COMMANDS.labels(r.outcome).inc()
    for reason in letters:
        DEAD_LETTERS.labels(COMPONENT, reason).inc()
    DUPLICATES.inc(duplicates)
    BATCH_SECONDS.observe(seconds)


def update_lag(consumer: Consumer, topic: str, owned: set[int], checkpoint: Checkpoint) -> None:
    """Lag per owned partition; partitions no longer owned are dropped (their clocks too)."""
    with _pending_lock:
        for p in [p for p in _pending if p not in owned]:
            del _pending[p]
    for p in [p for p in _lag_labels if p not in owned]:
        LAG.remove(str(p))
        _lag_labels.discard(p)
    for p in owned:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=True)
        lag = max(0, high - (checkpoint.next_offset((topic, p)) or 0))
        LAG.labels(str(p)).set(lag)
        _lag_labels.add(p)
        if lag == 0:
            with _pending_lock:
                _pending.pop(p, None)
