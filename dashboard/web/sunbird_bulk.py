"""Sunbird's bulk upload API on our pipeline: `POST /v1/batch/bulk/enrollment|unenrollment`, then
`GET /v1/upload/status/{processId}`.

The file (multipart field `file`, CSV `batchId,userIds`, many comma-separated ids per quoted cell, many batches
per file, no line cap) is streamed to a temporary file, checked whole (every batch must be one the caller may
submit to, every id well-formed) and only then published: one upload of ours per batch (kind `bulk-add` /
`bulk-remove`), recorded under one processId (table bulk_processes).  The status reads the uploads' records and
the processor's ledger and answers Sunbird's status words with `successResult`/`failureResult`.
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from dashboard.web.middleware import BodyTooLarge
from dashboard.web.multipart import MultipartError, read_file_field
from dashboard.web.sunbird import MSGID_HEADER, caller, failure, too_large, unauthorized
from dashboard.web.sunbird_hub import Hub
from enrolment.domain import sunbird as sb
from enrolment.domain.access import Viewer, may_submit_upload, may_view_upload
from enrolment.domain.model import OPEN_STATUSES, Batch
from enrolment.files import InputRow
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.settings import Settings
from enrolment.store import accounts, bulk, reference
from enrolment.store.ledger import row_outcomes
from enrolment.store.uploads import find_upload
from producer import plans as plan_rules
from producer.publish import UploadRequest

SPOOL_BYTES = 1024 * 1024
PATHS = {"add": "/v1/batch/bulk/enrollment", "remove": "/v1/batch/bulk/unenrollment"}
audit = logging.getLogger("audit")


@dataclass
class BulkFile:
    """What a checked file asks: the batches in the order first seen, with how many distinct ids each."""

    batches: dict[str, int] = field(default_factory=dict)


def rows_of(stream: BinaryIO) -> Iterator[tuple[int, str, list[str]]]:
    """(line, batch id, ids) per non-blank data row; a Refusal for a header other than `batchId,userIds`."""
    stream.seek(0)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(text)
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:2] != ["batchid", "userids"]:
            raise sb.Refusal(sb.INVALID_REQUESTED_DATA, "BAD_HEADER", "The file's header must be batchId,userIds.")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            cells = [*row, "", ""]
            yield reader.line_num, cells[0].strip(), sb.bulk_ids(cells[1])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise sb.Refusal(sb.INVALID_REQUESTED_DATA, "BAD_FILE", f"The file is not a UTF-8 CSV ({exc}).") from None
    finally:
        text.detach()


def check_file(stream: BinaryIO) -> BulkFile:
    """The whole file checked before anything is published: batch ids present, ids present and well-formed."""
    found = BulkFile()
    seen: dict[str, set[str]] = {}
    for line, batch_id, ids in rows_of(stream):
        for ident in (batch_id, *ids):
            sb.no_control(f"line {line}", ident)
        if not batch_id:
            raise sb.Refusal(sb.COURSE_BATCH_ID_MISSING, "MISSING_BATCH_ID", f"Line {line} has no batchId.")
        if not ids:
            raise sb.Refusal(sb.USERID_MISSING, "MISSING_IDS", f"Line {line} has no userIds.")
        for ident in ids:
            if not sb.valid_id(ident):
                raise sb.Refusal(sb.INVALID_REQUESTED_DATA, "INVALID_ID", f"Line {line} has an invalid id.")
        seen.setdefault(batch_id, set()).update(ids)
    if not seen:
        raise sb.Refusal(sb.USERID_MISSING, "MISSING_IDS", "The file has no rows.")
    found.batches = {b: len(ids) for b, ids in seen.items()}
    return found


def batch_rows(stream: BinaryIO, batch_id: str) -> Iterator[InputRow]:
    """The distinct ids of one batch, as the rows of its upload (numbered from 1), read again from the file."""
    seen: set[str] = set()
    for _line, b, ids in rows_of(stream):
        if b != batch_id:
            continue
        for ident in ids:
            if ident not in seen:
                seen.add(ident)
                yield InputRow(len(seen), ident, "USER_ID")


def viewer_of(engine: Engine, request: Request) -> Viewer:
    """The token's user with the states they serve; a Refusal (401) without a valid token."""
    check = caller(engine, request.headers)
    if check.user is None:
        raise unauthorized(check)
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        return Viewer(check.user, accounts.served_states(cur, check.user.user_id))


def check_batches(engine: Engine, viewer: Viewer, wanted: BulkFile) -> list[Batch]:
    """Every batch of the file exists, is invite-only and open, and the caller may submit to it."""
    out: list[Batch] = []
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        for batch_id in wanted.batches:
            batch = reference.batch(cur, batch_id)
            if batch is None:
                raise sb.Refusal(sb.INVALID_COURSE_BATCH_ID, "BATCH_NOT_FOUND", batch_id)
            if not may_submit_upload(viewer, batch):
                why = f"{viewer.user_id} may not submit uploads to batch {batch_id}."
                raise sb.Refusal(sb.UNAUTHORIZED_USER, "NOT_AUTHORIZED", why)
            if batch.enrollment_type != "invite-only":
                raise sb.Refusal(sb.ENROLLMENT_TYPE_VALIDATION, "BATCH_NOT_INVITE_ONLY", f"Batch {batch_id}.")
            if batch.status not in OPEN_STATUSES:
                raise sb.Refusal(
                    sb.COURSE_BATCH_ALREADY_COMPLETED, "BATCH_CLOSED", f"Batch {batch_id} is {batch.status}."
                )
            out.append(batch)
    return out


def check_rules(engine: Engine, viewer: Viewer, batches: list[Batch], digest: str, allow_repeat: bool) -> None:
    """The upload API's rules per batch: the implementation team's upload where its state requires a state
    admin's approval is refused (the bulk API cannot wait for one: a plan can); the same file sent to the batch
    in the last 30 days (applied, in progress or waiting as a plan) is refused unless ``allow_repeat``."""
    for batch in batches:
        if plan_rules.team_approval_needed(engine, batch.batch_id, viewer.user_id):
            why = (
                f"{viewer.user_id}'s uploads to batch {batch.batch_id} need a state admin's approval ({batch.state} "
                "requires it for the implementation team): make a plan (POST /api/plans, or `participants add`) "
                f"for a state admin of {batch.state} to approve. Nothing was published."
            )
            raise sb.Refusal(sb.UNAUTHORIZED_USER, "APPROVAL_REQUIRED", why)
        try:
            plan_rules.refuse_repeat(engine, batch.batch_id, digest, allow_repeat)
        except plan_rules.PlanRefused as exc:
            raise sb.Refusal(sb.INVALID_REQUESTED_DATA, exc.code, f"Batch {batch.batch_id}: {exc.message}") from None


async def spool_form(request: Request, action: str, limit: int) -> tuple[BinaryIO, str]:
    """The `file` field in a temporary file (memory up to SPOOL_BYTES), and its name; 413 past ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"bulk-{action}", limit)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - the caller closes it

    async def counted() -> Any:
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(f"bulk-{action}", limit)
                yield chunk
        except BodyTooLarge as exc:  # the app's body-limit middleware counted first
            raise too_large(f"bulk-{action}", limit) from exc

    try:
        name = await read_file_field(counted(), request.headers.get("content-type"), "file", cast(BinaryIO, spool))
    except MultipartError as exc:
        spool.close()
        raise sb.Refusal(sb.INVALID_REQUESTED_DATA, "BAD_FORM", str(exc)) from None
    except BaseException:
        spool.close()
        raise
    try:
        sb.no_control("the file name", name)
    except sb.Refusal:
        spool.close()
        raise
    return cast(BinaryIO, spool), name


def record(engine: Engine, part: bulk.BulkPart) -> None:
    with engine.begin() as conn, closing(conn.connection.cursor()) as cur:
        bulk.record_part(cur, part)


class PartlySent(Exception):
    """Kafka failed part-way through a file: the batches published (under ``process_id``) and those not sent."""

    def __init__(self, reason: str, process_id: str, sent: list[str], unsent: list[str], cut_upload: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.process_id = process_id if sent else None
        self.sent, self.unsent, self.cut_upload = sent, unsent, cut_upload

    def sentence(self) -> str:
        """What was published, what was not, and what to send again."""
        done = (
            f"Published as processId {self.process_id}: batch {', '.join(self.sent)} (GET /v1/upload/status/"
            f"{self.process_id}). "
            if self.process_id
            else "Nothing was recorded. "
        )
        return (
            f"{self.reason} {done}Not sent: batch {', '.join(self.unsent)}; send a file with the rows of those "
            f"batches only. Batch {self.unsent[0]} may have been sent in part (upload {self.cut_upload}: "
            f"GET /api/uploads/{self.cut_upload}); its rows are safe to send again."
        )


def failpoint(settings: Settings, position: int) -> None:
    """Test hook: PARTICIPANTS_FAILPOINT=bulk-publish:N fails as an unreachable Kafka before a file's N-th batch."""
    if settings.failpoint == f"bulk-publish:{position + 1}":
        raise BrokerUnavailable(f"Cannot reach Kafka (failpoint {settings.failpoint}).")


async def publish_all(
    hub: Hub,
    engine: Engine,
    viewer: Viewer,
    action: str,
    stream: BinaryIO,
    batches: list[Batch],
    name: str,
    digest: str | None = None,
) -> str:
    """One upload per batch (the file's hash recorded: the resubmission check), recorded under a new processId
    once published; the processId.  PartlySent when Kafka fails part-way (the batches before stay recorded)."""
    process_id = str(uuid.uuid4())
    for position, batch in enumerate(batches):
        upload = UploadRequest(
            batch_id=batch.batch_id,
            action=action.upper(),
            requested_by=viewer.user_id,
            submitted_by=viewer.user_id,
            kind=f"bulk-{action}",
            file_name=name or None,
            content_hash=digest,
        )
        try:
            failpoint(hub.settings, position)
            done = await hub.publish(upload, batch_rows(stream, batch.batch_id))
        except BrokerUnavailable as exc:
            sent, unsent = [b.batch_id for b in batches[:position]], [b.batch_id for b in batches[position:]]
            raise PartlySent(str(exc), process_id, sent, unsent, upload.upload_id) from None
        await hub.run(plan_rules.record_published, engine, upload)
        part = bulk.BulkPart(
            process_id, position, upload.upload_id, batch.batch_id, action, viewer.user_id, done.published
        )
        await hub.run(record, engine, part)
        audit.info(
            "upload submitted",
            extra={
                "event": "UPLOAD_SUBMITTED",
                "user_id": viewer.user_id,
                "via": "token",
                "batch_id": batch.batch_id,
                "upload_id": upload.upload_id,
                "operation": upload.kind,
                "process_id": process_id,
                "rows": done.published,
            },
        )
    return process_id


async def submit(hub: Hub, engine: Engine, action: str, request: Request) -> JSONResponse:
    """Token, then the file (streamed, checked whole), then the batches, then one upload per batch."""
    api_id = sb.API_IDS[f"bulk-{action}"]
    msgid = request.headers.get(MSGID_HEADER)
    try:
        viewer = await hub.run(viewer_of, engine, request)
        stream, name = await spool_form(request, action, hub.settings.upload_max_bytes)
    except sb.Refusal as refusal:
        return failure(api_id, refusal, msgid)
    try:
        wanted = await hub.run(check_file, stream)
        batches = await hub.run(check_batches, engine, viewer, wanted)
        stream.seek(0)
        digest = await hub.run(plan_rules.file_hash, stream)
        allow_repeat = request.query_params.get("allow_repeat", "").lower() in ("true", "1")
        await hub.run(check_rules, engine, viewer, batches, digest, allow_repeat)
        process_id = await publish_all(hub, engine, viewer, action, stream, batches, name, digest)
    except sb.Refusal as refusal:
        return failure(api_id, refusal, msgid)
    except BrokerUnavailable as exc:
        return failure(api_id, sb.Refusal(sb.SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", str(exc)), msgid)
    except PartlySent as cut:
        return partly_sent(api_id, cut, msgid)
    finally:
        stream.close()
    return JSONResponse(
        sb.envelope(api_id, {"processId": process_id}, msgid=msgid), headers={"X-Process-Id": process_id}
    )


def partly_sent(api_id: str, cut: PartlySent, msgid: str | None) -> JSONResponse:
    """503 in Sunbird's envelope, with the processId of the batches that were published (their status is there)."""
    refusal = sb.Refusal(sb.SERVICE_UNAVAILABLE, "PARTLY_PUBLISHED" if cut.process_id else "SERVICE_UNAVAILABLE")
    body = sb.envelope(api_id, {}, msgid=msgid, error=refusal.error, errmsg=f"{refusal.error.text} {cut.sentence()}")
    headers = {"X-Reason": refusal.reason}
    if cut.process_id:
        body["result"] = {"processId": cut.process_id}
        headers["X-Process-Id"] = cut.process_id
    return JSONResponse(body, refusal.error.http, headers=headers)


def part_status(cur: Any, part: bulk.BulkPart) -> dict[str, Any]:
    """One batch of a process: its counts, and its rows as Sunbird's success and failure rows."""
    record_ = find_upload(cur, part.upload_id)
    outcomes = row_outcomes(cur, part.upload_id)
    ok: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    for r in outcomes:
        text = sb.user_result(part.operation, r.reason, r.identifier, r.message)
        row = {"batchId": part.batch_id, "userId": r.identifier}
        if text == "SUCCESS":
            ok.append(row)
        else:
            failed.append({**row, "err_msg": text, "reason": r.reason})
    complete = record_ is not None and record_.completed
    return {
        "batchId": part.batch_id,
        "uploadId": part.upload_id,
        "total": part.ids,
        "processed": len(outcomes),
        "complete": complete,
        "success": ok,
        "failure": failed,
    }


def process_status(engine: Engine, viewer: Viewer, process_id: str) -> dict[str, Any]:
    """`result.response[0]` of the status call; INVALID_PROCESS_ID for a process the caller may not see."""
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        parts = bulk.parts_of(cur, process_id)
        for part in parts:
            if not may_view_upload(viewer, reference.batch(cur, part.batch_id), part.requested_by):
                parts = []
                break
        if not parts:
            raise sb.Refusal(sb.INVALID_PROCESS_ID, "UNKNOWN_PROCESS")
        batches = [part_status(cur, p) for p in parts]
    status = sb.process_status([(b["processed"], b["complete"]) for b in batches])
    return {
        "processId": process_id,
        "objectType": "batch",
        "status": status,
        "successResult": [row for b in batches for row in b.pop("success")],
        "failureResult": [row for b in batches for row in b.pop("failure")],
        "batches": batches,
    }


async def status(hub: Hub, engine: Engine, process_id: str, request: Request) -> JSONResponse:
    api_id = sb.API_IDS["status"]
    msgid = request.headers.get(MSGID_HEADER)
    try:
        viewer = await hub.run(viewer_of, engine, request)
        found = await hub.run(process_status, engine, viewer, process_id)
    except sb.Refusal as refusal:
        return failure(api_id, refusal, msgid)
    return JSONResponse(sb.envelope(api_id, {"response": [found]}, msgid=msgid))


def bulk_router(hub: Hub, engine: Engine) -> APIRouter:
    """The bulk routes on ``hub`` (its pool and producer) and ``engine``."""
    router = APIRouter(tags=["Sunbird-compatible bulk upload API"])
    form = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                }
            },
        }
    }

    @router.post(PATHS["add"], summary="Enrol the users of a CSV (batchId,userIds) into batches", openapi_extra=form)
    async def enrol(request: Request) -> JSONResponse:
        return await submit(hub, engine, "add", request)

    @router.post(PATHS["remove"], summary="Unenrol the users of a CSV (batchId,userIds)", openapi_extra=form)
    async def unenrol(request: Request) -> JSONResponse:
        return await submit(hub, engine, "remove", request)

    @router.get("/v1/upload/status/{process_id}", summary="The status of a bulk enrolment or unenrolment")
    async def upload_status(process_id: str, request: Request) -> JSONResponse:
        return await status(hub, engine, process_id, request)

    return router
