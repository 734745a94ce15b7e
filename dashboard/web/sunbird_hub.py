"""One Kafka producer, one results follower and a few worker threads per process, for the Sunbird APIs.

Before, each call built its own producer and consumer and held a worker thread while it waited up to
``SUNBIRD_API_WAIT_S``: a few dozen concurrent calls exhausted the server.  Here a call registers its upload
with the follower *before* publishing (so no result is missed), publishes with the shared producer on a small
fixed pool, and awaits an asyncio future that the follower thread resolves when the last result is in — no
thread is held while waiting, and threads and connections stay the same under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import KafkaException, Producer, TopicPartition

from enrolment.files import InputRow, RefusedRow
from enrolment.kafka import clients
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.messages.codec import Codec, DecodeError, default_codec
from enrolment.settings import Settings
from producer.follow import RowResult
from producer.publish import Published, UploadRequest, publish_upload

log = logging.getLogger("dashboard.sunbird")
T = TypeVar("T")
WORKERS = 4  # token checks, batch look-ups and publishing: short, so a few threads serve many calls
RETRY_S = 5.0  # after a failed Kafka setup, calls answer 503 at once for this long before it is tried again


@dataclass
class Waiter:
    """One upload's results as they arrive; ``done`` resolves once ``expected`` (set after publishing) are in."""

    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]
    expected: int | None = None
    rows: dict[int, RowResult] = field(default_factory=dict)

    def finished(self) -> bool:
        return self.expected is not None and len(self.rows) >= self.expected


class Hub:
    """The process's shared clients; started on first use (and again after Kafka was lost), closed with the server.

    Two locks: ``lock`` guards the waiters and is taken on the event loop, so it is only ever held for a dict
    update; ``setup_lock`` serialises the Kafka setup (seconds when Kafka is unreachable) and is taken on the
    pool's threads only, so a slow or failing setup never stops the loop (nor ``/healthz``).
    """

    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or default_codec()
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="sunbird")
        self.lock = threading.Lock()
        self.setup_lock = threading.Lock()
        self.waiters: dict[str, Waiter] = {}
        self.producer: Producer | None = None
        self.stop_event = threading.Event()
        self.follower: threading.Thread | None = None
        self.failure: str | None = None  # why the last setup failed: answered at once until ``retry_at``
        self.retry_at = 0.0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the hub's fixed pool (never a new thread per call)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def _start(self) -> Producer:
        """The shared producer and a live follower (restarted if it died), on a pool thread.

        After a failed setup, calls within ``RETRY_S`` fail at once with the same sentence instead of each
        spending the Kafka timeouts again.
        """
        with self.setup_lock:
            if self.failure is not None and time.monotonic() < self.retry_at:
                raise BrokerUnavailable(self.failure)
            try:
                if self.follower is None or not self.follower.is_alive():
                    self._start_follower()
                if self.producer is None:
                    producer = clients.bulk_producer(self.settings)
                    clients.check_topic(producer, self.settings, self.settings.topics.commands)
                    self.producer = producer
            except BrokerUnavailable as exc:
                if self.failure is None:
                    log.error("Kafka is unreachable for the Sunbird APIs", extra={"reason": str(exc)})
                self.failure, self.retry_at = str(exc), time.monotonic() + RETRY_S
                raise
            if self.failure is not None:
                log.info("Kafka is reachable again for the Sunbird APIs")
            self.failure = None
            return self.producer

    def _start_follower(self) -> None:
        """A follower thread positioned at the results' end (before anything of a new call is sent)."""
        consumer = self._results_reader()
        self.follower = threading.Thread(target=self._follow, args=(consumer,), name="sunbird-results")
        self.follower.daemon = True
        self.follower.start()

    def _results_reader(self) -> Any:
        consumer = clients.reader(self.settings, clients.reader_group(self.settings, "follow"))
        topic = self.settings.topics.results
        try:
            clients.check_topic(consumer, self.settings, topic)
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends = [
                TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]) for p in parts
            ]
        except (KafkaException, BrokerUnavailable) as exc:
            consumer.close()
            if isinstance(exc, BrokerUnavailable):
                raise
            raise BrokerUnavailable(f"Cannot reach Kafka at {self.settings.kafka_bootstrap_servers}.") from None
        consumer.assign(ends)
        return consumer

    def _follow(self, consumer: Any) -> None:
        """The follower thread: every result of a registered upload goes to its waiter.

        If it dies, the calls waiting now are answered at once (202: their results are the upload's to follow)
        rather than at the end of the wait, and the next call starts a new follower.
        """
        try:
            while not self.stop_event.is_set():
                for m in consumer.consume(5000, 0.2):
                    if m.error() is None:
                        self._offer(m.value())
        except Exception as exc:  # noqa: BLE001 - said in the log; the next call restarts the follower
            log.error(
                "the results follower stopped; the next call starts a new one", extra={"error": type(exc).__name__}
            )
            self._release_all()
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def _release_all(self) -> None:
        """Ends every wait now (the follower that would have resolved them is gone)."""
        with self.lock:
            for waiter in self.waiters.values():
                waiter.loop.call_soon_threadsafe(_resolve, waiter.done)

    def _offer(self, value: bytes) -> None:
        try:
            _name, rec = self.codec.decode(value, expect="CommandResult")
        except DecodeError:
            return
        with self.lock:
            waiter = self.waiters.get(rec["upload_id"])
            if waiter is None or rec["line"] in waiter.rows:
                return
            waiter.rows[rec["line"]] = RowResult(
                rec["line"], rec["identifier"], rec["id_type"], rec["outcome"], rec["reason"], rec["message"]
            )
            if waiter.finished():
                waiter.loop.call_soon_threadsafe(_resolve, waiter.done)

    def _publish(self, request: UploadRequest, rows: Iterable[InputRow | RefusedRow]) -> Published:
        producer = self._start()
        return publish_upload(self.settings, self.codec, request, rows, keep_rows=False, producer=producer)

    async def publish(self, request: UploadRequest, rows: Iterable[InputRow | RefusedRow]) -> Published:
        """Publishes one upload with the shared producer (fire and forget: nobody waits for its results)."""
        return await self.run(self._publish, request, rows)

    async def publish_and_wait(
        self, request: UploadRequest, rows: list[InputRow], wait_s: float
    ) -> tuple[bool, dict[int, RowResult]]:
        """Publishes ``rows`` as one upload and awaits their results up to ``wait_s``: (complete, results so far)."""
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop, loop.create_future())
        with self.lock:
            self.waiters[request.upload_id] = waiter  # before publishing: no result can come before this
        try:
            published = await self.publish(request, rows)
            with self.lock:
                waiter.expected = published.published
                if waiter.finished():
                    _resolve(waiter.done)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter.done), wait_s)
            with self.lock:
                return waiter.finished(), dict(waiter.rows)
        finally:
            with self.lock:
                self.waiters.pop(request.upload_id, None)

    def close(self) -> None:
        """Stops the follower, flushes the producer and ends the pool's threads."""
        self.stop_event.set()
        if self.follower is not None:
            self.follower.join(10)
        if self.producer is not None:
            self.producer.flush(10)
        self.pool.shutdown(wait=True)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
