"""Publishes one ParticipantCommand per accepted row, then the upload record (the seal).

Commands are keyed by batch id (murmur2, like Java clients) so one batch's commands stay in order;
the seal goes to the same partition after every command, so the processor knows the total even when
the rows came from stdin.  The producer is idempotent (acks=all) and is flushed before the seal.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from enrolment.domain.text import CONTROL_CHARACTER, control_character, control_sentence, printable, refuse_control
from enrolment.files import InputRow, RefusedRow
from enrolment.kafka import clients
from enrolment.messages.codec import Codec
from enrolment.messages.millis import now_ms
from enrolment.settings import Settings


@dataclass
class UploadRequest:
    batch_id: str
    action: str  # ADD | REMOVE
    requested_by: str
    kind: str = "add"
    dry_run: bool = False
    source: str = "BACKEND"
    file_name: str | None = None
    parent_upload_id: str | None = None
    submitted_by: str | None = None  # who sends it: the API's signed-in user, or the operator (cli:LOGIN)
    include_completed: bool = False  # removes apply to participants who completed the course too
    plan_id: str | None = None  # the plan this upload applies (enrolment.domain.plans)
    content_hash: str | None = None  # SHA-256 of the file sent (the resubmission check)
    upload_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        """Refuses (ControlCharacter) a request whose ids or text hold a control character: nothing is published."""
        refuse_control(
            (
                ("batch id", self.batch_id),
                ("requester id", self.requested_by),
                ("submitter id", self.submitted_by),
                ("file name", self.file_name),
                ("parent upload id", self.parent_upload_id),
                ("plan id", self.plan_id),
                ("content hash", self.content_hash),
                ("upload id", self.upload_id),
                ("kind", self.kind),
            )
        )


@dataclass
class Published:
    upload_id: str
    published: int
    refused: list[RefusedRow]
    accepted_rows: dict[int, tuple[str, str]]  # line -> (identifier, id type), for the report
    seconds: float


class Progress:
    """A one-line progress display on a terminal; silent when stderr is not a TTY."""

    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.last = 0.0

    def update(self, n: int, total: int | None = None, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self.last > 0.2:
            self.last = now
            of = f"/{total}" if total else ""
            sys.stderr.write(f"\r{self.label}: {n}{of}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def publish_upload(
    settings: Settings,
    codec: Codec,
    request: UploadRequest,
    rows: Iterable[InputRow | RefusedRow],
    *,
    progress: Progress | None = None,
    keep_rows: bool = True,
    origin: Callable[[int], tuple[str | None, int | None]] | None = None,
    producer: Producer | None = None,
    action_of: Callable[[int], str] | None = None,
) -> Published:
    """Publishes the commands of one upload and its seal; returns what was published and refused.

    ``producer``: a long-lived one shared by a server's calls (already checked), instead of one for this upload.
    ``action_of``: each line's action (ADD/REMOVE), where one upload does both (an applied sync plan).
    """
    started = time.perf_counter()
    if producer is None:
        producer = clients.bulk_producer(settings)
        clients.check_topic(producer, settings, settings.topics.commands)
    on_delivery = clients.Deliveries(settings)
    schema = codec.current["ParticipantCommand"]
    topic = settings.topics.commands
    key = request.batch_id.encode()
    upload_id = request.upload_id
    refused: list[RefusedRow] = []
    accepted: dict[int, tuple[str, str]] = {}
    now = now_ms()
    record: dict[str, Any] = {
        "command_id": "",
        "upload_id": upload_id,
        "batch_id": request.batch_id,
        "action": request.action,
        "identifier": "",
        "id_type": "USER_ID",
        "line": 0,
        "requested_by": request.requested_by,
        "source": request.source,
        "dry_run": request.dry_run,
        "requested_at": now,
        "origin_upload_id": None,
        "origin_line": None,
        "include_completed": request.include_completed,
    }
    n = 0
    produce = producer.produce
    for row in rows:
        if isinstance(row, InputRow) and control_character(row.identifier) is not None:
            row = refused_control(row)  # rows built by the web paths, not read from a file
        if isinstance(row, RefusedRow):
            refused.append(row)
            continue
        record["command_id"] = f"{upload_id}:{row.line}"
        record["identifier"] = row.identifier
        record["id_type"] = row.id_type
        record["line"] = row.line
        if origin is not None:
            record["origin_upload_id"], record["origin_line"] = origin(row.line)
        if action_of is not None:
            record["action"] = action_of(row.line)
        value = codec.encode_with(schema, record)
        try:
            produce(topic, value, key, on_delivery=on_delivery)
        except BufferError:
            clients.produce(producer, topic, value, key, on_delivery=on_delivery)  # waits for room
        n += 1
        if keep_rows:
            accepted[row.line] = (row.identifier, row.id_type)
        if n % 2000 == 0:
            producer.poll(0)
            if progress:
                progress.update(n)
    on_delivery.flush(producer, f"the commands of upload {upload_id}", 120)
    seal = _seal(request, n, refused, now)
    sealed = codec.encode("UploadSummary", seal)
    clients.produce(producer, topic, sealed, key, on_delivery=on_delivery)
    clients.produce(producer, settings.topics.uploads, sealed, key, on_delivery=on_delivery)
    on_delivery.flush(producer, f"the upload record of {upload_id}", 60)
    if progress:
        progress.update(n, force=True)
        progress.done()
    return Published(upload_id, n, refused, accepted, time.perf_counter() - started)


def _seal(request: UploadRequest, published: int, refused: list[RefusedRow], now: int) -> dict[str, Any]:
    """The upload record (UploadSummary, phase PUBLISHED); refused identifiers escaped (printable)."""
    return {
        "upload_id": request.upload_id,
        "batch_id": request.batch_id,
        "phase": "PUBLISHED",
        "kind": request.kind,
        "requested_by": request.requested_by,
        "submitted_by": request.submitted_by,
        "dry_run": request.dry_run,
        "include_completed": request.include_completed,
        "file_name": request.file_name,
        "parent_upload_id": request.parent_upload_id,
        "plan_id": request.plan_id,
        "content_hash": request.content_hash,
        "commands_published": published,
        "refused": [
            {
                "line": r.line,
                "identifier": printable(r.identifier),
                "reason": r.reason,
                "message": r.message,
                "id_type": r.id_type,
            }
            for r in refused
        ],
        "outcomes": {},
        "reasons": {},
        "created_at": now,
        "completed_at": None,
    }


def refused_control(row: InputRow) -> RefusedRow:
    """A row whose id holds a control character, refused with the reason code and a sentence."""
    label = "user id" if row.id_type == "USER_ID" else "state id"
    sentence = control_sentence(label, row.identifier) or ""
    message = f"Line {row.line}: t{sentence[1:]}"
    return RefusedRow(row.line, printable(row.identifier), row.id_type, CONTROL_CHARACTER, message)
