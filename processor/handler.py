"""The processor's handler on the shared run loop: apply a batch of commands exactly once, then publish it.

Per batch: one PostgreSQL transaction (position compare-and-set first, then the set-based step, the dead
letters and the upload seals), then one Kafka transaction (every output plus the consumer offsets). A
replay runs the same handler in a group of its own, bounded by where the main group has got to.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from sqlalchemy import Engine

from enrolment.domain.model import Action
from enrolment.domain.outputs import UploadInfo
from enrolment.kafka.checkpoint import Checkpoint, Outbox
from enrolment.kafka.loop import Rewind, at_end
from enrolment.kafka.poison import apply_isolating_refused
from enrolment.messages.codec import Codec
from enrolment.messages.millis import now_ms
from enrolment.settings import Settings
from enrolment.store.db import rollback
from enrolment.store.dead_letters import record_dead_letters
from enrolment.store.positions import Moves, PositionConflict
from enrolment.store.step import StepResult, apply_commands, load_in_doubt, seal_upload
from processor import metrics
from processor.assignment import Assignments
from processor.batch import Decoded, ReplayRange, decode_batch
from processor.completions import CompletionFollower, Pending, record_pending
from processor.emit import outputs_for

log = logging.getLogger("processor")


class Failpoint:
    """Test hook: PARTICIPANTS_FAILPOINT=NAME:N kills the process (like SIGKILL) at the N-th pass of NAME.

    Lets tests crash deterministically between the database commit and the Kafka commit. NAME:N:sleep=S stalls
    there once for S seconds instead (a handler stuck past max.poll.interval.ms, without killing anything).
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.target, _, rest = spec.partition(":")
        nth, _, mode = rest.partition(":")
        self.nth = int(nth or "1")
        self.sleep_s = float(mode.removeprefix("sleep=")) if mode.startswith("sleep=") else None
        self.hits = 0

    def __call__(self, name: str) -> None:
        if not self.spec or name != self.target:
            return
        self.hits += 1
        if self.hits == self.nth and self.sleep_s is not None:
            log.warning("failpoint reached, stalling", extra={"failpoint": self.spec, "seconds": self.sleep_s})
            time.sleep(self.sleep_s)
        elif self.hits >= self.nth and self.sleep_s is None:
            log.warning("failpoint reached, exiting abruptly", extra={"failpoint": self.spec})
            os._exit(137)


@dataclass
class Applied:
    """What the database transaction of one batch did."""

    step: StepResult
    completed: list[UploadInfo]
    moves: Moves
    timings: dict[str, float] = field(default_factory=dict)


class CommandHandler:
    """Applies commands; a `Handler` for `enrolment.kafka.loop.RunLoop`."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        codec: Codec,
        checkpoint: Checkpoint,
        assignments: Assignments,
        outbox: Outbox,
        replay: ReplayRange | None = None,
        completions: CompletionFollower | None = None,
    ) -> None:
        self.settings = settings
        self.completions = completions  # the completion rule's input (None for a replay: the store's as is)
        self.engine = engine
        self.codec = codec
        self.checkpoint = checkpoint
        self.assignments = assignments
        self.outbox = outbox
        self.replay = replay
        self.topic = settings.topics.commands
        self.group = checkpoint.group
        self.processed = Counter[str]()
        self.report: Counter[tuple[str, str]] = Counter()  # (status, reason) for replays
        self.failpoint = Failpoint(settings.failpoint)

    # ------------------------------------------------------------------ the sink contract
    def prepare(self, consumer: Consumer) -> None:
        self.assignments.reassign_if_needed(consumer)
        self._recover_pending(consumer)
        if self.completions is not None:
            self.completions.sync(self.assignments.owned)

    def wants(self, msg: Message) -> bool:
        p = msg.partition()
        if p is None or p not in self.assignments.owned:
            return False
        return self.replay is None or int(msg.offset() or 0) < self.replay.end_offsets.get(p, 0)

    def handle(self, consumer: Consumer, msgs: list[Message]) -> None:
        # An assignment arrives inside consume(), with messages in the same call: its in-doubt batch is
        # re-published before anything newer, and nothing is applied while a re-seek is owed.
        self._recover_pending(consumer)
        if self.assignments.needs_reassign:
            raise Rewind("positions must be re-read before applying")
        metrics.note_pending(msgs)
        self._handle_part(consumer, msgs, {})

    def _handle_part(self, consumer: Consumer, msgs: list[Message], refused: dict[tuple[int, int], str]) -> None:
        """Applies ``msgs``, splitting out a message PostgreSQL refuses (enrolment.kafka.poison) as a dead letter."""

        def after_part() -> None:
            if self.assignments.needs_reassign:
                raise Rewind("a part of a split batch was not published; re-seeking")

        apply_isolating_refused(
            msgs,
            lambda part: self._handle_batch(consumer, part, refused),
            refused,
            lambda m: (int(m.partition() or 0), int(m.offset() or 0)),
            after_part,
        )

    def _handle_batch(self, consumer: Consumer, msgs: list[Message], refused: dict[tuple[int, int], str]) -> None:
        started = time.perf_counter()
        ts = now_ms()
        decoded = decode_batch(msgs, self.codec, self.topic, self.replay, ts, refused)
        if self.replay is not None and decoded.letters:
            # History was dead-lettered by the processor when it first came by; a replay only counts it.
            self.report[("dead-lettered", "UNDECODABLE")] += len(decoded.letters)
            decoded.letters = []
        t_decoded = time.perf_counter()
        pending = self._completions_for(decoded)
        applied = self._apply(decoded, self.checkpoint.moves(msgs), ts, pending)
        applied.timings["decode"] = t_decoded - started
        applied.timings["database"] = time.perf_counter() - t_decoded
        self.checkpoint.advance(applied.moves)
        if self.completions is not None:
            self.completions.applied(pending)
        self.failpoint("after-db-commit")
        self._count_replay(applied.step)
        self._publish(consumer, applied, decoded)
        metrics.note_applied(applied.moves)
        metrics.update_lag(consumer, self.topic, self.assignments.owned, self.checkpoint)
        self._observe(applied, decoded, msgs, time.perf_counter() - started)

    def caught_up(self, consumer: Consumer) -> bool:
        """The whole group is caught up (own partitions by stored position, others by committed offset)."""
        owned = self.assignments.owned
        if not owned:
            return False
        if self.replay is not None:
            return all(self._replay_done(consumer, p) for p in owned)
        md = consumer.list_topics(self.topic, timeout=10)
        everyone = sorted(md.topics[self.topic].partitions)
        others = [TopicPartition(self.topic, p) for p in everyone if p not in owned]
        committed = {tp.partition: tp.offset for tp in consumer.committed(others, timeout=10)} if others else {}
        mine = [(self.topic, p) for p in sorted(owned)]
        # Cached watermarks answer cheaply first; only a "yes" is confirmed with the broker.
        if not at_end(consumer, self.checkpoint, mine, cached=True):
            return False
        if not at_end(consumer, self.checkpoint, mine):
            return False
        for p, done in committed.items():
            _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            if high > 0 and done < high:
                return False
        return self.completions is None or self.completions.caught_up()

    def idle(self, consumer: Consumer) -> None:
        metrics.update_lag(consumer, self.topic, self.assignments.owned, self.checkpoint)
        if self.completions is not None:
            self.completions.catch_up()

    def failed(self, exc: Exception) -> bool:
        """Any failure: re-read positions and seek before the next poll; keep the consumer (and the group)."""
        self.assignments.needs_reassign = True
        if self.completions is not None:
            self.completions.dirty = True
        return False

    def _completions_for(self, decoded: Decoded) -> Pending:
        """Course progress up to now on the partitions of this poll's removes (processor.completions: ordering)."""
        if self.completions is None:
            return Pending()
        self.completions.sync(self.assignments.owned)
        removes = {p.partition for p in decoded.commands if p.command.action is Action.REMOVE}
        return self.completions.read_to_end(removes) if removes else self.completions.fetched()

    # ------------------------------------------------------------------ the two transactions
    def _apply(self, decoded: Decoded, moves: Moves, ts: int, pending: Pending) -> Applied:
        dry = self.replay is not None and self.replay.dry_run
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            record_pending(cur, self.checkpoint, pending, moves, dry)
            step = apply_commands(cur, decoded.commands, self.settings.ui_participant_limit, ts, self.topic, self.group)
            record_dead_letters(cur, decoded.letters)
            completed = [
                u
                for rec, p, off in decoded.seals
                if (u := seal_upload(cur, rec, p, off, ts, self.topic, self.group)) is not None
            ]
            if dry:
                raw.rollback()  # a dry-run replay reports what would happen and keeps nothing
            else:
                raw.commit()
        except PositionConflict as exc:
            raw.rollback()
            self._unsettle()
            log.warning("position conflict, another owner applied these partitions", extra={"error": str(exc)})
            self.assignments.needs_reassign = True
            raise Rewind(str(exc)) from None
        except BaseException:
            rollback(raw)
            self._unsettle()
            raise
        finally:
            raw.close()
        return Applied(step, completed, moves)

    def _unsettle(self) -> None:
        if self.completions is not None:
            self.completions.dirty = True  # what it read was not recorded: read it again

    def _publish(self, consumer: Consumer, applied: Applied, decoded: Decoded) -> None:
        if self.replay is not None and self.replay.dry_run:
            return
        t0 = time.perf_counter()
        out = outputs_for(self.codec, self.settings.topics, applied.step.recorded, applied.completed, decoded.letters)
        t1 = time.perf_counter()
        offsets = {key: new.next_offset for key, (_old, new) in applied.moves.items()}
        if not self.outbox.publish(consumer, out, offsets):
            self.assignments.needs_reassign = True
        applied.timings["encode"] = t1 - t0
        applied.timings["kafka"] = time.perf_counter() - t1

    def _recover_pending(self, consumer: Consumer) -> None:
        for p, (start, end) in sorted(self.assignments.take_recovery().items()):
            self._recover(consumer, p, start, end)

    def _recover(self, consumer: Consumer, p: int, start: int, end: int) -> None:
        raw = self.engine.raw_connection()
        try:
            doubt = load_in_doubt(raw.cursor(), self.group, self.topic, p, start, end)
            raw.commit()
        finally:
            raw.close()
        out = outputs_for(self.codec, self.settings.topics, doubt.recorded, doubt.uploads, doubt.dead_letters)
        if not self.outbox.publish(consumer, out, {(self.topic, p): end}):
            self.assignments.needs_reassign = True
            return
        log.info(
            "re-published the outputs of an in-doubt batch",
            extra={"partition": p, "offsets": [start, end], "messages": len(out)},
        )

    # ------------------------------------------------------------------ replay bounds and reports
    def _replay_done(self, consumer: Consumer, p: int) -> bool:
        assert self.replay is not None
        end = self.replay.end_offsets.get(p, 0)
        held = self.checkpoint.next_offset((self.topic, p))
        if end <= 0 or (held is not None and held >= end):
            return True
        low, _high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
        position = consumer.position([TopicPartition(self.topic, p)])[0].offset
        return max(position, low) >= end if position >= 0 else low >= end

    def _count_replay(self, step: StepResult) -> None:
        if self.replay is None:
            return
        for reason in step.recorded_reasons:
            self.report[("already applied", reason)] += 1
        for r in step.recorded:
            self.report[("would apply" if self.replay.dry_run else "applied now", r.reason)] += 1

    def _observe(self, applied: Applied, decoded: Decoded, msgs: list[Message], elapsed: float) -> None:
        step = applied.step
        metrics.observe_batch(step.recorded, step.duplicates, elapsed, [d.reason for d in decoded.letters])
        for r in step.recorded:
            self.processed[r.outcome] += 1
        self.processed["DUPLICATE"] += step.duplicates
        log.info("batch applied", extra=_batch_log(applied, decoded, msgs, elapsed))
        for u in applied.completed:
            log.info(
                "upload completed",
                extra={"upload_id": u.upload_id, "batch_id": u.batch_id, "outcomes": dict(u.outcomes)},
            )


def _batch_log(applied: Applied, decoded: Decoded, msgs: list[Message], elapsed: float) -> dict[str, Any]:
    step, t = applied.step, applied.timings
    return {
        "offsets": {
            p: [old_new[1].batch_start, old_new[1].next_offset - 1] for (_t, p), old_new in applied.moves.items()
        },
        "commands": len(decoded.commands),
        "duplicates": step.duplicates,
        "dead_letters": len(decoded.letters),
        "uploads": sorted({r.upload_id for r in step.recorded})[:20],
        "batches": sorted({r.batch_id for r in step.recorded})[:20],
        "completed_uploads": [u.upload_id for u in applied.completed],
        "seconds": round(elapsed, 4),
        "phases": {k: round(t.get(k, 0.0), 4) for k in ("decode", "database", "encode", "kafka")},
    }
