"""Edit Batch: who may change a batch's participants here, the form, and publishing the change.

A change is published as UI uploads on the commands topic through the producer's public interface, exactly
as the CLI publishes a file; the processor applies it and the read model shows it.  The JSON form of the same
routes is in ``api``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from dashboard import queries, rules
from dashboard.web.csrf import check_form
from dashboard.web.deps import AppSettings, Db, Identity, Who, app_engine, app_settings, signed_in
from dashboard.web.errors import PageError
from dashboard.web.lookups import need_batch, need_batch_to_change
from dashboard.web.render import href, render
from enrolment.domain.access import Viewer, may_edit_batch
from enrolment.domain.text import CONTROL_CHARACTER, control_sentence
from enrolment.files import InputRow
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from producer.publish import UploadRequest, publish_upload

CANDIDATE_LIMIT = 50

router = APIRouter(dependencies=[Depends(signed_in)])


def kafka_publisher(settings: Settings, request: UploadRequest, user_ids: Sequence[str]) -> str:
    """Publishes one upload (commands + seal) exactly like the CLI does; the line numbers start at 2."""
    rows = [InputRow(line=i + 2, identifier=u, id_type="USER_ID") for i, u in enumerate(user_ids)]
    return publish_upload(settings, default_codec(), request, rows, keep_rows=False).upload_id


def edit_state_for(settings: Settings, b: queries.BatchInfo, viewer: Viewer) -> rules.EditState:
    """Whether ``viewer`` may use the drop-down on this batch now, and if not, why."""
    return rules.edit_state(
        b.participant_count,
        settings.ui_participant_limit,
        invite_only=b.invite_only,
        status=b.status,
        mentor=viewer.user_id,
        authorized=may_edit_batch(viewer, b.as_domain()),
    )


def check_edit(conn: Connection, settings: Settings, b: queries.BatchInfo, viewer: Viewer, plan: rules.EditPlan) -> str:
    """The signed-in requester when the change may be published; a PageError saying why not otherwise."""
    st = edit_state_for(settings, b, viewer)
    if not st.enabled:
        raise PageError(409 if st.limit_reached else 403, st.message or "This batch cannot be edited here.")
    if plan.adds:
        unknown = sorted(set(plan.adds) - queries.existing_users(conn, b.state, list(plan.adds)))
        if unknown:
            raise PageError(422, f"No user of state {b.state} has the user id {', '.join(unknown[:5])}.")
    problem = rules.edit_problem(b.participant_count, plan, settings.ui_participant_limit)
    if problem:
        raise PageError(409, problem)
    return viewer.user_id


def apply_edit(
    conn: Connection, settings: Settings, b: queries.BatchInfo, viewer: Viewer, plan: rules.EditPlan
) -> list[str]:
    """Checks the change and publishes it as UI uploads (removals first, so they make room); returns ids."""
    for user_id in (*plan.removes, *plan.adds):
        control = control_sentence("user id", user_id)
        if control is not None:
            raise PageError(400, f"{CONTROL_CHARACTER}: {control} Nothing was changed.")
    requested_by = check_edit(conn, settings, b, viewer, plan)
    ids: list[str] = []
    for action, people in (("REMOVE", plan.removes), ("ADD", plan.adds)):
        if not people:
            continue
        request = UploadRequest(
            batch_id=b.batch_id, action=action, requested_by=requested_by, kind="ui", source="UI", file_name=None
        )
        try:
            ids.append(kafka_publisher(settings, request, people))
        except BrokerUnavailable as exc:
            if ids:  # the removals went out; say so rather than pretend nothing happened
                raise PageError(
                    503, f"The removals were sent (upload {ids[0]}) but the additions could not be: {exc}"
                ) from None
            raise PageError(503, f"The change could not be sent, so nothing was changed: {exc}") from None
    return ids


def edit_page(
    request: Request,
    conn: Connection,
    b: queries.BatchInfo,
    viewer: Viewer,
    q: str,
    came_from: str,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    settings = app_settings(request)
    st = edit_state_for(settings, b, viewer)
    group = settings.dashboard_group
    return render(
        request,
        "edit.html",
        status,
        batch=b,
        edit=st,
        members=[] if st.limit_reached else queries.members(conn, group, b.batch_id),
        candidates=queries.candidates(conn, group, b, q, CANDIDATE_LIMIT) if st.enabled else [],
        q=q,
        came_from=came_from,
        error=error,
        nav="workspace" if came_from == "workspace" else "courses",
    )


@router.get("/batches/{batch_id}/edit", include_in_schema=False)
def edit_batch_page(
    request: Request,
    batch_id: str,
    who: Who,
    conn: Db,
    settings: AppSettings,
    q: Annotated[str, Query(max_length=200)] = "",
    came_from: Annotated[str, Query(alias="from")] = "courses",
) -> HTMLResponse:
    b = need_batch(conn, settings.dashboard_group, batch_id, who.viewer)
    return edit_page(request, conn, b, who.viewer, " ".join(q.split()), came_from)


def form_values(body: bytes) -> dict[str, list[str]]:
    """application/x-www-form-urlencoded without a multipart dependency."""
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=False)


def first_value(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def submit_edit(request: Request, batch_id: str, who: Identity, form: dict[str, list[str]]) -> Response:
    """The form's selection against the members the page showed: publish the difference, or show the form again."""
    came_from = (form.get("from") or ["courses"])[0]
    settings = app_settings(request)
    group = settings.dashboard_group
    viewer = who.viewer
    with app_engine(request).connect() as conn:
        b = need_batch_to_change(conn, group, batch_id, viewer)
        shown = form.get("shown", [])
        selected = form.get("participants", [])
        current = queries.member_ids(conn, group, batch_id, sorted(set(shown) | set(selected)))
        plan = rules.plan_edit(shown, selected, current)
        if plan.empty:
            return edit_page(request, conn, b, viewer, "", came_from, error="Nothing changed.")
        try:
            ids = apply_edit(conn, settings, b, viewer, plan)
        except PageError as exc:
            return edit_page(request, conn, b, viewer, "", came_from, exc.status, exc.message)
    if len(ids) == 1:
        return RedirectResponse(f"/uploads/{ids[0]}", status_code=303)
    return RedirectResponse(href("/uploads", batch=batch_id), status_code=303)


@router.post("/batches/{batch_id}/edit", include_in_schema=False)
async def edit_batch_submit(request: Request, batch_id: str, who: Who) -> Response:
    """Form post of the drop-down: the session's CSRF token, the selection, and the members the page showed."""
    form = form_values(await request.body())
    check_form(request, who, first_value(form, "csrf_token"))
    return await run_in_threadpool(submit_edit, request, batch_id, who, form)
