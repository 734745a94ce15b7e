"""`/docs` and `/openapi.json` behind sign-in (FastAPI's own public ones are switched off in ``create_app``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from dashboard.web.deps import signed_in

router = APIRouter(include_in_schema=False, dependencies=[Depends(signed_in)])


@router.get("/openapi.json")
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} · API")
