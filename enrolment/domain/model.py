"""Value objects of the enrolment domain (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    ADD = "ADD"
    REMOVE = "REMOVE"


class IdType(StrEnum):
    USER_ID = "USER_ID"
    STATE_ID = "STATE_ID"


class Source(StrEnum):
    BACKEND = "BACKEND"
    UI = "UI"


class Outcome(StrEnum):
    APPLIED = "APPLIED"
    SKIPPED = "SKIPPED"
    REJECTED = "REJECTED"


class Reason(StrEnum):
    """One vocabulary for results, reports, summaries and JSON."""

    ENROLLED = "ENROLLED"
    UNENROLLED = "UNENROLLED"
    ALREADY_ENROLLED = "ALREADY_ENROLLED"
    NOT_ENROLLED = "NOT_ENROLLED"
    BATCH_NOT_FOUND = "BATCH_NOT_FOUND"
    BATCH_NOT_INVITE_ONLY = "BATCH_NOT_INVITE_ONLY"
    BATCH_CLOSED = "BATCH_CLOSED"
    NOT_AUTHORIZED = "NOT_AUTHORIZED"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    USER_OTHER_STATE = "USER_OTHER_STATE"
    USER_INACTIVE = "USER_INACTIVE"
    UI_LIMIT_REACHED = "UI_LIMIT_REACHED"


ORG_ADMIN = "ORG_ADMIN"


@dataclass(frozen=True, slots=True)
class Command:
    command_id: str
    upload_id: str
    batch_id: str
    action: Action
    identifier: str
    id_type: IdType
    line: int
    requested_by: str
    source: Source = Source.BACKEND
    dry_run: bool = False
    requested_at_ms: int = 0
    origin_upload_id: str | None = None
    origin_line: int | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    course_id: str
    state: str
    enrollment_type: str  # 'invite-only' | 'open'
    status: str  # 'upcoming' | 'ongoing' | 'ended' | 'cancelled'
    mentors: frozenset[str]
    participant_count: int


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    state: str
    status: str  # 'active' | 'inactive'
    roles: frozenset[str]
    state_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one command; ``change`` is set only when membership really changes."""

    command: Command
    outcome: Outcome
    reason: Reason
    message: str
    user_id: str | None
    course_id: str | None
    participant_count: int | None
    change: Reason | None  # ENROLLED / UNENROLLED, None when nothing changes (or dry run)
