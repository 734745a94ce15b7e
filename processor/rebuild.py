"""`participants store rebuild|verify`: the enrolment store restored from (or checked against) Kafka.

The compacted changelog topic holds every participant's current membership (a tombstone when they left);
the results topic holds every command's recorded outcome, which is what makes a replay after a rebuild
change nothing; the uploads topic holds the upload records and summaries.  Reference data (users,
batches) comes back by re-running the imports.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message
from sqlalchemy import Engine

from enrolment.kafka.clients import read_all
from enrolment.messages.codec import Codec, DecodeError
from enrolment.settings import Settings
from enrolment.store.step import copy_cell


class StoreNotEmpty(Exception):
    """Rebuild only restores an empty store (it never merges into live data)."""


@dataclass
class RebuildReport:
    enrolments: int = 0
    ledger_rows: int = 0
    uploads: int = 0
    batches_recounted: int = 0
    undecodable: int = 0


@dataclass
class VerifyReport:
    compared: int = 0
    missing_in_store: list[tuple[str, str]] = field(default_factory=list)
    extra_in_store: list[tuple[str, str]] = field(default_factory=list)
    different: list[tuple[str, str, str]] = field(default_factory=list)
    wrong_counts: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing_in_store or self.extra_in_store or self.different or self.wrong_counts)


def _iso(value: datetime | int) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return datetime.fromtimestamp(value / 1000, UTC).isoformat()


def changelog_state(settings: Settings, codec: Codec, report: RebuildReport | None = None) -> dict[bytes, Any]:
    """The latest value per key of the changelog (None for a tombstone)."""
    state: dict[bytes, Any] = {}
    for m in read_all(settings, settings.topics.enrollments):
        key = m.key()
        if key is None:
            continue
        value = m.value()
        if value is None:
            state[key] = None
            continue
        try:
            _name, rec = codec.decode(value, expect="EnrollmentState")
        except DecodeError:
            if report is not None:
                report.undecodable += 1
            continue
        state[key] = rec
    return state


def _decoded(messages: Iterator[Message], codec: Codec, expect: str, report: RebuildReport) -> Iterator[dict[str, Any]]:
    for m in messages:
        try:
            _name, rec = codec.decode(m.value(), expect=expect)
        except DecodeError:
            report.undecodable += 1
            continue
        yield rec


def rebuild(settings: Settings, engine: Engine, codec: Codec) -> RebuildReport:
    report = RebuildReport()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT (SELECT count(*) FROM enrolments), (SELECT count(*) FROM command_ledger)")
        row = cur.fetchone()
        if row is not None and (row[0] or row[1]):
            raise StoreNotEmpty(
                f"The store is not empty ({row[0]} enrolments, {row[1]} ledger rows); rebuild restores an empty "
                "store only. Empty the enrolments and command_ledger tables (or reset the database) first."
            )
        # Enrolments, from the changelog.
        buf = io.StringIO()
        for rec in changelog_state(settings, codec, report).values():
            if rec is None:
                continue
            buf.write(
                f"{copy_cell(rec['batch_id'])}\t{copy_cell(rec['user_id'])}\t{copy_cell(rec['added_via'])}\t{_iso(rec['enrolled_at'])}\t"
                f"{copy_cell(rec['enrolled_by'])}\t{copy_cell(rec['command_id'])}\n"
            )
            report.enrolments += 1
        buf.seek(0)
        cur.copy_expert(
            "COPY enrolments (batch_id, user_id, added_via, enrolled_at, enrolled_by, command_id) FROM STDIN", buf
        )
        # The command ledger, from the results (the last result of a command id wins; there is only one).
        cur.execute("CREATE TEMP TABLE ledger_in (LIKE command_ledger INCLUDING DEFAULTS) ON COMMIT DROP")
        buf = io.StringIO()
        columns = (
            "command_id, upload_id, batch_id, kafka_partition, kafka_offset, line, identifier, id_type, action, "
            "outcome, reason, message, user_id, participant_count, dry_run, source, requested_by, processed_at, "
            "origin_upload_id, origin_line"
        )
        for r in _decoded(read_all(settings, settings.topics.results), codec, "CommandResult", report):
            buf.write(
                "\t".join(
                    copy_cell(v)
                    for v in (
                        r["command_id"],
                        r["upload_id"],
                        r["batch_id"],
                        -1,
                        -1,
                        r["line"],
                        r["identifier"],
                        r["id_type"],
                        r["action"],
                        r["outcome"],
                        r["reason"],
                        r["message"],
                        r["user_id"],
                        r["participant_count"],
                        r["dry_run"],
                        r["source"],
                        r.get("requested_by", ""),
                        _iso(r["processed_at"]),
                        r["origin_upload_id"],
                        r["origin_line"],
                    )
                )
                + "\n"
            )
        buf.seek(0)
        cur.copy_expert(f"COPY ledger_in ({columns}) FROM STDIN", buf)
        cur.execute(
            f"""
            INSERT INTO command_ledger ({columns}, course_id)
            SELECT DISTINCT ON (l.command_id) {", ".join("l." + c for c in columns.split(", "))}, b.course_id
            FROM ledger_in l LEFT JOIN course_batches b ON b.batch_id = l.batch_id
            ORDER BY l.command_id, l.processed_at DESC
            """
        )
        report.ledger_rows = cur.rowcount
        # Uploads: the producer's record, then the processor's summary.
        for rec in _decoded(read_all(settings, settings.topics.uploads), codec, "UploadSummary", report):
            completed = rec["phase"] == "COMPLETED"
            cur.execute(
                """
                INSERT INTO uploads (upload_id, batch_id, kind, requested_by, dry_run, file_name, parent_upload_id,
                                     commands_published, refused, created_at, completed_at, outcomes, reasons)
                VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
                ON CONFLICT (upload_id) DO UPDATE SET
                    completed_at = coalesce(EXCLUDED.completed_at, uploads.completed_at),
                    outcomes = coalesce(EXCLUDED.outcomes, uploads.outcomes),
                    reasons = coalesce(EXCLUDED.reasons, uploads.reasons)
                """,
                (
                    rec["upload_id"],
                    rec["batch_id"],
                    rec["kind"],
                    rec["requested_by"],
                    rec["dry_run"],
                    rec["file_name"],
                    rec["parent_upload_id"],
                    rec["commands_published"],
                    json.dumps(rec["refused"]),
                    rec["created_at"],
                    rec["completed_at"] if completed else None,
                    json.dumps(rec["outcomes"]) if completed else None,
                    json.dumps(rec["reasons"]) if completed else None,
                ),
            )
            report.uploads += 1 if not completed else 0
        cur.execute(
            """
            UPDATE course_batches b SET participant_count = coalesce(c.n, 0)
            FROM course_batches b2 LEFT JOIN (SELECT batch_id, count(*) AS n FROM enrolments GROUP BY batch_id) c
                 ON c.batch_id = b2.batch_id
            WHERE b.batch_id = b2.batch_id AND b.participant_count IS DISTINCT FROM coalesce(c.n, 0)
            """
        )
        report.batches_recounted = cur.rowcount
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
    return report


def verify(
    settings: Settings, engine: Engine, codec: Codec, batches: set[str] | None = None, limit: int = 50
) -> VerifyReport:
    """Compares enrolments and participant counts with the changelog (optionally for some batches only).

    Lists at most `limit` of each kind of difference.
    """
    report = VerifyReport()
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in changelog_state(settings, codec).values():
        if rec is not None and (batches is None or rec["batch_id"] in batches):
            expected[(rec["batch_id"], rec["user_id"])] = rec
    only = sorted(batches) if batches is not None else None
    raw = engine.raw_connection()
    try:
        named: Any = raw.cursor("verify")  # server-side cursor: the store may be large
        named.itersize = 20000
        cur = named
        cur.execute(
            "SELECT batch_id, user_id, added_via, enrolled_by, command_id FROM enrolments"
            " WHERE %s::text[] IS NULL OR batch_id = ANY(%s::text[])",
            (only, only),
        )
        seen: set[tuple[str, str]] = set()
        for batch_id, user_id, added_via, enrolled_by, command_id in named:
            key = (batch_id, user_id)
            report.compared += 1
            seen.add(key)
            want = expected.get(key)
            if want is None:
                if len(report.extra_in_store) < limit:
                    report.extra_in_store.append(key)
                continue
            for name, have in (("added_via", added_via), ("enrolled_by", enrolled_by), ("command_id", command_id)):
                if want[name] != have and len(report.different) < limit:
                    report.different.append((batch_id, user_id, f"{name}: store {have!r}, changelog {want[name]!r}"))
        cur.close()
        for key in expected.keys() - seen:
            if len(report.missing_in_store) < limit:
                report.missing_in_store.append(key)
        cur = raw.cursor()
        cur.execute(
            """
            SELECT b.batch_id, b.participant_count, count(e.user_id)
            FROM course_batches b LEFT JOIN enrolments e ON e.batch_id = b.batch_id
            WHERE %s::text[] IS NULL OR b.batch_id = ANY(%s::text[])
            GROUP BY b.batch_id HAVING b.participant_count <> count(e.user_id)
            """,
            (only, only),
        )
        report.wrong_counts = [(r[0], int(r[1]), int(r[2])) for r in cur.fetchall()[:limit]]
        raw.commit()
    finally:
        raw.close()
    return report
