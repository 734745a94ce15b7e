"""The upload API: a file of participants sent over the network, checked and published exactly as the CLI does.

``POST /api/uploads`` takes the file as the raw request body.  Who asks is proven (API token or session) before
a byte of the body is read, and is the requester recorded on every command: never a parameter.  The body is
streamed to a temporary file (at most ``SPOOL_BYTES`` in memory) and refused past ``UPLOAD_MAX_BYTES``; the whole
file is checked before anything is published.  The summary is ``GET /api/uploads/{id}`` (api.py); the per-row
report is ``GET /api/uploads/{id}/report.csv``, from the processor's ledger.

``POST /api/uploads/{id}/retry`` and ``/undo`` build an upload from an earlier one's recorded outcomes (as the
CLI's `retry` and `undo` do) and submit it with the caller as its requester, never the original requester.
"""

from __future__ import annotations

import io
from contextlib import closing
from dataclasses import replace
from typing import Annotated, Any, BinaryIO, Literal, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine

from dashboard.models import ProblemOut
from dashboard.web.audit_log import log_download, log_submission
from dashboard.web.csrf import check_json
from dashboard.web.deps import AppSettings, EngineDep, Identity, Who, signed_in
from dashboard.web.downloads import attachment
from dashboard.web.errors import PageError
from dashboard.web.plan_actions import PlanAsk, plan_derived_for_team, upload_or_plan
from dashboard.web.upload_body import spool_body, submit_batch, unusable
from enrolment import csvsafe
from enrolment.domain.access import Viewer, may_submit_upload, may_view_upload
from enrolment.domain.text import ControlCharacter
from enrolment.files import InputError, RefusedRow, read_participants, validate_file
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from enrolment.store import reference
from enrolment.store.ledger import row_outcomes
from enrolment.store.uploads import find_upload
from producer.derived import Derived, UnknownUpload, parent_of, plan_retry, plan_undo, reason_set
from producer.plans import record_published
from producer.publish import Published, UploadRequest, publish_upload

PATH = "/api/uploads"
router = APIRouter(prefix="/api", dependencies=[Depends(signed_in)], tags=["uploads"])

REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"description": "The file is unusable: nothing was published (``refusals`` says why)"},
    401: {"model": ProblemOut, "description": "No session or API token"},
    403: {"model": ProblemOut, "description": "You may see the batch but not submit to it"},
    404: {"model": ProblemOut, "description": "Unknown batch, or one you may not see"},
    413: {"model": ProblemOut, "description": "The file is larger than UPLOAD_MAX_BYTES"},
}


class RefusalOut(BaseModel):
    line: int
    identifier: str
    id_type: str | None = None
    reason: str
    message: str


class SubmittedOut(BaseModel):
    upload_id: str
    status_url: str
    published: int
    refused_rows: list[RefusalOut]
    requested_by: str
    submitted_by: str


class DerivedOut(SubmittedOut):
    batch_id: str
    kind: Literal["retry", "undo"]
    action: Literal["ADD", "REMOVE"]
    parent_upload_id: str


def refusals(rows: list[RefusedRow]) -> list[RefusalOut]:
    return [
        RefusalOut(line=r.line, identifier=r.identifier, id_type=r.id_type, reason=r.reason, message=r.message)
        for r in rows
    ]


def check_and_publish(settings: Settings, stream: BinaryIO, request: UploadRequest, id_type: str | None) -> Published:
    """Checks the whole file, then publishes it. Raises InputError before anything is published."""
    kind = cast(Any, id_type.upper() if id_type else None)
    validate_file(stream, kind)
    stream.seek(0)
    return publish_upload(settings, default_codec(), request, read_participants(stream, kind), keep_rows=False)


ALLOW_REPEAT = "Send a file that was applied to the batch in the last 30 days again (else 409)"
INCLUDE_COMPLETED = "Removes apply to participants who completed the course too (else COURSE_COMPLETED)"


@router.post(
    "/uploads",
    status_code=202,
    response_model=SubmittedOut,
    summary="Submit a file of participants to a batch",
    responses=REFUSED,
)
async def api_submit_upload(
    request: Request,
    who: Who,
    settings: AppSettings,
    engine: EngineDep,
    batch_id: Annotated[str, Query(min_length=1, max_length=200)],
    operation: Literal["add", "remove"],
    id_type: Literal["user_id", "state_id"] | None = None,
    dry_run: bool = False,
    include_completed: Annotated[bool, Query(description=INCLUDE_COMPLETED)] = False,
    allow_repeat: Annotated[bool, Query(description=ALLOW_REPEAT)] = False,
) -> SubmittedOut | JSONResponse:
    check_json(request, who)
    await run_in_threadpool(submit_batch, engine, batch_id, who.viewer)  # before the body is read
    try:
        upload = UploadRequest(
            batch_id=batch_id,
            action=operation.upper(),
            requested_by=who.user_id,
            submitted_by=who.user_id,
            kind=operation,
            dry_run=dry_run,
            file_name=request.headers.get("x-file-name") or None,
            include_completed=include_completed and operation == "remove",
        )
    except ControlCharacter as exc:
        raise PageError(400, f"{exc.reason}: {exc.sentence} Nothing was published.") from None
    stream = await spool_body(request, settings.upload_max_bytes)
    try:
        ask = PlanAsk(batch_id, operation, id_type, allow_repeat=allow_repeat, include_completed=include_completed)
        ask = replace(ask, file_name=upload.file_name)
        digest, plan = await run_in_threadpool(upload_or_plan, settings, engine, who, ask, stream, dry_run)
        if plan is not None:  # the implementation team's upload waits for a state admin: nothing published
            return JSONResponse(jsonable_encoder(plan), status_code=202)
        upload.content_hash = digest
        done = await run_in_threadpool(check_and_publish, settings, stream, upload, id_type)
        await run_in_threadpool(record_published, engine, upload)  # a resend is refused while it is in progress
    except InputError as exc:
        return unusable(exc)
    except BrokerUnavailable as exc:
        raise PageError(503, f"{exc} Nothing was published.") from None
    finally:
        stream.close()
    log_submission(upload, done.published + len(done.refused), who.via)
    return SubmittedOut(
        upload_id=upload.upload_id,
        status_url=f"{PATH}/{upload.upload_id}",
        published=done.published,
        refused_rows=refusals(done.refused),
        requested_by=upload.requested_by,
        submitted_by=who.user_id,
    )


def plan_derived(engine: Engine, viewer: Viewer, upload_id: str, kind: str, reasons: set[str] | None) -> Derived:
    """The retry or undo of ``upload_id`` by ``viewer``: 404 when they may not see it, 403 when not change its batch."""
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        try:
            batch_id, requester, _kind = parent_of(cur, upload_id)
        except UnknownUpload:
            raise PageError(404, f"No upload {upload_id} is known yet.") from None
        batch = reference.batch(cur, batch_id)
        if not may_view_upload(viewer, batch, requester or None):
            raise PageError(404, f"No upload {upload_id} is known yet.")
        if batch is None or not may_submit_upload(viewer, batch):
            raise PageError(403, f"{viewer.user_id} may not {kind} uploads to batch {batch_id}; nothing was published.")
        try:
            if kind == "retry":
                return plan_retry(cur, upload_id, reasons, viewer.user_id)
            return plan_undo(cur, upload_id, viewer.user_id)
        except UnknownUpload as exc:
            raise PageError(409, f"{exc} Nothing was published.") from None


def submit_derived(
    settings: Settings,
    engine: Engine,
    who: Identity,
    upload_id: str,
    kind: str,
    reasons: set[str] | None,
    dry_run: bool,
    include_completed: bool = False,
) -> DerivedOut | JSONResponse:
    """Plans the derived upload from the store, publishes it as the caller, audits it; the 202 answer (the waiting
    plan instead, published nothing, when the implementation team asks where the state requires approval)."""
    plan = plan_derived(engine, who.viewer, upload_id, kind, reasons)
    waiting = None if dry_run else plan_derived_for_team(settings, engine, who, plan, include_completed)
    if waiting is not None:
        return JSONResponse(jsonable_encoder(waiting), status_code=202)
    upload = UploadRequest(
        batch_id=plan.batch_id,
        action=plan.action,
        requested_by=who.user_id,
        submitted_by=who.user_id,
        kind=plan.kind,
        dry_run=dry_run,
        parent_upload_id=plan.parent_upload_id,
        include_completed=include_completed and plan.action == "REMOVE",
    )
    try:
        done = publish_upload(settings, default_codec(), upload, plan.rows, keep_rows=False, origin=plan.origin)
    except BrokerUnavailable as exc:
        raise PageError(503, f"{exc} Nothing was published.") from None
    log_submission(upload, done.published + len(done.refused), who.via)
    return DerivedOut(
        upload_id=upload.upload_id,
        status_url=f"{PATH}/{upload.upload_id}",
        published=done.published,
        refused_rows=refusals(done.refused),
        requested_by=upload.requested_by,
        submitted_by=who.user_id,
        batch_id=plan.batch_id,
        kind=cast(Any, plan.kind),
        action=cast(Any, plan.action),
        parent_upload_id=plan.parent_upload_id,
    )


DERIVED_REFUSED: dict[int | str, dict[str, Any]] = {
    401: REFUSED[401],
    403: {"model": ProblemOut, "description": "You may see the upload but not submit to its batch"},
    404: {"model": ProblemOut, "description": "Unknown upload, or one you may not see"},
    409: {"model": ProblemOut, "description": "The upload both added and removed participants (undo it in two steps)"},
    503: {"model": ProblemOut, "description": "Kafka unreachable; nothing was published"},
}


@router.post(
    "/uploads/{upload_id}/retry",
    status_code=202,
    response_model=DerivedOut,
    summary="Submit again the rows of an upload that were rejected (for the given reasons), as yourself",
    responses=DERIVED_REFUSED,
)
def api_retry_upload(
    request: Request,
    upload_id: str,
    who: Who,
    settings: AppSettings,
    engine: EngineDep,
    reasons: Annotated[str | None, Query(max_length=2000, description="Comma-separated reason codes")] = None,
    dry_run: bool = False,
) -> DerivedOut | JSONResponse:
    check_json(request, who)
    return submit_derived(settings, engine, who, upload_id, "retry", reason_set(reasons), dry_run)


@router.post(
    "/uploads/{upload_id}/undo",
    status_code=202,
    response_model=DerivedOut,
    summary="Reverse what an upload changed (participants changed again since are left alone), as yourself",
    responses=DERIVED_REFUSED,
)
def api_undo_upload(
    request: Request,
    upload_id: str,
    who: Who,
    settings: AppSettings,
    engine: EngineDep,
    dry_run: bool = False,
    include_completed: Annotated[bool, Query(description=INCLUDE_COMPLETED)] = False,
) -> DerivedOut | JSONResponse:
    check_json(request, who)
    return submit_derived(settings, engine, who, upload_id, "undo", None, dry_run, include_completed)


def report_csv(cur: Any, upload_id: str, viewer: Viewer) -> tuple[str, int]:
    """The per-row report (the CLI's --report columns) and its row count: results so far and the rows refused
    before publishing."""
    record = find_upload(cur, upload_id)
    if record is not None:
        batch = reference.batch(cur, record.batch_id)
        if may_view_upload(viewer, batch, record.requested_by or None):
            lines = [
                (r.line, r.identifier, r.id_type, r.outcome, r.reason, r.message) for r in row_outcomes(cur, upload_id)
            ]
            for r in record.refused:
                lines.append(
                    (r["line"], r["identifier"], r.get("id_type") or "", "REJECTED", r["reason"], r["message"])
                )
            out = io.StringIO()
            writer = csvsafe.writer(out)
            writer.writerow(["line", "identifier", "id_type", "outcome", "reason", "message"])
            for line in sorted(lines, key=lambda x: int(x[0])):
                writer.writerow(line)
            return out.getvalue(), len(lines)
    raise PageError(404, f"No upload {upload_id} is known yet.")


@router.get("/uploads/{upload_id}/report.csv", summary="The per-row report of an upload", responses=REFUSED)
def api_upload_report(upload_id: str, who: Who, engine: EngineDep) -> Response:
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        body, rows = report_csv(cur, upload_id, who.viewer)
    log_download(who.user_id, rows, upload_id=upload_id)  # who read which upload's rows (names, ids)
    return Response(
        body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(f"upload-{upload_id}-report.csv")},
    )
