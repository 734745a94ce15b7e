"""Rows the pages read (``queries``, the read model's uploads) as the JSON shapes of ``dashboard.models``."""

from __future__ import annotations

from collections import Counter

from dashboard import queries, rules
from dashboard.models import BatchOut, ParticipantOut, PersonOut, UploadOut
from dashboard.readmodel import UploadRow
from enrolment.messages.millis import from_ms
from producer.follow import UploadStatus


def batch_out(b: queries.BatchInfo) -> BatchOut:
    return BatchOut(
        batch_id=b.batch_id,
        course_id=b.course_id,
        course_name=b.course_name,
        state=b.state,
        enrollment_type=b.enrollment_type,
        status=b.status,
        start_date=b.start_date,
        end_date=b.end_date,
        mentors=list(b.mentors),
        participant_count=b.participant_count,
    )


def participant_out(p: queries.Participant) -> ParticipantOut:
    return ParticipantOut(
        user_id=p.user_id,
        name=p.name,
        state_id=p.state_id,
        enrolled_at=p.enrolled_at,
        added_via=p.added_via,
        progress=p.progress or 0,
        completed_at=p.completed_at,
    )


def person_out(p: queries.Person) -> PersonOut:
    return PersonOut(user_id=p.user_id, name=p.name, state_id=p.state_id)


def upload_status(row: UploadRow) -> UploadStatus:
    """The same summary object as `participants status` and `--wait` use."""
    return UploadStatus(
        upload_id=row.upload_id,
        batch_id=row.batch_id,
        kind=row.kind,
        dry_run=row.dry_run,
        published=row.commands_published,
        processed=row.processed,
        outcomes=Counter(row.outcomes),
        reasons=Counter(row.reasons),
        refused=[dict(r) for r in row.refused],
        completed=row.completed,
        requested_by=row.requested_by,
        submitted_by=row.submitted_by,
    )


def upload_out(row: UploadRow) -> UploadOut:
    data = upload_status(row).to_json()
    return UploadOut(
        **data,
        file_name=row.file_name,
        percent=100 if row.completed else rules.percent(row.processed, row.commands_published),
        created_at=None if row.created_at_ms is None else from_ms(row.created_at_ms),
        completed_at=None if row.completed_at_ms is None else from_ms(row.completed_at_ms),
    )
