"""The HTML pages (server-rendered, not in the OpenAPI document): courses, the mentor's workspace, a batch's
participant table, and uploads.  Edit Batch is in ``edit``, the CSV download in ``downloads``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dashboard import queries, rules
from dashboard.web.convert import upload_out
from dashboard.web.deps import AppSettings, Db, Mentor
from dashboard.web.edit import edit_state_for
from dashboard.web.lookups import need_batch, need_upload
from dashboard.web.render import href, render

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(mentor: Mentor) -> RedirectResponse:
    return RedirectResponse(href("/workspace" if mentor else "/courses", mentor=mentor), status_code=303)


@router.get("/courses")
def courses_page(request: Request, mentor: Mentor, conn: Db, settings: AppSettings) -> HTMLResponse:
    courses = queries.courses(conn, settings.dashboard_group)
    return render(request, "courses.html", courses=courses, mentor=mentor, nav="courses")


@router.get("/workspace")
def workspace_page(request: Request, mentor: Mentor, conn: Db, settings: AppSettings) -> HTMLResponse:
    if not mentor:
        return render(request, "workspace.html", batches=[], mentor=None, nav="workspace", who=None)
    return render(
        request,
        "workspace.html",
        batches=queries.mentor_batches(conn, settings.dashboard_group, mentor),
        mentor=mentor,
        who=queries.user_name(conn, mentor),
        nav="workspace",
    )


@router.get("/batches/{batch_id}")
def batch_page(
    request: Request,
    batch_id: str,
    mentor: Mentor,
    conn: Db,
    settings: AppSettings,
    page: Annotated[int, Query(ge=1)] = 1,
    size: int = rules.DEFAULT_PAGE_SIZE,
    sort: str = "name",
    dir: str = "asc",
    q: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    group = settings.dashboard_group
    b = need_batch(conn, group, batch_id)
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
        edit=edit_state_for(conn, settings, b, mentor),
        mentor=mentor,
        nav="courses",
    )


@router.get("/uploads")
def uploads_page(
    request: Request,
    mentor: Mentor,
    conn: Db,
    settings: AppSettings,
    batch: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    rows = queries.uploads(conn, settings.dashboard_group, batch or None)
    uploads = [(r, upload_out(r)) for r in rows]
    return render(request, "uploads.html", uploads=uploads, batch_filter=batch, mentor=mentor, nav="uploads")


@router.get("/uploads/{upload_id}")
def upload_page(request: Request, upload_id: str, mentor: Mentor, conn: Db, settings: AppSettings) -> HTMLResponse:
    row = need_upload(conn, settings.dashboard_group, upload_id)
    return render(request, "upload.html", row=row, up=upload_out(row), mentor=mentor, nav="uploads")
