"""Token management over the web: ``GET /api/tokens``, ``POST /api/tokens``, ``POST /api/tokens/{id}/revoke``.

The CLI (`participants api-tokens`) is the operators' bootstrap path; here a signed-in person (session with the
CSRF header, or an API token) manages their own tokens, and an ORG_ADMIN those of their state's users
(``enrolment.domain.tokens.may_manage_tokens``, checked again by the store).  Another user's token is 404 when
the caller may not know that user exists, 403 when they may know them but not manage their tokens.  The secret
is answered once, by the creation; creations and revocations are audited by the store, as the CLI's are.
Route functions carry no docstrings on purpose: FastAPI would publish them as the operations' descriptions.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from dashboard.models import ProblemOut
from dashboard.web.csrf import check_json
from dashboard.web.deps import EngineDep, Who, signed_in
from dashboard.web.errors import PageError
from enrolment.domain.access import Viewer, may_know_user
from enrolment.domain.model import MAX_ID_LENGTH, User
from enrolment.domain.text import control_sentence
from enrolment.domain.tokens import DEFAULT_EXPIRY_DAYS, MAX_EXPIRY_DAYS, may_manage_tokens, status
from enrolment.store import reference
from enrolment.store import tokens as store

router = APIRouter(prefix="/api", dependencies=[Depends(signed_in)], tags=["tokens"])

REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemOut, "description": "No session or API token"},
    403: {"model": ProblemOut, "description": "You may know the user but not manage their tokens, or no CSRF header"},
    404: {"model": ProblemOut, "description": "Unknown user or token, or one you may not know"},
}


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH, description="Default: yourself")
    name: str = Field("", max_length=200, description="What the token is for")
    expires_days: int = Field(DEFAULT_EXPIRY_DAYS, ge=1, le=MAX_EXPIRY_DAYS)


class TokenOut(BaseModel):
    token_id: str
    user_id: str
    name: str
    created_at: datetime
    created_by: str | None
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    status: str = Field(description="active, expired or revoked")


class NewTokenOut(BaseModel):
    token_id: str
    user_id: str
    name: str
    expires_at: datetime
    secret: str = Field(description="Shown this once: only its hash is stored")


class RevokedOut(TokenOut):
    revoked_now: bool = Field(description="False when the token was already revoked (nothing changed)")


def token_out(t: store.TokenInfo, now: datetime) -> dict[str, Any]:
    return {**t.__dict__, "status": status(t.revoked_at, t.expires_at, now)}


def manageable_owner(cur: Any, viewer: Viewer, user_id: str) -> User:
    """The user whose tokens the viewer asks to manage: 404 if they may not know them, 403 if not manage."""
    owner = reference.user(cur, user_id)
    if owner is None or not may_know_user(viewer, owner):
        raise PageError(404, f"There is no user {user_id}.")
    if not may_manage_tokens(viewer.user, owner):
        raise PageError(403, f"{viewer.user_id} may not manage the tokens of {user_id}.")
    return owner


def visible_tokens(engine: Engine, viewer: Viewer) -> list[store.TokenInfo]:
    """The caller's own tokens, or (an ORG_ADMIN) those of every user of their state."""
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        if viewer.admin_states:
            return [t for s in sorted(viewer.admin_states) for t in store.list_tokens(cur, state=s)]
        return store.list_tokens(cur, user_id=viewer.user_id)


def checked_owner(engine: Engine, viewer: Viewer, user_id: str) -> User:
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        return manageable_owner(cur, viewer, user_id)


def token_to_revoke(engine: Engine, viewer: Viewer, token_id: str) -> None:
    """404 for a token unknown or of a user the caller may not know (the same sentence), 403 if not theirs to revoke."""
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        found = store.token(cur, token_id)
        try:
            if found is not None:
                manageable_owner(cur, viewer, found.user_id)
                return
        except PageError as exc:
            if exc.status != 404:
                raise
    raise PageError(404, f"There is no token {token_id}.")


@router.get("/tokens", summary="Your API tokens (an ORG_ADMIN: those of their state's users); never a secret")
def api_tokens(who: Who, engine: EngineDep) -> list[TokenOut]:
    now = datetime.now(UTC)
    return [TokenOut(**token_out(t, now)) for t in visible_tokens(engine, who.viewer)]


@router.post(
    "/tokens",
    status_code=201,
    summary="Create an API token for yourself (an ORG_ADMIN: for a user of their state); the secret, once",
    responses=REFUSED,
)
def api_create_token(request: Request, response: Response, body: TokenIn, who: Who, engine: EngineDep) -> NewTokenOut:
    check_json(request, who)
    problem = control_sentence("name", body.name)
    if problem:
        raise PageError(422, problem)
    owner = checked_owner(engine, who.viewer, body.user_id or who.user_id)
    new = store.issue_token(engine, owner.user_id, body.name, days=body.expires_days, by=who.viewer.user)
    response.headers["Cache-Control"] = "no-store"  # the secret is in this answer only
    return NewTokenOut(
        token_id=new.token_id, user_id=new.user_id, name=new.name, expires_at=new.expires_at, secret=new.secret
    )


@router.post("/tokens/{token_id}/revoke", summary="Revoke an API token (refused from then on)", responses=REFUSED)
def api_revoke_token(request: Request, token_id: str, who: Who, engine: EngineDep) -> RevokedOut:
    check_json(request, who)
    token_to_revoke(engine, who.viewer, token_id)
    info, revoked = store.revoke_token(engine, token_id, by=who.viewer.user)
    return RevokedOut(**token_out(info, datetime.now(UTC)), revoked_now=revoked)
