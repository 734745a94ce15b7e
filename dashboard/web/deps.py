"""What routes depend on: the store connection, the settings and who is signed in.

The app keeps its engine and settings in ``app.state`` (set by ``create_app``); routes reach them only through
these dependencies, so a test or another server can build the app around any engine.

Identity is proven, never claimed: an ``Authorization: Bearer`` API token (or Sunbird's
``x-authenticated-user-token``, the same token), else the session cookie set by ``POST /login``.  It is looked
up once per request and kept in ``request.state.identity``; ``signed_in`` raises ``NotSignedIn`` without one
(pages then redirect to /login, the JSON and CSV APIs answer 401).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from enrolment.domain.access import Viewer
from enrolment.domain.model import User
from enrolment.settings import Settings
from enrolment.store import accounts, reference, tokens

SESSION_COOKIE = "participants_session"
TOKEN_HEADERS = ("x-authenticated-user-token",)


def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def app_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def db(request: Request) -> Iterator[Connection]:
    """A connection per request from the app's engine."""
    with app_engine(request).connect() as conn:
        yield conn


class NotSignedIn(Exception):
    """No valid session or token: answered by a redirect to /login (pages) or 401 (APIs).  ``problem``: why a
    token we know was refused (revoked or expired, and when), for the 401; empty otherwise."""

    def __init__(self, problem: str = "") -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking and how it was proven: ``via`` is "session" (cookie, CSRF applies) or "token"."""

    viewer: Viewer
    via: str
    csrf_token: str | None = None

    @property
    def user_id(self) -> str:
        return self.viewer.user_id


def bearer_token(request: Request) -> str | None:
    """The API token of the request, if it carries one."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    for name in TOKEN_HEADERS:
        if request.headers.get(name, "").strip():
            return request.headers[name].strip()
    return None


def _token_user(request: Request, cur: Any, token: str) -> User | None:
    """The one place the dashboard asks the token store who a token belongs to.  Why a token we know is refused
    (revoked, expired, its user inactive) is kept for the 401: the caller then knows to get a new one."""
    check = tokens.authenticate(cur, [token])
    if check.user is None and check.token_id is not None:
        request.state.token_problem = check.problem
    return check.user


def _lookup(request: Request) -> Identity | None:
    settings = app_settings(request)
    token = bearer_token(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if token is None and not cookie:
        return None
    with app_engine(request).begin() as conn, closing(conn.connection.cursor()) as cur:
        if token is not None:
            user, via, csrf = _token_user(request, cur, token), "token", None
        else:
            assert cookie is not None
            idle_s, max_s = settings.session_idle_minutes * 60, settings.session_max_hours * 3600
            session = accounts.live_session(cur, cookie, idle_s, max_s)
            user = None if session is None else reference.user(cur, session.user_id)
            via, csrf = "session", None if session is None else session.csrf_token
        if user is None or user.status != "active":
            return None
        return Identity(Viewer(user, accounts.served_states(cur, user.user_id)), via, csrf)


def identity(request: Request) -> Identity | None:
    """The request's proven identity, or None (looked up once per request)."""
    if not hasattr(request.state, "identity"):
        request.state.identity = _lookup(request)
    found: Identity | None = request.state.identity
    return found


def signed_in(request: Request) -> Identity:
    """The identity every route but /login, /healthz and static files requires."""
    found = identity(request)
    if found is None:
        raise NotSignedIn(getattr(request.state, "token_problem", ""))
    return found


Who = Annotated[Identity, Depends(signed_in)]
Db = Annotated[Connection, Depends(db)]
AppSettings = Annotated[Settings, Depends(app_settings)]
EngineDep = Annotated[Engine, Depends(app_engine)]
