"""What the plan routes share: finding a plan the caller may see, who may decide it, and its JSON shape.

A plan is seen by whoever may see uploads to its batch (its maker, the batch's mentors, the admins and the
implementation team of its state: ``may_view_upload``); anyone else gets 404, as for a plan that does not exist.
Deciding it is a state admin's (``enrolment.domain.plans.approver_problem``): someone who may see the plan but not
decide it gets 403, a plan that is no longer waiting 409.
"""

from __future__ import annotations

from contextlib import closing
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection

from dashboard.web.errors import PageError
from enrolment.domain.access import Viewer, may_view_upload
from enrolment.domain.plans import Problem, approval_problem, approver_problem, decision_problem, effective_status
from enrolment.store import plans as plan_store
from enrolment.store import reference
from enrolment.store.plans import PlanRecord
from producer.plans import upload_json

NEEDS_APPROVAL = {
    "BREAKER": "The sync's removals tripped the circuit breaker: a state admin must approve them.",
    "IMPLEMENTATION_TEAM": "An upload by the implementation team: a state admin other than its maker must approve it.",
}


class UploadBrief(BaseModel):
    upload_id: str
    published: int | None
    complete: bool


class AppliedOut(BaseModel):
    """What this answer's approval (or ``apply``) published: the upload to follow, as the upload API answers."""

    upload_id: str
    published: int
    refused_rows: list[dict[str, Any]]
    changed_since_plan: int = Field(description="Rows left alone: their member was changed since the plan")
    requested_by: str = Field(description="On whose authority the batch changes: the plan's maker")
    submitted_by: str | None = Field(description="Who sent the approval (or the applied sync)")


class PlanOut(BaseModel):
    plan_id: str
    kind: str
    status: str = Field(description="waiting, approved, rejected, applied or expired")
    batch_id: str
    state: str
    counts: dict[str, Any] = Field(description="rows, adds, removes, unchanged, outcomes and reasons")
    made_by: str
    submitted_by: str | None
    made_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    upload_id: str | None = Field(description="The upload that applied it (once approved)")
    applied_at: datetime | None
    file_name: str | None
    needs_approval_reason: str | None = Field(description="BREAKER, IMPLEMENTATION_TEAM, or null")
    needs_approval: str | None = Field(description="The reason as a sentence")
    breaker: dict[str, Any] | None = Field(description="The sync's removals against its thresholds")
    allow_repeat: bool
    include_completed: bool
    batch_size: int = Field(description="The batch's participants when the plan was made")
    content_hash: str | None = Field(description="SHA-256 of the file (the resubmission check)")
    upload: UploadBrief | None = Field(description="The applying upload's progress, once the processor records it")
    applied: AppliedOut | None = Field(None, description="Set on the answer that applied the plan")
    status_url: str
    rows_url: str


def plan_out(
    p: PlanRecord, now: datetime, upload: dict[str, Any] | None = None, applied: AppliedOut | None = None
) -> PlanOut:
    """The plan as the API answers it: the service's shape (``producer.plans.show``) and the API's links."""
    reason = p.needs_approval_reason
    return PlanOut(
        plan_id=p.plan_id,
        kind=p.kind,
        status=effective_status(p.status, p.expires_at, now).value,
        batch_id=p.batch_id,
        state=p.state,
        counts=p.counts,
        made_by=p.made_by,
        submitted_by=p.submitted_by,
        made_at=p.made_at,
        expires_at=p.expires_at,
        decided_by=p.decided_by,
        decided_at=p.decided_at,
        upload_id=p.upload_id,
        applied_at=p.applied_at,
        file_name=p.file_name,
        needs_approval_reason=reason,
        needs_approval=NEEDS_APPROVAL.get(reason or ""),
        breaker=p.breaker,
        allow_repeat=p.allow_repeat,
        include_completed=p.include_completed,
        batch_size=p.batch_size,
        content_hash=p.content_hash,
        upload=None if upload is None else UploadBrief(**upload),
        applied=applied,
        status_url=f"/api/plans/{p.plan_id}",
        rows_url=f"/api/plans/{p.plan_id}/rows.csv",
    )


def unknown(plan_id: str) -> PageError:
    return PageError(404, f"No plan {plan_id} is known.")


def need_plan(conn: Connection, plan_id: str, viewer: Viewer) -> tuple[PlanRecord, datetime]:
    """The plan and the database's clock, if ``viewer`` may see it; 404 otherwise."""
    with closing(conn.connection.cursor()) as cur:
        found = plan_store.get(cur, plan_id)
        batch = None if found is None else reference.batch(cur, found.batch_id)
        now = plan_store.now(cur)
    if found is None or not may_view_upload(viewer, batch, found.made_by):
        raise unknown(plan_id)
    return found, now


def upload_of(conn: Connection, p: PlanRecord) -> dict[str, Any] | None:
    """The applying upload's progress, as ``plan show --json`` gives it."""
    with closing(conn.connection.cursor()) as cur:
        return upload_json(cur, p.upload_id)


def decide_problem(p: PlanRecord, viewer: Viewer, now: datetime) -> Problem | None:
    """Why ``viewer`` may not decide this plan now (None when they may): who first, then the plan's state."""
    return approver_problem(viewer.user, p.state, p.made_by, p.needs_approval_reason) or decision_problem(
        p.plan_id, p.status, p.expires_at, now
    )


def refuse_decision(p: PlanRecord, viewer: Viewer, now: datetime, decision: str = "reject") -> None:
    """Raises the answer to a decision ``viewer`` may not take: 403 (who) or 409 (not waiting, expired); an
    approval also resumes an approved plan whose publishing stopped."""
    who = approver_problem(viewer.user, p.state, p.made_by, p.needs_approval_reason)
    if who is not None:
        raise PageError(403, f"{who.message} Nothing was changed.")
    if decision == "approve":
        state = approval_problem(p.plan_id, p.status, p.expires_at, now, p.upload_id)
    else:
        state = decision_problem(p.plan_id, p.status, p.expires_at, now)
    if state is not None:
        raise PageError(409, state.message)
