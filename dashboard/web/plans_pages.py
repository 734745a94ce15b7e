"""The plan pages: ``/plans`` (the plans the signed-in person may see, waiting ones first by default) and
``/plans/{id}`` (counts, the rows by outcome — the first rows of each, every row in the CSV —, status, maker,
expiry, the breaker's figures, and Approve / Reject for a state admin who may decide it).  After approval the
page follows the upload that applied it.  The buttons are form posts with the session's CSRF token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dashboard import plan_reads, queries
from dashboard.web.convert import upload_out
from dashboard.web.csrf import check_form
from dashboard.web.deps import AppSettings, Db, Who, app_engine, signed_in
from dashboard.web.edit import first_value, form_values
from dashboard.web.errors import PageError
from dashboard.web.plan_actions import decide
from dashboard.web.plan_views import decide_problem, need_plan, plan_out
from dashboard.web.render import href, render
from enrolment.domain.plans import PlanStatus
from producer.plans import expire_due

router = APIRouter(include_in_schema=False, dependencies=[Depends(signed_in)])
STATUSES = tuple(s.value for s in PlanStatus)


@router.get("/plans")
def plans_page(
    request: Request,
    who: Who,
    conn: Db,
    status: Annotated[str, Query(max_length=20)] = "waiting",
) -> HTMLResponse:
    expire_due(app_engine(request))  # plans past their expiry are marked (and audited) before the list is shown
    shown = None if status == "all" or status not in STATUSES else status
    lines = plan_reads.plan_lines(conn, who.user_id, sorted(who.viewer.upload_states), shown)
    return render(request, "plans.html", plans=lines, shown_status=shown, statuses=STATUSES, nav="plans")


@router.get("/plans/{plan_id}")
def plan_page(request: Request, plan_id: str, who: Who, conn: Db, settings: AppSettings) -> HTMLResponse:
    found, now = need_plan(conn, plan_id, who.viewer)
    plan = plan_out(found, now)
    problem = decide_problem(found, who.viewer, now)
    row = queries.upload(conn, settings.dashboard_group, found.upload_id) if found.upload_id else None
    return render(
        request,
        "plan.html",
        plan=plan,
        summary=summary(plan.counts),
        groups=plan_reads.outcome_groups(conn, plan_id),
        decide=problem is None,
        why_not=None if problem is None else problem.message,
        up=upload_out(row) if row is not None else pending(found.upload_id) if found.upload_id else None,
        nav="plans",
    )


def pending(upload_id: str) -> dict[str, object]:
    """An applied plan's upload the read model has not seen yet: shown as starting, followed by uploads.js."""
    empty: dict[str, int] = {}
    return {
        "upload_id": upload_id,
        "complete": False,
        "percent": 0,
        "processed": 0,
        "published": None,
        "processor_outcomes": empty,
        "outcomes": empty,
    }


def summary(counts: dict[str, object]) -> list[tuple[str, object]]:
    """The headline figures of a plan, in the order a person reads them."""
    names = (("rows", "rows"), ("adds", "to add"), ("removes", "to remove"), ("unchanged", "unchanged"))
    shown: list[tuple[str, object]] = [(label, counts.get(key, 0)) for key, label in names]
    outcomes = counts.get("outcomes")
    rejected = outcomes.get("REJECTED", 0) if isinstance(outcomes, dict) else 0
    return [*shown, ("rejected", rejected)]


@router.post("/plans/{plan_id}/{decision}")
async def plan_decide(request: Request, plan_id: str, decision: str, who: Who) -> Response:
    """The page's Approve or Reject button (a form with the session's CSRF token); back to the plan."""
    if decision not in ("approve", "reject"):
        raise PageError(404, "This page does not exist.")
    form = form_values(await request.body())
    check_form(request, who, first_value(form, "csrf_token"))
    await run_in_threadpool(decide, request.app.state.settings, app_engine(request), who, plan_id, decision)
    return RedirectResponse(href(f"/plans/{plan_id}"), status_code=303)
