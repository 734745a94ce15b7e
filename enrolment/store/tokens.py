"""Bearer tokens of the Sunbird-compatible API (``api_tokens``): each maps to a user, and only its SHA-256 is kept.

A leaked table therefore leaks no usable token; a token is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy import Engine

from enrolment.domain.model import User
from enrolment.store import reference


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, user_id: str, label: str = "") -> str:
    """Creates a token for an existing user and returns it; LookupError when there is no such user."""
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        cur = conn.connection.cursor()
        if reference.user(cur, user_id) is None:
            raise LookupError(f"No user {user_id}.")
        cur.execute(
            "INSERT INTO api_tokens (token_sha256, user_id, label) VALUES (%s, %s, %s)",
            (token_hash(token), user_id, label),
        )
    return token


def token_user(cur: Any, token: str) -> User | None:
    """The user a token that was not revoked belongs to; None for an unknown or revoked token."""
    cur.execute("SELECT user_id FROM api_tokens WHERE token_sha256 = %s AND revoked_at IS NULL", (token_hash(token),))
    row = cur.fetchone()
    return None if row is None else reference.user(cur, row[0])
