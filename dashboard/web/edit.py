"""Edit Batch: who may change a batch's participants here, the form, and publishing the change.

A change is published as UI uploads on the commands topic through the producer's public interface, exactly
as the CLI publishes a file; the processor applies it and the read model shows it.  The JSON form of the same
routes is in ``api``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from dashboard import queries, rules
from dashboard.web.audit_log import log_submission
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
MAX_SEARCH = 200

router = APIRouter(dependencies=[Depends(signed_in)])


def kafka_publisher(settings: Settings, request: UploadRequest, user_ids: Sequence[str]) -> str:
    """Publishes one upload (commands + seal) exactly like the CLI does; the line numbers start at 2."""
    rows = [InputRow(line=i + 2, identifier=u, id_type="USER_ID") for i, u in enumerate(user_ids)]
    return publish_upload(settings, default_codec(), request, rows, keep_rows=False).upload_id


def edit_state_for(settings: Settings, b: queries.BatchInfo, viewer: Viewer) -> rules.EditState:
    """Whether ``viewer`` may change this batch's participants here now, and if not, why."""
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
    conn: Connection, settings: Settings, b: queries.BatchInfo, who: Identity, plan: rules.EditPlan
) -> list[str]:
    """Checks the change and publishes it as UI uploads (removals first, so they make room), each audited as a
    submission like any other upload; returns their ids."""
    viewer = who.viewer
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
            batch_id=b.batch_id,
            action=action,
            requested_by=requested_by,
            kind="ui",
            source="UI",
            file_name=None,
            submitted_by=viewer.user_id,
        )
        try:
            ids.append(kafka_publisher(settings, request, people))
            log_submission(request, len(people), who.via)
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
    marked: rules.EditPlan | None = None,
) -> HTMLResponse:
    """The list with a remove mark per member and the search with an add mark per person (``marked`` kept)."""
    settings = app_settings(request)
    st = edit_state_for(settings, b, viewer)
    group = settings.dashboard_group
    marked = marked or rules.EditPlan(adds=(), removes=())
    candidates: list[queries.Person] = []
    if st.enabled:  # the people already marked to add stay listed (and ticked) whatever the search shows
        found = queries.candidates(conn, group, b, q, CANDIDATE_LIMIT)
        pending = set(marked.adds)
        candidates = named(conn, b.state, marked.adds) + [p for p in found if p.user_id not in pending]
    return render(
        request,
        "edit.html",
        status,
        batch=b,
        edit=st,
        members=[] if st.limit_reached else queries.members(conn, group, b.batch_id),
        candidates=candidates,
        marked=marked,
        q=q,
        came_from=came_from,
        error=error,
        nav="workspace" if came_from == "workspace" else "courses",
    )


def named(conn: Connection, state: str, user_ids: Sequence[str]) -> list[queries.Person]:
    """The people of a change with their names (an id the users table does not know is shown as itself)."""
    found = {p.user_id: p for p in queries.people(conn, state, list(user_ids))}
    return [found.get(u, queries.Person(u, u, None)) for u in user_ids]


def change_digest(who: Identity, batch_id: str, plan: rules.EditPlan) -> str:
    """Binds a confirmation to the exact change it showed, for this session: a changed batch or form breaks it."""
    key = (who.csrf_token or who.user_id).encode()
    message = "\n".join([batch_id, ",".join(plan.adds), ",".join(plan.removes)]).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def confirm_page(
    request: Request,
    conn: Connection,
    b: queries.BatchInfo,
    plan: rules.EditPlan,
    digest: str,
    came_from: str,
    status: int = 200,
    notice: str | None = None,
) -> HTMLResponse:
    """The second step: what will change, by name, and the one button that publishes it."""
    return render(
        request,
        "edit_confirm.html",
        status,
        batch=b,
        plan=plan,
        summary=rules.change_summary(plan),
        adding=named(conn, b.state, plan.adds),
        removing=named(conn, b.state, plan.removes),
        digest=digest,
        notice=notice,
        came_from=came_from,
        nav="workspace" if came_from == "workspace" else "courses",
    )


@router.get("/batches/{batch_id}/edit", include_in_schema=False)
def edit_batch_page(
    request: Request,
    batch_id: str,
    who: Who,
    conn: Db,
    settings: AppSettings,
    q: Annotated[str, Query(max_length=MAX_SEARCH)] = "",
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


CHANGED_MEANWHILE = (
    "The batch or the change is no longer what was shown, so nothing was published. Check the change below and "
    "confirm it again."
)


def submit_edit(request: Request, batch_id: str, who: Identity, form: dict[str, list[str]]) -> Response:
    """Marks → the confirmation page; only its confirmation (step=confirm, matching digest) publishes.

    ``step=search`` re-renders the page with the marks kept, so searching never loses what was ticked.
    """
    came_from = first_value(form, "from") or "courses"
    settings = app_settings(request)
    viewer = who.viewer
    adds, removes = form.get("add", []), form.get("remove", [])
    with app_engine(request).connect() as conn:
        b = need_batch_to_change(conn, settings.dashboard_group, batch_id, viewer)
        current = queries.member_ids(conn, settings.dashboard_group, batch_id, sorted(set(adds) | set(removes)))
        plan = rules.plan_marked(adds, removes, current)
        step = first_value(form, "step") or "review"
        if step == "search":  # a new search that keeps the marks; nothing is checked or published
            q = " ".join((first_value(form, "q") or "").split())[:MAX_SEARCH]
            return edit_page(request, conn, b, viewer, q, came_from, marked=plan)
        if plan.empty:
            return edit_page(request, conn, b, viewer, "", came_from, error=NOTHING_MARKED)
        digest = change_digest(who, batch_id, plan)
        confirmed = step == "confirm" and hmac.compare_digest(first_value(form, "change") or "", digest)
        try:
            if not confirmed:  # a review, or a confirmation of something else than this change: (re)confirm
                check_edit(conn, settings, b, viewer, plan)
                again = step == "confirm"
                notice = CHANGED_MEANWHILE if again else None
                return confirm_page(request, conn, b, plan, digest, came_from, 409 if again else 200, notice)
            ids = apply_edit(conn, settings, b, who, plan)
        except PageError as exc:
            return edit_page(request, conn, b, viewer, "", came_from, exc.status, exc.message, plan)
    if len(ids) == 1:
        return RedirectResponse(f"/uploads/{ids[0]}", status_code=303)
    return RedirectResponse(href("/uploads", batch=batch_id), status_code=303)


NOTHING_MARKED = "Nothing changed: mark people to remove or to add, then review the change."


@router.post("/batches/{batch_id}/edit", include_in_schema=False)
async def edit_batch_submit(request: Request, batch_id: str, who: Who) -> Response:
    """Form post of the page (review) or of its confirmation (publish); the session's CSRF token either way."""
    form = form_values(await request.body())
    check_form(request, who, first_value(form, "csrf_token"))
    return await run_in_threadpool(submit_edit, request, batch_id, who, form)
