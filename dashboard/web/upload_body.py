"""What the upload and plan APIs share before a file is used: the batch's scope (checked before the body is
read), the body spooled to a temporary file with the size limit, and the 400 answer for an unusable file.
"""

from __future__ import annotations

import re
import tempfile
from contextlib import closing
from typing import BinaryIO, cast

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from dashboard.web.errors import PageError
from dashboard.web.middleware import too_large
from enrolment.domain.access import Viewer, may_submit_upload, may_view_batch
from enrolment.domain.model import IMPLEMENTATION_TEAM, Batch
from enrolment.files import InputError
from enrolment.store import reference

SPOOL_BYTES = 1024 * 1024  # a bigger body goes to disk as it arrives


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


def unusable(exc: InputError) -> JSONResponse:
    """400 with the file's refusal, as the CLI says it (nothing was published)."""
    found = re.match(r"Line (\d+)|The row starting on line (\d+)", exc.message)
    line = int(found.group(1) or found.group(2)) if found else None
    refusal = {"line": line, "reason": exc.reason, "message": exc.message}
    return JSONResponse(
        {"detail": f"{exc.message} Nothing was published.", "refusals": [refusal]},
        status_code=400,
    )
