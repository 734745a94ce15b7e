"""The plan API and pages on the real stack: making a plan from a file, who may see and decide it (404 outside
the state, 403 for those who may see but not decide, 409 once it is not waiting), the rows CSV, and approval
applying the plan as one upload; an implementation team's upload waits for approval.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from dashboard.web.app import create_app
from enrolment.settings import Settings
from tests.support.dashboard import World, bearer, catch_up, process, two_states
from tests.support.helpers import csv_table as table
from tests.support.helpers import members
from tests.support.signin import csrf_token, signed_in_client

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


@pytest.fixture()
def worlds(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[tuple[World, World, str]]:
    with two_states(engine, isolated_settings, unique) as found:
        yield found


def test_a_plan_is_seen_in_its_state_and_decided_by_its_admin_once(
    worlds: tuple[World, World, str], engine: Engine
) -> None:
    a, b, team = worlds
    s = a.settings
    batch = a.batches[0]
    client = TestClient(create_app(s, engine))
    t = a.teachers
    body = f"user_id\n{t[0]}\n{t[1]}\n{t[1]}\nu-nobody-{a.token}\n=cmd()\n".encode()
    team_auth, admin_auth = bearer(engine, team), bearer(engine, a.admin)
    made = client.post("/api/plans", params={"batch_id": batch, "kind": "add"}, content=body, headers=team_auth)
    assert made.status_code == 201, made.text
    plan = made.json()
    pid = plan["plan_id"]
    assert plan["status"] == "waiting" and plan["made_by"] == team and plan["kind"] == "add"
    assert plan["counts"]["adds"] == 2 and plan["upload_id"] is None
    assert members(engine, batch) == set()  # nothing applied yet

    rows = table(client.get(f"/api/plans/{pid}/rows.csv", headers=team_auth).content)
    assert rows[0] == ["line", "identifier", "id_type", "user_id", "action", "outcome", "reason", "message"]
    by_id = {r[1]: r for r in rows[1:]}
    assert by_id[t[0]][5:7] == ["APPLIED", "ENROLLED"]
    assert by_id[f"u-nobody-{a.token}"][5:7] == ["REJECTED", "USER_NOT_FOUND"]
    assert "'=cmd()" in by_id  # the formula guard

    outsiders = (bearer(engine, b.admin), bearer(engine, b.mentor))
    for auth in outsiders:  # another state's people do not learn the plan exists
        assert client.get(f"/api/plans/{pid}", headers=auth).status_code == 404
        assert client.get(f"/api/plans/{pid}/rows.csv", headers=auth).status_code == 404
        assert client.post(f"/api/plans/{pid}/approve", headers=auth).status_code == 404
        assert client.post(f"/api/plans/{pid}/reject", headers=auth).status_code == 404
    for auth in (team_auth, bearer(engine, a.mentor)):  # may see it, may not decide it
        assert client.get(f"/api/plans/{pid}", headers=auth).status_code == 200
        r = client.post(f"/api/plans/{pid}/approve", headers=auth)
        assert r.status_code == 403 and "Nothing was changed" in r.json()["detail"], r.text
    assert client.get("/api/plans/no-such-plan", headers=admin_auth).status_code == 404

    approved = client.post(f"/api/plans/{pid}/approve", headers=admin_auth)
    assert approved.status_code == 200, approved.text
    answer = approved.json()
    assert answer["status"] == "applied" and answer["decided_by"] == a.admin and answer["upload_id"]
    again = client.post(f"/api/plans/{pid}/approve", headers=admin_auth)
    assert again.status_code == 409 and "not waiting" in again.json()["detail"]
    assert client.post(f"/api/plans/{pid}/reject", headers=admin_auth).status_code == 409
    process(s, engine)
    assert members(engine, batch) == {t[0], t[1]}
    catch_up(s, engine)
    page = signed_in_client(create_app(s, engine), engine, a.admin).get(f"/plans/{pid}")
    assert page.status_code == 200 and answer["upload_id"] in page.text and "Complete" in page.text


def test_the_page_decides_with_the_session_and_its_csrf_token(worlds: tuple[World, World, str], engine: Engine) -> None:
    a, _b, team = worlds
    batch = a.batches[1]
    client = TestClient(create_app(a.settings, engine))
    body = f"user_id\n{a.teachers[2]}\n".encode()
    made = client.post(
        "/api/plans", params={"batch_id": batch, "kind": "add"}, content=body, headers=bearer(engine, team)
    )
    pid = made.json()["plan_id"]
    admin = signed_in_client(create_app(a.settings, engine), engine, a.admin)
    page = admin.get(f"/plans/{pid}")
    assert page.status_code == 200 and 'id="approve-plan"' in page.text and 'id="reject-plan"' in page.text
    assert pid in admin.get("/plans").text
    token = csrf_token(admin)
    assert admin.post(f"/plans/{pid}/reject", data={}, follow_redirects=False).status_code == 403
    foreign = {"Origin": "https://evil.example"}
    r = admin.post(f"/plans/{pid}/reject", data={"csrf_token": token}, headers=foreign, follow_redirects=False)
    assert r.status_code == 403
    assert admin.post(f"/api/plans/{pid}/reject").status_code == 403  # JSON without the CSRF header
    r = admin.post(f"/plans/{pid}/reject", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/plans/{pid}"
    shown = admin.get(f"/plans/{pid}").text
    assert 'id="plan-status">rejected<' in shown and 'id="approve-plan"' not in shown
    assert members(engine, batch) == set()
