"""The enrolment rules, checked in a fixed order: the first that fails decides the outcome.

`evaluate` applies a sequence of commands against a snapshot of the reference data and the
current membership, in order, so an add followed by a remove of the same person ends with the
person out. Dry-run commands are evaluated the same way but change nothing, not even the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from enrolment.domain.model import (
    IMPLEMENTATION_TEAM,
    OPEN_STATUSES,
    ORG_ADMIN,
    Action,
    Batch,
    Command,
    Decision,
    IdType,
    Outcome,
    Reason,
    Source,
    User,
)


@dataclass
class Snapshot:
    """What the rules need to know, looked up in bulk by the store before evaluation."""

    batches: Mapping[str, Batch]
    users_by_id: Mapping[str, User]
    users_by_state_id: Mapping[tuple[str, str], User]  # (state, state id) -> user
    requesters: Mapping[str, User] = field(default_factory=dict)  # requesting admins/mentors, with roles
    served: Mapping[str, frozenset[str]] = field(default_factory=dict)  # implementation team member -> states
    members: set[tuple[str, str]] = field(default_factory=set)  # (batch id, user id) currently enrolled
    completed: set[tuple[str, str]] = field(default_factory=set)  # (batch id, user id) who completed the course
    counts: dict[str, int] = field(default_factory=dict)  # batch id -> participant count

    def count(self, batch_id: str) -> int:
        if batch_id not in self.counts:
            batch = self.batches.get(batch_id)
            self.counts[batch_id] = batch.participant_count if batch else 0
        return self.counts[batch_id]


def _id_label(cmd: Command) -> str:
    return "user id" if cmd.id_type is IdType.USER_ID else "state id"


def _reject(
    cmd: Command, reason: Reason, message: str, user: User | None = None, batch: Batch | None = None
) -> Decision:
    return Decision(
        command=cmd,
        outcome=Outcome.REJECTED,
        reason=reason,
        message=message,
        user_id=user.user_id if user else None,
        course_id=batch.course_id if batch else None,
        participant_count=None,
        change=None,
    )


def check_batch(cmd: Command, batch: Batch | None) -> Decision | None:
    if batch is None:
        return _reject(cmd, Reason.BATCH_NOT_FOUND, f"Batch {cmd.batch_id} does not exist.")
    if batch.enrollment_type != "invite-only":
        return _reject(
            cmd,
            Reason.BATCH_NOT_INVITE_ONLY,
            f"Batch {batch.batch_id} is {batch.enrollment_type}; only invite-only batches take uploaded participants.",
            batch=batch,
        )
    if batch.status not in OPEN_STATUSES:
        return _reject(cmd, Reason.BATCH_CLOSED, f"Batch {batch.batch_id} is {batch.status}.", batch=batch)
    return None


def is_authorized(requester: User | None, batch: Batch) -> bool:
    """ORG_ADMIN of the batch's state, or a mentor of the batch."""
    if requester is None or requester.status != "active":
        return False
    if ORG_ADMIN in requester.roles and requester.state == batch.state:
        return True
    return requester.user_id in batch.mentors


def may_request(requester: User | None, batch: Batch, serves: frozenset[str] = frozenset()) -> bool:
    """:func:`is_authorized`, or the implementation team serving the batch's state (uploads through the API)."""
    if is_authorized(requester, batch):
        return True
    return (
        requester is not None
        and requester.status == "active"
        and IMPLEMENTATION_TEAM in requester.roles
        and batch.state in serves
    )


def resolve(cmd: Command, batch: Batch, snapshot: Snapshot) -> User | None:
    if cmd.id_type is IdType.USER_ID:
        return snapshot.users_by_id.get(cmd.identifier)
    return snapshot.users_by_state_id.get((batch.state, cmd.identifier))


def decide(cmd: Command, snapshot: Snapshot, ui_limit: int) -> Decision:
    """Evaluates one command against the snapshot and, unless dry run, applies it to the snapshot."""
    batch = snapshot.batches.get(cmd.batch_id)
    rejected = check_batch(cmd, batch)
    if rejected is not None:
        return rejected
    assert batch is not None
    serves = snapshot.served.get(cmd.requested_by, frozenset())
    if not may_request(snapshot.requesters.get(cmd.requested_by), batch, serves):
        return _reject(
            cmd,
            Reason.NOT_AUTHORIZED,
            f"{cmd.requested_by} is neither an ORG_ADMIN of {batch.state} nor a mentor of batch {batch.batch_id}.",
            batch=batch,
        )
    user = resolve(cmd, batch, snapshot)
    if user is None:
        where = "" if cmd.id_type is IdType.USER_ID else f" in state {batch.state}"
        return _reject(
            cmd, Reason.USER_NOT_FOUND, f"No user has {_id_label(cmd)} {cmd.identifier}{where}.", batch=batch
        )
    if user.state != batch.state:
        return _reject(
            cmd,
            Reason.USER_OTHER_STATE,
            f"User {user.user_id} belongs to state {user.state}, the batch to {batch.state}.",
            user,
            batch,
        )
    key = (batch.batch_id, user.user_id)
    enrolled = key in snapshot.members
    count = snapshot.count(batch.batch_id)
    if cmd.action is Action.REMOVE:
        if not enrolled:
            return Decision(
                cmd,
                Outcome.SKIPPED,
                Reason.NOT_ENROLLED,
                f"User {user.user_id} is not in batch {batch.batch_id}.",
                user.user_id,
                batch.course_id,
                count,
                None,
            )
        if key in snapshot.completed and not cmd.include_completed:
            return _completed(cmd, user, batch)
        # An inactive user who is in the batch is still removed.
        if not cmd.dry_run:
            snapshot.members.discard(key)
            snapshot.counts[batch.batch_id] = count - 1
        return Decision(
            cmd,
            Outcome.APPLIED,
            Reason.UNENROLLED,
            f"User {user.user_id} was removed from batch {batch.batch_id}."
            if not cmd.dry_run
            else f"User {user.user_id} would be removed from batch {batch.batch_id}.",
            user.user_id,
            batch.course_id,
            count - 1,
            None if cmd.dry_run else Reason.UNENROLLED,
        )
    if user.status != "active":
        return _reject(cmd, Reason.USER_INACTIVE, f"User {user.user_id} is inactive.", user, batch)
    if enrolled:
        return Decision(
            cmd,
            Outcome.SKIPPED,
            Reason.ALREADY_ENROLLED,
            f"User {user.user_id} is already in batch {batch.batch_id}.",
            user.user_id,
            batch.course_id,
            count,
            None,
        )
    if cmd.source is Source.UI and count + 1 > ui_limit:
        return _reject(
            cmd,
            Reason.UI_LIMIT_REACHED,
            f"Batch {batch.batch_id} has {count} participants; adding from the UI is limited to {ui_limit}. "
            "Please contact your state admin to add or remove participants from this batch.",
            user,
            batch,
        )
    if not cmd.dry_run:
        snapshot.members.add(key)
        snapshot.counts[batch.batch_id] = count + 1
    return Decision(
        cmd,
        Outcome.APPLIED,
        Reason.ENROLLED,
        f"User {user.user_id} was added to batch {batch.batch_id}."
        if not cmd.dry_run
        else f"User {user.user_id} would be added to batch {batch.batch_id}.",
        user.user_id,
        batch.course_id,
        count + 1,
        None if cmd.dry_run else Reason.ENROLLED,
    )


def _completed(cmd: Command, user: User, batch: Batch) -> Decision:
    """Sunbird refuses to unenrol a learner who completed the course: it would orphan their completion."""
    return _reject(
        cmd,
        Reason.COURSE_COMPLETED,
        f"User {user.user_id} has completed the course of batch {batch.batch_id}; "
        "remove them with --include-completed (include_completed=true) if you mean it.",
        user,
        batch,
    )


def evaluate(commands: Iterable[Command], snapshot: Snapshot, ui_limit: int) -> list[Decision]:
    """Decides each command in order, threading membership changes through the snapshot."""
    return [decide(cmd, snapshot, ui_limit) for cmd in commands]
