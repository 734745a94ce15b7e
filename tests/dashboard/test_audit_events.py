"""A served dashboard (uvicorn and its threads, as `participants dashboard` runs it) publishes its security events
as AUDIT events on the telemetry topic: the sign-in, every upload it publishes (Edit Batch, the upload API, the
Sunbird single call) and every CSV of personal data it hands out (an upload's report, a plan's rows).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from enrolment.settings import Settings
from tests.support.dashboard import World, bearer, process, serving, two_states
from tests.support.helpers import csv_table, read_topic
from tests.support.signin import PASSWORD, forget_failures, set_password

pytestmark = pytest.mark.integration


@pytest.fixture()
def world(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[World]:
    settings = replace(isolated_settings, sunbird_api_wait_s=0.5)  # no processor runs meanwhile: answer 202 soon
    with two_states(engine, settings, unique) as (a, _, _):
        try:
            yield a
        finally:
            forget_failures(engine, a.admin)


def security(settings: Settings) -> list[dict[str, Any]]:
    events = read_topic(settings, settings.topics.telemetry)
    return [e for e in events if e["eid"] == "AUDIT" and e["context"]["env"] == "Security"]


def test_sign_in_submissions_and_downloads_arrive_as_audit_events(world: World, engine: Engine) -> None:
    a, s = world, world.settings
    set_password(engine, a.admin)
    people = "\n".join(["user_id", *a.teachers[1:3]]) + "\n"
    others = "\n".join(["user_id", *a.teachers[4:6]]) + "\n"
    with serving(s, engine) as url, httpx.Client(base_url=url, timeout=60) as web:
        signed = web.post("/login", data={"username": a.admin, "password": PASSWORD}, follow_redirects=False)
        assert signed.status_code == 303, signed.text
        csrf = {"X-CSRF-Token": web.get("/workspace").text.split('name="csrf_token" value="')[1].split('"')[0]}
        edit = web.post(f"/api/batches/{a.batches[0]}/participants", json={"add": [a.teachers[0]]}, headers=csrf)
        assert edit.status_code == 202, edit.text
        sent = web.post(
            "/api/uploads", params={"batch_id": a.batches[1], "operation": "add"}, content=people, headers=csrf
        )
        assert sent.status_code == 202, sent.text
        sunbird_body = {"request": {"batchId": a.batches[1], "userIds": [a.teachers[3]]}}
        single = httpx.post(f"{url}/v1/course/batch/users/add", json=sunbird_body, headers=bearer(engine, a.admin))
        assert single.status_code in (200, 202), single.text
        process(s, engine)
        report = web.get(f"/api/uploads/{sent.json()['upload_id']}/report.csv")
        assert report.status_code == 200 and len(csv_table(report.content)) == 3  # a header and two rows
        plan = web.post("/api/plans", params={"batch_id": a.batches[1], "kind": "add"}, content=others, headers=csrf)
        assert plan.status_code == 201, plan.text
        plan_rows = web.get(f"/api/plans/{plan.json()['plan_id']}/rows.csv")
        assert plan_rows.status_code == 200 and len(csv_table(plan_rows.content)) == 3
    events = security(s)  # the server flushed its audit producer on stopping
    mine = [e for e in events if e["actor"]["id"] == a.admin]
    kinds = [(e["edata"]["type"], e["object"]["type"], e["object"]["id"]) for e in mine]
    assert ("SIGN_IN", "User", a.admin) in kinds
    submitted = {e["object"]["id"]: e["edata"]["params"] for e in mine if e["edata"]["type"] == "UPLOAD_SUBMITTED"}
    assert set(submitted) == {
        edit.json()["upload_ids"][0],
        sent.json()["upload_id"],
        single.headers["x-upload-id"],
    }
    ui = submitted[edit.json()["upload_ids"][0]]
    assert (ui["operation"], ui["via"], ui["rows"], ui["batch_id"]) == ("ui", "session", "1", a.batches[0])
    assert submitted[single.headers["x-upload-id"]]["operation"] == "api-add"
    assert submitted[single.headers["x-upload-id"]]["via"] == "token"
    downloads = {
        (e["object"]["type"], e["object"]["id"]): e["edata"]["params"]
        for e in mine
        if e["edata"]["type"] == "CSV_DOWNLOAD"
    }
    assert downloads[("Upload", sent.json()["upload_id"])]["rows"] == "2"
    assert downloads[("Plan", plan.json()["plan_id"])]["rows"] == "2"
    assert not any(PASSWORD in str(e) for e in events)
