"""The JSON API under /api/: the pages' data, and Edit Batch for scripts (FastAPI publishes it in /openapi.json).

Every route needs a session cookie or an API token (``Authorization: Bearer``) and answers only with what that
person may see; a cookie-authenticated write also needs the CSRF header or a same-origin ``Origin``.
Route functions carry no docstrings on purpose: FastAPI would publish them as the operations' descriptions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

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
from dashboard.web.csrf import check_json
from dashboard.web.deps import AppSettings, Db, Who, signed_in
from dashboard.web.edit import CANDIDATE_LIMIT, apply_edit, edit_state_for
from dashboard.web.lookups import need_batch, need_batch_to_change, need_upload

SIGN_IN: dict[int | str, dict[str, Any]] = {401: {"model": ProblemOut, "description": "No session or API token"}}
router = APIRouter(prefix="/api", dependencies=[Depends(signed_in)], responses=SIGN_IN)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ProblemOut, "description": "Unknown batch or upload, or one you may not see"}
}


@router.get("/courses", tags=["courses"], summary="Courses with their batches")
def api_courses(who: Who, conn: Db, settings: AppSettings) -> list[CourseOut]:
    return [
        CourseOut(course_id=c.course_id, course_name=c.course_name, batches=[batch_out(b) for b in c.batches])
        for c in queries.courses(conn, settings.dashboard_group, who.viewer)
    ]


@router.get("/workspace", tags=["courses"], summary="The batches the signed-in person mentors")
def api_workspace(who: Who, conn: Db, settings: AppSettings) -> list[BatchOut]:
    return [batch_out(b) for b in queries.mentor_batches(conn, settings.dashboard_group, who.user_id)]


@router.get("/batches/{batch_id}", tags=["batches"], responses=NOT_FOUND)
def api_batch(batch_id: str, who: Who, conn: Db, settings: AppSettings) -> BatchOut:
    return batch_out(need_batch(conn, settings.dashboard_group, batch_id, who.viewer))


@router.get(
    "/batches/{batch_id}/participants",
    tags=["participants"],
    summary="A page of participants with progress (sortable, searchable)",
    responses=NOT_FOUND,
)
def api_participants(
    batch_id: str,
    who: Who,
    conn: Db,
    settings: AppSettings,
    page: Annotated[int, Query(ge=1)] = 1,
    size: Annotated[int, Query(description=f"One of {rules.PAGE_SIZES}")] = rules.DEFAULT_PAGE_SIZE,
    sort: Annotated[str, Query(description=f"One of {', '.join(rules.SORT_KEYS)}")] = "name",
    dir: Annotated[str, Query(description="asc or desc")] = "asc",
    q: Annotated[str, Query(max_length=200, description="Part of a name, user id or state id")] = "",
) -> ParticipantPageOut:
    b = need_batch(conn, settings.dashboard_group, batch_id, who.viewer)
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
    summary="The Edit Batch state for the signed-in person: controls enabled or why not, members, candidates",
    responses=NOT_FOUND,
)
def api_edit(
    batch_id: str, who: Who, conn: Db, settings: AppSettings, q: Annotated[str, Query(max_length=200)] = ""
) -> EditOut:
    group = settings.dashboard_group
    b = need_batch(conn, group, batch_id, who.viewer)
    st = edit_state_for(settings, b, who.viewer)
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
    summary="Add or remove participants as the signed-in mentor or admin (source UI; the processor applies them)",
    responses={
        **NOT_FOUND,
        403: {"model": ProblemOut, "description": "Not a mentor of the batch, or no CSRF header with a cookie"},
        409: {"model": ProblemOut, "description": "Over the UI participant limit"},
        503: {"model": ProblemOut, "description": "Kafka unreachable; nothing was sent"},
    },
)
def api_edit_submit(
    request: Request, batch_id: str, body: EditIn, who: Who, conn: Db, settings: AppSettings
) -> EditResultOut:
    check_json(request, who)
    b = need_batch_to_change(conn, settings.dashboard_group, batch_id, who.viewer)
    wanted = sorted(set(body.add) | set(body.remove))
    current = queries.member_ids(conn, settings.dashboard_group, batch_id, wanted)
    plan = rules.EditPlan(
        adds=tuple(sorted(set(body.add) - current - set(body.remove))),
        removes=tuple(sorted(set(body.remove) & current)),
    )
    ids = apply_edit(conn, settings, b, who, plan) if not plan.empty else []
    return EditResultOut(batch_id=batch_id, upload_ids=ids, adds=list(plan.adds), removes=list(plan.removes))


@router.get("/uploads", tags=["uploads"], summary="Recent uploads with progress and summary")
def api_uploads(
    who: Who, conn: Db, settings: AppSettings, batch: Annotated[str | None, Query(max_length=200)] = None
) -> list[UploadOut]:
    return [upload_out(r) for r in queries.uploads(conn, settings.dashboard_group, batch or None, who.viewer)]


@router.get("/uploads/{upload_id}", tags=["uploads"], responses=NOT_FOUND)
def api_upload(upload_id: str, who: Who, conn: Db, settings: AppSettings) -> UploadOut:
    return upload_out(need_upload(conn, settings.dashboard_group, upload_id, who.viewer))
