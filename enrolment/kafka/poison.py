"""Finding the message PostgreSQL refuses, so that one bad message never stalls a consumer.

Both sinks (the processor and the dashboard's read model) apply a poll's messages in one transaction. When the
database refuses them for a reason retrying cannot cure (a data error, :func:`enrolment.store.db.refused_data`),
the batch is halved until the bad message stands alone; it is then marked in ``refused`` so that the sink's next
``apply`` of it records a dead letter in the transaction that moves past it. Each part is an ordinary batch for the
sink: its own compare-and-set, transactions and outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import TypeVar

from confluent_kafka import Message

from enrolment.store.db import refused_data

log = logging.getLogger("enrolment.kafka")
K = TypeVar("K", bound=Hashable)


def apply_isolating_refused(
    msgs: list[Message],
    apply: Callable[[list[Message]], None],
    refused: dict[K, str],
    key: Callable[[Message], K],
    after_part: Callable[[], None] | None = None,
) -> None:
    """``apply(msgs)``; on a data error, halves ``msgs`` until the refused message is alone and marked."""
    try:
        apply(msgs)
        return
    except Exception as exc:
        why = refused_data(exc)
        if why is None:
            raise
        if len(msgs) > 1:
            log.warning(
                "the database refused a batch; splitting it to find the message",
                extra={"messages": len(msgs), "error": why},
            )
        else:
            k = key(msgs[0])
            if k in refused:
                raise  # even its dead letter was refused: not curable here, retried like any failure
            refused[k] = why
            _log_refused(msgs[0], why)
    parts = [msgs] if len(msgs) == 1 else [msgs[: len(msgs) // 2], msgs[len(msgs) // 2 :]]
    for part in parts:
        apply_isolating_refused(part, apply, refused, key, after_part)
        if after_part is not None:
            after_part()


def _log_refused(msg: Message, why: str) -> None:
    log.warning(
        "the database refused a message; dead-lettering it",
        extra={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(), "error": why},
    )
