"""Signing test clients in: a password for a user, a session through `POST /login`, its CSRF token."""

from __future__ import annotations

import re
import uuid
import warnings
from contextlib import closing

from sqlalchemy import Engine, text

from enrolment.store import accounts

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery staple"


def set_password(engine: Engine, user_id: str, password: str = PASSWORD) -> None:
    with engine.begin() as conn, closing(conn.connection.cursor()) as cur:
        accounts.set_password(cur, user_id, password)


def fake_address() -> str:
    """A client address of its own, so one test's failed sign-ins never throttle another's."""
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


def signed_in_client(app: object, engine: Engine, user_id: str, password: str = PASSWORD) -> TestClient:
    """A TestClient with a session of ``user_id`` (its password is set first)."""
    set_password(engine, user_id, password)
    client = TestClient(app, client=(fake_address(), 50000))  # type: ignore[arg-type]
    r = client.post("/login", data={"username": user_id, "password": password}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def csrf_token(client: TestClient) -> str:
    """The session's CSRF token, as the pages carry it (the sign-out form of every page)."""
    html = client.get("/workspace").text
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def forget_failures(engine: Engine, *user_ids: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM sign_in_failures WHERE user_id = ANY(:u)"), {"u": list(user_ids)})
