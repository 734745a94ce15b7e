"""Following an upload: its results (from the results topic or the store), the summary and the report."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import KafkaException, TopicPartition

from enrolment import csvsafe
from enrolment.domain.model import Outcome, outcome_of
from enrolment.files import RefusedRow
from enrolment.kafka import clients
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.messages.codec import Codec, DecodeError
from enrolment.settings import Settings
from enrolment.store.ledger import outcome_counts
from enrolment.store.uploads import find_upload
from producer.publish import Progress

REASON_WORDS = {
    "ENROLLED": "added",
    "UNENROLLED": "removed",
    "ALREADY_ENROLLED": "already in batch",
    "NOT_ENROLLED": "not in batch",
}


@dataclass
class RowResult:
    line: int
    identifier: str
    id_type: str
    outcome: str
    reason: str
    message: str


@dataclass
class UploadStatus:
    """The summary of an upload, the same for `--wait`, `status`, `--json` and the dashboard."""

    upload_id: str
    batch_id: str | None = None
    kind: str | None = None
    dry_run: bool = False
    published: int | None = None
    processed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    refused: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False
    requested_by: str | None = None  # on whose authority (the processor checks them)
    submitted_by: str | None = None  # who sent it, where that is recorded (None before it was)
    extra: dict[str, Any] = field(default_factory=dict)  # what a caller adds to the JSON (a sync's plan)

    @property
    def rejected_total(self) -> int:
        """Rejected results and refused rows; a row left alone because it changed since its plan is skipped."""
        refused = sum(1 for r in self.refused if outcome_of(str(r["reason"])) is Outcome.REJECTED)
        return self.outcomes.get(Outcome.REJECTED, 0) + refused

    def exit_code(self) -> int:
        if not self.completed:
            return 4
        return 3 if self.rejected_total else 0

    def to_json(self) -> dict[str, Any]:
        refused_reasons = Counter(str(r["reason"]) for r in self.refused)
        reasons = Counter(self.reasons)
        reasons.update(refused_reasons)
        outcomes = Counter(self.outcomes)
        for r in self.refused:
            outcomes[outcome_of(str(r["reason"])).value] += 1
        return {
            "upload_id": self.upload_id,
            "batch_id": self.batch_id,
            "kind": self.kind,
            "requested_by": self.requested_by,
            "submitted_by": self.submitted_by,
            "dry_run": self.dry_run,
            "complete": self.completed,
            "published": self.published,
            "processed": self.processed,
            "refused": len(self.refused),
            "outcomes": dict(sorted(outcomes.items())),
            "reasons": dict(sorted(reasons.items())),
            "processor_outcomes": dict(sorted(self.outcomes.items())),
            "refused_rows": [refused_json(r) for r in self.refused],
        }

    def render(self) -> str:
        what = f"{self.kind or 'upload'} {'(dry run) ' if self.dry_run else ''}for batch {self.batch_id or '?'}"
        published = "unknown yet" if self.published is None else str(self.published)
        state = "complete" if self.completed else "in progress"
        lines = [f"Upload {self.upload_id}: {what}, {state}", f"  commands published: {published}"]
        lines.append(f"  results so far:     {self.processed}")
        for outcome in Outcome:
            parts = [
                (f"{REASON_WORDS[r]} ({r}) {n}" if r in REASON_WORDS else f"{r} {n}")
                for r, n in sorted(self.reasons.items())
                if outcome_of(r) == outcome and n
            ]
            lines.append(
                f"  {outcome:<9} {self.outcomes.get(outcome, 0):>7}" + (f"  {', '.join(parts)}" if parts else "")
            )
        if self.refused:
            by_reason = Counter(str(r["reason"]) for r in self.refused)
            detail = ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items()))
            lines.append(f"  refused before publishing: {len(self.refused)}  {detail}")
            for r in self.refused[:10]:
                lines.append(f"    line {r['line']}: {r['reason']} — {r['message']}")
            if len(self.refused) > 10:
                lines.append(f"    … {len(self.refused) - 10} more (see --report or --json)")
        if not self.completed:
            lines.append(f"  follow it with: participants status {self.upload_id}")
        return "\n".join(lines)


REFUSED_KEYS = ("line", "identifier", "id_type", "reason", "message")


def refused_json(row: dict[str, Any]) -> dict[str, Any]:
    """A refused row in one key order wherever it was read from (the store's jsonb orders keys its own way)."""
    return {k: row.get(k) for k in REFUSED_KEYS}


class ResultFollower:
    """Reads the results topic (read_committed) from where it ends now, so no result of a new upload is missed.

    Create it before publishing.
    """

    def __init__(self, settings: Settings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        # librdkafka's own log lines are noise for a CLI; failures raise below.
        self.consumer = clients.reader(settings, clients.reader_group(settings, "follow"))
        topic = settings.topics.results
        try:
            clients.check_topic(self.consumer, settings, topic)
            parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
            assignment = []
            for p in sorted(parts):
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                assignment.append(TopicPartition(topic, p, high))
        except KafkaException as exc:
            self.consumer.close()
            raise BrokerUnavailable(
                f"Cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc.args[0].str()}"
            ) from None
        except BrokerUnavailable:
            self.consumer.close()
            raise
        self.consumer.assign(assignment)

    def follow(
        self, status: UploadStatus, expected: int, timeout: float, progress: Progress | None = None
    ) -> dict[int, RowResult]:
        """Collects this upload's results until `expected` distinct commands are seen or the timeout passes."""
        rows: dict[int, RowResult] = {}
        deadline = time.monotonic() + timeout
        while len(rows) < expected and time.monotonic() < deadline:
            for m in self.consumer.consume(5000, 0.2):
                if m.error() is not None:
                    continue
                try:
                    _name, rec = self.codec.decode(m.value(), expect="CommandResult")
                except DecodeError:
                    continue
                if rec["upload_id"] != status.upload_id or rec["line"] in rows:
                    continue
                rows[rec["line"]] = RowResult(
                    rec["line"], rec["identifier"], rec["id_type"], rec["outcome"], rec["reason"], rec["message"]
                )
                status.outcomes[rec["outcome"]] += 1
                status.reasons[rec["reason"]] += 1
            status.processed = len(rows)
            if progress:
                progress.update(len(rows), expected)
        status.completed = len(rows) >= expected
        if progress:
            progress.done()
        return rows

    def close(self) -> None:
        self.consumer.close()


def write_report(
    out: TextIO, results: dict[int, RowResult], refused: list[RefusedRow], accepted: dict[int, tuple[str, str]]
) -> int:
    """One CSV line per non-blank input row, by line; rows without a result yet say PENDING."""
    rows: list[RowResult] = list(results.values())
    rows += [RowResult(r.line, r.identifier, r.id_type or "", "REJECTED", r.reason, r.message) for r in refused]
    for line, (identifier, id_type) in accepted.items():
        if line not in results:
            rows.append(RowResult(line, identifier, id_type, "PENDING", "PENDING", "No result yet."))
    rows.sort(key=lambda r: r.line)
    writer = csvsafe.writer(out)
    writer.writerow(["line", "identifier", "id_type", "outcome", "reason", "message"])
    for r in rows:
        writer.writerow([r.line, r.identifier, r.id_type, r.outcome, r.reason, r.message])
    return len(rows)


def status_from_store(cur: Any, upload_id: str) -> UploadStatus | None:
    """The summary as the store knows it now (results so far, published count once the seal is processed)."""
    record = find_upload(cur, upload_id)
    counts = outcome_counts(cur, upload_id)
    if record is None and not counts:
        return None
    status = UploadStatus(upload_id=upload_id)
    if record is not None:
        status.batch_id, status.kind, status.dry_run = record.batch_id, record.kind, record.dry_run
        status.requested_by, status.submitted_by = record.requested_by or None, record.submitted_by
        status.published, status.refused, status.completed = record.published, record.refused, record.completed
    for c in counts:
        status.outcomes[c.outcome] += c.count
        status.reasons[c.reason] += c.count
        status.processed += c.count
        status.batch_id = status.batch_id or c.batch_id
        status.dry_run = status.dry_run or c.dry_run
    return status
