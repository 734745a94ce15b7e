"""The HTML pages (server-rendered, not in the OpenAPI document): courses, the mentor's workspace, a batch's
participant table, and uploads.  Edit Batch is in ``edit``, the CSV download in ``downloads``.

Every page needs a signed-in person (the router's dependency) and shows only what they may see.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dashboard import plan_reads, queries, rules
from dashboard.web.convert import upload_out
from dashboard.web.deps import AppSettings, Db, Who, signed_in
from dashboard.web.edit import edit_state_for
from dashboard.web.lookups import need_batch, need_upload
from dashboard.web.render import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(signed_in)])


@router.get("/")
def home(who: Who) -> RedirectResponse:
    v = who.viewer
    where = "/courses" if v.admin_states else "/uploads" if v.upload_states else "/workspace"
    return RedirectResponse(where, status_code=303)


@router.get("/courses")
def courses_page(request: Request, who: Who, conn: Db, settings: AppSettings) -> HTMLResponse:
    courses = queries.courses(conn, settings.dashboard_group, who.viewer)
    return render(request, "courses.html", courses=courses, nav="courses")


@router.get("/workspace")
def workspace_page(request: Request, who: Who, conn: Db, settings: AppSettings) -> HTMLResponse:
    return render(
        request,
        "workspace.html",
        batches=queries.mentor_batches(conn, settings.dashboard_group, who.user_id),
        who=queries.user_name(conn, who.user_id),
        nav="workspace",
    )


@router.get("/batches/{batch_id}")
def batch_page(
    request: Request,
    batch_id: str,
    who: Who,
    conn: Db,
    settings: AppSettings,
    page: Annotated[int, Query(ge=1)] = 1,
    size: int = rules.DEFAULT_PAGE_SIZE,
    sort: str = "name",
    dir: str = "asc",
    q: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    group = settings.dashboard_group
    b = need_batch(conn, group, batch_id, who.viewer)
    tq = rules.table_query(page, size, sort, dir, q)
    total, rows = queries.participants_page(conn, group, batch_id, tq, b.participant_count)
    return render(
        request,
        "batch.html",
        batch=b,
        tq=tq,
        total=total,
        rows=rows,
        pages=rules.page_count(total, tq.size),
        sort_keys=rules.SORT_KEYS,
        page_sizes=rules.PAGE_SIZES,
        edit=edit_state_for(settings, b, who.viewer),
        nav="courses",
    )


@router.get("/uploads")
def uploads_page(
    request: Request,
    who: Who,
    conn: Db,
    settings: AppSettings,
    batch: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    rows = queries.uploads(conn, settings.dashboard_group, batch or None, who.viewer)
    uploads = [(r, upload_out(r)) for r in rows]
    repeated = plan_reads.repeats(conn, [r.upload_id for r in rows])
    return render(request, "uploads.html", uploads=uploads, batch_filter=batch, repeats=repeated, nav="uploads")


@router.get("/uploads/{upload_id}")
def upload_page(request: Request, upload_id: str, who: Who, conn: Db, settings: AppSettings) -> HTMLResponse:
    row = need_upload(conn, settings.dashboard_group, upload_id, who.viewer)
    repeated = plan_reads.repeats(conn, [upload_id])
    return render(request, "upload.html", row=row, up=upload_out(row), repeats=repeated, nav="uploads")
