"""The dashboard web app: server-rendered pages (Jinja2, autoescaped) and the JSON API under /api/.

Routes are thin: they read through ``queries``, decide with ``rules`` and render.  Membership, counts,
progress and uploads come from the read model; names, batches and mentors from the reference tables.
Edit Batch changes are published as UI uploads on the commands topic; the processor applies them.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard import queries, rules
from dashboard.models import (
    BatchOut,
    CourseOut,
    EditIn,
    EditOut,
    EditResultOut,
    EditStateOut,
    ParticipantOut,
    ParticipantPageOut,
    PersonOut,
    ProblemOut,
    UploadOut,
)
from dashboard.readmodel import UploadRow, from_ms
from dashboard.sunbird_api import sunbird_router
from enrolment.csvsafe import BOM
from enrolment.domain.rules import is_authorized
from enrolment.files import InputRow
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from producer.follow import UploadStatus
from producer.publish import BrokerUnavailable, UploadRequest, publish_upload

log = logging.getLogger("dashboard.app")

HERE = Path(__file__).resolve().parent
CANDIDATE_LIMIT = 50
CSV_CHUNK_ROWS = 1000

# (settings, request, user ids) -> upload id; the default publishes to Kafka with the producer.
Publisher = Callable[[Settings, UploadRequest, Sequence[str]], str]


class PageError(Exception):
    """A problem shown to the user as one sentence (HTML page or JSON ``detail``), never a traceback."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def kafka_publisher(settings: Settings, request: UploadRequest, user_ids: Sequence[str]) -> str:
    """Publishes one upload (commands + seal) exactly like the CLI does; the line numbers start at 2."""
    rows = [InputRow(line=i + 2, identifier=u, id_type="USER_ID") for i, u in enumerate(user_ids)]
    return publish_upload(settings, default_codec(), request, rows, keep_rows=False).upload_id


class ServerTiming:
    """Adds ``Server-Timing: app;dur=<ms>`` (time until the response starts) so the bench can read server time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(
                    "Server-Timing", f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
                )
            await send(message)

        await self.app(scope, receive, timed_send)


# ------------------------------------------------------------------------------------------ view helpers


def href(path: str, **params: Any) -> str:
    """A link with the non-empty parameters (the acting mentor travels on every link)."""
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return f"{path}?{urlencode(kept)}" if kept else path


def batch_out(b: queries.BatchInfo) -> BatchOut:
    return BatchOut(
        batch_id=b.batch_id,
        course_id=b.course_id,
        course_name=b.course_name,
        state=b.state,
        enrollment_type=b.enrollment_type,
        status=b.status,
        start_date=b.start_date,
        end_date=b.end_date,
        mentors=list(b.mentors),
        participant_count=b.participant_count,
    )


def participant_out(p: queries.Participant) -> ParticipantOut:
    return ParticipantOut(
        user_id=p.user_id,
        name=p.name,
        state_id=p.state_id,
        enrolled_at=p.enrolled_at,
        added_via=p.added_via,
        progress=p.progress or 0,
        completed_at=p.completed_at,
    )


def upload_status(row: UploadRow) -> UploadStatus:
    """The same summary object as `participants status` and `--wait` use."""
    return UploadStatus(
        upload_id=row.upload_id,
        batch_id=row.batch_id,
        kind=row.kind,
        dry_run=row.dry_run,
        published=row.commands_published,
        processed=row.processed,
        outcomes=Counter(row.outcomes),
        reasons=Counter(row.reasons),
        refused=[dict(r) for r in row.refused],
        completed=row.completed,
    )


def upload_out(row: UploadRow) -> UploadOut:
    data = upload_status(row).to_json()
    return UploadOut(
        **data,
        requested_by=row.requested_by,
        file_name=row.file_name,
        percent=100 if row.completed else rules.percent(row.processed, row.commands_published),
        created_at=from_ms(row.created_at_ms),
        completed_at=from_ms(row.completed_at_ms),
    )


def csv_chunks(participants: Iterator[queries.Participant], chunk_rows: int = CSV_CHUNK_ROWS) -> Iterator[bytes]:
    """UTF-8 with BOM, CRLF, a header, then the rows ``chunk_rows`` at a time (never the whole file in memory)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    buf.write(BOM)
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


def _form_values(body: bytes) -> dict[str, list[str]]:
    """application/x-www-form-urlencoded without a multipart dependency."""
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=False)


# ------------------------------------------------------------------------------------------ dependencies


def acting_mentor(
    mentor: Annotated[
        str | None, Query(max_length=128, description="User id of the acting mentor (no login yet)")
    ] = None,
) -> str | None:
    """The one place that knows who is acting; replace it with authentication later."""
    return (mentor.strip() or None) if mentor else None


def db(request: Request) -> Iterator[Connection]:
    """A connection per request from the app's engine."""
    engine: Engine = request.app.state.engine
    with engine.connect() as conn:
        yield conn


Mentor = Annotated[str | None, Depends(acting_mentor)]
Db = Annotated[Connection, Depends(db)]


# ------------------------------------------------------------------------------------------ the app


def create_app(settings: Settings, engine: Engine, *, publisher: Publisher | None = None) -> FastAPI:
    """The dashboard on ``engine`` for ``settings.dashboard_group``'s read model."""
    publish = publisher or kafka_publisher
    group = settings.dashboard_group
    limit = settings.ui_participant_limit
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.globals.update(
        href=href, shown_time=rules.shown_time, progress_label=rules.progress_label, percent=rules.percent
    )

    app = FastAPI(
        title="Participants dashboard",
        version="0.1.0",
        description=(
            "Courses, batches, participants with course progress, Edit Batch and uploads. Pages are server-rendered "
            "HTML; the same data is available as JSON under /api/. The acting mentor is the `mentor` query "
            "parameter (no login yet)."
        ),
    )
    app.state.engine = engine
    app.add_middleware(ServerTiming)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(sunbird_router(settings, engine))  # POST /v1/course/batch/users/add|remove

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("mentor", None)
        html = env.get_template(name).render(request=request, limit=limit, **ctx)
        return HTMLResponse(html, status_code=status)

    def need_batch(conn: Connection, batch_id: str) -> queries.BatchInfo:
        b = queries.batch(conn, group, batch_id)
        if b is None:
            raise PageError(404, f"Batch {batch_id} does not exist.")
        return b

    def edit_state_for(conn: Connection, b: queries.BatchInfo, mentor: str | None) -> rules.EditState:
        requester = queries.user(conn, mentor) if mentor else None
        return rules.edit_state(
            b.participant_count,
            limit,
            invite_only=b.invite_only,
            status=b.status,
            mentor=mentor,
            authorized=is_authorized(requester, b.as_domain()),
        )

    def edit_state_out(b: queries.BatchInfo, st: rules.EditState) -> EditStateOut:
        return EditStateOut(
            batch_id=b.batch_id,
            participant_count=b.participant_count,
            limit=limit,
            enabled=st.enabled,
            limit_reached=st.limit_reached,
            message=st.message,
            room=st.room,
        )

    def apply_edit(conn: Connection, b: queries.BatchInfo, mentor: str | None, plan: rules.EditPlan) -> list[str]:
        """Checks the change and publishes it as UI uploads (removals first, so they make room); returns ids."""
        st = edit_state_for(conn, b, mentor)
        if not st.enabled:
            raise PageError(409 if st.limit_reached else 403, st.message or "This batch cannot be edited here.")
        assert mentor is not None
        if plan.adds:
            unknown = sorted(set(plan.adds) - queries.existing_users(conn, b.state, list(plan.adds)))
            if unknown:
                raise PageError(422, f"No user of state {b.state} has the user id {', '.join(unknown[:5])}.")
        problem = rules.edit_problem(b.participant_count, plan, limit)
        if problem:
            raise PageError(409, problem)
        ids: list[str] = []
        for action, people in (("REMOVE", plan.removes), ("ADD", plan.adds)):
            if not people:
                continue
            request = UploadRequest(
                batch_id=b.batch_id, action=action, requested_by=mentor, kind="ui", source="UI", file_name=None
            )
            try:
                ids.append(publish(settings, request, people))
            except BrokerUnavailable as exc:
                if ids:  # the removals went out; say so rather than pretend nothing happened
                    raise PageError(
                        503, f"The removals were sent (upload {ids[0]}) but the additions could not be: {exc}"
                    ) from None
                raise PageError(503, f"The change could not be sent, so nothing was changed: {exc}") from None
        return ids

    # -------------------------------------------------------------------------------- errors
    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def problem(request: Request, status: int, message: str) -> Response:
        if wants_json(request):
            return JSONResponse({"detail": message}, status_code=status)
        mentor = request.query_params.get("mentor") or None
        return render(request, "error.html", status, message=message, code=status, mentor=mentor)

    @app.exception_handler(PageError)
    async def on_page_error(request: Request, exc: PageError) -> Response:
        return problem(request, exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "This page does not exist." if exc.status_code == 404 else str(exc.detail)
        return problem(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "body", "path"))
        message = f"The value of {where or 'the request'} cannot be used: {first.get('msg', 'invalid')}."
        return problem(request, 400 if not wants_json(request) else 422, message)

    @app.exception_handler(OperationalError)
    async def on_db_down(request: Request, exc: OperationalError) -> Response:
        log.warning("database unreachable", extra={"error": str(exc.orig or exc)})
        return problem(request, 503, "The database cannot be reached right now. Please try again in a minute.")

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", extra={"path": request.url.path})
        return problem(request, 500, "Something went wrong on our side. Please try again; if it persists, tell us.")

    # -------------------------------------------------------------------------------- pages
    @app.get("/", include_in_schema=False)
    def home(mentor: Mentor) -> RedirectResponse:
        return RedirectResponse(href("/workspace" if mentor else "/courses", mentor=mentor), status_code=303)

    @app.get("/courses", include_in_schema=False)
    def courses_page(request: Request, mentor: Mentor, conn: Db) -> HTMLResponse:
        return render(request, "courses.html", courses=queries.courses(conn, group), mentor=mentor, nav="courses")

    @app.get("/workspace", include_in_schema=False)
    def workspace_page(request: Request, mentor: Mentor, conn: Db) -> HTMLResponse:
        if not mentor:
            return render(request, "workspace.html", batches=[], mentor=None, nav="workspace", who=None)
        return render(
            request,
            "workspace.html",
            batches=queries.mentor_batches(conn, group, mentor),
            mentor=mentor,
            who=queries.user_name(conn, mentor),
            nav="workspace",
        )

    @app.get("/batches/{batch_id}", include_in_schema=False)
    def batch_page(
        request: Request,
        batch_id: str,
        mentor: Mentor,
        conn: Db,
        page: Annotated[int, Query(ge=1)] = 1,
        size: int = rules.DEFAULT_PAGE_SIZE,
        sort: str = "name",
        dir: str = "asc",
        q: Annotated[str, Query(max_length=200)] = "",
    ) -> HTMLResponse:
        b = need_batch(conn, batch_id)
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
            edit=edit_state_for(conn, b, mentor),
            mentor=mentor,
            nav="courses",
        )

    def edit_page(
        request: Request,
        conn: Connection,
        b: queries.BatchInfo,
        mentor: str | None,
        q: str,
        came_from: str,
        status: int = 200,
        error: str | None = None,
    ) -> HTMLResponse:
        st = edit_state_for(conn, b, mentor)
        members = [] if st.limit_reached else queries.members(conn, group, b.batch_id)
        candidates = queries.candidates(conn, group, b, q, CANDIDATE_LIMIT) if st.enabled else []
        return render(
            request,
            "edit.html",
            status,
            batch=b,
            edit=st,
            members=members,
            candidates=candidates,
            q=q,
            came_from=came_from,
            error=error,
            mentor=mentor,
            nav="workspace" if came_from == "workspace" else "courses",
        )

    @app.get("/batches/{batch_id}/edit", include_in_schema=False)
    def edit_batch_page(
        request: Request,
        batch_id: str,
        mentor: Mentor,
        conn: Db,
        q: Annotated[str, Query(max_length=200)] = "",
        came_from: Annotated[str, Query(alias="from")] = "courses",
    ) -> HTMLResponse:
        b = need_batch(conn, batch_id)
        return edit_page(request, conn, b, mentor, " ".join(q.split()), came_from)

    @app.post("/batches/{batch_id}/edit", include_in_schema=False)
    async def edit_batch_submit(request: Request, batch_id: str, mentor: Mentor) -> Response:
        """Form post of the drop-down: the selection, and the members the page showed."""
        form = _form_values(await request.body())
        came_from = (form.get("from") or ["courses"])[0]

        def work() -> Response:
            with engine.connect() as conn:
                b = need_batch(conn, batch_id)
                shown = form.get("shown", [])
                selected = form.get("participants", [])
                current = queries.member_ids(conn, group, batch_id, sorted(set(shown) | set(selected)))
                plan = rules.plan_edit(shown, selected, current)
                if plan.empty:
                    return edit_page(request, conn, b, mentor, "", came_from, error="Nothing changed.")
                try:
                    ids = apply_edit(conn, b, mentor, plan)
                except PageError as exc:
                    return edit_page(request, conn, b, mentor, "", came_from, exc.status, exc.message)
            target = (
                href(f"/uploads/{ids[0]}", mentor=mentor)
                if len(ids) == 1
                else href("/uploads", batch=batch_id, mentor=mentor)
            )
            return RedirectResponse(target, status_code=303)

        return await run_in_threadpool(work)

    @app.get(
        "/batches/{batch_id}/participants.csv",
        tags=["participants"],
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/csv": {}}, "description": "Every participant with progress (UTF-8, BOM, CRLF)"},
            404: {"model": ProblemOut, "description": "Unknown batch"},
        },
        summary="Download every participant of a batch with progress as CSV",
    )
    def participants_csv(batch_id: str, conn: Db) -> StreamingResponse:
        """Streamed through a server-side cursor: 10k+ rows are never held in memory at once."""
        need_batch(conn, batch_id)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in batch_id)
        return StreamingResponse(
            csv_chunks(queries.stream_participants(engine, group, batch_id)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="participants-{name}.csv"'},
        )

    @app.get("/uploads", include_in_schema=False)
    def uploads_page(
        request: Request, mentor: Mentor, conn: Db, batch: Annotated[str | None, Query(max_length=200)] = None
    ) -> HTMLResponse:
        rows = queries.uploads(conn, group, batch or None)
        return render(
            request,
            "uploads.html",
            uploads=[(r, upload_out(r)) for r in rows],
            batch_filter=batch,
            mentor=mentor,
            nav="uploads",
        )

    @app.get("/uploads/{upload_id}", include_in_schema=False)
    def upload_page(request: Request, upload_id: str, mentor: Mentor, conn: Db) -> HTMLResponse:
        row = queries.upload(conn, group, upload_id)
        if row is None:
            raise PageError(404, f"No upload {upload_id} is known to the dashboard yet.")
        return render(request, "upload.html", row=row, up=upload_out(row), mentor=mentor, nav="uploads")

    # -------------------------------------------------------------------------------- JSON API
    not_found: dict[int | str, dict[str, Any]] = {404: {"model": ProblemOut, "description": "Unknown batch or upload"}}

    @app.get("/api/courses", tags=["courses"], summary="Courses with their batches")
    def api_courses(conn: Db) -> list[CourseOut]:
        return [
            CourseOut(course_id=c.course_id, course_name=c.course_name, batches=[batch_out(b) for b in c.batches])
            for c in queries.courses(conn, group)
        ]

    @app.get(
        "/api/workspace",
        tags=["courses"],
        summary="The acting mentor's batches",
        responses={400: {"model": ProblemOut}},
    )
    def api_workspace(mentor: Mentor, conn: Db) -> list[BatchOut]:
        if not mentor:
            raise PageError(400, "Say which mentor you are with ?mentor=USER_ID.")
        return [batch_out(b) for b in queries.mentor_batches(conn, group, mentor)]

    @app.get("/api/batches/{batch_id}", tags=["batches"], responses=not_found)
    def api_batch(batch_id: str, conn: Db) -> BatchOut:
        return batch_out(need_batch(conn, batch_id))

    @app.get(
        "/api/batches/{batch_id}/participants",
        tags=["participants"],
        summary="A page of participants with progress (sortable, searchable)",
        responses=not_found,
    )
    def api_participants(
        batch_id: str,
        conn: Db,
        page: Annotated[int, Query(ge=1)] = 1,
        size: Annotated[int, Query(description=f"One of {rules.PAGE_SIZES}")] = rules.DEFAULT_PAGE_SIZE,
        sort: Annotated[str, Query(description=f"One of {', '.join(rules.SORT_KEYS)}")] = "name",
        dir: Annotated[str, Query(description="asc or desc")] = "asc",
        q: Annotated[str, Query(max_length=200, description="Part of a name, user id or state id")] = "",
    ) -> ParticipantPageOut:
        b = need_batch(conn, batch_id)
        tq = rules.table_query(page, size, sort, dir, q)
        total, rows = queries.participants_page(conn, group, batch_id, tq, b.participant_count)
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

    @app.get(
        "/api/batches/{batch_id}/edit",
        tags=["edit batch"],
        summary="The Edit Batch state for the acting mentor: drop-down enabled or why not, members, candidates",
        responses=not_found,
    )
    def api_edit(batch_id: str, mentor: Mentor, conn: Db, q: Annotated[str, Query(max_length=200)] = "") -> EditOut:
        b = need_batch(conn, batch_id)
        st = edit_state_for(conn, b, mentor)
        members = [] if st.limit_reached else queries.members(conn, group, batch_id)
        cands = queries.candidates(conn, group, b, " ".join(q.split()), CANDIDATE_LIMIT) if st.enabled else []
        return EditOut(
            **edit_state_out(b, st).model_dump(),
            members=[PersonOut(user_id=p.user_id, name=p.name, state_id=p.state_id) for p in members],
            candidates=[PersonOut(user_id=p.user_id, name=p.name, state_id=p.state_id) for p in cands],
        )

    @app.post(
        "/api/batches/{batch_id}/participants",
        tags=["edit batch"],
        status_code=202,
        summary="Add or remove participants as the acting mentor (source UI; the processor applies them)",
        responses={
            **not_found,
            403: {"model": ProblemOut, "description": "Not a mentor of the batch"},
            409: {"model": ProblemOut, "description": "Over the UI participant limit"},
            503: {"model": ProblemOut, "description": "Kafka unreachable; nothing was sent"},
        },
    )
    def api_edit_submit(batch_id: str, body: EditIn, mentor: Mentor, conn: Db) -> EditResultOut:
        b = need_batch(conn, batch_id)
        wanted = sorted(set(body.add) | set(body.remove))
        current = queries.member_ids(conn, group, batch_id, wanted)
        plan = rules.EditPlan(
            adds=tuple(sorted(set(body.add) - current - set(body.remove))),
            removes=tuple(sorted(set(body.remove) & current)),
        )
        ids = apply_edit(conn, b, mentor, plan) if not plan.empty else []
        return EditResultOut(batch_id=batch_id, upload_ids=ids, adds=list(plan.adds), removes=list(plan.removes))

    @app.get("/api/uploads", tags=["uploads"], summary="Recent uploads with progress and summary")
    def api_uploads(conn: Db, batch: Annotated[str | None, Query(max_length=200)] = None) -> list[UploadOut]:
        return [upload_out(r) for r in queries.uploads(conn, group, batch or None)]

    @app.get("/api/uploads/{upload_id}", tags=["uploads"], responses=not_found)
    def api_upload(upload_id: str, conn: Db) -> UploadOut:
        row = queries.upload(conn, group, upload_id)
        if row is None:
            raise PageError(404, f"No upload {upload_id} is known to the dashboard yet.")
        return upload_out(row)

    return app
