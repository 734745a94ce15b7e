"""Signing in and out: `GET /login` (the form), `POST /login`, `POST /logout`, and `GET /healthz`.

Sessions are server-side (``enrolment.store.accounts``): the cookie holds a random value whose hash is the
session's key, so signing out, a new password or an inactive user ends a session at once, and idle and
absolute lifetimes are checked by the store on every request.  Failed sign-ins are throttled per account
and per client address: after ``MAX_FAILURES`` within ``FAILURE_WINDOW_S`` the next attempt is answered 429
without checking the password.  API tokens never pass through here, so the throttle cannot block them.
Events go to the ``audit`` logger (structured), never with the password.
"""

from __future__ import annotations

import logging
from contextlib import closing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from dashboard.web.csrf import check_form, foreign_origin
from dashboard.web.deps import SESSION_COOKIE, Who, app_engine, app_settings, identity
from dashboard.web.edit import first_value, form_values
from dashboard.web.errors import PageError
from dashboard.web.render import render
from enrolment.domain.model import MAX_ID_LENGTH
from enrolment.store import accounts, reference

MAX_FAILURES = 5
FAILURE_WINDOW_S = 15 * 60
WRONG = "The user id or the password is wrong."
THROTTLED = (
    "Too many failed sign-ins for this account or from this address in the last 15 minutes. "
    "Wait a few minutes and try again, or ask your state admin to reset your password."
)

audit = logging.getLogger("audit")
router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host`` or a full URL)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or len(target) > 2000:
        return "/"
    if any(c in target for c in "\r\n\t\\") or ":" in target.split("?", 1)[0]:
        return "/"
    return target


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def login_form(
    request: Request, target: str | None, status: int = 200, *, user_id: str = "", error: str | None = None
) -> HTMLResponse:
    return render(request, "login.html", status, next=safe_next(target), user_id=user_id, error=error, nav="login")


@router.get("/login")
def login_page(request: Request) -> Response:
    if identity(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return login_form(request, request.query_params.get("next"))


def attempt(request: Request, user_id: str, password: str) -> str | None:
    """Checks the throttle, then the password; the new session's cookie value, or a PageError / None."""
    settings = app_settings(request)
    client = client_address(request)
    where = {"event": "", "user_id": user_id, "client": client}
    with app_engine(request).begin() as conn, closing(conn.connection.cursor()) as cur:
        by_user, by_client = accounts.recent_failures(cur, user_id, client, FAILURE_WINDOW_S)
        if by_user >= MAX_FAILURES or by_client >= MAX_FAILURES:
            audit.warning("sign-in throttled", extra={**where, "event": "SIGN_IN_THROTTLED"})
            raise PageError(429, THROTTLED)
        user = reference.user(cur, user_id)
        ok = accounts.check_password(cur, user_id, password) and user is not None and user.status == "active"
        if not ok:
            accounts.record_failure(cur, user_id, client)
            audit.warning("sign-in failed", extra={**where, "event": "SIGN_IN_FAILED"})
            return None
        accounts.clear_failures(cur, user_id)
        accounts.forget_old_sessions(cur, settings.session_max_hours * 3600)
        value, _session = accounts.open_session(cur, user_id)
    audit.info("signed in", extra={**where, "event": "SIGN_IN"})
    return value


@router.post("/login")
async def login_submit(request: Request) -> Response:
    """The form's ``username`` (the user id) and ``password``; on success, a session cookie and the next page."""
    if foreign_origin(request):
        raise PageError(403, "Sign in from this dashboard's own page.")
    form = form_values(await request.body())
    user_id = (form.get("username") or [""])[0].strip()[:MAX_ID_LENGTH]
    password = (form.get("password") or [""])[0]
    target = first_value(form, "next")
    if not user_id or not password:
        return login_form(request, target, 400, user_id=user_id, error="Enter your user id and your password.")
    try:
        value = await run_in_threadpool(attempt, request, user_id, password)
    except PageError as exc:
        return login_form(request, target, exc.status, user_id=user_id, error=exc.message)
    if value is None:
        return login_form(request, target, 401, user_id=user_id, error=WRONG)
    response = RedirectResponse(safe_next(target), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(app_settings(request).session_max_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def close_session(request: Request, cookie: str) -> None:
    with app_engine(request).begin() as conn, closing(conn.connection.cursor()) as cur:
        accounts.close_session(cur, cookie)


@router.post("/logout")
async def logout(request: Request, who: Who) -> Response:
    form = form_values(await request.body())
    check_form(request, who, first_value(form, "csrf_token"))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await run_in_threadpool(close_session, request, cookie)
    audit.info("signed out", extra={"event": "SIGN_OUT", "user_id": who.user_id, "client": client_address(request)})
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """Answers without sign-in: 200 when the database answers and the read-model consumer (if this process runs
    one) is ready; 503 with the reason otherwise."""
    health = getattr(request.app.state, "health", None)
    body: dict[str, Any] = {"status": "ok"} if health is None else health.snapshot()
    try:
        with app_engine(request).connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        body.update(status="not ready", reason=f"the database does not answer: {type(exc).__name__}")
    return JSONResponse(body, status_code=503 if body["status"] == "not ready" else 200)
