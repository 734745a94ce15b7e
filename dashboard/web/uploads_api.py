"""The upload API: a file of participants sent over the network, checked and published exactly as the CLI does.

``POST /api/uploads`` takes the file as the raw request body.  Who asks is proven (API token or session) before
a byte of the body is read, and is the requester recorded on every command: never a parameter.  The body is
streamed to a temporary file (at most ``SPOOL_BYTES`` in memory) and refused past ``UPLOAD_MAX_BYTES``; the whole
file is checked before anything is published.  The summary is ``GET /api/uploads/{id}`` (api.py); the per-row
report is ``GET /api/uploads/{id}/report.csv``, from the processor's ledger.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
from contextlib import closing
from typing import Annotated, Any, BinaryIO, Literal, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine

from dashboard.models import ProblemOut
from dashboard.web.csrf import check_json
from dashboard.web.deps import AppSettings, EngineDep, Identity, Who, signed_in
from dashboard.web.downloads import attachment
from dashboard.web.errors import PageError
from dashboard.web.middleware import too_large
from enrolment import csvsafe
from enrolment.domain.access import Viewer, may_submit_upload, may_view_batch, may_view_upload
from enrolment.domain.model import IMPLEMENTATION_TEAM, Batch
from enrolment.domain.text import ControlCharacter
from enrolment.files import InputError, read_participants, validate_file
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from enrolment.store import reference
from enrolment.store.ledger import row_outcomes
from enrolment.store.uploads import find_upload
from producer.publish import Published, UploadRequest, publish_upload

PATH = "/api/uploads"
SPOOL_BYTES = 1024 * 1024  # a bigger body goes to disk as it arrives
audit = logging.getLogger("audit")
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
    reason: str
    message: str


class SubmittedOut(BaseModel):
    upload_id: str
    status_url: str
    published: int
    refused_rows: list[RefusalOut]


def submit_batch(engine: Engine, batch_id: str, viewer: Viewer) -> Batch:
    """The batch if ``viewer`` may submit to it: 404 when unknown or unseen, 403 when seen but not theirs."""
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        batch = reference.batch(cur, batch_id)
    if batch is None:
        raise PageError(404, f"Batch {batch_id} does not exist.")
    if may_submit_upload(viewer, batch):
        return batch
    if may_view_batch(viewer, batch) or (viewer.active and IMPLEMENTATION_TEAM in viewer.user.roles):
        raise PageError(
            403,
            f"{viewer.user_id} may not submit uploads to batch {batch_id} (state {batch.state}); "
            "nothing was published.",
        )
    raise PageError(404, f"Batch {batch_id} does not exist.")


async def spool_body(request: Request, limit: int) -> BinaryIO:
    """The request body in a temporary file (memory up to SPOOL_BYTES, then disk); 413 past ``limit``."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - the caller closes it
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PageError(413, too_large(limit))
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return cast(BinaryIO, spool)


def check_and_publish(settings: Settings, stream: BinaryIO, request: UploadRequest, id_type: str | None) -> Published:
    """Checks the whole file, then publishes it. Raises InputError before anything is published."""
    kind = cast(Any, id_type.upper() if id_type else None)
    validate_file(stream, kind)
    stream.seek(0)
    return publish_upload(settings, default_codec(), request, read_participants(stream, kind), keep_rows=False)


def unusable(exc: InputError) -> JSONResponse:
    """400 with the file's refusal, as the CLI says it (nothing was published)."""
    found = re.match(r"Line (\d+)|The row starting on line (\d+)", exc.message)
    line = int(found.group(1) or found.group(2)) if found else None
    refusal = {"line": line, "reason": exc.reason, "message": exc.message}
    return JSONResponse(
        {"detail": f"{exc.message} Nothing was published.", "refusals": [refusal]},
        status_code=400,
    )


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
) -> SubmittedOut | JSONResponse:
    check_json(request, who)
    await run_in_threadpool(submit_batch, engine, batch_id, who.viewer)  # before the body is read
    try:
        upload = UploadRequest(
            batch_id=batch_id,
            action=operation.upper(),
            requested_by=who.user_id,
            kind=operation,
            dry_run=dry_run,
            file_name=request.headers.get("x-file-name") or None,
        )
    except ControlCharacter as exc:
        raise PageError(400, f"{exc.reason}: {exc.sentence} Nothing was published.") from None
    stream = await spool_body(request, settings.upload_max_bytes)
    try:
        done = await run_in_threadpool(check_and_publish, settings, stream, upload, id_type)
    except InputError as exc:
        return unusable(exc)
    except BrokerUnavailable as exc:
        raise PageError(503, f"{exc} Nothing was published.") from None
    finally:
        stream.close()
    log_submission(who, upload, done.published + len(done.refused))
    refused = [
        RefusalOut(line=r.line, identifier=r.identifier, reason=r.reason, message=r.message) for r in done.refused
    ]
    return SubmittedOut(
        upload_id=upload.upload_id,
        status_url=f"{PATH}/{upload.upload_id}",
        published=done.published,
        refused_rows=refused,
    )


def log_submission(who: Identity, upload: UploadRequest, rows: int) -> None:
    audit.info(
        "upload submitted",
        extra={
            "event": "UPLOAD_SUBMITTED",
            "user_id": who.user_id,
            "via": who.via,
            "batch_id": upload.batch_id,
            "upload_id": upload.upload_id,
            "operation": upload.kind,
            "dry_run": upload.dry_run,
            "rows": rows,
        },
    )


def report_csv(cur: Any, upload_id: str, viewer: Viewer) -> str:
    """The per-row report (the CLI's --report columns): results so far and the rows refused before publishing."""
    record = find_upload(cur, upload_id)
    if record is not None:
        batch = reference.batch(cur, record.batch_id)
        if may_view_upload(viewer, batch, record.requested_by or None):
            lines = [
                (r.line, r.identifier, r.id_type, r.outcome, r.reason, r.message) for r in row_outcomes(cur, upload_id)
            ]
            for r in record.refused:
                lines.append((r["line"], r["identifier"], "", "REJECTED", r["reason"], r["message"]))
            out = io.StringIO()
            writer = csvsafe.writer(out)
            writer.writerow(["line", "identifier", "id_type", "outcome", "reason", "message"])
            for line in sorted(lines, key=lambda x: int(x[0])):
                writer.writerow(line)
            return out.getvalue()
    raise PageError(404, f"No upload {upload_id} is known yet.")


@router.get("/uploads/{upload_id}/report.csv", summary="The per-row report of an upload", responses=REFUSED)
def api_upload_report(upload_id: str, who: Who, engine: EngineDep) -> Response:
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        body = report_csv(cur, upload_id, who.viewer)
    return Response(
        body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(f"upload-{upload_id}-report.csv")},
    )
