"""The Sunbird-compatible endpoints, backed by the real pipeline."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dashboard.web.sunbird import sunbird_router
from enrolment.kafka.clients import base_config
from enrolment.settings import Settings
from enrolment.store.tokens import create_token
from tests.support.helpers import World, start_processor

pytestmark = pytest.mark.integration
ADD = "/v1/course/batch/users/add"
REMOVE = "/v1/course/batch/users/remove"


def commands_end(s: Settings) -> int:
    c = Consumer({**base_config(s), "group.id": "probe"})
    try:
        parts = c.list_topics(s.topics.commands, timeout=10).topics[s.topics.commands].partitions
        return sum(c.get_watermark_offsets(TopicPartition(s.topics.commands, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


@pytest.fixture()
def api(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[tuple[TestClient, World, str]]:
    world = World(engine, unique, teachers=10)
    app = FastAPI()
    app.include_router(sunbird_router(isolated_settings, engine))
    proc = start_processor(isolated_settings, "--instance-id", f"api-{unique}")
    try:
        yield TestClient(app), world, create_token(engine, world.admin, "test")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_add_success_already_enrolled_other_state_and_remove(api: tuple[TestClient, World, str]) -> None:
    client, world, token = api
    batch = world.batch("api")
    auth = {"Authorization": f"Bearer {token}"}
    body = {"params": {"msgid": "m-1"}, "request": {"batchId": batch, "userIds": [world.user_id(0), world.user_id(1)]}}
    r = client.post(ADD, json=body, headers=auth)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["id"] == "api.course.batch.users.add" and doc["responseCode"] == "OK"
    assert doc["params"]["status"] == "successful" and doc["params"]["msgid"] == "m-1" and doc["params"]["err"] is None
    assert doc["result"][world.user_id(0)] == "SUCCESS" and doc["result"][world.user_id(1)] == "SUCCESS"
    assert doc["result"]["details"][world.user_id(0)]["reason"] == "ENROLLED"

    other = f"o-{world.u}-1"
    r = client.post(ADD, json={"request": {"batchId": batch, "userIds": [world.user_id(0), other]}}, headers=auth)
    doc = r.json()
    assert doc["result"][world.user_id(0)] == "SUCCESS", "Sunbird answers SUCCESS for a member"
    assert doc["result"]["details"][world.user_id(0)]["reason"] == "ALREADY_ENROLLED", "we say what happened"
    assert doc["result"][other] == "userNotAssociatedToRootOrg"
    assert doc["result"]["details"][other]["reason"] == "USER_OTHER_STATE"

    r = client.post(ADD, json={"request": {"batchId": batch, "stateIds": [world.state_id(5)]}}, headers=auth)
    assert r.json()["result"]["details"][world.state_id(5)]["reason"] == "ENROLLED"
    sunbird_header = {"x-authenticated-user-token": token}  # Sunbird's header carries the same token
    r = client.post(REMOVE, json={"request": {"batchId": batch, "userIds": [world.user_id(1)]}}, headers=sunbird_header)
    assert r.json()["id"] == "api.course.batch.users.remove"
    assert r.json()["result"]["details"][world.user_id(1)]["reason"] == "UNENROLLED"
    assert world.members(batch) == {world.user_id(0), world.user_id(5)}


def test_auth_and_malformed_bodies_publish_nothing(
    api: tuple[TestClient, World, str], isolated_settings: Settings, engine: Engine
) -> None:
    client, world, token = api
    batch = world.batch("guard")
    before = commands_end(isolated_settings)
    good = {"request": {"batchId": batch, "userIds": [world.user_id(0)]}}
    r = client.post(ADD, json=good)
    assert r.status_code == 401 and r.json()["params"]["err"] == "UNAUTHORIZED"
    r = client.post(ADD, json=good, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["params"]["status"] == "failed"
    other_token = create_token(engine, world.other_admin)
    r = client.post(ADD, json=good, headers={"Authorization": f"Bearer {other_token}"})
    assert r.status_code == 403 and r.json()["params"]["err"] == "NOT_AUTHORIZED"
    auth = {"Authorization": f"Bearer {token}"}
    for body, code in (
        ({"batchId": batch}, "INVALID_REQUEST"),
        ({"request": {"userIds": ["x"]}}, "MISSING_BATCH_ID"),
        ({"request": {"batchId": batch}}, "MISSING_IDS"),
        ({"request": {"batchId": batch, "userIds": []}}, "MISSING_IDS"),
        ({"request": {"batchId": batch, "userIds": [1]}}, "INVALID_ID"),
        ({"request": {"batchId": batch, "userIds": ["a"], "stateIds": ["b"]}}, "MISSING_IDS"),
    ):
        r = client.post(ADD, json=body, headers=auth)
        assert r.status_code == 400, body
        assert r.json()["params"]["err"] == code and r.json()["params"]["errmsg"], r.json()
        assert r.json()["responseCode"] == "CLIENT_ERROR"
    r = client.post(ADD, content=b"{not json", headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400
    open_batch = world.batch("open", enrollment_type="open")
    r = client.post(ADD, json={"request": {"batchId": open_batch, "userIds": ["x"]}}, headers=auth)
    assert r.status_code == 400 and r.json()["params"]["err"] == "enrollmentTypeValidation"
    r = client.post(ADD, json={"request": {"batchId": "nope", "userIds": ["x"]}}, headers=auth)
    assert r.status_code == 404
    assert commands_end(isolated_settings) == before, "nothing was published"


def test_accepted_when_processing_takes_longer(isolated_settings: Settings, engine: Engine, unique: str) -> None:
    world = World(engine, unique, teachers=3)
    batch = world.batch("slow")
    app = FastAPI()
    app.include_router(sunbird_router(dataclasses.replace(isolated_settings, sunbird_api_wait_s=1.0), engine))
    client = TestClient(app)
    token = create_token(engine, world.admin)
    body = {"request": {"batchId": batch, "userIds": [world.user_id(0)]}}
    r = client.post(ADD, json=body, headers={"Authorization": f"Bearer {token}"})  # no processor running
    assert r.status_code == 202 and r.json()["responseCode"] == "ACCEPTED"
    assert r.json()["result"]["uploadId"]


def test_openapi_documents_the_endpoints(isolated_settings: Settings, engine: Engine) -> None:
    app = FastAPI()
    app.include_router(sunbird_router(isolated_settings, engine))
    spec = TestClient(app).get("/openapi.json").json()
    for path in (ADD, REMOVE):
        op = spec["paths"][path]["post"]
        assert "requestBody" in op and {"200", "202", "400", "401", "403", "413"} <= set(op["responses"])
        assert "x-authenticated-user-token" in {p["name"] for p in op["parameters"]}
