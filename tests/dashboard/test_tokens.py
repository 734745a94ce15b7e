"""API tokens with a lifecycle, against the real database: the CLI (create, list, revoke), the store, and the
Sunbird-compatible API's token check (either header, before the body) and body cap.

The API checks here need no processor: every request is refused, or passes the token check and stops at a
batch that does not exist (400 INVALID_COURSE_BATCH_ID, Sunbird's status), before anything is published.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from dashboard.web.sunbird import sunbird_router
from dashboard.web.sunbird_hub import Hub
from enrolment.domain.model import User
from enrolment.settings import Settings
from enrolment.store import reference
from enrolment.store.tokens import authenticate, issue_token, list_tokens, revoke_token, token_hash
from tests.support.helpers import World, cli, commands_end

pytestmark = pytest.mark.integration
ADD = "/v1/course/batch/users/add"


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    done: subprocess.CompletedProcess[bytes] = cli(settings, "api-tokens", *args, timeout=120)
    assert b"Traceback" not in done.stdout + done.stderr, done.stderr.decode()
    return done


def user_of(engine: Engine, user_id: str) -> User:
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        found = reference.user(cur, user_id)
    assert found is not None
    return found


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


@pytest.fixture()
def world(engine: Engine, unique: str) -> World:
    return World(engine, unique, teachers=3, other_state_teachers=1)


@pytest.fixture()
def client(isolated_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    app = FastAPI()
    settings = dataclasses.replace(isolated_settings, sunbird_api_max_body_bytes=4096)
    hub = Hub(settings)
    app.include_router(sunbird_router(settings, engine, hub))
    try:
        with TestClient(app) as c:
            yield c
    finally:
        hub.close()


def nowhere(world: World) -> dict[str, object]:
    """A body that passes parsing and stops at 400 INVALID_COURSE_BATCH_ID: proof the token was accepted."""
    return {"request": {"batchId": f"no-such-{world.u}", "userIds": [world.user_id(0)]}}


# ------------------------------------------------------------------------------------------------ the CLI


def test_create_prints_the_secret_once_on_the_last_line_and_list_never_shows_it(
    isolated_settings: Settings, engine: Engine, world: World, client: TestClient
) -> None:
    done = run(isolated_settings, "create", "--user", world.admin, "--name", "nightly sync", "--expires-days", "7")
    assert done.returncode == 0, done.stderr.decode()
    out, err = done.stdout.decode(), done.stderr.decode()
    secret = out.splitlines()[-1]
    assert len(secret) >= 40 and (out + err).count(secret) == 1, "the secret is printed once, nowhere else"
    token_id = json.loads(run(isolated_settings, "list", "--user", world.admin, "--json").stdout)[-1]["token_id"]
    assert f"Token {token_id} for {world.admin} (nightly sync)" in err
    audit = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [(a["logger"], a["action"], a["token_id"], a["user"]) for a in audit] == [
        ("audit", "api-token.create", token_id, world.admin)
    ]
    assert audit[0]["by"].startswith("cli")

    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT * FROM api_tokens WHERE token_id = :t AND expires_at - created_at = interval '7 days'"),
            {"t": token_id},
        ).one()
    assert row.token_sha256 == token_hash(secret) and secret not in [str(v) for v in row], "only the hash is kept"
    assert row.name == "nightly sync" and row.created_by == audit[0]["by"] and row.last_used_at is None

    listed = run(isolated_settings, "list", "--user", world.admin)
    assert listed.returncode == 0 and token_id in listed.stdout.decode() and "active" in listed.stdout.decode()
    everything = run(isolated_settings, "list")
    for shown in (listed, everything, run(isolated_settings, "list", "--json")):
        assert secret not in (shown.stdout + shown.stderr).decode()
    doc = json.loads(run(isolated_settings, "list", "--user", world.admin, "--json").stdout)
    assert set(doc[0]) == {
        "token_id", "user_id", "name", "created_at", "created_by", "expires_at", "last_used_at", "revoked_at",
        "revoked_by", "status",
    }  # fmt: skip

    r = client.post(ADD, json=nowhere(world), headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 400, r.text
    used = json.loads(run(isolated_settings, "list", "--user", world.admin, "--json").stdout)[0]
    assert used["last_used_at"] is not None, "the use was recorded"


def test_revoke_then_the_api_answers_401(
    isolated_settings: Settings, engine: Engine, world: World, client: TestClient
) -> None:
    done = run(isolated_settings, "create", "--user", world.mentor, "--label", "old flag still works")
    secret = done.stdout.decode().splitlines()[-1]
    auth = {"Authorization": f"Bearer {secret}"}
    assert client.post(ADD, json=nowhere(world), headers=auth).status_code == 400
    (token,) = json.loads(run(isolated_settings, "list", "--user", world.mentor, "--json").stdout)
    assert token["name"] == "old flag still works" and token["status"] == "active"
    lifetime = datetime.fromisoformat(token["expires_at"]) - datetime.fromisoformat(token["created_at"])
    assert lifetime == timedelta(days=90), "the default expiry"

    revoked = run(isolated_settings, "revoke", token["token_id"])
    assert revoked.returncode == 0, revoked.stderr.decode()
    assert f"Revoked {token['token_id']} of {world.mentor}" in revoked.stdout.decode()
    audit = [json.loads(line) for line in revoked.stderr.decode().splitlines() if line.startswith("{")]
    assert [(a["action"], a["token_id"], a["user"]) for a in audit] == [
        ("api-token.revoke", token["token_id"], world.mentor)
    ]

    r = client.post(ADD, json=nowhere(world), headers=auth)
    assert r.status_code == 401, r.text
    assert r.json()["params"]["err"] == "UNAUTHORIZED_USER" and "revoked" in r.json()["params"]["errmsg"]
    assert r.json()["params"]["status"] == "SERVER_ERROR"
    (after,) = json.loads(run(isolated_settings, "list", "--user", world.mentor, "--json").stdout)
    assert after["status"] == "revoked" and after["revoked_at"] and after["revoked_by"].startswith("cli")

    again = run(isolated_settings, "revoke", token["token_id"])
    assert again.returncode == 0 and "already revoked" in again.stdout.decode()
    assert "api-token.revoke" not in again.stderr.decode(), "nothing changed, nothing audited"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["create", "--user", "nobody-{u}"], "There is no user nobody-{u}."),
        (["create", "--user", "{admin}", "--expires-days", "0"], "--expires-days must be a whole number"),
        (["create", "--user", "{admin}", "--expires-days", "-3"], "--expires-days must be a whole number"),
        (["create", "--user", "{admin}", "--expires-days", "soon"], "--expires-days must be a whole number"),
        (["list", "--user", "nobody-{u}"], "There is no user nobody-{u}."),
        (["revoke", "tok_nonexistent{u}"], "There is no token tok_nonexistent{u}"),
    ],
)
def test_unusable_arguments_get_a_sentence_and_exit_2(
    isolated_settings: Settings, engine: Engine, world: World, args: list[str], says: str
) -> None:
    done = run(isolated_settings, *(a.format(u=world.u, admin=world.admin) for a in args))
    assert done.returncode == 2 and done.stdout == b""
    assert says.format(u=world.u) in done.stderr.decode()
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM api_tokens WHERE user_id = :u"), {"u": world.admin}).scalar() == 0
        )


def test_create_without_expires_days_gives_90_days(isolated_settings: Settings, engine: Engine, world: World) -> None:
    done = run(isolated_settings, "create", "--user", world.mentor)
    assert done.returncode == 0, done.stderr.decode()
    with engine.connect() as conn:
        lifetime = conn.execute(
            text("SELECT expires_at - created_at FROM api_tokens WHERE token_sha256 = :h"),
            {"h": token_hash(done.stdout.decode().splitlines()[-1])},
        ).scalar_one()
    assert lifetime == timedelta(days=90)


# ------------------------------------------------------------------------------------------------ the store


def seconds_since_use(engine: Engine, token_id: str) -> float:
    with engine.connect() as conn:
        age = conn.execute(
            text("SELECT extract(epoch FROM now() - last_used_at) FROM api_tokens WHERE token_id = :t"), {"t": token_id}
        )
        return float(age.scalar_one())


def test_expired_token_gets_401_and_the_use_is_recorded_once_a_minute(
    engine: Engine, world: World, client: TestClient
) -> None:
    new = issue_token(engine, world.admin, "expiring")
    auth = {"Authorization": f"Bearer {new.secret}"}
    back = "UPDATE api_tokens SET last_used_at = now() - CAST(:age AS interval) WHERE token_id = :t"
    assert client.post(ADD, json=nowhere(world), headers=auth).status_code == 400
    sql(engine, back, age="30 seconds", t=new.token_id)
    assert client.post(ADD, json=nowhere(world), headers=auth).status_code == 400
    assert seconds_since_use(engine, new.token_id) >= 29, "used again within the minute: not written again"
    sql(engine, back, age="2 minutes", t=new.token_id)
    assert client.post(ADD, json=nowhere(world), headers=auth).status_code == 400
    assert seconds_since_use(engine, new.token_id) < 29, "over a minute since the last record: written"

    sql(engine, "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE token_id = :t", t=new.token_id)
    r = client.post(ADD, json=nowhere(world), headers=auth)
    assert r.status_code == 401 and "expired" in r.json()["params"]["errmsg"], r.text
    r = client.post(ADD, json=nowhere(world), headers={"x-authenticated-user-token": new.secret})
    assert r.status_code == 401, "the other header does not get around it"


def test_who_may_create_and_revoke_through_the_store(
    engine: Engine, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    admin, other_admin, mentor = (user_of(engine, u) for u in (world.admin, world.other_admin, world.mentor))
    with pytest.raises(PermissionError):
        issue_token(engine, world.mentor, by=other_admin)
    with pytest.raises(LookupError):
        issue_token(engine, f"nobody-{world.u}", by=admin)
    caplog.set_level(logging.INFO, logger="audit")
    own = issue_token(engine, world.mentor, "mine", by=mentor)
    by_admin = issue_token(engine, world.mentor, "from my admin", by=admin)
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        mine = list_tokens(cur, user_id=world.mentor)
        of_state = list_tokens(cur, state=mentor.state)  # states are stored upper-case
    assert [(t.token_id, t.created_by) for t in mine] == [
        (own.token_id, world.mentor),
        (by_admin.token_id, world.admin),
    ]
    assert {own.token_id, by_admin.token_id} <= {t.token_id for t in of_state}
    assert own.secret not in repr(mine) + repr(own), "neither the list nor the new token's repr shows it"

    with pytest.raises(PermissionError):
        revoke_token(engine, own.token_id, by=other_admin)
    assert revoke_token(engine, own.token_id, by=admin)[1] is True
    assert revoke_token(engine, by_admin.token_id, by=mentor)[1] is True
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        assert authenticate(cur, [own.secret]).user is None
        assert authenticate(cur, [by_admin.secret]).user is None
    records = [r for r in caplog.records if r.name == "audit"]
    assert [(r.__dict__["action"], r.__dict__["token_id"], r.__dict__["by"]) for r in records] == [
        ("api-token.create", own.token_id, world.mentor),
        ("api-token.create", by_admin.token_id, world.admin),
        ("api-token.revoke", own.token_id, world.admin),
        ("api-token.revoke", by_admin.token_id, world.mentor),
    ]
    logged = " ".join(str(r.__dict__) for r in records)
    assert own.secret not in logged and by_admin.secret not in logged


# ------------------------------------------------------------------------------------------------ the API


def test_the_sunbird_header_is_the_same_token(engine: Engine, world: World, client: TestClient) -> None:
    new = issue_token(engine, world.admin)
    for headers in (
        {"x-authenticated-user-token": new.secret},
        {"x-authenticated-user-token": new.secret, "Authorization": "Bearer a-sunbird-api-key-we-do-not-know"},
        {"x-authenticated-user-token": new.secret, "Authorization": f"Bearer {new.secret}"},
    ):
        r = client.post(ADD, json=nowhere(world), headers=headers)
        assert r.status_code == 400 and r.json()["params"]["err"] == "INVALID_COURSE_BATCH_ID", (headers, r.text)
    inactive = issue_token(engine, f"inactive-{world.u}").secret  # the operator may; the user can do nothing
    for headers in (
        {"x-authenticated-user-token": "not-a-token"},
        {"Authorization": f"Bearer {inactive}"},
        {
            "x-authenticated-user-token": new.secret,
            "Authorization": f"Bearer {issue_token(engine, world.mentor).secret}",
        },
        {},
    ):
        r = client.post(ADD, json=nowhere(world), headers=headers)
        assert r.status_code == 401 and r.json()["params"]["err"] == "UNAUTHORIZED_USER", (headers, r.text)
        assert r.json()["id"] == "api.course.batch.users.add" and r.json()["params"]["errmsg"]


class Body:
    """A valid request of ``size`` bytes (padded with spaces), produced on demand: it says whether it was read."""

    def __init__(self, size: int, batch_id: str) -> None:
        self.head = json.dumps({"request": {"batchId": batch_id, "userIds": ["u-1"]}}).encode()[:-1]
        self.size = size
        self.started = False

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        yield self.head
        left = self.size - len(self.head) - 1
        while left > 0:
            yield b" " * min(left, 1 << 20)
            left -= 1 << 20
        yield b"}"


def test_the_token_is_checked_before_the_body_is_read(engine: Engine, world: World, client: TestClient) -> None:
    huge = Body(32 * 1024 * 1024, f"no-such-{world.u}")
    r = client.post(ADD, content=huge, headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"})
    assert r.status_code == 401 and r.json()["params"]["err"] == "UNAUTHORIZED_USER"
    assert not huge.started, "the body of a request without a valid token is not read"

    secret = issue_token(engine, world.admin).secret
    small = Body(2048, f"no-such-{world.u}")
    r = client.post(
        ADD, content=small, headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and small.started, "with a valid token it is read (the check above can fail)"


def test_an_oversized_body_gets_413_and_nothing_is_published(
    isolated_settings: Settings, engine: Engine, world: World, client: TestClient
) -> None:
    batch = world.batch("cap")
    auth = {"Authorization": f"Bearer {issue_token(engine, world.admin).secret}"}
    before = commands_end(isolated_settings)
    ids = [f"u-{world.u}-{n:06d}" for n in range(400)]  # ~6.8 kB, over the client's 4 kB cap
    for r in (
        client.post(ADD, json={"request": {"batchId": batch, "userIds": ids}}, headers=auth),  # Content-Length
        client.post(ADD, content=Body(10_000, batch), headers={**auth, "Content-Type": "application/json"}),  # chunked
    ):
        assert r.status_code == 413, r.text
        doc = r.json()
        assert doc["params"]["err"] == "REQUEST_TOO_LARGE" and doc["responseCode"] == "CLIENT_ERROR"
        assert "over 4096 bytes" in doc["params"]["errmsg"]
    assert commands_end(isolated_settings) == before, "nothing was published"
    assert world.members(batch) == set()


def test_the_default_cap_is_2_mb(isolated_settings: Settings, engine: Engine, world: World) -> None:
    assert Settings.from_env().sunbird_api_max_body_bytes == 2 * 1024 * 1024
    app = FastAPI()
    hub = Hub(isolated_settings)
    app.include_router(sunbird_router(isolated_settings, engine, hub))
    auth = {"Authorization": f"Bearer {issue_token(engine, world.admin).secret}", "Content-Type": "application/json"}
    with TestClient(app) as c:
        assert c.post(ADD, content=Body(2 * 1024 * 1024 + 1, f"no-such-{world.u}"), headers=auth).status_code == 413
        assert c.post(ADD, content=Body(2 * 1024 * 1024, f"no-such-{world.u}"), headers=auth).status_code == 400
    hub.close()


def test_token_creation_and_revocation_are_audit_events_on_the_telemetry_topic(
    isolated_settings: Settings, world: World
) -> None:
    from tests.support.helpers import read_topic

    made = run(isolated_settings, "create", "--user", world.admin, "--name", "audit-check")
    assert made.returncode == 0, made.stderr.decode()
    token_id = next(t.token_id for t in _tokens_of(isolated_settings, world.admin) if t.name == "audit-check")
    revoked = run(isolated_settings, "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr.decode()
    audits = [r for r in read_topic(isolated_settings, isolated_settings.topics.telemetry) if r["eid"] == "AUDIT"]
    mine = [(r["edata"]["type"], r["object"]["id"]) for r in audits if r["object"]["id"] == token_id]
    assert mine == [("API_TOKEN_CREATE", token_id), ("API_TOKEN_REVOKE", token_id)]
    secret = made.stdout.decode().strip().splitlines()[-1]
    assert all(secret not in repr(r) for r in audits), "the secret never reaches telemetry"


def _tokens_of(settings: Settings, user_id: str) -> list[Any]:
    from sqlalchemy import create_engine

    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
            return list(list_tokens(cur, user_id=user_id))
    finally:
        engine.dispose()
