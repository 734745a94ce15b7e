"""API tokens (``api_tokens``): create, list, revoke, and authenticate a request by its token.

Only a token's SHA-256 is kept, so a leaked table leaks no usable token; the secret is returned once, by
``issue_token``. Each token has a public ``token_id`` (``tok_…``) that lists and revocations use, an expiry
(90 days by default), and its last use, recorded at most once a minute. The rules (who may manage whose
tokens, when one is refused) are :mod:`enrolment.domain.tokens`; this module owns the SQL and the audit log
line of every creation and revocation (logger ``audit``; never the secret).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from enrolment.domain.model import User
from enrolment.domain.tokens import DEFAULT_EXPIRY_DAYS, TOUCH_INTERVAL, may_manage_tokens, needs_touch, refusal
from enrolment.store import reference

audit_log = logging.getLogger("audit")

NO_TOKEN = "A valid token is required (Authorization: Bearer TOKEN, or x-authenticated-user-token: TOKEN)."
# name: a row inserted by code older than 0005 has only its label
_COLUMNS = (
    "token_id, user_id, CASE WHEN name = '' THEN label ELSE name END, created_at, created_by, expires_at, "
    "last_used_at, revoked_at, revoked_by"
)


@dataclass(frozen=True)
class NewToken:
    """A token just created: the secret is here once and nowhere else (not in its repr either)."""

    token_id: str
    user_id: str
    name: str
    expires_at: datetime
    secret: str = field(repr=False)


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of a token: everything but the secret (which is not stored anyway)."""

    token_id: str
    user_id: str
    name: str
    created_at: datetime
    created_by: str | None
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    def as_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class TokenCheck:
    """The outcome of authenticating a request: its user, or why not (a sentence for the 401)."""

    user: User | None
    token_id: str | None = None
    problem: str = ""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _by(by: User | str, owner: User) -> str:
    """Who acts, checked when it is a user (the web); an operator's label (the CLI) is the bootstrap path."""
    if isinstance(by, User):
        if not may_manage_tokens(by, owner):
            raise PermissionError(f"{by.user_id} may not manage the tokens of {owner.user_id}.")
        return by.user_id
    return by


def audit(action: str, token_id: str, user_id: str, by: str) -> None:
    """One structured log line per token creation or revocation (the AUDIT telemetry event hooks in here)."""
    audit_log.info(
        "api token %s", action, extra={"action": f"api-token.{action}", "token_id": token_id, "user": user_id, "by": by}
    )


def insert_token(
    cur: Any, owner_id: str, name: str = "", *, days: int = DEFAULT_EXPIRY_DAYS, by: User | str = ""
) -> NewToken:
    """Creates a token in the caller's transaction; LookupError for an unknown user, PermissionError (see _by)."""
    owner = reference.user(cur, owner_id)
    if owner is None:
        raise LookupError(f"There is no user {owner_id}.")
    creator = _by(by, owner)
    secret, token_id = secrets.token_urlsafe(32), "tok_" + secrets.token_hex(6)
    cur.execute(
        "INSERT INTO api_tokens (token_sha256, token_id, user_id, label, name, created_by, expires_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, now() + make_interval(days => %s)) RETURNING expires_at",
        (token_hash(secret), token_id, owner_id, name, name, creator or None, days),
    )
    return NewToken(token_id, owner_id, name, cur.fetchone()[0], secret)


def issue_token(
    engine: Engine, owner_id: str, name: str = "", *, days: int = DEFAULT_EXPIRY_DAYS, by: User | str = ""
) -> NewToken:
    """Creates and commits a token, then logs it. ``by``: the acting User (checked) or the operator's label."""
    with engine.begin() as conn:
        new = insert_token(conn.connection.cursor(), owner_id, name, days=days, by=by)
    audit("create", new.token_id, owner_id, by.user_id if isinstance(by, User) else by)
    return new


def create_token(engine: Engine, user_id: str, label: str = "", *, days: int = DEFAULT_EXPIRY_DAYS) -> str:
    """The secret of a new token (the 0004-era call, kept for tests and scripts); see ``issue_token``."""
    return issue_token(engine, user_id, label, days=days).secret


def _info(row: Any) -> TokenInfo:
    return TokenInfo(*row)


def list_tokens(cur: Any, *, user_id: str | None = None, state: str | None = None) -> list[TokenInfo]:
    """Tokens, oldest first, of one user and/or of the users of one state (None: no filter)."""
    cur.execute(
        f"SELECT {_COLUMNS} FROM api_tokens WHERE (%s::text IS NULL OR user_id = %s) "
        "AND (%s::text IS NULL OR user_id IN (SELECT user_id FROM users WHERE state = %s)) "
        "ORDER BY created_at, token_id",
        (user_id, user_id, state, state),
    )
    return [_info(r) for r in cur.fetchall()]


def token(cur: Any, token_id: str) -> TokenInfo | None:
    cur.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_id = %s", (token_id,))
    row = cur.fetchone()
    return None if row is None else _info(row)


def revoke(cur: Any, token_id: str, *, by: User | str = "") -> tuple[TokenInfo, bool]:
    """Revokes in the caller's transaction: (the token, whether this call revoked it — False if it already was).

    LookupError for an unknown id; PermissionError when ``by`` is a user who may not (see _by).
    """
    known = token(cur, token_id)
    if known is None:
        raise LookupError(f"There is no token {token_id}.")
    owner = reference.user(cur, known.user_id) or User(known.user_id, "", "inactive", frozenset())
    revoker = _by(by, owner)
    cur.execute(
        f"UPDATE api_tokens SET revoked_at = now(), revoked_by = %s WHERE token_id = %s AND revoked_at IS NULL "
        f"RETURNING {_COLUMNS}",
        (revoker or None, token_id),
    )
    row = cur.fetchone()
    return (known, False) if row is None else (_info(row), True)


def revoke_token(engine: Engine, token_id: str, *, by: User | str = "") -> tuple[TokenInfo, bool]:
    """Revokes and commits, then logs it (when this call revoked it); see ``revoke``."""
    with engine.begin() as conn:
        info, revoked = revoke(conn.connection.cursor(), token_id, by=by)
    if revoked:
        audit("revoke", token_id, info.user_id, by.user_id if isinstance(by, User) else by)
    return info, revoked


def authenticate(cur: Any, presented: Iterable[str]) -> TokenCheck:
    """The user of the token(s) a request presents (see ``domain.tokens.presented_tokens``), or why not.

    Unknown values are ignored (a Sunbird client's other header is not ours); a known token that is revoked or
    expired refuses the request, as do two different live tokens and a token of a user who is not active. A use
    is recorded at most once a minute, so call this in a transaction that commits (``engine.begin()``).
    """
    hashes = [token_hash(t) for t in dict.fromkeys(presented)]
    cur.execute(
        "SELECT token_sha256, token_id, user_id, revoked_at, expires_at, last_used_at, now() "
        "FROM api_tokens WHERE token_sha256 = ANY(%s) ORDER BY token_id",
        (hashes,),
    )
    rows = cur.fetchall()
    if not rows:
        return TokenCheck(None, problem=NO_TOKEN)
    for _, token_id, _, revoked_at, expires, _, now in rows:
        problem = refusal(revoked_at, expires, now)
        if problem:
            return TokenCheck(None, token_id, problem)
    if len(rows) > 1:
        return TokenCheck(None, problem="The request carries two different tokens; send one.")
    sha, token_id, user_id, _, _, last_used_at, now = rows[0]
    if needs_touch(last_used_at, now):
        cur.execute(
            "UPDATE api_tokens SET last_used_at = now() WHERE token_sha256 = %s "
            "AND (last_used_at IS NULL OR last_used_at <= now() - %s)",
            (sha, TOUCH_INTERVAL),
        )
    user = reference.user(cur, user_id)
    if user is None or user.status != "active":
        return TokenCheck(None, token_id, f"The user of this token ({user_id}) is no longer active.")
    return TokenCheck(user, token_id)


def token_user(cur: Any, token: str) -> User | None:
    """The user of a live token; None for an unknown, revoked or expired one. Records the use (see authenticate)."""
    return authenticate(cur, [token]).user
