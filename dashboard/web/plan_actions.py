"""Making and deciding plans from the web: the service (``producer.plans``) called as the signed-in person.

The file comes as the upload API takes it (the raw body) or as a multipart form's ``file`` field; it is
spooled to a temporary file, checked whole, hashed (the resubmission check) and evaluated into a plan.  The
requester is always the caller, never a parameter.  The service's refusals become the answers users see: a
sentence with 403, 404 or 409; a broker that cannot be reached 503
(an approved plan stays approved; approving it again finishes it).
"""

from __future__ import annotations

import tempfile
from contextlib import closing
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from dashboard.web.deps import Identity
from dashboard.web.errors import PageError
from dashboard.web.middleware import too_large
from dashboard.web.multipart import MultipartError, read_file_field
from dashboard.web.plan_views import AppliedOut, PlanOut, need_plan, plan_out, refuse_decision
from dashboard.web.upload_body import SPOOL_BYTES, spool_body, submit_batch, unusable
from enrolment.domain.plans import ApprovalReason
from enrolment.files import InputError, read_participants, validate_file
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.settings import Settings
from enrolment.store import plans as plan_store
from producer import plans as service
from producer.derived import Derived


@dataclass(frozen=True, slots=True)
class PlanAsk:
    """What ``POST /api/plans`` asks for (the file aside)."""

    batch_id: str
    kind: str
    id_type: str | None = None
    max_removals: int | None = None
    max_removal_percent: float | None = None
    allow_repeat: bool = False
    include_completed: bool = False
    apply: bool = False
    file_name: str | None = None


def refused(exc: service.PlanRefused) -> PageError:
    return PageError(exc.http_status, exc.message)


async def spool_file(request: Request, limit: int) -> tuple[BinaryIO, str | None]:
    """The request's file: a multipart form's ``file`` field, else the raw body; 413 past ``limit``."""
    if not (request.headers.get("content-type") or "").lower().startswith("multipart/"):
        return await spool_body(request, limit), None
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - the caller closes it

    async def counted() -> Any:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PageError(413, too_large(limit))
            yield chunk

    try:
        name = await read_file_field(counted(), request.headers.get("content-type"), "file", cast(BinaryIO, spool))
    except MultipartError as exc:
        spool.close()
        raise PageError(400, f"{exc} Nothing was planned.") from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return cast(BinaryIO, spool), name or None


def make(settings: Settings, engine: Engine, who: Identity, ask: PlanAsk, stream: BinaryIO) -> PlanOut:
    """Checks the file whole, then plans it as the caller (the team's plan needs another admin's approval);
    with ``apply`` a plan that needs no approval is applied at once on the caller's authority (``sync``)."""
    kind = cast(Any, ask.id_type.upper() if ask.id_type else None)
    validate_file(stream, kind)
    stream.seek(0)
    team = service.team_approval_needed(engine, ask.batch_id, who.user_id)
    options = service.PlanOptions(
        submitted_by=who.user_id,
        content_hash=service.file_hash(stream),
        file_name=ask.file_name,
        include_completed=ask.include_completed and ask.kind != "add",
        allow_repeat=ask.allow_repeat,
        max_removals=ask.max_removals,
        max_removal_percent=ask.max_removal_percent,
        needs_approval_reason=ApprovalReason.IMPLEMENTATION_TEAM.value if team else None,
    )
    try:
        plan = service.make_plan(
            settings, engine, ask.kind, ask.batch_id, read_participants(stream, kind), who.user_id, options
        )
    except service.PlanRefused as exc:
        raise refused(exc) from None
    if not (ask.apply and plan.record.needs_approval_reason is None):
        return shown(engine, plan.plan_id)
    try:
        result = service.apply_own(settings, engine, plan.plan_id, who.user_id, submitted_by=who.user_id)
    except service.PlanRefused as exc:
        raise refused(exc) from None
    except BrokerUnavailable as exc:
        raise PageError(503, f"{exc} Plan {plan.plan_id} was made but not applied: approve it later.") from None
    return shown(engine, plan.plan_id, result)


def shown(engine: Engine, plan_id: str, result: service.ApplyResult | None = None) -> PlanOut:
    """The plan as stored now; with ``result``, what applying it just published (the CLI follows that upload)."""
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        found = plan_store.get(cur, plan_id)
        now = plan_store.now(cur)
        assert found is not None
        upload = service.upload_json(cur, found.upload_id)
    return plan_out(found, now, upload, None if result is None else applied_out(result))


def applied_out(result: service.ApplyResult) -> AppliedOut:
    refused_rows = [
        {"line": r.line, "identifier": r.identifier, "id_type": r.id_type, "reason": r.reason, "message": r.message}
        for r in result.published.refused
    ]
    return AppliedOut(
        upload_id=result.upload_id,
        published=result.published.published,
        refused_rows=refused_rows,
        changed_since_plan=result.changed_since_plan,
        requested_by=result.request.requested_by,
        submitted_by=result.request.submitted_by,
    )


async def make_from_body(
    request: Request, settings: Settings, engine: Engine, who: Identity, ask: PlanAsk
) -> PlanOut | JSONResponse:
    """``POST /api/plans``: the batch's scope before a byte of the body is read, then the file, then the plan."""
    await run_in_threadpool(submit_batch, engine, ask.batch_id, who.viewer)
    stream, name = await spool_file(request, settings.upload_max_bytes)
    if name and not ask.file_name:
        ask = PlanAsk(**{**{f: getattr(ask, f) for f in PlanAsk.__slots__}, "file_name": name})
    try:
        return await run_in_threadpool(make, settings, engine, who, ask, stream)
    except InputError as exc:
        answer = unusable(exc)
        return answer
    finally:
        stream.close()


def decide(settings: Settings, engine: Engine, who: Identity, plan_id: str, decision: str) -> PlanOut:
    """A state admin's approval (the plan is applied at once) or rejection; 404, 403 or 409 otherwise."""
    with engine.connect() as conn:
        found, now = need_plan(conn, plan_id, who.viewer)
    refuse_decision(found, who.viewer, now, decision)
    result = None
    try:
        if decision == "approve":
            result = service.approve(settings, engine, plan_id, who.user_id, submitted_by=who.user_id)
        else:
            service.reject(settings, engine, plan_id, who.user_id)
    except service.PlanRefused as exc:
        raise refused(exc) from None
    except BrokerUnavailable as exc:
        raise PageError(503, str(exc)) from None  # a stopped approval's sentence says how to finish it
    return shown(engine, plan_id, result)


def upload_or_plan(
    settings: Settings, engine: Engine, who: Identity, ask: PlanAsk, stream: BinaryIO, dry_run: bool
) -> tuple[str | None, PlanOut | None]:
    """Before ``POST /api/uploads`` publishes: the file's hash, after the resubmission check (409 for a file
    applied to the batch in the last 30 days, unless ``allow_repeat``); and, for the implementation team where
    the state requires approval, the waiting plan made instead of the upload (then nothing is published)."""
    if dry_run:
        return None, None
    digest = service.file_hash(stream)
    try:
        service.refuse_repeat(engine, ask.batch_id, digest, ask.allow_repeat)
    except service.PlanRefused as exc:
        raise refused(exc) from None
    if not service.team_approval_needed(engine, ask.batch_id, who.user_id):
        return digest, None
    return digest, make(settings, engine, who, ask, stream)


def plan_derived_for_team(
    settings: Settings, engine: Engine, who: Identity, derived: Derived, include_completed: bool
) -> PlanOut | None:
    """A retry or undo by the implementation team where the state requires approval: a waiting plan of its rows
    (kind add or remove) for a state admin instead of the upload; None when it may be published at once."""
    if not service.team_approval_needed(engine, derived.batch_id, who.user_id):
        return None
    options = service.PlanOptions(
        submitted_by=who.user_id,
        include_completed=include_completed and derived.action == "REMOVE",
        needs_approval_reason=ApprovalReason.IMPLEMENTATION_TEAM.value,
    )
    kind = "remove" if derived.action == "REMOVE" else "add"
    try:
        plan = service.make_plan(settings, engine, kind, derived.batch_id, derived.rows, who.user_id, options)
    except service.PlanRefused as exc:
        raise refused(exc) from None
    return shown(engine, plan.plan_id)
