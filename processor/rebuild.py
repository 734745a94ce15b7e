"""`participants store rebuild|verify`: the enrolment store restored from (or checked against) Kafka.

The compacted changelog topic holds every participant's current membership (a tombstone when they left);
the results topic holds every command's recorded outcome, which is what makes a replay after a rebuild
change nothing; the uploads topic holds the upload records and summaries.  Reference data (users,
batches) comes back by re-running the imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message
from sqlalchemy import Engine

from enrolment.kafka.clients import read_all
from enrolment.messages.codec import Codec, DecodeError
from enrolment.settings import Settings
from enrolment.store import completions, restore
from enrolment.store.completions import CompletionKey


class StoreNotEmpty(Exception):
    """Rebuild only restores an empty store (it never merges into live data)."""


@dataclass
class RebuildReport:
    enrolments: int = 0
    ledger_rows: int = 0
    uploads: int = 0
    completions: int = 0
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


def completions_from_progress(settings: Settings, codec: Codec, report: RebuildReport) -> dict[CompletionKey, int]:
    """Every completion the course-progress topic reports (the earliest per learner), for the completion rule."""
    found: dict[CompletionKey, int] = {}
    for rec in _decoded(read_all(settings, settings.topics.course_progress), codec, "CourseProgress", report):
        completion = completions.completion_of(rec)
        if completion is not None:
            completions.merge(found, *completion)
    return found


def rebuild(settings: Settings, engine: Engine, codec: Codec) -> RebuildReport:
    """One transaction: enrolments from the changelog, the ledger from the results, uploads, completions from
    course progress, then the counts."""
    report = RebuildReport()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        enrolments, ledger = restore.counts(cur)
        if enrolments or ledger:
            raise StoreNotEmpty(
                f"The store is not empty ({enrolments} enrolments, {ledger} ledger rows); rebuild restores an empty "
                "store only. Empty the enrolments and command_ledger tables (or reset the database) first."
            )
        states = [rec for rec in changelog_state(settings, codec, report).values() if rec is not None]
        report.enrolments = restore.copy_enrolments(cur, states)
        results = _decoded(read_all(settings, settings.topics.results), codec, "CommandResult", report)
        report.ledger_rows = restore.copy_ledger(cur, results)
        for rec in _decoded(read_all(settings, settings.topics.uploads), codec, "UploadSummary", report):
            report.uploads += 1 if restore.put_upload(cur, rec) else 0
        report.completions = completions.record(cur, completions_from_progress(settings, codec, report))
        report.batches_recounted = restore.recount_batches(cur)
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
        seen: set[tuple[str, str]] = set()
        for batch_id, user_id, added_via, enrolled_by, command_id in restore.enrolment_rows(raw, only):
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
        for key in expected.keys() - seen:
            if len(report.missing_in_store) < limit:
                report.missing_in_store.append(key)
        report.wrong_counts = restore.wrong_counts(raw.cursor(), only, limit)
        raw.commit()
    finally:
        raw.close()
    return report
