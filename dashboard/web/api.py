"""The JSON API under /api/: the pages' data, and Edit Batch for scripts (FastAPI publishes it in /openapi.json).

Route functions carry no docstrings on purpose: FastAPI would publish them as the operations' descriptions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from dashboard import queries, rules
from dashboard.models import (
    BatchOut,
    CourseOut,
    EditIn,
    EditOut,
    EditResultOut,
    EditStateOut,
    ParticipantPageOut,
    ProblemOut,
    UploadOut,
)
from dashboard.web.convert import batch_out, participant_out, person_out, upload_out
from dashboard.web.deps import AppSettings, Db, Mentor
from dashboard.web.edit import CANDIDATE_LIMIT, apply_edit, edit_state_for
from dashboard.web.errors import PageError
from dashboard.web.lookups import need_batch, need_upload

router = APIRouter(prefix="/api")

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ProblemOut, "description": "Unknown batch or upload"}}


@router.get("/courses", tags=["courses"], summary="Courses with their batches")
def api_courses(conn: Db, settings: AppSettings) -> list[CourseOut]:
    return [
        CourseOut(course_id=c.course_id, course_name=c.course_name, batches=[batch_out(b) for b in c.batches])
        for c in queries.courses(conn, settings.dashboard_group)
    ]


@router.get(
    "/workspace",
    tags=["courses"],
    summary="The acting mentor's batches",
    responses={400: {"model": ProblemOut}},
)
def api_workspace(mentor: Mentor, conn: Db, settings: AppSettings) -> list[BatchOut]:
    if not mentor:
        raise PageError(400, "Say which mentor you are with ?mentor=USER_ID.")
    return [batch_out(b) for b in queries.mentor_batches(conn, settings.dashboard_group, mentor)]


@router.get("/batches/{batch_id}", tags=["batches"], responses=NOT_FOUND)
def api_batch(batch_id: str, conn: Db, settings: AppSettings) -> BatchOut:
    return batch_out(need_batch(conn, settings.dashboard_group, batch_id))


@router.get(
    "/batches/{batch_id}/participants",
    tags=["participants"],
    summary="A page of participants with progress (sortable, searchable)",
    responses=NOT_FOUND,
)
def api_participants(
    batch_id: str,
    conn: Db,
    settings: AppSettings,
    page: Annotated[int, Query(ge=1)] = 1,
    size: Annotated[int, Query(description=f"One of {rules.PAGE_SIZES}")] = rules.DEFAULT_PAGE_SIZE,
    sort: Annotated[str, Query(description=f"One of {', '.join(rules.SORT_KEYS)}")] = "name",
    dir: Annotated[str, Query(description="asc or desc")] = "asc",
    q: Annotated[str, Query(max_length=200, description="Part of a name, user id or state id")] = "",
) -> ParticipantPageOut:
    b = need_batch(conn, settings.dashboard_group, batch_id)
    tq = rules.table_query(page, size, sort, dir, q)
    total, rows = queries.participants_page(conn, settings.dashboard_group, batch_id, tq, b.participant_count)
    return ParticipantPageOut(
        batch_id=batch_id,
        participant_count=b.participant_count,
        total=total,
        page=tq.page,
        size=tq.size,
        pages=rules.page_count(total, tq.size),
        sort=tq.sort,
        dir=tq.direction,
        q=tq.q,
        participants=[participant_out(p) for p in rows],
    )


@router.get(
    "/batches/{batch_id}/edit",
    tags=["edit batch"],
    summary="The Edit Batch state for the acting mentor: drop-down enabled or why not, members, candidates",
    responses=NOT_FOUND,
)
def api_edit(
    batch_id: str, mentor: Mentor, conn: Db, settings: AppSettings, q: Annotated[str, Query(max_length=200)] = ""
) -> EditOut:
    group = settings.dashboard_group
    b = need_batch(conn, group, batch_id)
    st = edit_state_for(conn, settings, b, mentor)
    members = [] if st.limit_reached else queries.members(conn, group, batch_id)
    cands = queries.candidates(conn, group, b, " ".join(q.split()), CANDIDATE_LIMIT) if st.enabled else []
    state = EditStateOut(
        batch_id=b.batch_id,
        participant_count=b.participant_count,
        limit=settings.ui_participant_limit,
        enabled=st.enabled,
        limit_reached=st.limit_reached,
        message=st.message,
        room=st.room,
    )
    return EditOut(
        **state.model_dump(),
        members=[person_out(p) for p in members],
        candidates=[person_out(p) for p in cands],
    )


@router.post(
    "/batches/{batch_id}/participants",
    tags=["edit batch"],
    status_code=202,
    summary="Add or remove participants as the acting mentor (source UI; the processor applies them)",
    responses={
        **NOT_FOUND,
        403: {"model": ProblemOut, "description": "Not a mentor of the batch"},
        409: {"model": ProblemOut, "description": "Over the UI participant limit"},
        503: {"model": ProblemOut, "description": "Kafka unreachable; nothing was sent"},
    },
)
def api_edit_submit(batch_id: str, body: EditIn, mentor: Mentor, conn: Db, settings: AppSettings) -> EditResultOut:
    b = need_batch(conn, settings.dashboard_group, batch_id)
    wanted = sorted(set(body.add) | set(body.remove))
    current = queries.member_ids(conn, settings.dashboard_group, batch_id, wanted)
    plan = rules.EditPlan(
        adds=tuple(sorted(set(body.add) - current - set(body.remove))),
        removes=tuple(sorted(set(body.remove) & current)),
    )
    ids = apply_edit(conn, settings, b, mentor, plan) if not plan.empty else []
    return EditResultOut(batch_id=batch_id, upload_ids=ids, adds=list(plan.adds), removes=list(plan.removes))


@router.get("/uploads", tags=["uploads"], summary="Recent uploads with progress and summary")
def api_uploads(
    conn: Db, settings: AppSettings, batch: Annotated[str | None, Query(max_length=200)] = None
) -> list[UploadOut]:
    return [upload_out(r) for r in queries.uploads(conn, settings.dashboard_group, batch or None)]


@router.get("/uploads/{upload_id}", tags=["uploads"], responses=NOT_FOUND)
def api_upload(upload_id: str, conn: Db, settings: AppSettings) -> UploadOut:
    return upload_out(need_upload(conn, settings.dashboard_group, upload_id))
