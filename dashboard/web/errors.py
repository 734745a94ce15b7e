"""Every problem reaches the user as one sentence: an error page, or ``{"detail": ...}`` under /api/.

Never a traceback: unexpected errors are logged and answered with a fixed sentence.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashboard.web.deps import NotSignedIn
from dashboard.web.render import href, render

log = logging.getLogger("dashboard.web")


class PageError(Exception):
    """A problem shown to the user as one sentence (HTML page or JSON ``detail``), never a traceback."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


SIGN_IN = "Sign in first: this needs a dashboard session or an API token (Authorization: Bearer TOKEN)."


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def machine_read(request: Request) -> bool:
    """The JSON and CSV APIs: they answer 401 to an anonymous request where a page redirects to /login."""
    return wants_json(request) or request.url.path.endswith(".csv")


def problem(request: Request, status: int, message: str) -> Response:
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    return render(request, "error.html", status, message=message, code=status)


async def on_not_signed_in(request: Request, exc: NotSignedIn) -> Response:
    if machine_read(request):
        return JSONResponse({"detail": exc.problem or SIGN_IN}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(href("/login", next=here if request.method == "GET" else None), status_code=303)


async def on_page_error(request: Request, exc: PageError) -> Response:
    return problem(request, exc.status, exc.message)


async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    message = "This page does not exist." if exc.status_code == 404 else str(exc.detail)
    return problem(request, exc.status_code, message)


async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "body", "path"))
    message = f"The value of {where or 'the request'} cannot be used: {first.get('msg', 'invalid')}."
    return problem(request, 400 if not wants_json(request) else 422, message)


async def on_db_down(request: Request, exc: OperationalError) -> Response:
    log.warning("database unreachable", extra={"error": str(exc.orig or exc)})
    return problem(request, 503, "The database cannot be reached right now. Please try again in a minute.")


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", extra={"path": request.url.path})
    return problem(request, 500, "Something went wrong on our side. Please try again; if it persists, tell us.")


def add_handlers(app: FastAPI) -> None:
    app.exception_handler(PageError)(on_page_error)
    app.exception_handler(NotSignedIn)(on_not_signed_in)
    app.exception_handler(StarletteHTTPException)(on_http_error)
    app.exception_handler(RequestValidationError)(on_invalid)
    app.exception_handler(OperationalError)(on_db_down)
    app.exception_handler(Exception)(on_unexpected)
