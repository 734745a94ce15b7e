"""The participants CSV of a batch, streamed: 10k+ rows are never held in memory at once."""

from __future__ import annotations

import io
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from dashboard import queries, rules
from dashboard.models import ProblemOut
from dashboard.web.deps import AppSettings, Db, EngineDep
from dashboard.web.lookups import need_batch
from enrolment import csvsafe

CSV_CHUNK_ROWS = 1000

router = APIRouter()


def csv_chunks(participants: Iterator[queries.Participant], chunk_rows: int = CSV_CHUNK_ROWS) -> Iterator[bytes]:
    """UTF-8 with BOM, CRLF, a header, then the rows ``chunk_rows`` at a time (never the whole file in memory)."""
    buf = io.StringIO()
    writer = csvsafe.writer(buf)
    writer.writerow(rules.CSV_HEADER)
    for n, p in enumerate(participants, 1):
        writer.writerow(
            rules.csv_row(p.name, p.user_id, p.state_id, p.enrolled_at, p.added_via, p.progress, p.completed_at)
        )
        if n % chunk_rows == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


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
def participants_csv(batch_id: str, conn: Db, engine: EngineDep, settings: AppSettings) -> StreamingResponse:
    """Streamed through a server-side cursor: 10k+ rows are never held in memory at once."""
    need_batch(conn, settings.dashboard_group, batch_id)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in batch_id)
    return StreamingResponse(
        csv_chunks(queries.stream_participants(engine, settings.dashboard_group, batch_id)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="participants-{name}.csv"'},
    )
