"""Epoch milliseconds <-> datetimes, once: Avro's timestamp-millis, the store's timestamptz and the clocks.

Integer arithmetic (as fastavro does), so a value survives a round trip through any of them unchanged.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


def to_ms(value: datetime | int) -> int:
    """Epoch milliseconds of an aware datetime (naive ones are taken as UTC), or an int unchanged."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - EPOCH
        return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return int(value)


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return EPOCH + timedelta(milliseconds=ms)


def iso(ms: int) -> str:
    """ISO 8601 (UTC) of epoch milliseconds, for logs and JSON."""
    return from_ms(ms).isoformat()
