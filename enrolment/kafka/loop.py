"""The one run loop every consumer of the project uses: poll, filter, handle, retry, stop when told or caught up.

The sink contract (`Handler`): `prepare` runs before each poll (re-seek after a failure, recover, refresh);
`wants` filters what the checkpoint lets through (partitions not owned, a replay's end); `handle` gets the
messages not applied yet, in offset order per partition, and applies them all or raises (`Rewind` to re-seek
at once); `caught_up` says whether there is nothing left to do; `idle` runs after an empty poll (metrics);
`failed` is told about an exception from any of them and says whether the consumer must be rebuilt. Partitions
can be assigned inside the poll itself (rebalance callbacks), so `handle` must settle whatever an assignment
left pending before it applies anything. The loop waits between failures with one policy (`Backoff`, capped at
10 s), resets it after a success, and never swallows `clients.AccessDenied` (refused credentials or ACLs:
waiting does not help, the process stops with the sentence).

Fatal client states are left, not sat in: a `Fatal` (a fenced static member, a fatal transactional producer
error, an exceeded poll interval) closes the consumer, calls the owner's `setup` again (the processor builds a
new transactional producer and fences the old one) and rejoins in the same process. Only when that keeps
happening (`max_rebuilds` times within 10 minutes: most likely a second instance with the same id) does the
loop give up with a `Fatal` sentence, for the process to exit non-zero and a supervisor to restart it. The
loop keeps a `Health` (ready while it owns partitions and its last attempt succeeded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from enrolment.kafka import clients
from enrolment.kafka.checkpoint import Checkpoint, Fatal
from enrolment.kafka.health import REBUILDS, Health
from enrolment.settings import Settings
from enrolment.store.db import first_line, lost

log = logging.getLogger("enrolment.kafka")


class Handler(Protocol):
    def prepare(self, consumer: Consumer) -> None: ...

    def wants(self, msg: Message) -> bool: ...

    def handle(self, consumer: Consumer, msgs: list[Message]) -> None: ...

    def caught_up(self, consumer: Consumer) -> bool: ...

    def idle(self, consumer: Consumer) -> None: ...

    def failed(self, exc: Exception) -> bool: ...


class Rewind(Exception):
    """A batch was not applied (a position conflict, an aborted transaction): re-seek now, no waiting."""


@dataclass
class Backoff:
    """Capped exponential waits between failed attempts; reset by a success."""

    first_s: float = 1.0
    cap_s: float = 10.0
    current_s: float = 0.0

    def next(self) -> float:
        self.current_s = self.first_s if self.current_s == 0 else min(self.current_s * 2, self.cap_s)
        return self.current_s

    def reset(self) -> None:
        self.current_s = 0.0


def usable(msg: Message, settings: Settings | None = None) -> bool:
    """False for the consumer's error events (logged, except the harmless end-of-partition).

    An authentication or authorization error raises `clients.AccessDenied` when the settings are known. Raises
    Fatal for the states a consumer cannot leave by itself: a fatal error (a static member fenced by another with
    the same group.instance.id) or an exceeded max.poll.interval.ms.
    """
    err = msg.error()
    if err is None:
        return True
    if settings is not None and clients.is_refusal(err):
        what = f"reading topic {msg.topic()}" if msg.topic() else "the consumer's request"
        raise clients.AccessDenied(clients.refusal(settings, err, what))
    if err.fatal() or err.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID):
        # librdkafka reports its fatal state as an error event whose code is _FATAL and whose fatal() is False
        raise Fatal(f"the Kafka consumer failed fatally: {err.str()}")
    if err.code() == KafkaError._MAX_POLL_EXCEEDED:
        raise Fatal(f"the Kafka consumer left its group: {err.str()}")
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error", extra={"error": err.str()})
    return False


def at_end(consumer: Consumer, checkpoint: Checkpoint, keys: Iterable[tuple[str, int]], cached: bool = False) -> bool:
    """Every partition read to its high watermark (by the stored position, or the consumer's where none)."""
    for topic, p in keys:
        tp = TopicPartition(topic, p)
        _low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=cached)
        if high <= 0:
            continue
        done = checkpoint.next_offset((topic, p))
        current = consumer.position([tp])[0].offset
        if max(done or 0, current) < high:
            return False
    return True


REBUILD_WINDOW_S = 600.0


class RunLoop:
    """Drives one `Handler` with one consumer until stopped (or caught up, when asked to stop there)."""

    def __init__(
        self,
        connect: Callable[[], Consumer],
        handler: Handler,
        checkpoint: Checkpoint,
        *,
        max_batch: int,
        poll_timeout_s: float,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
        setup: Callable[[], None] | None = None,
        health: Health | None = None,
        ready: Callable[[], bool] | None = None,
        max_rebuilds: int = 5,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings  # whose refusals stop the loop (clients.AccessDenied)
        self.connect = connect
        self.handler = handler
        self.checkpoint = checkpoint
        self.max_batch = max_batch
        self.poll_timeout_s = poll_timeout_s
        self.stop = stop or threading.Event()
        self.backoff = backoff or Backoff()
        self.consumer: Consumer | None = None
        self.setup = setup
        self.setup_owed = setup is not None
        self.health = health or Health("consumer")
        self.ready = ready or (lambda: True)
        self.max_rebuilds = max_rebuilds
        self.fatal_at: deque[float] = deque()

    def step(self) -> int:
        """One poll: prepare, consume, keep what is new, handle it; returns the number of messages handled."""
        consumer = self.ensure_consumer()
        self.handler.prepare(consumer)
        msgs = consumer.consume(self.max_batch, self.poll_timeout_s)
        if self.settings is not None:
            clients.check_refused(self.settings)
        kept = [m for m in msgs if self._keep(m)]
        if kept:
            self.handler.handle(consumer, kept)
        return len(kept)

    def _keep(self, m: Message) -> bool:
        if not usable(m, self.settings):
            return False
        return self.checkpoint.is_new(str(m.topic()), int(m.partition() or 0), int(m.offset() or 0)) and (
            self.handler.wants(m)
        )

    def run(self, *, until_idle: bool = False, idle_grace_s: float = 1.0) -> None:
        """Runs until the stop event is set, or (until_idle) the handler has stayed caught up for the grace time."""
        idle_since: float | None = None
        try:
            while not self.stop.is_set():
                handled = self.attempt()
                if handled is not None:
                    self._update_health()
                if handled is None or handled > 0:
                    idle_since = None
                    continue
                assert self.consumer is not None
                self.handler.idle(self.consumer)
                if not until_idle:
                    continue
                if not self.handler.caught_up(self.consumer):
                    idle_since = None
                    continue
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= idle_grace_s:
                    return
        finally:
            self.health.set(False, "stopped")
            self.close()

    def _update_health(self) -> None:
        if self.consumer is None or not self.ready():
            self.health.set(False, "no partitions assigned")
        else:
            self.health.set(True)

    def attempt(self) -> int | None:
        """One step under the retry policy: the count handled, or None after a failure (waited out)."""
        try:
            if self.setup_owed and self.setup is not None:
                self.setup()
                self.setup_owed = False
            handled = self.step()
        except clients.AccessDenied:
            raise
        except Fatal as exc:
            self._rebuild(exc)
            return None
        except Rewind:
            return None
        except Exception as exc:
            wait = self.backoff.next()
            said = first_line(exc)
            expected = isinstance(exc, KafkaException | ConnectionError) or lost(exc)  # outages: no traceback
            log.warning("step failed; retrying", extra={"error": said, "retry_in_s": wait}, exc_info=not expected)
            self.health.set(False, f"retrying after {said}", retry_in_s=wait)
            if self.handler.failed(exc):
                self.close()
            self.stop.wait(wait)
            return None
        self.backoff.reset()
        return handled

    def _rebuild(self, exc: Fatal) -> None:
        """Leaves a fatal client state: closes the consumer, owes a new setup, waits; gives up when it recurs."""
        now = time.monotonic()
        self.fatal_at.append(now)
        while self.fatal_at and now - self.fatal_at[0] > REBUILD_WINDOW_S:
            self.fatal_at.popleft()
        cause = "fenced" if "fenced" in str(exc).lower() else "fatal"
        REBUILDS.labels(self.health.component, cause).inc()
        if len(self.fatal_at) > self.max_rebuilds:
            self.health.set(False, f"gave up: {exc}")
            raise Fatal(
                f"Kafka clients reached a fatal state {len(self.fatal_at)} times within "
                f"{REBUILD_WINDOW_S / 60:.0f} minutes (last: {exc}); giving up so that a supervisor restarts "
                "this process."
            ) from None
        wait = self.backoff.next()
        log.warning(
            "fatal Kafka client state; rebuilding the clients and rejoining",
            extra={"error": str(exc), "retry_in_s": wait, "rebuilds_in_window": len(self.fatal_at)},
        )
        self.health.set(False, f"rebuilding Kafka clients after: {exc}", retry_in_s=wait)
        self.handler.failed(exc)
        self.close()
        self.setup_owed = self.setup is not None
        self.stop.wait(wait)

    def ensure_consumer(self) -> Consumer:
        if self.consumer is None:
            self.consumer = self.connect()
        return self.consumer

    def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("consumer close failed", extra={"error": str(exc)})
