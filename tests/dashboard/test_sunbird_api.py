"""The Sunbird-compatible endpoints on Sunbird's wire, backed by the real pipeline: whole responses compared."""

from __future__ import annotations

import dataclasses
import re
import signal
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dashboard.web.app import create_app
from dashboard.web.sunbird import sunbird_router
from dashboard.web.sunbird_hub import Hub
from enrolment.domain import sunbird as sb
from enrolment.settings import Settings
from enrolment.store.ledger import row_outcomes
from enrolment.store.tokens import create_token
from tests.support.helpers import World, commands_end, start_processor

pytestmark = pytest.mark.integration
ADD = "/v1/course/batch/users/add"
REMOVE = "/v1/course/batch/users/remove"
GATEWAY = "/api/course/v1/batch/user"  # Sunbird's API gateway publishes the same APIs here
TS = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3}[+-]\d{4}")


def sunbird_app(settings: Settings, engine: Engine) -> tuple[TestClient, Hub]:
    hub = Hub(settings)
    app = FastAPI()
    app.include_router(sunbird_router(settings, engine, hub))
    return TestClient(app), hub


@pytest.fixture()
def api(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[tuple[TestClient, World, str]]:
    world = World(engine, unique, teachers=10)
    client, hub = sunbird_app(isolated_settings, engine)
    proc = start_processor(isolated_settings, "--instance-id", f"api-{unique}")
    try:
        yield client, world, create_token(engine, world.admin, "test")
    finally:
        hub.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def expected(api_id: str, result: dict[str, Any], err: str | None = None, **params: Any) -> dict[str, Any]:
    """Sunbird's whole envelope, `ts` aside."""
    status = params.pop("status", None) or (err or "success")
    return {
        "id": api_id,
        "ver": "v1",
        "params": {
            "resmsgid": None,
            "msgid": params.get("msgid"),
            "err": err,
            "status": status,
            "errmsg": params.get("errmsg"),
        },
        "responseCode": params.get("responseCode", "OK" if err is None else "CLIENT_ERROR"),
        "result": result,
    }


def whole(r: Any, msgid: str | None = None) -> dict[str, Any]:
    """The response without `ts` (checked for Sunbird's format) and with `msgid` checked against ``msgid``."""
    doc: dict[str, Any] = r.json()
    assert TS.fullmatch(doc.pop("ts")), r.text
    assert doc["params"]["msgid"] == msgid
    return doc


def reasons(engine: Engine, upload_id: str) -> dict[str, str]:
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        return {r.identifier: r.reason for r in row_outcomes(cur, upload_id)}


def test_add_with_already_enrolled_and_other_state_users(api: tuple[TestClient, World, str], engine: Engine) -> None:
    client, world, token = api
    batch = world.batch("api")
    auth = {"x-authenticated-user-token": token, "X-msgId": "m-1"}
    u0, u1, other = world.user_id(0), world.user_id(1), f"o-{world.u}-1"
    r = client.post(f"{ADD}/{batch}", json={"request": {"userIds": [u0]}}, headers=auth)
    assert r.status_code == 200, r.text
    assert whole(r, "m-1") == expected("api.course.batch.users.add", {u0: "SUCCESS"}, msgid="m-1")

    body = {"request": {"batchId": "overwritten-by-the-path", "userIds": [u0, u1, other]}}
    r = client.post(f"{ADD}/{batch}", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    root_org = f"User (ID = {other}) not associated to course batch creator root org."
    result = {u0: "SUCCESS", u1: "SUCCESS", other: root_org}
    assert whole(r) == expected("api.course.batch.users.add", result)
    assert reasons(engine, r.headers["X-Upload-Id"]) == {
        u0: "ALREADY_ENROLLED",
        u1: "ENROLLED",
        other: "USER_OTHER_STATE",
    }, "our own outcome is the upload's, through X-Upload-Id"
    assert world.members(batch) == {u0, u1}


def test_remove_of_someone_not_enrolled_and_the_body_only_alias(api: tuple[TestClient, World, str]) -> None:
    client, world, token = api
    batch = world.batch("rm")
    auth = {"x-authenticated-user-token": token}
    u0, u2 = world.user_id(0), world.user_id(2)
    assert client.post(f"{ADD}/{batch}", json={"request": {"userIds": [u0]}}, headers=auth).status_code == 200
    r = client.post(f"{REMOVE}/{batch}", json={"request": {"userIds": [u0, u2]}}, headers=auth)
    result = {u0: "SUCCESS", u2: "User is not enrolled to given course batch."}
    assert whole(r) == expected("api.course.batch.users.remove", result)
    r = client.post(
        REMOVE, json={"params": {"msgid": "b"}, "request": {"batchId": batch, "userIds": [u0]}}, headers=auth
    )
    assert whole(r) == expected(  # params.msgid is the X-msgId header or null, never the body's
        "api.course.batch.users.remove", {u0: "User is not enrolled to given course batch."}
    )
    r = client.post(REMOVE, json={"params": {"msgid": "b"}, "request": {"batchId": batch}}, headers=auth)
    assert r.status_code == 400 and whole(r)["params"]["err"] == "USERID_MISSING"
    inactive = f"inactive-{world.u}"
    r = client.post(ADD, json={"request": {"batchId": batch, "userIds": [inactive]}}, headers=auth)
    assert whole(r) == expected("api.course.batch.users.add", {inactive: "User account has been blocked ."})


def test_the_gateways_paths_are_aliases(api: tuple[TestClient, World, str]) -> None:
    client, world, token = api
    batch = world.batch("gw")
    auth = {"x-authenticated-user-token": token, "X-msgId": "g"}
    u0, u1 = world.user_id(0), world.user_id(1)
    r = client.post(f"{GATEWAY}/add/{batch}", json={"request": {"userIds": [u0, u1]}}, headers=auth)
    assert r.status_code == 200, r.text
    assert whole(r, "g") == expected("api.course.batch.users.add", {u0: "SUCCESS", u1: "SUCCESS"}, msgid="g")
    r = client.post(f"{GATEWAY}/remove/{batch}", json={"request": {"userIds": [u1, world.user_id(2)]}}, headers=auth)
    result = {u1: "SUCCESS", world.user_id(2): "User is not enrolled to given course batch."}
    assert whole(r, "g") == expected("api.course.batch.users.remove", result, msgid="g")
    assert world.members(batch) == {u0}
    r = client.post(f"{GATEWAY}/add/no-such-{world.u}", json={"request": {"userIds": [u0]}}, headers=auth)
    assert r.status_code == 400 and r.json()["params"]["err"] == "INVALID_COURSE_BATCH_ID"


def test_whole_request_errors_publish_nothing(
    api: tuple[TestClient, World, str], isolated_settings: Settings, engine: Engine
) -> None:
    client, world, token = api
    batch = world.batch("guard")
    before = commands_end(isolated_settings)
    add = "api.course.batch.users.add"
    auth = {"x-authenticated-user-token": token, "X-msgId": "e"}
    good = {"request": {"userIds": [world.user_id(0)]}}

    r = client.post(f"{ADD}/{batch}", json=good, headers={"X-msgId": "e"})  # no token
    assert r.status_code == 401 and r.headers["X-Reason"] == "UNAUTHORIZED"
    unauthorized = expected(
        add, {}, "UNAUTHORIZED_USER", status="SERVER_ERROR", errmsg="You are not authorized.", msgid="e"
    )
    assert whole(r, "e") == unauthorized
    r = client.post(f"{ADD}/{batch}", json=good, headers={"x-authenticated-user-token": "nope", "X-msgId": "e"})
    assert r.status_code == 401 and whole(r, "e") == unauthorized

    r = client.post(f"{ADD}/{batch}", json={"request": {}}, headers=auth)  # no userIds
    assert r.status_code == 400
    assert whole(r, "e") == expected(add, {}, "USERID_MISSING", errmsg="UserId is mandatory.", msgid="e")

    r = client.post(f"{ADD}/no-such-{world.u}", json=good, headers=auth)  # unknown batch: 400, not 404
    assert r.status_code == 400
    assert whole(r, "e") == expected(add, {}, "INVALID_COURSE_BATCH_ID", errmsg="Invalid course batch id ", msgid="e")

    open_batch = world.batch("open", enrollment_type="open")
    r = client.post(f"{ADD}/{open_batch}", json=good, headers=auth)
    assert r.status_code == 400
    assert whole(r, "e") == expected(
        add, {}, "ENROLLMENT_TYPE_VALIDATION", errmsg="Enrollment type should be invite-only.", msgid="e"
    )

    # our stricter rules, Sunbird-shaped: Sunbird's code and text, then our sentence
    other_token = create_token(engine, world.other_admin)
    r = client.post(f"{ADD}/{batch}", json=good, headers={"x-authenticated-user-token": other_token})
    assert r.status_code == 401 and r.headers["X-Reason"] == "NOT_AUTHORIZED"
    why = f"You are not authorized. {world.other_admin} is neither an ORG_ADMIN of {world.state.upper()} nor a mentor"
    assert r.json()["params"]["err"] == "UNAUTHORIZED_USER" and r.json()["params"]["errmsg"].startswith(why)
    closed = world.batch("closed", status="ended")
    r = client.post(f"{ADD}/{closed}", json=good, headers=auth)
    assert r.status_code == 400 and r.json()["params"]["err"] == "COURSE_BATCH_ALREADY_COMPLETED"
    assert r.json()["params"]["errmsg"] == f"Course batch is already completed. Batch {closed} is ended."
    r = client.post(f"{ADD}/{batch}", content=b"{not json", headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["params"]["err"] == "INVALID_REQUESTED_DATA"
    assert commands_end(isolated_settings) == before, "nothing was published"


def test_accepted_when_processing_takes_longer(isolated_settings: Settings, engine: Engine, unique: str) -> None:
    world = World(engine, unique, teachers=3)
    batch = world.batch("slow")
    client, hub = sunbird_app(dataclasses.replace(isolated_settings, sunbird_api_wait_s=1.0), engine)
    try:
        token = create_token(engine, world.admin)
        r = client.post(
            f"{ADD}/{batch}",
            json={"request": {"userIds": [world.user_id(0)]}},
            headers={"Authorization": f"Bearer {token}"},
        )  # no processor running
    finally:
        hub.close()
    assert r.status_code == 202 and r.json()["responseCode"] == "ACCEPTED"
    assert r.json()["result"]["uploadId"] == r.headers["X-Upload-Id"]


def test_openapi_documents_the_endpoints(isolated_settings: Settings, engine: Engine) -> None:
    client, hub = sunbird_app(isolated_settings, engine)
    hub.close()
    spec = client.get("/openapi.json").json()
    gateway = (f"{GATEWAY}/add/{{batch_id}}", f"{GATEWAY}/remove/{{batch_id}}")
    for path in (ADD, REMOVE, f"{ADD}/{{batch_id}}", f"{REMOVE}/{{batch_id}}", *gateway):
        op = spec["paths"][path]["post"]
        assert "requestBody" in op and {"200", "202", "400", "401", "413"} <= set(op["responses"])
        assert "x-authenticated-user-token" in {p["name"] for p in op["parameters"]}


def test_oversized_requests_through_the_real_app_answer_in_sunbirds_envelope(
    isolated_settings: Settings, engine: Engine, unique: str
) -> None:
    """The app's body-limit middleware answers before the route: on the Sunbird paths in Sunbird's envelope."""
    world = World(engine, unique, teachers=1)
    batch = world.batch("big")
    app = create_app(isolated_settings, engine)
    token = create_token(engine, world.admin)
    auth = {"x-authenticated-user-token": token, "X-msgId": "big", "Content-Type": "application/json"}
    single, bulk = isolated_settings.sunbird_api_max_body_bytes, isolated_settings.upload_max_bytes
    assert (single, bulk) == (2 * 1024 * 1024, 20 * 1024 * 1024)
    small = b'{"request": {"userIds": ["x"]}}'
    declared = {"Content-Length": str(single + 1)}  # declared over the limit: refused before anything is read
    multipart = {"Content-Length": str(bulk + 1), "Content-Type": "multipart/form-data; boundary=b"}
    over = iter([b'{"request": {"userIds": ["', b"u" * single, b'"]}}'])  # chunked: counted as it is read
    before = commands_end(isolated_settings)
    try:
        with TestClient(app) as client:
            answers = {
                "add": client.post(f"{ADD}/{batch}", content=small, headers={**auth, **declared}),
                "remove": client.post(f"{GATEWAY}/remove/{batch}", content=small, headers={**auth, **declared}),
                "add ": client.post(f"{ADD}/{batch}", content=over, headers=auth),
                "bulk-add": client.post("/v1/batch/bulk/enrollment", content=b"x", headers={**auth, **multipart}),
                "bulk-remove": client.post("/v1/batch/bulk/unenrollment", content=b"x", headers={**auth, **multipart}),
            }
    finally:
        app.state.sunbird_hub.close()
    for action, r in answers.items():
        assert r.status_code == 413 and r.headers["X-Reason"] == "REQUEST_TOO_LARGE", r.text
        what = f"file is over {bulk}" if action.startswith("bulk") else f"request body is over {single}"
        errmsg = f"The request body is too large. The {what} bytes"
        doc = whole(r, "big")
        assert doc["params"]["errmsg"].startswith(errmsg), doc
        assert doc == expected(
            sb.API_IDS[action.strip()], {}, "REQUEST_TOO_LARGE", errmsg=doc["params"]["errmsg"], msgid="big"
        )
    assert commands_end(isolated_settings) == before, "nothing was published"
