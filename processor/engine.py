"""The processor: a consumer group on the commands topic with exactly-once effects and outputs.

Design (README, "The processor and exactly-once"): PostgreSQL holds the truth about what was applied. Each
consumed batch is one database transaction that applies the commands set-based, records every command's
outcome in the ledger (unique command id) and moves the partition's stored position with a compare-and-set
(`enrolment.kafka.checkpoint.Checkpoint`). The outputs of that batch are then published in one Kafka
transaction together with the consumer offsets (`Outbox`). Only the last applied batch of a partition can be
unpublished; `processor.assignment` finds it on assignment and the handler re-publishes it from the ledger.
This module wires the parts onto the shared run loop.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from confluent_kafka import Consumer
from sqlalchemy import Engine

from enrolment.kafka import clients
from enrolment.kafka.checkpoint import Checkpoint, Fatal, Outbox
from enrolment.kafka.health import Health
from enrolment.kafka.loop import Backoff, RunLoop
from enrolment.kafka.stop import install_signal_handlers
from enrolment.messages.codec import Codec
from enrolment.settings import Settings
from enrolment.store.positions import PROCESSOR_POSITIONS
from processor.assignment import Assignments
from processor.batch import ReplayRange
from processor.completions import CompletionFollower
from processor.handler import CommandHandler

__all__ = ["Fatal", "Processor", "ReplayRange"]

log = logging.getLogger("processor")


class Processor:
    """Consumes commands, applies them exactly once, publishes results/events/telemetry transactionally."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        codec: Codec,
        *,
        group: str | None = None,
        instance_id: str | None = None,
        until_idle: bool = False,
        idle_grace_s: float = 1.0,
        replay: ReplayRange | None = None,
    ) -> None:
        self.settings = settings
        self.group = group or settings.consumer_group
        self.instance_id = instance_id or settings.instance_id
        self.until_idle = until_idle
        self.idle_grace_s = idle_grace_s
        self.topic = settings.topics.commands
        self.stop = threading.Event()
        self.checkpoint = Checkpoint(engine, PROCESSOR_POSITIONS, self.group)
        self.assignments = Assignments(
            self.topic,
            self.checkpoint,
            replay.start_time_ms if replay else None,
            replay.end_offsets if replay else None,
        )
        txn_id = f"{self.group}.{self.instance_id}"
        self.outbox = Outbox(clients.transactional_producer(settings, txn_id), txn_id, settings)
        # A replay decides against the completions the store holds; only the group's members follow course progress.
        self.completions = None if replay else CompletionFollower(settings, engine, codec, self.checkpoint)
        self.handler = CommandHandler(
            settings, engine, codec, self.checkpoint, self.assignments, self.outbox, replay, self.completions
        )
        self.health = Health("processor")
        self.producer_fresh = True  # the producer has not been used yet (no rebuild needed before init)

    @property
    def report(self) -> Counter[tuple[str, str]]:
        """A replay's counts by (status, reason)."""
        return self.handler.report

    @property
    def processed(self) -> Counter[str]:
        return self.handler.processed

    def install_signal_handlers(self) -> None:
        install_signal_handlers(self.stop, self.settings.stop_timeout_s)

    def _setup(self) -> None:
        """Before the first poll and after a fatal client state: a usable transactional producer, initialised.

        After a fatal state the assignment is forgotten too: the new consumer rejoins and is assigned afresh
        (its in-doubt batch, if any, re-published from the ledger).
        """
        if not self.producer_fresh:
            txn_id = self.outbox.transactional_id
            self.outbox.replace(clients.transactional_producer(self.settings, txn_id))
            self.assignments.forget()
        self.producer_fresh = False
        clients.check_topic(self.outbox.producer, self.settings, self.topic)  # refused credentials: a sentence
        if self.completions is not None:
            self.completions.check(self.topic)
        self.outbox.init(30)

    def _connect(self) -> Consumer:
        consumer = clients.group_consumer(self.settings, self.group, self.instance_id)
        consumer.subscribe([self.topic], on_assign=self.assignments.on_assign, on_revoke=self.assignments.on_revoke)
        return consumer

    def run(self) -> int:
        """Runs until stopped (or idle with --until-idle); returns the process exit code."""
        loop = RunLoop(
            self._connect,
            self.handler,
            self.checkpoint,
            max_batch=self.settings.max_batch,
            poll_timeout_s=self.settings.batch_timeout_s,
            stop=self.stop,
            backoff=Backoff(first_s=1.0, cap_s=10.0),
            setup=self._setup,
            health=self.health,
            ready=lambda: bool(self.assignments.owned),
            max_rebuilds=self.settings.max_rebuilds,
            settings=self.settings,
        )
        log.info("processor started", extra={"group": self.group, "instance": self.instance_id, "topic": self.topic})
        try:
            loop.run(until_idle=self.until_idle, idle_grace_s=self.idle_grace_s)
        finally:
            self.outbox.close()
            if self.completions is not None:
                self.completions.close()
        if self.until_idle and not self.stop.is_set():
            log.info("caught up, exiting (--until-idle)", extra=dict(self.processed))
        return 0
