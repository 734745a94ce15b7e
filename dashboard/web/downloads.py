"""The participants CSV of a batch, streamed: 10k+ rows are never held in memory at once."""

from __future__ import annotations

import io
import logging
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from dashboard import queries, rules
from dashboard.models import ProblemOut
from dashboard.web.deps import AppSettings, Db, EngineDep, Who
from dashboard.web.lookups import need_batch
from enrolment import csvsafe

CSV_CHUNK_ROWS = 1000
audit = logging.getLogger("audit")

router = APIRouter()


Row = Callable[[queries.Participant], list[str]]


def standard_row(p: queries.Participant) -> list[str]:
    """Our columns (rules.CSV_HEADER)."""
    return rules.csv_row(
        p.name, p.user_id, p.state_id, p.enrolled_at, p.added_via, p.progress, p.completed_at,
        p.course_id, p.batch_id, p.org_name, p.district, p.block, p.school_name, p.school_udise,
    )  # fmt: skip


def sunbird_rows(state_name: str) -> Row:
    """Sunbird's course progress report columns (rules.SUNBIRD_CSV_HEADER); the batch's state names the state."""

    def row(p: queries.Participant) -> list[str]:
        profile = rules.Profile(p.org_name, p.district, p.block, p.school_name, p.school_udise)
        return rules.sunbird_row(
            p.state_id, p.user_id, p.name, profile, state_name, p.enrolled_at, p.progress, p.completed_at
        )

    return row


def csv_chunks(
    participants: Iterator[queries.Participant],
    chunk_rows: int = CSV_CHUNK_ROWS,
    row: Row = standard_row,
    header: Sequence[str] = rules.CSV_HEADER,
) -> Iterator[bytes]:
    """UTF-8 with BOM, CRLF, a header, then the rows ``chunk_rows`` at a time (never the whole file in memory)."""
    buf = io.StringIO()
    writer = csvsafe.writer(buf)
    writer.writerow(header)
    for n, p in enumerate(participants, 1):
        writer.writerow(row(p))
        if n % chunk_rows == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def counted(participants: Iterator[queries.Participant], user_id: str, batch_id: str) -> Iterator[queries.Participant]:
    """Passes the rows through, then logs the download (who, which batch, how many rows) once it is complete."""
    n = 0
    for p in participants:
        n += 1
        yield p
    audit.info(
        "participants CSV downloaded",
        extra={"event": "CSV_DOWNLOAD", "by": user_id, "batch_id": batch_id, "rows": n},
    )


def attachment(filename: str) -> str:
    """A Content-Disposition for any name: an ASCII ``filename`` and the UTF-8 one (RFC 5987/6266).

    Only letters, marks, digits and ``-_.`` are kept (anything else becomes ``_``), so neither form can hold a
    path separator, a quote, a semicolon or a control character; the ASCII form also replaces non-ASCII
    letters. The header is then pure ASCII, which any batch id must not break (non-Latin-1 text made it 500).
    """
    safe = "".join(c if c in "-_." or unicodedata.category(c)[0] in "LMN" else "_" for c in filename)
    fallback = "".join(c if c.isascii() else "_" for c in safe)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(safe, safe='')}"


@router.get(
    "/batches/{batch_id}/participants.csv",
    tags=["participants"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "Every participant with progress (UTF-8, BOM, CRLF)"},
        404: {"model": ProblemOut, "description": "Unknown batch"},
    },
    summary="Download every participant of a batch with progress as CSV",
)
def participants_csv(
    batch_id: str,
    who: Who,
    conn: Db,
    engine: EngineDep,
    settings: AppSettings,
    fmt: Annotated[
        Literal["standard", "sunbird"],
        Query(alias="format", description="sunbird: Sunbird's course progress report columns, names and order"),
    ] = "standard",
) -> StreamingResponse:
    """Streamed through a server-side cursor: 10k+ rows are never held in memory at once."""
    batch = need_batch(conn, settings.dashboard_group, batch_id)
    rows = counted(queries.stream_participants(engine, settings.dashboard_group, batch_id), who.user_id, batch_id)
    if fmt == "sunbird":
        chunks = csv_chunks(
            rows, row=sunbird_rows(queries.state_name(conn, batch.state)), header=rules.SUNBIRD_CSV_HEADER
        )
        name = f"course-progress-{batch_id}.csv"
    else:
        chunks, name = csv_chunks(rows), f"participants-{batch_id}.csv"
    return StreamingResponse(
        chunks, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": attachment(name)}
    )
