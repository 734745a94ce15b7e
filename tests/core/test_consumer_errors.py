"""Which consumer error events the run loop survives, and which make it rebuild its clients (no broker needed)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Message

from enrolment.kafka.checkpoint import Fatal
from enrolment.kafka.loop import usable


def _event(code: int, fatal: bool = False) -> Message:
    return Message(topic="t.commands", partition=0, error=KafkaError(code, "as librdkafka says it", fatal=fatal))


def test_a_message_without_an_error_is_usable() -> None:
    assert usable(Message(topic="t.commands", partition=0, offset=1, value=b"x"))


@pytest.mark.parametrize("code", [KafkaError._PARTITION_EOF, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN])
def test_transient_events_are_skipped_and_the_loop_goes_on(code: int) -> None:
    assert usable(_event(code)) is False


@pytest.mark.parametrize(
    ("code", "fatal"),
    [
        (KafkaError._FATAL, False),  # the fenced static member, as the consumer reports it to poll()
        (KafkaError.FENCED_INSTANCE_ID, False),
        (KafkaError._FATAL, True),
        (KafkaError._MAX_POLL_EXCEEDED, False),
    ],
)
def test_states_a_consumer_cannot_leave_by_itself_raise_fatal(code: int, fatal: bool) -> None:
    with pytest.raises(Fatal):
        usable(_event(code, fatal))
