"""The `audit` logger's records also go to the telemetry topic, as Sunbird AUDIT events.

Every security event is logged once, on the logger named ``audit`` (structured fields, never a secret);
`install` adds a handler that turns each record into a TelemetryEvent (`enrolment.domain.audit`) and
produces it, so the log line and the telemetry event cannot drift apart. The producer is asynchronous; a
broker outage never fails the request being audited (the record stays in the log, the error is reported
by logging's own error handling).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from confluent_kafka import Producer

from enrolment.domain.audit import security_record
from enrolment.kafka import clients
from enrolment.logs import extra_fields
from enrolment.messages.codec import Codec
from enrolment.settings import Settings

AUDIT_LOGGER = "audit"
_OBJECTS = (("token_id", "ApiToken"), ("plan_id", "Plan"), ("upload_id", "Upload"), ("batch_id", "CourseBatch"))


def fields_of(record: logging.LogRecord) -> dict[str, str]:
    """The structured fields a caller passed with ``extra=``, as strings."""
    return {k: str(v) for k, v in extra_fields(record).items()}


def telemetry_of(record: logging.LogRecord) -> dict[str, Any]:
    """The AUDIT event of one audit log record."""
    fields = fields_of(record)
    event = fields.get("event") or fields.get("action") or record.getMessage()
    event = event.upper().replace(".", "_").replace("-", "_").replace(" ", "_")
    actor = fields.get("by") or fields.get("user_id") or fields.get("user") or "anonymous"
    object_id, object_type = next(
        ((fields[k], kind) for k, kind in _OBJECTS if fields.get(k)), (fields.get("user") or actor, "User")
    )
    return security_record(
        event,
        actor=actor,
        object_id=object_id,
        object_type=object_type,
        ets_ms=int(record.created * 1000),
        mid=f"AUDIT:{uuid.uuid4()}",
        params={k: v for k, v in fields.items() if k != "event"},
        channel=fields.get("state", ""),
    )


class AuditToTelemetry(logging.Handler):
    """A logging handler producing each audit record to the telemetry topic."""

    def __init__(self, settings: Settings, codec: Codec) -> None:
        super().__init__(logging.INFO)
        self.settings = settings
        self.codec = codec
        self.deliveries = clients.Deliveries(settings)
        self._producer: Producer | None = None
        self._guard = threading.Lock()

    def producer(self) -> Producer:
        with self._guard:
            if self._producer is None:
                self._producer = clients.bulk_producer(self.settings)
            return self._producer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = telemetry_of(record)
            value = self.codec.encode("TelemetryEvent", event)
            producer = self.producer()
            clients.produce(
                producer, self.settings.topics.telemetry, value, event["object"]["id"].encode(), None, self.deliveries
            )
            producer.poll(0)
        except Exception:  # noqa: BLE001 - auditing must never fail the audited request
            self.handleError(record)

    def flush(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)

    def close(self) -> None:
        self.flush()
        super().close()


def install(settings: Settings, codec: Codec, *, warm: bool = False) -> AuditToTelemetry:
    """Adds (or replaces) the telemetry handler on the audit logger; returns it (flush it before exiting).

    ``warm``: make its producer now, so that connecting to the broker (SASL, the idempotent producer's id) goes
    on in librdkafka's threads while the command works, instead of in the flush at its end.
    """
    logger = logging.getLogger(AUDIT_LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, AuditToTelemetry)]:
        logger.removeHandler(old)
        old.close()
    handler = AuditToTelemetry(settings, codec)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    if warm:
        handler.producer()
    return handler


def ensure(settings: Settings, codec: Codec, *, warm: bool = False) -> AuditToTelemetry:
    """The audit logger's telemetry handler for these settings: the one installed (and its connection), or a new
    one (``install``). A command that audits in several steps (a plan approved, then its upload) pays one
    connection and one flush."""
    for handler in logging.getLogger(AUDIT_LOGGER).handlers:
        if isinstance(handler, AuditToTelemetry) and handler.settings == settings:
            if warm:
                handler.producer()
            return handler
    return install(settings, codec, warm=warm)
