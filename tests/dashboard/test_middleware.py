"""Hardening of the dashboard app: security headers on every response, request body limits, safe file names.

No stack needed: the app runs on an engine that points at a closed port (routes that reach the database
answer 503, which must carry the headers too), and the download route is given its rows by the test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import create_engine
from starlette.testclient import TestClient
from starlette.types import Message

from dashboard import queries
from dashboard.web import deps, downloads, lookups
from dashboard.web.app import create_app
from dashboard.web.middleware import CSP, DOCS_CSP, DOCS_PATHS, BodyLimit, inline_script_hashes, too_large
from enrolment.domain.access import Viewer
from enrolment.domain.model import User
from enrolment.settings import Settings

NOWHERE = "postgresql+psycopg2://nobody:nothing@127.0.0.1:1/none"  # connection refused at once
TEMPLATES = Path(__file__).resolve().parents[2] / "dashboard" / "templates"
EXPECTED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _app(*, signed_in: bool = False, **changes: Any) -> FastAPI:
    """The app on a database that refuses connections; ``signed_in``: requests act as a state admin's token."""
    settings = dataclasses.replace(Settings.from_env(), database_url=NOWHERE, **changes)
    app = create_app(settings, create_engine(NOWHERE))
    if signed_in:
        admin = User("admin-ka", "KA", "active", frozenset({"ORG_ADMIN"}), "KA-A1")
        app.dependency_overrides[deps.signed_in] = lambda: deps.Identity(Viewer(admin), "token")
        app.dependency_overrides[lookups.visible_batch] = lambda: None
    return app


def _requests(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) for every route in the app's own route table, path parameters filled in."""
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        filled = re.sub(r"\{path(:path)?\}", "style.css", re.sub(r"\{(?!path)[^}]+\}", "x1", path))
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                yield method, filled


def _assert_secured(response: Any, where: str) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, f"{where}: {name}"
    docs = where.split(" ")[1] in DOCS_PATHS
    csp = DOCS_CSP.format(hashes="".join(" " + h for h in inline_script_hashes(response.content))) if docs else CSP
    assert response.headers.get("content-security-policy") == csp, where


def test_every_route_of_the_app_answers_with_the_security_headers() -> None:
    app = _app()

    @app.get("/test-boom")  # an unexpected error: Starlette's outermost error middleware answers it
    def boom() -> None:
        raise RuntimeError("boom")

    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)  # each route answers itself
    seen = list(_requests(app))
    assert ("GET", "/batches/x1/participants.csv") in seen and ("POST", "/batches/x1/edit") in seen
    assert ("GET", "/api/courses") in seen and ("POST", "/v1/course/batch/users/add") in seen
    statuses = set()
    for method, path in [*seen, ("GET", "/static/style.css"), ("GET", "/no-such-page")]:
        response = client.request(method, path)
        statuses.add(response.status_code)
        _assert_secured(response, f"{method} {path}")
    assert {200, 404, 500, 503} <= statuses  # answers of every kind: pages, errors, the database down


def test_the_strict_policy_allows_no_inline_code_and_no_framing() -> None:
    assert "default-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP and "http" not in CSP


def test_the_docs_pages_allow_their_own_inline_script_only() -> None:
    client = TestClient(_app(signed_in=True))
    for path in ("/docs", "/redoc"):
        response = client.get(path)
        policy = response.headers["content-security-policy"]
        script_src = next(d for d in policy.split("; ") if d.startswith("script-src"))
        assert "unsafe-inline" not in script_src and "frame-ancestors 'none'" in policy
        for expression in inline_script_hashes(response.content):
            assert expression in script_src
    swagger = client.get("/docs")
    assert b"SwaggerUIBundle(" in swagger.content and len(inline_script_hashes(swagger.content)) == 1
    assert inline_script_hashes(b"<script>a()</script><script src='/x.js'></script>") == [
        "'sha256-" + "qVpDBgj7bpq5hMAcGp3AOc79J3Y1Z4HvySTwKrWDoy4=" + "'"
    ]


def test_templates_have_no_inline_script_style_or_event_handler() -> None:
    """The policy forbids them; a template that needed one would break in the browser."""
    for template in sorted(TEMPLATES.glob("*.html")):
        html = template.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), template.name
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", html, re.IGNORECASE), template.name


# ------------------------------------------------------------------------------------------ body limits
def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    client = TestClient(_app(max_request_bytes=1000), raise_server_exceptions=False)
    big = b'{"add": ["' + b"u" * 2000 + b'"], "remove": []}'
    response = client.post("/api/batches/x1/participants", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413  # not 503: the database was never reached
    assert response.json() == {"detail": too_large(1000)}
    assert response.headers["x-frame-options"] == "DENY"
    page = client.post("/batches/x1/edit", content=b"add=" + b"u" * 2000)
    assert page.status_code == 413 and page.text == too_large(1000)


def test_a_streamed_body_over_the_limit_is_refused_as_it_is_read() -> None:
    client = TestClient(_app(signed_in=True, max_request_bytes=1000), raise_server_exceptions=False)

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"add": ["'
        for _ in range(10):
            yield b"u" * 200
        yield b'"], "remove": []}'

    response = client.post(
        "/api/batches/x1/participants", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": too_large(1000)}
    page = client.post("/batches/x1/edit", content=iter([b"add=", b"u" * 1500]))
    assert page.status_code == 413 and too_large(1000) in page.text and "<html" in page.text.lower()


def test_a_body_within_the_limit_reaches_the_route() -> None:
    client = TestClient(_app(signed_in=True, max_request_bytes=1000), raise_server_exceptions=False)
    response = client.post("/api/batches/x1/participants", json={"add": ["u1"], "remove": []})
    assert response.status_code == 503  # past the limit check, stopped by the (absent) database


def _run(limit: int, overrides: dict[str, int], path: str, parts: list[bytes]) -> tuple[list[Message], int]:
    """Calls BodyLimit around an app that reads the whole body; returns what was sent and chunks pulled."""
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": parts[pulled - 1], "more_body": pulled < len(parts)}

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Any, rcv: Any, snd: Any) -> None:
        while (await rcv()).get("more_body"):
            pass
        await snd({"type": "http.response.start", "status": 200, "headers": []})
        await snd({"type": "http.response.body", "body": b"ok"})

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    asyncio.run(BodyLimit(app, limit, overrides)(scope, receive, send))
    return sent, pulled


def test_the_middleware_stops_reading_at_the_first_chunk_past_the_limit() -> None:
    sent, pulled = _run(100, {}, "/api/x", [b"a" * 60] * 10)
    assert sent[0]["status"] == 413 and pulled == 2  # 120 bytes read, the other 8 chunks never pulled
    assert sent[1]["body"] == b'{"detail": "' + too_large(100).encode() + b'"}'


def test_a_path_may_have_its_own_larger_limit() -> None:
    sent, pulled = _run(100, {"/api/uploads": 1000}, "/api/uploads", [b"a" * 60] * 10)
    assert sent[0]["status"] == 200 and pulled == 10
    sent, _ = _run(100, {"/api/uploads": 1000}, "/api/other", [b"a" * 60] * 10)
    assert sent[0]["status"] == 413


def test_the_refusal_names_the_limit() -> None:
    assert "1 MB" in too_large(1024 * 1024) and "20 MB" in too_large(20 * 1024 * 1024)
    assert "512 KB" in too_large(512 * 1024) and "1000 bytes" in too_large(1000)


# ------------------------------------------------------------------------------------------ file names
@pytest.mark.parametrize("batch_id", ["बैच-१", "b:1*?<>|~%é 名\\x", "..\\..\\etc", "a,b=c", "a;b'c"])
def test_the_download_answers_200_with_a_safe_header_for_any_batch_id(
    batch_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    when = datetime(2026, 9, 1, tzinfo=UTC)
    row = queries.Participant("u1", "=Name", "S1", when, "backend", 50, None)
    monkeypatch.setattr(downloads, "need_batch", lambda conn, group, b: None)
    monkeypatch.setattr(queries, "stream_participants", lambda engine, group, b: iter([row]))
    app = _app(signed_in=True)
    app.dependency_overrides[deps.db] = _no_database
    response = TestClient(app).get(f"/batches/{quote(batch_id, safe='')}/participants.csv")
    assert response.status_code == 200
    assert "'=Name" in response.content.decode("utf-8-sig")
    header = response.headers["content-disposition"]
    assert header.isascii()
    match = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"; filename\*=UTF-8\'\'([A-Za-z0-9._%-]+)', header)
    assert match, header
    assert match.group(1).startswith("participants-") and match.group(1).endswith(".csv")


def _no_database() -> Iterator[None]:
    yield None


def test_the_utf8_file_name_keeps_letters_and_marks() -> None:
    header = downloads.attachment("participants-बैच-१.csv")
    assert header == (
        'attachment; filename="participants-___-_.csv"; '
        "filename*=UTF-8''participants-%E0%A4%AC%E0%A5%88%E0%A4%9A-%E0%A5%A7.csv"
    )
    for bad in ('a"b', "a;b", "a/b", "a\\b", "a\rb", "a\nb", "a\x00b", "a\u202eb"):
        name = downloads.attachment(bad).split('filename="')[1].split('"')[0]
        assert name == "a_b", bad


def test_a_download_is_audited_with_who_which_batch_and_how_many_rows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    when = datetime(2026, 9, 1, tzinfo=UTC)
    rows = [queries.Participant(f"u{i}", "Name", "S1", when, "backend", 50, None) for i in range(3)]
    monkeypatch.setattr(downloads, "need_batch", lambda conn, group, b: None)
    monkeypatch.setattr(queries, "stream_participants", lambda engine, group, b: iter(rows))
    app = _app(signed_in=True)
    app.dependency_overrides[deps.db] = _no_database
    with caplog.at_level(logging.INFO, logger="audit"):
        response = TestClient(app).get("/batches/b-7/participants.csv")
    assert response.status_code == 200
    events = [r for r in caplog.records if r.name == "audit" and getattr(r, "event", "") == "CSV_DOWNLOAD"]
    assert [(r.by, r.batch_id, r.rows) for r in events] == [("admin-ka", "b-7", 3)]  # type: ignore[attr-defined]
