"""The dashboard web app: server-rendered pages (Jinja2, autoescaped) and the JSON API under /api/.

Routes are thin: they read through ``queries``, decide with ``rules`` and render.  Membership, counts,
progress and uploads come from the read model; names, batches and mentors from the reference tables.
Edit Batch changes are published as UI uploads on the commands topic; the processor applies them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from dashboard.web import (
    api,
    docs,
    downloads,
    edit,
    errors,
    pages,
    plans_api,
    plans_pages,
    session,
    tokens_api,
    uploads_api,
)
from dashboard.web.lookups import visible_batch
from dashboard.web.middleware import Answer, BodyLimit, secure_every_response
from dashboard.web.render import environment
from dashboard.web.sunbird import GATEWAY_PATHS as SUNBIRD_GATEWAY_PATHS
from dashboard.web.sunbird import oversized, sunbird_router
from dashboard.web.sunbird_bulk import PATHS as BULK_PATHS
from dashboard.web.sunbird_bulk import bulk_router
from dashboard.web.sunbird_hub import Hub
from dashboard.web.timing import ServerTiming
from enrolment.settings import Settings
from enrolment.store import accounts

STATIC = Path(__file__).resolve().parent.parent / "static"
DESCRIPTION = (
    "Courses, batches, participants with course progress, Edit Batch and uploads. Pages are server-rendered "
    "HTML; the same data is available as JSON under /api/. Every route needs a signed-in session (POST /login) "
    "or an API token (`Authorization: Bearer TOKEN`) and shows only what that person may see."
)


def body_limits(settings: Settings) -> tuple[dict[str, int], dict[str, Answer]]:
    """The paths with their own body limit, and those (Sunbird's) whose 413 is in their own envelope.

    Keys are exact paths, or a parent ending in "/" (a route with the batch id last).
    """
    sunbird: dict[str, str] = {}
    for op in ("add", "remove"):
        sunbird.update({f"/v1/course/batch/users/{op}": op, f"/v1/course/batch/users/{op}/": op})
        sunbird[SUNBIRD_GATEWAY_PATHS[op]] = op
    overrides = {path: settings.sunbird_api_max_body_bytes for path in sunbird}
    bulk = {path: f"bulk-{op}" for op, path in BULK_PATHS.items()}
    overrides.update({path: settings.upload_max_bytes for path in bulk})  # files, streamed to disk
    overrides[uploads_api.PATH] = settings.upload_max_bytes  # files of participants, streamed to disk
    overrides[plans_api.PATH] = settings.upload_max_bytes  # the same files, planned
    return overrides, {path: oversized(api) for path, api in {**sunbird, **bulk}.items()}


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    """The dashboard on ``engine`` for ``settings.dashboard_group``'s read model."""
    app = FastAPI(
        title="Participants dashboard",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,  # served by docs.router, behind sign-in
        redoc_url=None,
        openapi_url=None,
        # A body without Content-Type is not read as JSON (FastAPI's default since 0.132, said here so that it
        # stays so): a cross-site page can send such a body without a CORS preflight.
        strict_content_type=True,
    )
    accounts.prepare()  # an unknown user's sign-in verifies a dummy hash: made now, not on the first sign-in
    app.state.settings = settings
    app.state.engine = engine
    app.state.templates = environment()
    overrides, answers = body_limits(settings)
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes, overrides=overrides, answers=answers)
    app.add_middleware(ServerTiming)
    secure_every_response(app)  # outermost: on every answer, 500s too
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    errors.add_handlers(app)
    hub = app.state.sunbird_hub = Hub(settings)  # one producer, results follower and pool: close() on stop
    app.include_router(sunbird_router(settings, engine, hub))  # POST /v1/course/batch/users/add|remove[/{id}]
    app.include_router(bulk_router(hub, engine))  # POST /v1/batch/bulk/..., GET /v1/upload/status/{id}
    app.include_router(session.router)  # /login, /logout, /healthz
    app.include_router(docs.router)
    app.include_router(pages.router)
    app.include_router(edit.router)
    app.include_router(plans_pages.router)  # /plans, /plans/{id}, its Approve / Reject forms
    app.include_router(downloads.router, dependencies=[Depends(visible_batch)])  # sign-in and the batch's scope
    app.include_router(uploads_api.router)  # POST /api/uploads, GET /api/uploads/{id}/report.csv
    app.include_router(plans_api.router)  # /api/plans...
    app.include_router(tokens_api.router)  # /api/tokens: one's own, an ORG_ADMIN's state's
    app.include_router(api.router)
    return app
