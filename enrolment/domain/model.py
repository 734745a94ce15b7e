"""The enrolment domain's vocabulary and value objects (plain data, no I/O): every enum, limit and status once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Action(StrEnum):
    ADD = "ADD"
    REMOVE = "REMOVE"


class IdType(StrEnum):
    USER_ID = "USER_ID"
    STATE_ID = "STATE_ID"


IdTypeValue = Literal["USER_ID", "STATE_ID"]
"""IdType's values as plain strings, the way file rows and records carry them (a test keeps the two equal)."""


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
    COURSE_COMPLETED = "COURSE_COMPLETED"


# What each reason means for the row: a change, nothing to do, or a refusal (keyed by value, as records carry it).
OUTCOME_OF: Mapping[str, Outcome] = {
    Reason.ENROLLED: Outcome.APPLIED,
    Reason.UNENROLLED: Outcome.APPLIED,
    Reason.ALREADY_ENROLLED: Outcome.SKIPPED,
    Reason.NOT_ENROLLED: Outcome.SKIPPED,
    Reason.BATCH_NOT_FOUND: Outcome.REJECTED,
    Reason.BATCH_NOT_INVITE_ONLY: Outcome.REJECTED,
    Reason.BATCH_CLOSED: Outcome.REJECTED,
    Reason.NOT_AUTHORIZED: Outcome.REJECTED,
    Reason.USER_NOT_FOUND: Outcome.REJECTED,
    Reason.USER_OTHER_STATE: Outcome.REJECTED,
    Reason.USER_INACTIVE: Outcome.REJECTED,
    Reason.UI_LIMIT_REACHED: Outcome.REJECTED,
    Reason.COURSE_COMPLETED: Outcome.REJECTED,
    # Not the processor's: a planned row whose member changed since the plan, left alone when it is applied
    # (enrolment.domain.plans); nothing was wrong with it, so it is skipped, not rejected.
    "CHANGED_SINCE_PLAN": Outcome.SKIPPED,
}


def outcome_of(reason: str) -> Outcome:
    """The outcome a reason belongs to; a reason the rules never give (a file refusal) is a rejection."""
    return OUTCOME_OF.get(reason, Outcome.REJECTED)


# The longest user id or state id anyone may send (file rows, API requests, progress rows).
MAX_ID_LENGTH = 128

ORG_ADMIN = "ORG_ADMIN"
COURSE_MENTOR = "COURSE_MENTOR"
IMPLEMENTATION_TEAM = "IMPLEMENTATION_TEAM"  # serves some states: submits and follows their uploads
ROLES: tuple[str, ...] = (ORG_ADMIN, COURSE_MENTOR, "CONTENT_CREATOR", "PUBLIC", IMPLEMENTATION_TEAM)
USER_STATUSES: tuple[str, ...] = ("active", "inactive")
ENROLLMENT_TYPES: tuple[str, ...] = ("invite-only", "open")
BATCH_STATUSES: tuple[str, ...] = ("upcoming", "ongoing", "ended", "cancelled")
# A batch in one of these can still change participants.
OPEN_STATUSES = frozenset({"upcoming", "ongoing"})


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
    include_completed: bool = False  # a remove applies to participants who completed the course too


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    course_id: str
    state: str
    enrollment_type: str  # one of ENROLLMENT_TYPES
    status: str  # one of BATCH_STATUSES
    mentors: frozenset[str]
    participant_count: int


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    state: str
    status: str  # one of USER_STATUSES
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
