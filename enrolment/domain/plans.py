"""Plans — plan, approve, apply — and batch sync's circuit breaker: the pure rules (standard library only).

A plan is an add, remove or sync evaluated against the store as it is, stored with its rows' expected outcomes,
and applied (published as one upload) only when a state admin approves it. The rules here decide:

- its life: ``waiting`` → ``approved`` → ``applied``, or ``waiting`` → ``rejected`` / ``expired``; a decision
  is taken only on a waiting plan that has not passed its expiry (:func:`decision_problem`);
- who decides (:func:`approver_problem`): an active ORG_ADMIN of the batch's state; a plan made by the
  implementation team needs an admin other than its maker; a state admin confirms their own breaker-tripped
  sync by approving it themselves;
- sync (:func:`sync_diff`): the file's people against the batch's members → adds, removes, unchanged;
- the breaker (:func:`breaker_trips`): removals over a percentage of the batch or over a maximum stop a sync
  until it is approved;
- resubmission (:func:`repeat_problem`): the same file (content hash) for the same batch applied in the last
  30 days is refused unless the caller says it is meant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from enrolment.domain.model import IMPLEMENTATION_TEAM, ORG_ADMIN, User


class PlanStatus(StrEnum):
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    APPLIED = "applied"
    EXPIRED = "expired"


class PlanKind(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    SYNC = "sync"


class ApprovalReason(StrEnum):
    """Why a plan waits for someone else's (or an explicit) approval; None for a plan asked for as such."""

    BREAKER = "BREAKER"  # a sync's removals tripped the breaker
    IMPLEMENTATION_TEAM = "IMPLEMENTATION_TEAM"  # the team's upload, where the state's setting requires approval


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


# The reason code (and outcome SKIPPED, enrolment.domain.model) of a planned row left alone at apply time.
CHANGED_SINCE_PLAN = "CHANGED_SINCE_PLAN"
# Refusal codes of a decision (the CLI exits 1 with the sentence, the API answers 409 / 403).
NOT_WAITING = "PLAN_NOT_WAITING"
PLAN_EXPIRED = "PLAN_EXPIRED"
NOT_STATE_ADMIN = "NOT_STATE_ADMIN"
OWN_TEAM_PLAN = "OWN_TEAM_PLAN"
REPEATED_FILE = "REPEATED_FILE"

DEFAULT_EXPIRY = timedelta(days=7)
REPEAT_WINDOW = timedelta(days=30)
DEFAULT_BREAKER_PERCENT = 10.0
DEFAULT_BREAKER_MAX_REMOVALS = 500


@dataclass(frozen=True, slots=True)
class Problem:
    """Why something may not happen: a reason code and a sentence for the person."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class StateSettings:
    """A state's plan settings (``plan_settings``; a state without a row has these defaults)."""

    team_approval_required: bool = True
    breaker_percent: float = DEFAULT_BREAKER_PERCENT
    breaker_max_removals: int = DEFAULT_BREAKER_MAX_REMOVALS


@dataclass(frozen=True, slots=True)
class Breaker:
    """The thresholds a sync was checked against, and whether it tripped them."""

    removals: int
    batch_size: int
    percent: float
    max_removals: int
    tripped: bool

    def sentence(self) -> str:
        share = f"{100.0 * self.removals / self.batch_size:.1f} %" if self.batch_size else "all"
        limit = f"more than {self.percent:g} % of the batch or more than {self.max_removals:,} people"
        verdict = "tripped" if self.tripped else "not tripped"
        return (
            f"The sync removes {self.removals:,} of {self.batch_size:,} participants ({share}); the breaker "
            f"({limit}) is {verdict}."
        )

    def to_json(self) -> dict[str, object]:
        return {
            "removals": self.removals,
            "batch_size": self.batch_size,
            "percent": self.percent,
            "max_removals": self.max_removals,
            "tripped": self.tripped,
        }


def breaker_trips(removals: int, batch_size: int, percent: float, max_removals: int) -> Breaker:
    """Trips when removals exceed ``percent`` of the batch or ``max_removals`` (a truncated export's signature)."""
    tripped = removals > max_removals or removals * 100.0 > percent * batch_size
    return Breaker(removals, batch_size, percent, max_removals, tripped and removals > 0)


@dataclass(frozen=True, slots=True)
class SyncDiff:
    """A sync: who the file adds, who it removes (members not in it), who stays as they are."""

    adds: frozenset[str]
    removes: frozenset[str]
    unchanged: frozenset[str]


def sync_diff(in_file: Iterable[str], members: Iterable[str]) -> SyncDiff:
    """The file's people (user ids) against the batch's members."""
    wanted = frozenset(in_file)
    current = frozenset(members)
    return SyncDiff(adds=wanted - current, removes=current - wanted, unchanged=wanted & current)


def effective_status(status: str, expires_at: datetime, now: datetime) -> PlanStatus:
    """A waiting plan past its expiry is expired, whether or not the store has said so yet."""
    current = PlanStatus(status)
    if current is PlanStatus.WAITING and now >= expires_at:
        return PlanStatus.EXPIRED
    return current


def decision_problem(plan_id: str, status: str, expires_at: datetime, now: datetime) -> Problem | None:
    """Only a waiting plan before its expiry is approved or rejected (and so applied once)."""
    current = effective_status(status, expires_at, now)
    if current is PlanStatus.EXPIRED:
        return Problem(PLAN_EXPIRED, f"Plan {plan_id} expired on {expires_at:%Y-%m-%d %H:%M %Z}; make a new plan.")
    if current is not PlanStatus.WAITING:
        return Problem(NOT_WAITING, f"Plan {plan_id} is {current.value}, not waiting; it cannot be decided again.")
    return None


def resumable(status: str, upload_id: str | None) -> bool:
    """An approved plan whose publishing stopped: approving it again re-publishes the same upload (same ids)."""
    return status == PlanStatus.APPROVED and upload_id is not None


def approval_problem(
    plan_id: str, status: str, expires_at: datetime, now: datetime, upload_id: str | None
) -> Problem | None:
    """An approval is taken on a waiting plan before its expiry, or resumes an approved one not yet applied."""
    return None if resumable(status, upload_id) else decision_problem(plan_id, status, expires_at, now)


def approver_problem(
    decider: User | None, batch_state: str, made_by: str, needs_approval_reason: str | None
) -> Problem | None:
    """Who may approve or reject: an active ORG_ADMIN of the batch's state — for the team's plan, not its maker."""
    if decider is None or decider.status != "active" or ORG_ADMIN not in decider.roles:
        who = decider.user_id if decider else "this user"
        return Problem(NOT_STATE_ADMIN, f"{who} is not a state admin (ORG_ADMIN) of {batch_state}.")
    if decider.state != batch_state:
        return Problem(
            NOT_STATE_ADMIN,
            f"{decider.user_id} is not a state admin (ORG_ADMIN) of {batch_state} (but of {decider.state}).",
        )
    if needs_approval_reason == ApprovalReason.IMPLEMENTATION_TEAM and decider.user_id == made_by:
        return Problem(OWN_TEAM_PLAN, f"Plan by {made_by} needs a state admin other than its maker.")
    return None


def team_needs_approval(requester: User | None, may_change_batch: bool, settings: StateSettings) -> bool:
    """An upload needs approval when the implementation team sends it (not also an admin or mentor of the batch)."""
    if requester is None or IMPLEMENTATION_TEAM not in requester.roles or may_change_batch:
        return False
    return settings.team_approval_required


@dataclass(frozen=True, slots=True)
class Applied:
    """An earlier upload of the same file to the same batch, as the resubmission sentence names it."""

    upload_id: str
    completed_at: datetime
    by: str
    enrolled: int
    removed: int


def repeat_problem(previous: Applied | None, now: datetime, allow_repeat: bool) -> Problem | None:
    """The same file for the same batch applied within 30 days is refused unless ``allow_repeat``."""
    if previous is None or allow_repeat or now - previous.completed_at > REPEAT_WINDOW:
        return None
    changes = [f"{previous.enrolled:,} enrolled"] if previous.enrolled or not previous.removed else []
    if previous.removed:
        changes.append(f"{previous.removed:,} removed")
    return Problem(
        REPEATED_FILE,
        f"This file was applied as upload {previous.upload_id} on {previous.completed_at:%Y-%m-%d} by "
        f"{previous.by}: {', '.join(changes)}. Nothing was published; send it again with --allow-repeat "
        "(allow_repeat=true) if you mean it.",
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """The same file for the same batch not yet applied: an upload still being processed (``kind`` upload), a
    plan waiting or approved (``kind`` plan), or a plan's upload still being processed (both ids)."""

    kind: str
    upload_id: str | None
    plan_id: str | None
    status: str | None
    since: datetime
    by: str


def pending_problem(pending: Pending | None, allow_repeat: bool) -> Problem | None:
    """The same file for the same batch sent again while the first is in progress or waiting is refused too."""
    if pending is None or allow_repeat:
        return None
    when = f"{pending.since:%Y-%m-%d %H:%M} UTC by {pending.by}"
    if pending.kind == "plan" and pending.upload_id is None:
        what = f"is {pending.status} as plan {pending.plan_id} (made on {when}), not applied yet"
    elif pending.kind == "plan":
        what = f"is in progress as upload {pending.upload_id} of plan {pending.plan_id} (applied on {when})"
    else:
        what = f"is in progress as upload {pending.upload_id} (sent on {when}): the processor has not finished it"
    return Problem(
        REPEATED_FILE,
        f"This file {what}. Nothing was published; send it again with --allow-repeat (allow_repeat=true) "
        "if you mean it.",
    )


def plan_counts(outcomes: Iterable[tuple[str, str, str]]) -> dict[str, object]:
    """Counts of a plan's rows from (action, outcome, reason): adds, removes, unchanged, by outcome and by reason."""
    by_outcome: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    adds = removes = unchanged = rows = 0
    for _action, outcome, reason in outcomes:
        rows += 1
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        by_reason[reason] = by_reason.get(reason, 0) + 1
        if reason == "ENROLLED":
            adds += 1
        elif reason == "UNENROLLED":
            removes += 1
        elif outcome == "SKIPPED":
            unchanged += 1
    return {
        "rows": rows,
        "adds": adds,
        "removes": removes,
        "unchanged": unchanged,
        "outcomes": dict(sorted(by_outcome.items())),
        "reasons": dict(sorted(by_reason.items())),
    }
