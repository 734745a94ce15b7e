"""Token management over the web (``/api/tokens``) on the real stack: one's own tokens, an ORG_ADMIN's state's,
404 for a user one may not know, 403 for one one may know but not manage, CSRF for sessions, the audit lines.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from dashboard.web.app import create_app
from enrolment.settings import Settings
from tests.support.dashboard import World, bearer, two_states
from tests.support.signin import csrf_token, signed_in_client

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


@pytest.fixture()
def worlds(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[tuple[World, World, str]]:
    with two_states(engine, isolated_settings, unique) as (a, b, team):
        try:
            yield a, b, team
        finally:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM api_tokens WHERE user_id = ANY(:u)"), {"u": list(a.teachers)})


def days_from_now(iso: str) -> float:
    return (datetime.fromisoformat(iso) - datetime.now(UTC)) / timedelta(days=1)


def test_a_user_manages_their_own_tokens_and_never_sees_a_secret_twice(
    worlds: tuple[World, World, str], engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    a, _, _ = worlds
    app = create_app(a.settings, engine)
    mentor = signed_in_client(app, engine, a.mentor)
    caplog.set_level(logging.INFO, logger="audit")
    assert mentor.get("/api/tokens").json() == []
    assert mentor.post("/api/tokens", json={"name": "laptop"}).status_code == 403  # a session needs the CSRF header
    csrf = {"X-CSRF-Token": csrf_token(mentor)}
    made = mentor.post("/api/tokens", json={"name": "laptop"}, headers=csrf)
    assert made.status_code == 201, made.text
    new = made.json()
    assert new["user_id"] == a.mentor and new["name"] == "laptop" and 89.9 < days_from_now(new["expires_at"]) <= 90
    assert made.headers["cache-control"] == "no-store"
    listed = mentor.get("/api/tokens")
    assert [(t["token_id"], t["created_by"], t["status"]) for t in listed.json()] == [
        (new["token_id"], a.mentor, "active")
    ]
    assert new["secret"] not in listed.text and "secret" not in listed.json()[0]
    plain = TestClient(app)
    auth = {"Authorization": f"Bearer {new['secret']}"}
    assert plain.get("/api/workspace", headers=auth).status_code == 200
    # with a token: no CSRF header needed (a browser never sends it on its own)
    second = plain.post("/api/tokens", json={"expires_days": 7}, headers=auth)
    assert second.status_code == 201 and 6.9 < days_from_now(second.json()["expires_at"]) <= 7
    for bad in ({"expires_days": 0}, {"expires_days": 3651}, {"name": "a\nb"}, {"user": a.admin}):
        r = plain.post("/api/tokens", json=bad, headers=auth)
        assert r.status_code == 422 and r.json()["detail"], (bad, r.text)
    revoked = mentor.post(f"/api/tokens/{new['token_id']}/revoke", headers=csrf)
    assert revoked.status_code == 200 and revoked.json()["revoked_now"] is True
    assert revoked.json()["revoked_by"] == a.mentor and revoked.json()["status"] == "revoked"
    assert plain.get("/api/workspace", headers=auth).status_code == 401
    again = mentor.post(f"/api/tokens/{new['token_id']}/revoke", headers=csrf)
    assert again.status_code == 200 and again.json()["revoked_now"] is False
    lines = [r.__dict__ for r in caplog.records if r.name == "audit" and r.__dict__.get("action", "").startswith("api")]
    assert [(x["action"], x["user"], x["by"]) for x in lines] == [
        ("api-token.create", a.mentor, a.mentor),
        ("api-token.create", a.mentor, a.mentor),
        ("api-token.revoke", a.mentor, a.mentor),
    ]
    assert not any(new["secret"] in str(r.__dict__) for r in caplog.records)


def test_an_org_admin_manages_their_states_tokens_and_others_get_404_or_403(
    worlds: tuple[World, World, str], engine: Engine
) -> None:
    a, b, team = worlds
    app = create_app(a.settings, engine)
    teacher, their_admin = a.teachers[0], b.admin
    mentor_token = bearer(engine, a.mentor)
    b_token = TestClient(app).post("/api/tokens", json={}, headers=bearer(engine, their_admin)).json()["token_id"]

    admin = signed_in_client(app, engine, a.admin)
    csrf = {"X-CSRF-Token": csrf_token(admin)}
    made = admin.post("/api/tokens", json={"user_id": teacher, "name": "for a teacher"}, headers=csrf)
    assert made.status_code == 201 and made.json()["user_id"] == teacher, made.text
    seen = {(t["user_id"], t["created_by"]) for t in admin.get("/api/tokens").json()}
    assert seen == {(a.mentor, "test"), (teacher, a.admin)}  # state A's users only: not B's admin's token
    mentors = TestClient(app).get("/api/tokens", headers=mentor_token).json()
    assert [t["user_id"] for t in mentors] == [a.mentor]  # a mentor sees their own only
    their = admin.post(f"/api/tokens/{b_token}/revoke", headers=csrf)
    assert their.status_code == 404 and their.json()["detail"] == f"There is no token {b_token}."
    unknown = admin.post("/api/tokens/tok_000000000000/revoke", headers=csrf)  # the same answer as for B's
    assert unknown.status_code == 404 and unknown.json()["detail"] == "There is no token tok_000000000000."
    assert admin.post("/api/tokens", json={"user_id": their_admin}, headers=csrf).status_code == 404
    assert admin.post("/api/tokens", json={"user_id": "nobody-at-all"}, headers=csrf).status_code == 404
    mentor_id = next(t["token_id"] for t in admin.get("/api/tokens").json() if t["user_id"] == a.mentor)
    assert admin.post(f"/api/tokens/{mentor_id}/revoke", headers=csrf).json()["revoked_now"] is True
    assert TestClient(app).get("/api/workspace", headers=mentor_token).status_code == 401

    # A mentor may not know the other users of their state; the team serving state A may, but not manage them.
    mentor = TestClient(app, headers=bearer(engine, a.mentor))
    assert mentor.post("/api/tokens", json={"user_id": teacher}).status_code == 404
    helper = TestClient(app, headers=bearer(engine, team))
    refused = helper.post("/api/tokens", json={"user_id": teacher})
    assert refused.status_code == 403 and refused.json()["detail"] == f"{team} may not manage the tokens of {teacher}."
    assert helper.post(f"/api/tokens/{made.json()['token_id']}/revoke").status_code == 403
    assert helper.post(f"/api/tokens/{b_token}/revoke").status_code == 404  # B is its home, not a state it serves
    with engine.connect() as conn:
        live = conn.execute(
            text("SELECT count(*) FROM api_tokens WHERE user_id = :u AND revoked_at IS NULL"), {"u": teacher}
        ).scalar_one()
    assert live == 1  # the admin's token for the teacher, untouched by the refusals
