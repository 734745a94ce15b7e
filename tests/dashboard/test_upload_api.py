"""The upload API on the real stack: who may submit, what a refusal publishes (nothing), and that an upload
through ``POST /api/uploads`` ends exactly as the same file sent by the CLI's direct path.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from dashboard.web.app import create_app
from enrolment.domain.plans import StateSettings
from enrolment.settings import Settings
from enrolment.store import plans as plan_store
from enrolment.store.tokens import issue_token, revoke_token
from producer.follow import UploadStatus, status_from_store
from tests.support.dashboard import World, bearer, catch_up, process, two_states
from tests.support.helpers import cli, commands_end, start_processor, wait_until
from tests.support.helpers import csv_table as table
from tests.support.signin import signed_in_client

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


@pytest.fixture()
def worlds(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[tuple[World, World, str]]:
    with two_states(engine, isolated_settings, unique) as found:
        yield found


def no_team_approval(engine: Engine, world: World) -> None:
    with engine.begin() as conn, closing(conn.connection.cursor()) as cur:
        plan_store.set_state_settings(cur, world.state, StateSettings(team_approval_required=False))


def the_file(world: World) -> str:
    """Good rows, a duplicate, an unknown user and an identifier refused before publishing."""
    t = world.teachers
    return f"user_id\n{t[0]}\n{t[1]}\n{t[2]}\n{t[1]}\nu-nobody-{world.token}\nbad\u200bid\n"


def test_refusals_publish_nothing(worlds: tuple[World, World, str], engine: Engine) -> None:
    a, b, team = worlds
    s = a.settings
    client = TestClient(create_app(s, engine))
    body = the_file(a).encode()
    before = commands_end(s)
    team_auth = bearer(engine, team)

    r = client.post(
        "/api/uploads", params={"batch_id": b.batches[0], "operation": "add"}, content=body, headers=team_auth
    )
    assert r.status_code == 403 and "may not submit uploads" in r.json()["detail"]  # a state it does not serve
    r = client.post("/api/uploads", params={"batch_id": "no-such", "operation": "add"}, content=body, headers=team_auth)
    assert r.status_code == 404
    mentor = bearer(engine, a.mentor)
    r = client.post("/api/uploads", params={"batch_id": b.batches[0], "operation": "add"}, content=body, headers=mentor)
    assert r.status_code == 404 and r.json()["detail"] == f"Batch {b.batches[0]} does not exist."
    r = client.post("/api/uploads", params={"batch_id": a.batches[0], "operation": "add"}, content=body)
    assert r.status_code == 401

    expired = issue_token(engine, team, "old", by="test")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE token_id = :t"),
            {"t": expired.token_id},
        )
    revoked = issue_token(engine, team, "gone", by="test")
    revoke_token(engine, revoked.token_id, by="test")
    for token, says in (
        (expired.secret, "This token expired on "),
        (revoked.secret, "This token was revoked on "),
        ("not-a-token", "Sign in first"),  # an unknown token: nothing to say about it
    ):
        r = client.post(
            "/api/uploads",
            params={"batch_id": a.batches[0], "operation": "add"},
            content=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 401 and r.json()["detail"].startswith(says), r.text

    r = client.post(
        "/api/uploads",
        params={"batch_id": a.batches[0], "operation": "add"},
        content=b"\xff\xfe not text\n",
        headers=team_auth,
    )
    assert r.status_code == 400
    refusal = r.json()["refusals"][0]
    assert refusal == {"line": 1, "reason": "NOT_UTF8", "message": refusal["message"]} and "UTF-8" in refusal["message"]
    r = client.post(
        "/api/uploads", params={"batch_id": a.batches[0], "operation": "move"}, content=body, headers=team_auth
    )
    assert r.status_code == 422

    small = TestClient(create_app(replace(s, upload_max_bytes=1000), engine))
    big = b"user_id\n" + b"".join(f"u-{i:09d}\n".encode() for i in range(200))  # 2,408 bytes
    r = small.post(
        "/api/uploads", params={"batch_id": a.batches[0], "operation": "add"}, content=big, headers=team_auth
    )
    assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
    chunks = (big[i : i + 300] for i in range(0, len(big), 300))  # streamed: no Content-Length
    r = small.post(
        "/api/uploads", params={"batch_id": a.batches[0], "operation": "add"}, content=chunks, headers=team_auth
    )
    assert r.status_code == 413
    assert commands_end(s) == before


def test_an_upload_through_the_api_ends_as_the_cli_direct_path(
    worlds: tuple[World, World, str], engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, _b, team = worlds
    s = a.settings
    no_team_approval(engine, a)  # this state lets the team's uploads apply at once (issue 13's setting)
    start_processor(s)
    file = tmp_path / "people.csv"
    file.write_text(the_file(a), encoding="utf-8")
    direct_report = tmp_path / "direct.csv"
    done = cli(
        s,
        "add",
        str(file),
        "--batch",
        a.batches[1],
        "--as",
        a.admin,
        "--wait",
        "--json",
        "--report",
        str(direct_report),
    )
    assert done.returncode == 3, done.stderr.decode()  # some rows rejected
    direct = json.loads(done.stdout)

    client = TestClient(create_app(s, engine))
    with caplog.at_level(logging.INFO, logger="audit"):
        r = client.post(
            "/api/uploads",
            params={"batch_id": a.batches[0], "operation": "add"},
            content=file.read_bytes(),
            headers={**bearer(engine, team), "X-File-Name": "people.csv"},
        )
    assert r.status_code == 202, r.text
    answer = r.json()
    upload_id = answer["upload_id"]
    assert answer["status_url"] == f"/api/uploads/{upload_id}" and answer["published"] == 4
    assert [x["reason"] for x in answer["refused_rows"]] == ["DUPLICATE_IN_FILE", "INVALID_CHARACTERS"]
    logged = [x for x in caplog.records if getattr(x, "event", "") == "UPLOAD_SUBMITTED"]
    assert [(x.user_id, x.batch_id, x.upload_id, x.rows) for x in logged] == [(team, a.batches[0], upload_id, 6)]  # type: ignore[attr-defined]

    def finished() -> object:
        with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
            found = status_from_store(cur, upload_id)
        return found if found is not None and found.completed else None

    through_api = wait_until("the API's upload to be processed", finished, 120, 0.3).to_json()  # type: ignore[attr-defined]
    who = ("requested_by", "submitted_by")
    same = {k: v for k, v in through_api.items() if k not in ("upload_id", "batch_id", *who)}
    assert same == {k: v for k, v in direct.items() if k not in ("upload_id", "batch_id", *who)}
    # The API's user requested and sent it; on the direct path the operator sent it for the admin named by --as.
    assert [through_api[k] for k in who] == [team, team] and direct["requested_by"] == a.admin
    assert direct["submitted_by"].startswith("cli") and direct["submitted_by"] != a.admin
    assert through_api["reasons"]["ENROLLED"] == 3 and through_api["reasons"]["USER_NOT_FOUND"] == 1

    with engine.connect() as conn:
        requesters = conn.execute(
            text("SELECT DISTINCT requested_by FROM command_ledger WHERE upload_id = :u"), {"u": upload_id}
        ).all()
    assert requesters == [(team,)]  # the token's user, recorded on every command

    catch_up(s, engine)
    summary = client.get(f"/api/uploads/{upload_id}", headers=bearer(engine, team)).json()
    assert summary["requested_by"] == summary["submitted_by"] == team and summary["complete"]
    assert {k: summary[k] for k in same} == same

    report = client.get(f"/api/uploads/{upload_id}/report.csv", headers=bearer(engine, team))
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    assert report.content.startswith(b"\xef\xbb\xbf") and b"\r\n" in report.content
    served = table(report.content)
    written = table(direct_report.read_bytes().replace(a.batches[1].encode(), a.batches[0].encode()))  # the batch
    assert served[0] == ["line", "identifier", "id_type", "outcome", "reason", "message"] and len(served) == 7
    # Rows refused before publishing keep their id type in the upload record: the same report as the CLI's.
    assert served == written
    assert {r[2] for r in served if r[4] in ("DUPLICATE_IN_FILE", "INVALID_CHARACTERS")} == {"USER_ID"}
    admin = bearer(engine, a.admin)
    assert client.get(f"/api/uploads/{upload_id}/report.csv", headers=admin).status_code == 200
    other = bearer(engine, _b.admin)
    assert client.get(f"/api/uploads/{upload_id}/report.csv", headers=other).status_code == 404
    assert client.get(f"/api/uploads/{upload_id}/report.csv").status_code == 401


def test_retry_and_undo_through_the_api_are_submitted_by_the_caller(
    worlds: tuple[World, World, str], engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, team = worlds
    s = a.settings
    no_team_approval(engine, a)  # this state lets the team's uploads apply at once (issue 13's setting)
    start_processor(s)
    client = TestClient(create_app(s, engine))
    team_auth, admin_auth = bearer(engine, team), bearer(engine, a.admin)
    t = a.teachers
    body = f"user_id\n{t[0]}\n{t[1]}\nu-nobody-{a.token}\n".encode()
    r = client.post(
        "/api/uploads", params={"batch_id": a.batches[0], "operation": "add"}, content=body, headers=team_auth
    )
    assert r.status_code == 202, r.text
    parent = r.json()["upload_id"]
    done(engine, parent)

    before = commands_end(s)
    for path in (f"/api/uploads/{parent}/retry", f"/api/uploads/{parent}/undo"):
        assert client.post(path, headers=bearer(engine, b.admin)).status_code == 404  # another state's admin
        assert client.post(path).status_code == 401
    assert client.post("/api/uploads/no-such-upload/undo", headers=team_auth).status_code == 404
    assert commands_end(s) == before

    # The state's admin retries the team's upload: the admin is its requester and submitter, not the team.
    caplog.clear()  # the team's upload above may have been logged too
    with caplog.at_level(logging.INFO, logger="audit"):
        r = client.post(f"/api/uploads/{parent}/retry", params={"reasons": "user_not_found"}, headers=admin_auth)
    assert r.status_code == 202, r.text
    retry = r.json()
    assert (retry["kind"], retry["action"], retry["parent_upload_id"], retry["batch_id"]) == (
        "retry",
        "ADD",
        parent,
        a.batches[0],
    )
    assert retry["published"] == 1 and retry["requested_by"] == retry["submitted_by"] == a.admin
    logged = [x for x in caplog.records if getattr(x, "event", "") == "UPLOAD_SUBMITTED"]
    assert [(x.user_id, x.operation, x.parent_upload_id) for x in logged] == [(a.admin, "retry", parent)]  # type: ignore[attr-defined]
    status = done(engine, retry["upload_id"])
    assert status.requested_by == status.submitted_by == a.admin and status.reasons == {"USER_NOT_FOUND": 1}
    with engine.connect() as conn:
        recorded = conn.execute(
            text("SELECT DISTINCT requested_by, origin_upload_id FROM command_ledger WHERE upload_id = :u"),
            {"u": retry["upload_id"]},
        ).all()
    assert recorded == [(a.admin, parent)]

    # A dry run of the undo changes nothing; the undo itself removes the two it added.
    r = client.post(f"/api/uploads/{parent}/undo", params={"dry_run": "true"}, headers=team_auth)
    assert r.status_code == 202 and r.json()["action"] == "REMOVE" and r.json()["published"] == 2
    assert done(engine, r.json()["upload_id"]).dry_run
    with engine.connect() as conn:
        count = "SELECT count(*) FROM enrolments WHERE batch_id = :b"
        assert conn.execute(text(count), {"b": a.batches[0]}).scalar() == 2
    r = client.post(f"/api/uploads/{parent}/undo", headers=team_auth)
    assert r.status_code == 202 and r.json()["requested_by"] == team
    assert done(engine, r.json()["upload_id"]).reasons == {"UNENROLLED": 2}
    with engine.connect() as conn:
        assert conn.execute(text(count), {"b": a.batches[0]}).scalar() == 0

    # The team still sees its own upload once it no longer serves the state, but may not act on it: 403.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM served_states WHERE user_id = :u"), {"u": team})
    before = commands_end(s)
    for path in (f"/api/uploads/{parent}/retry", f"/api/uploads/{parent}/undo"):
        r = client.post(path, headers=team_auth)
        assert r.status_code == 403 and "nothing was published" in r.json()["detail"], r.text
    assert client.get(f"/api/uploads/{parent}/report.csv", headers=team_auth).status_code == 200
    assert commands_end(s) == before


def done(engine: Engine, upload_id: str) -> UploadStatus:
    """The upload's summary from the store once the processor has completed it."""

    def finished() -> UploadStatus | None:
        with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
            found = status_from_store(cur, upload_id)
        return found if found is not None and found.completed else None

    return wait_until(f"upload {upload_id} to be processed", finished, 120, 0.3)


def test_the_teams_upload_waits_for_a_state_admin_and_a_repeated_file_is_refused(
    worlds: tuple[World, World, str], engine: Engine
) -> None:
    a, _b, team = worlds
    s = a.settings
    batch = a.batches[0]
    client = TestClient(create_app(s, engine))
    body = f"user_id\n{a.teachers[0]}\n{a.teachers[1]}\n".encode()
    before = commands_end(s)
    r = client.post(
        "/api/uploads", params={"batch_id": batch, "operation": "add"}, content=body, headers=bearer(engine, team)
    )
    assert r.status_code == 202, r.text
    plan = r.json()
    assert plan["status"] == "waiting" and plan["needs_approval_reason"] == "IMPLEMENTATION_TEAM"
    assert plan["counts"]["adds"] == 2 and "upload_id" in plan and plan["upload_id"] is None
    assert commands_end(s) == before  # nothing published until a state admin approves

    admin = bearer(engine, a.admin)
    approved = client.post(f"/api/plans/{plan['plan_id']}/approve", headers=admin)
    assert approved.status_code == 200 and approved.json()["status"] == "applied", approved.text
    upload_id = approved.json()["upload_id"]
    process(s, engine)
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        done = status_from_store(cur, upload_id)
    assert done is not None and done.completed and done.reasons["ENROLLED"] == 2

    # The admin sends the same file again: refused with the first upload named, nothing published.
    before = commands_end(s)
    again = client.post("/api/uploads", params={"batch_id": batch, "operation": "add"}, content=body, headers=admin)
    assert again.status_code == 409 and upload_id in again.json()["detail"], again.text
    assert commands_end(s) == before
    allowed = client.post(
        "/api/uploads",
        params={"batch_id": batch, "operation": "add", "allow_repeat": "true"},
        content=body,
        headers=admin,
    )
    assert allowed.status_code == 202, allowed.text
    process(s, engine)
    catch_up(s, engine)
    page = signed_in_client(create_app(s, engine), engine, a.admin).get("/uploads")
    assert f'data-repeat-of="{upload_id}"' in page.text


class Spaces:
    """A body of ``size`` bytes sent chunked (no Content-Length), produced on demand: it says whether it was read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.started = False

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        left = self.size
        while left > 0:
            yield b" " * min(left, 1 << 20)
            left -= 1 << 20


def test_the_token_is_checked_before_the_body_is_read(worlds: tuple[World, World, str], engine: Engine) -> None:
    a, _, _ = worlds
    client = TestClient(create_app(replace(a.settings, upload_max_bytes=4096), engine))
    params = {"batch_id": a.batches[0], "operation": "add"}
    for headers in ({"Authorization": "Bearer wrong"}, {}):
        huge = Spaces(64 * 1024)
        r = client.post("/api/uploads", params=params, content=huge, headers=headers)
        assert r.status_code == 401 and not huge.started, (headers, r.status_code, r.text)
    huge = Spaces(64 * 1024)
    r = client.post("/api/uploads", params=params, content=huge, headers=bearer(engine, a.admin))
    assert r.status_code == 413 and huge.started, "with a valid token the body is read, and refused past the limit"


def test_the_default_upload_limit_is_20_mb(worlds: tuple[World, World, str], engine: Engine) -> None:
    assert Settings.from_env().upload_max_bytes == 20 * 1024 * 1024
    a, _, _ = worlds
    client = TestClient(create_app(replace(a.settings, upload_max_bytes=Settings.from_env().upload_max_bytes), engine))
    params = {"batch_id": a.batches[0], "operation": "add"}
    over = client.post(
        "/api/uploads", params=params, content=Spaces(20 * 1024 * 1024 + 1), headers=bearer(engine, a.admin)
    )
    assert over.status_code == 413 and "20 MB" in over.json()["detail"], over.text
    # just under it the file is read to its end and judged on its content (here: no usable line, 400)
    under = client.post(
        "/api/uploads", params=params, content=Spaces(20 * 1024 * 1024), headers=bearer(engine, a.admin)
    )
    assert under.status_code == 400, under.text
