"""The plan API: ``POST /api/plans`` (a file, as the upload API takes it, evaluated into a waiting plan),
``GET /api/plans`` and ``/api/plans/{id}`` (the plan), ``GET /api/plans/{id}/rows.csv`` (every row with its
expected outcome and reason) and ``POST /api/plans/{id}/approve|reject`` (a state admin's decision; approval
applies the plan at once as one upload).

Scope as everywhere: a plan the caller may not see is 404, a decision they may not take 403, a plan that is
not waiting 409.  A cookie-authenticated write needs the CSRF header (API tokens need none).
"""

from __future__ import annotations

import io
from contextlib import closing
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from dashboard import plan_reads
from dashboard.models import ProblemOut
from dashboard.web.audit_log import log_download
from dashboard.web.csrf import check_json
from dashboard.web.deps import AppSettings, Db, EngineDep, Who, signed_in
from dashboard.web.downloads import attachment
from dashboard.web.plan_actions import PlanAsk, decide, make_from_body
from dashboard.web.plan_views import PlanOut, need_plan, plan_out, upload_of
from dashboard.web.plans_pages import STATUSES
from enrolment import csvsafe
from enrolment.store import plans as plan_store
from producer.plans import expire_due

PATH = "/api/plans"
router = APIRouter(prefix="/api", dependencies=[Depends(signed_in)], tags=["plans"])

REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"description": "The file is unusable: no plan was made (``refusals`` says why)"},
    401: {"model": ProblemOut, "description": "No session or API token"},
    403: {"model": ProblemOut, "description": "You may see the batch but not plan changes to it"},
    404: {"model": ProblemOut, "description": "Unknown batch, or one you may not see"},
    409: {"model": ProblemOut, "description": "The same file was applied to this batch in the last 30 days"},
    413: {"model": ProblemOut, "description": "The file is larger than UPLOAD_MAX_BYTES"},
}
DECISION_REFUSED: dict[int | str, dict[str, Any]] = {
    401: REFUSED[401],
    403: {"model": ProblemOut, "description": "You may see the plan but not decide it (not its state's admin)"},
    404: {"model": ProblemOut, "description": "Unknown plan, or one you may not see"},
    409: {"model": ProblemOut, "description": "The plan is not waiting (decided, applied or expired)"},
    503: {"model": ProblemOut, "description": "Kafka unreachable; the plan stays approved: approve it again"},
}


@router.post("/plans", status_code=201, response_model=PlanOut, summary="Plan a file's changes", responses=REFUSED)
async def api_make_plan(
    request: Request,
    who: Who,
    settings: AppSettings,
    engine: EngineDep,
    batch_id: Annotated[str, Query(min_length=1, max_length=200)],
    kind: Literal["add", "remove", "sync"],
    id_type: Literal["user_id", "state_id"] | None = None,
    max_removals: Annotated[int | None, Query(ge=0, description="Sync breaker: most removals")] = None,
    max_removal_percent: Annotated[float | None, Query(ge=0, le=100, description="Sync breaker: % of batch")] = None,
    allow_repeat: Annotated[bool, Query(description="Plan a file applied to the batch in the last 30 days")] = False,
    include_completed: Annotated[bool, Query(description="Removes apply to those who completed the course")] = False,
    apply: Annotated[bool, Query(description="Apply at once when no approval is needed (`participants sync`)")] = False,
) -> PlanOut | JSONResponse:
    check_json(request, who)
    ask = PlanAsk(
        batch_id=batch_id,
        kind=kind,
        id_type=id_type,
        max_removals=max_removals,
        max_removal_percent=max_removal_percent,
        allow_repeat=allow_repeat,
        include_completed=include_completed,
        apply=apply,
        file_name=request.headers.get("x-file-name") or None,
    )
    return await make_from_body(request, settings, engine, who, ask)


@router.get("/plans", summary="The plans you may see (newest first)")
def api_plans(
    who: Who,
    conn: Db,
    engine: EngineDep,
    status: Annotated[str | None, Query(description=f"One of {', '.join(STATUSES)}")] = None,
) -> list[dict[str, Any]]:
    expire_due(engine)  # plans past their expiry are marked (and audited) before anyone reads the list
    lines = plan_reads.plan_lines(conn, who.user_id, sorted(who.viewer.upload_states), status or None)
    return [
        {
            "plan_id": p.plan_id,
            "batch_id": p.batch_id,
            "kind": p.kind,
            "status": p.status,
            "rows": p.total,
            "made_by": p.made_by,
            "made_at": p.made_at.isoformat(),
            "expires_at": p.expires_at.isoformat(),
            "breaker_tripped": p.breaker,
        }
        for p in lines
    ]


@router.get("/plans/{plan_id}", summary="A plan: counts, status, who made and decided it", responses=REFUSED)
def api_plan(plan_id: str, who: Who, conn: Db) -> PlanOut:
    found, now = need_plan(conn, plan_id, who.viewer)
    return plan_out(found, now, upload_of(conn, found))


@router.get("/plans/{plan_id}/rows.csv", summary="Every row of a plan with its expected outcome and reason")
def api_plan_rows(plan_id: str, who: Who, conn: Db) -> Response:
    need_plan(conn, plan_id, who.viewer)
    out = io.StringIO()
    writer = csvsafe.writer(out)
    writer.writerow(["line", "identifier", "id_type", "user_id", "action", "outcome", "reason", "message"])
    with closing(conn.connection.cursor()) as cur:
        rows = plan_store.rows(cur, plan_id)
    for r in rows:
        writer.writerow(
            [r.line, r.identifier, r.id_type or "", r.user_id or "", r.action, r.outcome, r.reason, r.message]
        )
    log_download(who.user_id, len(rows), plan_id=plan_id)
    return Response(
        out.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(f"plan-{plan_id}-rows.csv")},
    )


@router.post(
    "/plans/{plan_id}/approve",
    response_model=PlanOut,
    summary="Approve a plan: it is applied at once",
    responses=DECISION_REFUSED,
)
def api_approve_plan(request: Request, plan_id: str, who: Who, settings: AppSettings, engine: EngineDep) -> PlanOut:
    check_json(request, who)
    return decide(settings, engine, who, plan_id, "approve")


@router.post("/plans/{plan_id}/reject", response_model=PlanOut, summary="Reject a plan", responses=DECISION_REFUSED)
def api_reject_plan(request: Request, plan_id: str, who: Who, settings: AppSettings, engine: EngineDep) -> PlanOut:
    check_json(request, who)
    return decide(settings, engine, who, plan_id, "reject")
