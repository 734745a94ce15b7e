"""JSON shapes of the /api/ routes; FastAPI publishes them in /openapi.json."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class BatchOut(BaseModel):
    batch_id: str
    course_id: str
    course_name: str
    state: str
    enrollment_type: str = Field(description="invite-only or open")
    status: str = Field(description="upcoming, ongoing, ended or cancelled")
    start_date: date | None
    end_date: date | None
    mentors: list[str]
    participant_count: int = Field(description="Participants now, from the dashboard's read model")


class CourseOut(BaseModel):
    course_id: str
    course_name: str
    batches: list[BatchOut]


class ParticipantOut(BaseModel):
    user_id: str
    name: str
    state_id: str | None
    enrolled_at: datetime
    added_via: str = Field(description="ui or backend")
    progress: int = Field(description="Course progress in percent (0 when none was reported yet)")
    completed_at: datetime | None


class ParticipantPageOut(BaseModel):
    batch_id: str
    participant_count: int
    total: int = Field(description="Participants matching q (all of them without q)")
    page: int
    size: int
    pages: int
    sort: str
    dir: str
    q: str
    participants: list[ParticipantOut]


class EditStateOut(BaseModel):
    batch_id: str
    participant_count: int
    limit: int = Field(description="Settings.ui_participant_limit: above it only the backend changes participants")
    enabled: bool = Field(description="Whether the participant controls of Edit Batch can be used")
    limit_reached: bool
    message: str | None = Field(description="Why the controls are disabled, as shown on the page")
    room: int = Field(description="How many participants the UI may still add")


class PersonOut(BaseModel):
    user_id: str
    name: str
    state_id: str | None


class EditOut(EditStateOut):
    members: list[PersonOut] = Field(description="Current participants (empty above the limit)")
    candidates: list[PersonOut] = Field(description="Users the search offers to add (matching q, at most 50)")


class EditIn(BaseModel):
    add: list[str] = Field(default_factory=list, description="User ids to add")
    remove: list[str] = Field(default_factory=list, description="User ids to remove")


class EditResultOut(BaseModel):
    batch_id: str
    upload_ids: list[str] = Field(description="One upload per action (removals first), source UI")
    adds: list[str]
    removes: list[str]


class RefusedOut(BaseModel):
    line: int
    identifier: str
    id_type: str | None = Field(default=None, description="USER_ID or STATE_ID where the row told")
    reason: str
    message: str


class UploadOut(BaseModel):
    upload_id: str
    batch_id: str | None
    kind: str | None
    requested_by: str | None = Field(description="On whose authority: the person the processor checks")
    submitted_by: str | None = Field(
        description="Who sent it: the API's signed-in user, or the operator (cli:LOGIN) of the direct path"
    )
    file_name: str | None
    dry_run: bool
    complete: bool
    published: int | None = Field(description="Commands published (known once the upload record arrives)")
    processed: int
    percent: int
    refused: int
    outcomes: dict[str, int]
    reasons: dict[str, int]
    processor_outcomes: dict[str, int]
    refused_rows: list[RefusedOut]
    created_at: datetime | None
    completed_at: datetime | None


class ProblemOut(BaseModel):
    detail: str
