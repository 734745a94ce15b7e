"""Replay: re-drive the rules over the commands history in a group of its own, up to where the processor has got.

The running processor is not disturbed: the replay group's end per partition is the main group's stored
position (its committed offset where none is stored). Its positions and Kafka group are deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Engine

from enrolment.kafka import clients
from enrolment.kafka.checkpoint import Checkpoint
from enrolment.messages.codec import Codec
from enrolment.settings import Settings
from enrolment.store.positions import PROCESSOR_POSITIONS
from processor.batch import ReplayRange
from processor.engine import Processor


@dataclass
class ReplayOutcome:
    group: str
    end_offsets: dict[int, int]
    report: Counter[tuple[str, str]]


def main_group_ends(settings: Settings, engine: Engine) -> dict[int, int]:
    """Per partition of the commands topic: where the main group has got to (stored, else committed)."""
    topic = settings.topics.commands
    stored = Checkpoint(engine, PROCESSOR_POSITIONS, settings.consumer_group).load([topic])
    probe = clients.reader(settings, settings.consumer_group)
    try:
        committed = clients.committed_offsets(probe, topic, clients.partitions_of(probe, topic))
    finally:
        probe.close()
    ends: dict[int, int] = {}
    for p, offset in committed.items():
        pos = stored.get((topic, p))
        ends[p] = pos.next_offset if pos is not None else max(offset, 0)
    return ends


def replay(
    settings: Settings,
    engine: Engine,
    codec: Codec,
    *,
    start_time_ms: int | None = None,
    upload_id: str | None = None,
    dry_run: bool = False,
) -> ReplayOutcome:
    """Runs the replay to its end and cleans up its group; returns what it saw per (status, reason)."""
    ends = main_group_ends(settings, engine)
    group = f"replay-{uuid.uuid4().hex[:12]}"
    processor = Processor(
        settings,
        engine,
        codec,
        group=group,
        instance_id=group,
        until_idle=True,
        idle_grace_s=0.3,
        replay=ReplayRange(end_offsets=ends, start_time_ms=start_time_ms, upload_id=upload_id, dry_run=dry_run),
    )
    processor.install_signal_handlers()
    try:
        processor.run()
    finally:
        processor.checkpoint.forget_group()
        clients.admin_client(settings).delete_consumer_groups([group], request_timeout=10)
    return ReplayOutcome(group, ends, processor.report)
