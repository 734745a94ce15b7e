"""Publishes learners' course progress from a CSV, as the learning platform would (``participants progress publish``).

The file has the columns ``batch_id,user_id,progress,completed_at`` and optionally ``updated_at`` (header
required; its names and the text are read as in every file, see ``enrolment.files``).  Each usable row becomes
one CourseProgress record keyed by batch id (so a batch's updates stay in order) on the course-progress topic,
through an idempotent producer.  Rows without ``updated_at`` are stamped with the time of the run: consumers
keep the newest update per learner, so publishing the same file twice leaves the same values.  Rows that cannot
be used are refused with a reason; they never stop the others.  A header problem stops the run before anything
is published; a problem found further down (invalid UTF-8, broken CSV quoting) stops it there, and the rows
before it stay published (publishing the file again after fixing it is harmless).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from enrolment.domain.model import MAX_ID_LENGTH
from enrolment.domain.text import CONTROL_CHARACTER, control_sentence
from enrolment.files import BrokenCsv, NotUtf8, csv_records, locate_columns
from enrolment.kafka import clients
from enrolment.messages.codec import Codec
from enrolment.messages.millis import now_ms as clock_ms
from enrolment.messages.millis import to_ms
from enrolment.settings import Settings

REQUIRED = ("batch_id", "user_id", "progress", "completed_at")
COLUMNS = (*REQUIRED, "updated_at")


class ProgressFileError(Exception):
    """The file as a whole cannot be used (no header, a missing column, not UTF-8): nothing is published."""


@dataclass(frozen=True, slots=True)
class ProgressRow:
    line: int
    batch_id: str
    user_id: str
    progress: int
    completed_at_ms: int | None
    updated_at_ms: int | None


@dataclass(frozen=True, slots=True)
class RefusedProgress:
    line: int
    reason: str
    message: str


@dataclass
class ProgressReport:
    topic: str
    published: int = 0
    refused: list[RefusedProgress] = field(default_factory=list)
    seconds: float = 0.0


def _timestamp(text: str) -> int:
    """ISO 8601 (date or date-time, 'Z' or an offset; no offset means UTC) to epoch milliseconds."""
    return to_ms(datetime.fromisoformat(text))


def parse_row(line: int, values: dict[str, str]) -> ProgressRow | RefusedProgress:
    """Validates one row (pure): ids present and short, progress a whole percent 0..100, valid timestamps."""
    for name in ("batch_id", "user_id", "progress", "completed_at", "updated_at"):
        control = control_sentence(name, values.get(name, ""))
        if control is not None:
            return RefusedProgress(line, CONTROL_CHARACTER, control)
    batch_id = values.get("batch_id", "").strip()
    user_id = values.get("user_id", "").strip()
    for name, value in (("batch_id", batch_id), ("user_id", user_id)):
        if not value:
            return RefusedProgress(line, "EMPTY_FIELD", f"{name} is empty.")
        if len(value) > MAX_ID_LENGTH:
            return RefusedProgress(line, "TOO_LONG", f"{name} is longer than {MAX_ID_LENGTH} characters.")
    text = values.get("progress", "").strip().removesuffix("%").strip()
    try:
        progress = int(text)
    except ValueError:
        return RefusedProgress(line, "BAD_PROGRESS", f"progress {text!r} is not a whole number.")
    if not 0 <= progress <= 100:
        return RefusedProgress(line, "BAD_PROGRESS", f"progress {progress} is not between 0 and 100.")
    stamps: dict[str, int | None] = {}
    for name in ("completed_at", "updated_at"):
        raw = values.get(name, "").strip()
        try:
            stamps[name] = _timestamp(raw) if raw else None
        except ValueError:
            return RefusedProgress(line, "BAD_TIMESTAMP", f"{name} {raw!r} is not an ISO 8601 date or time.")
    return ProgressRow(line, batch_id, user_id, progress, stamps["completed_at"], stamps["updated_at"])


def read_progress(stream: BinaryIO) -> Iterator[ProgressRow | RefusedProgress]:
    """Rows of the file one by one (flat memory apart from the duplicate check); raises ProgressFileError."""
    try:
        records = csv_records(stream)
        header = next(records, None)
        if header is None:
            raise ProgressFileError("The file is empty; it needs the header batch_id,user_id,progress,completed_at.")
        found, _repeated = locate_columns(header[1], COLUMNS)  # the first of repeated columns is used
        missing = [c for c in REQUIRED if c not in found]
        if missing:
            raise ProgressFileError(
                f"The header has no column {', '.join(missing)}; it needs batch_id,user_id,progress,completed_at "
                "(and may have updated_at)."
            )
        width = len(header[1])
        seen: dict[tuple[str, str], int] = {}
        for line, values in records:
            if len(values) != width:
                yield RefusedProgress(line, "BAD_ROW", f"the row has {len(values)} values, the header {width} columns.")
                continue
            row = parse_row(line, {column: values[i] for column, i in found.items()})
            if isinstance(row, ProgressRow):
                first = seen.setdefault((row.batch_id, row.user_id), line)
                if first != line:
                    yield RefusedProgress(
                        line, "DUPLICATE", f"{row.user_id} in {row.batch_id} already appears on line {first}."
                    )
                    continue
            yield row
    except NotUtf8:
        raise ProgressFileError("The file is not UTF-8 text.") from None
    except BrokenCsv as exc:
        raise ProgressFileError(f"The file is not valid CSV near line {exc.line}: {exc.detail}.") from None


def progress_record(row: ProgressRow, default_updated_at_ms: int) -> dict[str, Any]:
    return {
        "batch_id": row.batch_id,
        "user_id": row.user_id,
        "progress": row.progress,
        "completed_at": row.completed_at_ms,
        "updated_at": row.updated_at_ms if row.updated_at_ms is not None else default_updated_at_ms,
    }


def publish_progress(
    settings: Settings, codec: Codec, rows: Iterable[ProgressRow | RefusedProgress], *, now_ms: int | None = None
) -> ProgressReport:
    """Publishes every usable row (keyed by batch id) and waits for the broker to acknowledge all of them."""
    started = time.perf_counter()
    topic = settings.topics.course_progress
    report = ProgressReport(topic=topic)
    producer = clients.bulk_producer(settings)
    clients.check_topic(producer, settings, topic)
    on_delivery = clients.Deliveries(settings)

    schema = codec.current["CourseProgress"]
    stamp = now_ms if now_ms is not None else clock_ms()
    try:
        for row in rows:
            if isinstance(row, RefusedProgress):
                report.refused.append(row)
                continue
            value = codec.encode_with(schema, progress_record(row, stamp))
            clients.produce(producer, topic, value, row.batch_id.encode(), on_delivery=on_delivery)
            report.published += 1
            if report.published % 5000 == 0:
                producer.poll(0)
    finally:
        on_delivery.flush(producer, "the progress updates", 120)
    report.seconds = time.perf_counter() - started
    return report


def format_report(report: ProgressReport, shown: int = 10) -> str:
    lines = [
        f"Published {report.published} progress update{'s' if report.published != 1 else ''} to {report.topic}"
        + (f"; {len(report.refused)} rows refused." if report.refused else ".")
    ]
    for r in report.refused[:shown]:
        lines.append(f"  line {r.line}: {r.reason} — {r.message}")
    if len(report.refused) > shown:
        lines.append(f"  … {len(report.refused) - shown} more")
    return "\n".join(lines)
