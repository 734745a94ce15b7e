"""Who may see and change what, through the real app: sign-in, scope on every route, CSRF, the throttle.

The route-table test needs no stack (an anonymous request is refused before the store is touched); the others
run on the real stack with two states of their own (integration).
"""

from __future__ import annotations

import io
import logging
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import Engine, create_engine, text
from starlette.routing import Mount

from dashboard.web.app import create_app
from dashboard.web.session import safe_next
from enrolment.errors import EXIT_INPUT
from enrolment.settings import Settings
from enrolment.store import accounts, tokens
from participants import cli
from processor.imports import import_batches, import_users
from tests.support.dashboard import World, catch_up, cleanup_world, make_world, process, serving, upload
from tests.support.helpers import add_team
from tests.support.signin import (
    PASSWORD,
    csrf_token,
    fake_address,
    forget_failures,
    set_password,
    signed_in_client,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OPEN = {("GET", "/login"), ("POST", "/login"), ("GET", "/healthz")}
EVIL = "https://evil.example"


def _machine(path: str) -> bool:
    return path.startswith(("/api/", "/v1/")) or path == "/openapi.json" or path.endswith(".csv")


def test_every_route_refuses_an_anonymous_request() -> None:
    """Enumerates the app's own route table: 401 for the JSON and CSV APIs, a redirect to /login for pages."""
    engine = create_engine("postgresql+psycopg2://nobody:nothing@127.0.0.1:9/none")  # never connected
    app = create_app(Settings.from_env(), engine)
    client = TestClient(app, raise_server_exceptions=True)
    checked = set()
    for route in iter_route_contexts(app.routes):  # the effective routes, included routers' prefixes applied
        if isinstance(route.original_route, Mount):
            continue
        assert route.path and route.methods, route
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            if (method, route.path) in OPEN:
                continue
            r = client.request(method, path, json={}, follow_redirects=False)
            if _machine(route.path):
                assert r.status_code == 401, (method, route.path, r.status_code)
            else:
                assert r.status_code == 303, (method, route.path, r.status_code)
                assert r.headers["location"].startswith("/login"), (method, route.path)
            assert "Teacher" not in r.text
            checked.add((method, route.path))
    assert {
        ("GET", "/courses"),
        ("GET", "/batches/{batch_id}"),
        ("POST", "/batches/{batch_id}/edit"),
        ("GET", "/batches/{batch_id}/participants.csv"),
        ("GET", "/api/courses"),
        ("POST", "/api/batches/{batch_id}/participants"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("POST", "/logout"),
        ("POST", "/v1/course/batch/users/add"),
        ("GET", "/plans"),
        ("GET", "/plans/{plan_id}"),
        ("POST", "/plans/{plan_id}/{decision}"),
        ("POST", "/api/plans"),
        ("GET", "/api/plans"),
        ("GET", "/api/plans/{plan_id}"),
        ("GET", "/api/plans/{plan_id}/rows.csv"),
        ("POST", "/api/plans/{plan_id}/approve"),
        ("POST", "/api/plans/{plan_id}/reject"),
    } <= checked
    assert client.get("/courses?q=1", follow_redirects=False).headers["location"] == "/login?next=%2Fcourses%3Fq%3D1"
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/login").status_code == 200


def test_sign_in_only_returns_to_pages_of_this_site() -> None:
    assert safe_next("/batches/b1?page=2") == "/batches/b1?page=2"
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "", None):
        assert safe_next(bad) == "/"


# ---------------------------------------------------------------------------------------------- on the stack


@pytest.fixture()
def worlds(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[tuple[World, World]]:
    """State A (a mentor of batches a and b, and batch "other" without that mentor) and state B (one batch)."""
    a = make_world(
        engine, isolated_settings, unique, 6, [("a", "invite-only", "ongoing"), ("b", "invite-only", "ongoing")]
    )
    other = f"batch-{unique}-other"
    report = import_batches(
        engine,
        io.BytesIO(
            "batch_id,course_id,course_name,state,enrollment_type,status,start_date,end_date,mentors\n"
            f"{other},course-{unique},Course {unique},{a.state},invite-only,ongoing,2026-01-01,2027-12-31,\n".encode()
        ),
    )
    assert not report.errors
    a = replace(a, batches=(*a.batches, other))
    b = make_world(engine, isolated_settings, unique + "b", 3, [("a", "invite-only", "ongoing")])
    try:
        yield a, b
    finally:
        forget_failures(engine, a.mentor, a.admin, b.mentor, b.admin)
        cleanup_world(engine, a)
        cleanup_world(engine, b)


def csrf(token: str) -> dict[str, str]:
    return {"X-CSRF-Token": token}


def _ids(batches: list[dict[str, object]]) -> set[object]:
    return {b["batch_id"] for c in batches for b in c["batches"]}  # type: ignore[attr-defined]


@pytest.mark.integration
def test_a_mentor_sees_only_their_batches(worlds: tuple[World, World], engine: Engine) -> None:
    a, b = worlds
    mine, other, theirs = a.batches[:2], a.batches[2], b.batches[0]
    client = signed_in_client(create_app(a.settings, engine), engine, a.mentor)
    assert _ids(client.get("/api/courses").json()) == set(mine)
    assert {x["batch_id"] for x in client.get("/api/workspace").json()} == set(mine)
    html = client.get("/courses").text
    assert mine[0] in html and other not in html and theirs not in html
    assert client.get(f"/batches/{mine[0]}").status_code == 200
    assert client.get(f"/batches/{mine[0]}/participants.csv").status_code == 200
    for batch in (other, theirs):
        for path in (f"/batches/{batch}", f"/batches/{batch}/edit", f"/batches/{batch}/participants.csv"):
            r = client.get(path)
            assert r.status_code == 404 and f"Batch {batch} does not exist." in r.text, path
        assert client.get(f"/api/batches/{batch}").status_code == 404
        assert client.get(f"/api/batches/{batch}/participants").status_code == 404
        # An action on a batch one may not see is as hidden as a read: 404, the batch not confirmed.
        token = csrf_token(client)
        posted = client.post(f"/batches/{batch}/edit", data={"csrf_token": token, "add": a.teachers[0]})
        assert posted.status_code == 404 and f"Batch {batch} does not exist." in posted.text
        written = client.post(f"/api/batches/{batch}/participants", json={"add": [a.teachers[0]]}, headers=csrf(token))
        assert written.status_code == 404 and written.json()["detail"] == f"Batch {batch} does not exist."
    assert client.get("/batches/no-such-batch").status_code == 404
    # One the mentor may see but not change (it has ended): 403, with the reason.
    with engine.begin() as conn:
        conn.execute(text("UPDATE course_batches SET status = 'ended' WHERE batch_id = :b"), {"b": mine[1]})
    token = csrf_token(client)
    posted = client.post(f"/batches/{mine[1]}/edit", data={"csrf_token": token, "add": a.teachers[0]})
    assert posted.status_code == 403 and "is ended" in posted.text
    written = client.post(f"/api/batches/{mine[1]}/participants", json={"add": [a.teachers[0]]}, headers=csrf(token))
    assert written.status_code == 403 and "is ended" in written.json()["detail"]


@pytest.mark.integration
def test_a_state_admin_sees_their_state_only_and_a_team_the_uploads_of_the_states_it_serves(
    worlds: tuple[World, World], engine: Engine
) -> None:
    a, b = worlds
    s = a.settings
    up_a = upload(s, a.batches[0], a.admin, a.teachers[:2])
    up_b = upload(s, b.batches[0], b.admin, b.teachers[:2])
    process(s, engine)
    catch_up(s, engine)
    app = create_app(s, engine)
    admin = signed_in_client(app, engine, a.admin)
    assert _ids(admin.get("/api/courses").json()) == set(a.batches)
    assert admin.get(f"/batches/{a.batches[2]}").status_code == 200
    assert admin.get(f"/batches/{b.batches[0]}").status_code == 404
    assert admin.get(f"/batches/{b.batches[0]}/participants.csv").status_code == 404
    assert [u["upload_id"] for u in admin.get("/api/uploads").json()] == [up_a]
    assert admin.get(f"/uploads/{up_a}").status_code == 200
    assert admin.get(f"/uploads/{up_b}").status_code == 404 and admin.get(f"/api/uploads/{up_b}").status_code == 404
    assert up_b not in admin.get("/uploads").text

    team = add_team(engine, f"team-{b.token}", b.state, [a.state])
    helper = signed_in_client(app, engine, team)
    assert [u["upload_id"] for u in helper.get("/api/uploads").json()] == [up_a]
    assert helper.get(f"/uploads/{up_a}").status_code == 200 and helper.get(f"/uploads/{up_b}").status_code == 404
    assert helper.get(f"/batches/{a.batches[0]}").status_code == 404  # uploads, not the participant list
    assert _ids(helper.get("/api/courses").json()) == set()


def _ui_uploads(engine: Engine, world: World) -> int:
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM dash_uploads WHERE group_id = :g AND kind = 'ui'"),
            {"g": world.settings.dashboard_group},
        ).scalar_one()
    return int(n)


@pytest.mark.integration
def test_a_cross_site_form_post_changes_nothing(worlds: tuple[World, World], engine: Engine) -> None:
    a, _ = worlds
    batch, person = a.batches[0], a.teachers[0]
    client = signed_in_client(create_app(a.settings, engine), engine, a.mentor)
    token = csrf_token(client)
    form = {"add": person, "from": "courses"}
    for step in ({}, {"step": "confirm"}):  # the review and the confirmation alike
        for extra, headers in (({}, {}), ({}, {"Origin": EVIL}), ({"csrf_token": token}, {"Origin": EVIL})):
            data = {**form, **step, **extra}
            r = client.post(f"/batches/{batch}/edit", data=data, headers=headers, follow_redirects=False)
            assert r.status_code == 403 and "nothing was changed" in r.text, (step, extra, headers)
    wrong = client.post(f"/batches/{batch}/edit", data={**form, "csrf_token": "x" * 43}, follow_redirects=False)
    assert wrong.status_code == 403
    json_write = client.post(f"/api/batches/{batch}/participants", json={"add": [person]})
    assert json_write.status_code == 403
    assert (
        client.post(f"/api/batches/{batch}/participants", json={"add": [person]}, headers={"Origin": EVIL}).status_code
        == 403
    )
    # A page of another site can send a JSON body without a preflight only with no Content-Type or a "simple"
    # one (text/plain, a form's): such a body is never read as JSON, and without the header it is refused anyway.
    body = f'{{"add": ["{person}"]}}'.encode()
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {} if content_type is None else {"Content-Type": content_type}
        for extra in ({}, {"Origin": EVIL}):
            r = client.post(f"/api/batches/{batch}/participants", content=body, headers={**headers, **extra})
            assert r.status_code in (403, 422), (content_type, extra, r.status_code, r.text)
        # Even with the CSRF header, a body that does not say it is JSON is not read as JSON.
        r = client.post(f"/api/batches/{batch}/participants", content=body, headers={**headers, "X-CSRF-Token": token})
        assert r.status_code == 422, (content_type, r.status_code, r.text)
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    process(a.settings, engine)
    catch_up(a.settings, engine)
    assert _ui_uploads(engine, a) == 0  # nothing was published

    # The same requests from our own pages go through: the form with its token, JSON with the header.
    review = client.post(f"/batches/{batch}/edit", data={**form, "csrf_token": token}, follow_redirects=False)
    assert review.status_code == 200 and 'id="change-summary">add 1<' in review.text, review.text
    digest = re.search(r'name="change" value="([0-9a-f]+)"', review.text).group(1)  # type: ignore[union-attr]
    confirm = {**form, "csrf_token": token, "step": "confirm", "change": digest}
    ok = client.post(f"/batches/{batch}/edit", data=confirm, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    header = client.post(
        f"/api/batches/{batch}/participants", json={"add": [a.teachers[1]]}, headers={"X-CSRF-Token": token}
    )
    assert header.status_code == 202, header.text
    # An API token needs no CSRF token: it is not sent by a browser on its own.
    bearer = tokens.create_token(engine, a.mentor, "test")
    plain = TestClient(create_app(a.settings, engine))
    r = plain.post(
        f"/api/batches/{batch}/participants",
        json={"add": [a.teachers[2]]},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert r.status_code == 202, r.text
    catch_up(a.settings, engine)
    assert _ui_uploads(engine, a) == 3


@pytest.mark.integration
def test_the_sixth_wrong_password_in_15_minutes_gets_429_and_tokens_still_work(
    worlds: tuple[World, World], engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = worlds
    set_password(engine, a.mentor)
    set_password(engine, a.admin)
    app = create_app(a.settings, engine)
    here = TestClient(app, client=(fake_address(), 50000))
    caplog.set_level(logging.INFO, logger="audit")
    for _ in range(5):
        r = here.post("/login", data={"username": a.mentor, "password": "wrong password!"}, follow_redirects=False)
        assert r.status_code == 401 and "wrong" in r.text
    sixth = here.post("/login", data={"username": a.mentor, "password": PASSWORD}, follow_redirects=False)
    assert sixth.status_code == 429 and "Too many failed sign-ins" in sixth.text
    elsewhere = TestClient(app, client=(fake_address(), 50000))  # the account is throttled from any address
    assert elsewhere.post("/login", data={"username": a.mentor, "password": PASSWORD}).status_code == 429
    # ... and the address for any account
    assert here.post("/login", data={"username": a.admin, "password": PASSWORD}).status_code == 429
    events = [getattr(r, "event", None) for r in caplog.records if r.name == "audit"]
    assert events.count("SIGN_IN_FAILED") == 5 and events.count("SIGN_IN_THROTTLED") == 3
    assert not any(PASSWORD in r.getMessage() or "wrong password!" in str(r.__dict__) for r in caplog.records)
    bearer = tokens.create_token(engine, a.mentor, "test")
    api = TestClient(app).get("/api/workspace", headers={"Authorization": f"Bearer {bearer}"})
    assert api.status_code == 200 and len(api.json()) == 2


@pytest.mark.integration
def test_sessions_end_when_idle_and_on_sign_out_and_their_cookie_is_strict(
    worlds: tuple[World, World], engine: Engine
) -> None:
    a, _ = worlds
    set_password(engine, a.mentor)
    login = {"username": a.mentor, "password": PASSWORD, "next": f"/batches/{a.batches[0]}"}
    https = TestClient(create_app(a.settings, engine), base_url="https://dash.example", client=(fake_address(), 1))
    r = https.post("/login", data=login, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/batches/{a.batches[0]}"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie and "max-age=43200" in cookie

    quick = TestClient(create_app(replace(a.settings, session_idle_minutes=0.1), engine), client=(fake_address(), 1))
    plain_http = quick.post("/login", data=login, follow_redirects=False)
    assert plain_http.status_code == 303 and "secure" not in plain_http.headers["set-cookie"].lower()
    assert quick.get("/workspace", follow_redirects=False).status_code == 200
    time.sleep(6.5)  # idle past 6 s (a window wide enough for a loaded machine to sign in and load a page)
    assert quick.get("/workspace", follow_redirects=False).status_code == 303

    client = signed_in_client(create_app(a.settings, engine), engine, a.mentor)
    kept = dict(client.cookies)
    assert client.post("/logout", data={"csrf_token": csrf_token(client)}, follow_redirects=False).status_code == 303
    replayed = TestClient(create_app(a.settings, engine), cookies=kept)
    assert replayed.get("/workspace", follow_redirects=False).status_code == 303  # gone on the server too
    assert replayed.get("/api/courses").status_code == 401


def _session_age(engine: Engine, user_id: str, age: str) -> None:
    """Makes the user's sessions ``age`` old (and just seen, so that only the absolute lifetime can end them)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE web_sessions SET created_at = now() - CAST(:age AS interval), last_seen_at = now() "
                "WHERE user_id = :u"
            ),
            {"age": age, "u": user_id},
        )


@pytest.mark.integration
def test_a_session_ends_12_hours_after_sign_in_however_busy(worlds: tuple[World, World], engine: Engine) -> None:
    a, _ = worlds
    assert Settings.from_env().session_max_hours == a.settings.session_max_hours == 12
    client = signed_in_client(create_app(a.settings, engine), engine, a.mentor)
    _session_age(engine, a.mentor, "11 hours 58 minutes")
    assert client.get("/workspace", follow_redirects=False).status_code == 200
    _session_age(engine, a.mentor, "12 hours 1 minute")
    assert client.get("/workspace", follow_redirects=False).status_code == 303
    assert client.get("/api/courses").status_code == 401


@pytest.mark.integration
def test_behind_a_trusted_tls_proxy_the_cookie_is_secure_and_the_https_origin_is_ours(
    worlds: tuple[World, World], engine: Engine
) -> None:
    a, _ = worlds
    set_password(engine, a.mentor)
    login = {"username": a.mentor, "password": PASSWORD}
    for trusted, secure in (("127.0.0.1,::1", True), ("", False)):  # the default, and believing no proxy
        settings = replace(a.settings, dashboard_forwarded_allow_ips=trusted)
        with serving(settings, engine) as url:
            host = url.removeprefix("http://")
            proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": fake_address(), "Origin": f"https://{host}"}
            r = httpx.post(f"{url}/login", data=login, headers=proxied, follow_redirects=False)
        if secure:
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower(), r.text
        else:  # the request is plain http to the server: the https Origin is another site's
            assert r.status_code == 403 and "set-cookie" not in r.headers, r.text


@pytest.mark.integration
def test_api_docs_are_behind_sign_in(worlds: tuple[World, World], engine: Engine) -> None:
    a, _ = worlds
    client = signed_in_client(create_app(a.settings, engine), engine, a.mentor)
    assert "swagger" in client.get("/docs").text.lower()
    assert "/api/courses" in client.get("/openapi.json").json()["paths"]


@pytest.mark.integration
def test_accounts_commands_set_a_password_and_the_states_a_team_serves(
    worlds: tuple[World, World], engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = worlds
    monkeypatch.setenv("DATABASE_URL", a.settings.database_url)

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    for bad, why in (("short\n", "too short"), ("\n", "empty")):
        code, _, err = run("accounts", "set-password", a.mentor, "--password-stdin", stdin=bad)
        assert code == EXIT_INPUT and why in err and "Nothing was changed" in err
    assert run("accounts", "set-password", "nobody-at-all", "--password-stdin", stdin=PASSWORD)[0] == EXIT_INPUT
    code, out, err = run("accounts", "set-password", a.mentor, "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0 and PASSWORD not in out + err
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        assert accounts.check_password(cur, a.mentor, PASSWORD)
        assert not accounts.check_password(cur, a.mentor, PASSWORD + "\n")
    typed = iter(["first password!!", "second password!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    code, _, err = run("accounts", "set-password", a.mentor)
    assert code == EXIT_INPUT and "differ" in err

    code, _, err = run("accounts", "serve", a.mentor, "--states", b.state)
    assert code == EXIT_INPUT and "IMPLEMENTATION_TEAM" in err
    team = f"team-{b.token}"
    rows = f"user_id,state_id,state,name,roles,status\n{team},,{b.state},Team,IMPLEMENTATION_TEAM,active\n"
    assert not import_users(engine, io.BytesIO(rows.encode())).errors
    assert run("accounts", "serve", team, "--states", "NO-SUCH-STATE")[0] == EXIT_INPUT
    code, out, _ = run("accounts", "serve", team, "--states", f"{a.state.lower()}, {b.state}")
    assert code == 0 and out.strip() == f"{team} now serves {', '.join(sorted([a.state, b.state]))}."
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        assert accounts.served_states(cur, team) == {a.state, b.state}
