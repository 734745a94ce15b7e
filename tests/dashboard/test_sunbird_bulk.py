"""Sunbird's bulk upload API on the real pipeline: a multipart CSV of many batches, then the status call."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from dashboard.web.sunbird_bulk import bulk_router
from dashboard.web.sunbird_hub import Hub
from enrolment.settings import Settings
from enrolment.store.tokens import create_token
from tests.support.helpers import World, add_team, commands_end, start_processor, wait_until

pytestmark = pytest.mark.integration
ENROL, UNENROL = "/v1/batch/bulk/enrollment", "/v1/batch/bulk/unenrollment"
ROOT_ORG = "User (ID = {}) not associated to course batch creator root org."


@pytest.fixture()
def bulk(isolated_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    hub = Hub(isolated_settings)
    app = FastAPI()
    app.include_router(bulk_router(hub, engine))
    try:
        yield TestClient(app)
    finally:
        hub.close()


def csv_file(rows: list[tuple[str, list[str]]]) -> bytes:
    """Sunbird's file: batchId, then every id of the row comma-separated in one quoted cell."""
    lines = ["batchId,userIds"] + [f'{b},"{",".join(ids)}"' for b, ids in rows]
    return ("\r\n".join(lines) + "\r\n").encode()


def send(client: TestClient, path: str, token: str, body: bytes) -> Any:
    files = {"file": ("batches.csv", body, "text/csv")}
    return client.post(path, files=files, headers={"x-authenticated-user-token": token})


def status(client: TestClient, token: str, process_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/upload/status/{process_id}", headers={"x-authenticated-user-token": token})
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    assert doc["id"] == "api.upload.status" and doc["params"]["status"] == "success"
    found: dict[str, Any] = doc["result"]["response"][0]
    return found


def per_batch(found: dict[str, Any], key: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for row in found[key]:
        out.setdefault(row["batchId"], []).append(row)
    return out


def test_three_batches_and_12000_ids_complete_with_each_batchs_results(
    bulk: TestClient, isolated_settings: Settings, engine: Engine, unique: str
) -> None:
    world = World(engine, unique, teachers=11_985)
    a, b, c = world.batch("bulk-a"), world.batch("bulk-b"), world.batch("bulk-c")
    ids = {
        a: [world.user_id(n) for n in range(4000)],
        b: [world.user_id(n) for n in range(4000, 7990)] + [f"nobody-{unique}-{n}" for n in range(10)],
        c: [world.user_id(n) for n in range(7990, 11_985)] + [f"o-{unique}-{n}" for n in range(5)],
    }
    rows = [(batch, chunk[i : i + 500]) for i in range(0, 4000, 500) for batch, chunk in ids.items()]  # interleaved
    token = create_token(engine, world.admin)
    r = send(bulk, ENROL, token, csv_file(rows))
    assert r.status_code == 200, r.text
    process_id = r.json()["result"]["processId"]
    assert r.json()["result"] == {"processId": process_id} and r.json()["params"]["status"] == "success"
    assert status(bulk, token, process_id)["status"] == "NOT STARTED", "no processor yet"

    proc = start_processor(isolated_settings, "--instance-id", f"bulk-{unique}")
    try:
        found = wait_until(
            "the bulk process to complete",
            lambda: (s := status(bulk, token, process_id))["status"] == "COMPLETED" and s,
            timeout_s=300,
            interval_s=2,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert found["processId"] == process_id
    ok, failed = per_batch(found, "successResult"), per_batch(found, "failureResult")
    assert {k: len(v) for k, v in ok.items()} == {a: 4000, b: 3990, c: 3995}
    assert {k: len(v) for k, v in failed.items()} == {b: 10, c: 5}
    assert sorted(failed[b], key=lambda row: row["userId"])[0] == {
        "batchId": b,
        "userId": f"nobody-{unique}-0",
        "err_msg": ROOT_ORG.format(f"nobody-{unique}-0"),
        "reason": "USER_NOT_FOUND",
    }
    assert {row["err_msg"] for row in failed[c]} == {ROOT_ORG.format(f"o-{unique}-{n}") for n in range(5)}
    assert [(p["batchId"], p["total"], p["processed"], p["complete"]) for p in found["batches"]] == [
        (a, 4000, 4000, True),
        (b, 4000, 4000, True),
        (c, 4000, 4000, True),
    ]
    assert len(world.members(a)) == 4000 and len(world.members(c)) == 3995


def test_unenrolment_and_refused_files(
    bulk: TestClient, isolated_settings: Settings, engine: Engine, unique: str
) -> None:
    world = World(engine, unique, teachers=5)
    batch = world.batch("unenrol")
    token = create_token(engine, world.admin)
    proc = start_processor(isolated_settings, "--instance-id", f"bulk-{unique}")
    try:
        r = send(bulk, ENROL, token, csv_file([(batch, [world.user_id(0), world.user_id(1)])]))
        assert r.status_code == 200, r.text
        wait_until("the enrolment", lambda: world.members(batch) == {world.user_id(0), world.user_id(1)}, 120, 0.5)
        other_state = f"o-{world.u}-1"
        r = send(bulk, UNENROL, token, csv_file([(batch, [world.user_id(0), world.user_id(2), other_state])]))
        assert r.json()["id"] == "api.batch.bulk.unenrollment"
        pid = r.json()["result"]["processId"]
        found = wait_until(
            "the unenrolment", lambda: (s := status(bulk, token, pid))["status"] == "COMPLETED" and s, 120, 0.5
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert found["successResult"] == [{"batchId": batch, "userId": world.user_id(0)}]
    assert found["failureResult"] == [
        {
            "batchId": batch,
            "userId": world.user_id(2),
            "err_msg": "User is not enrolled to given course batch.",
            "reason": "NOT_ENROLLED",
        },
        {  # Sunbird's root-org text is for add only: someone of another state is just not in the batch
            "batchId": batch,
            "userId": other_state,
            "err_msg": "User is not enrolled to given course batch.",
            "reason": "USER_OTHER_STATE",
        },
    ]

    before = commands_end(isolated_settings)
    other = create_token(engine, world.other_admin)
    open_batch = world.batch("bulk-open", enrollment_type="open")
    good = (batch, [world.user_id(3)])
    for who, body, http, err in (
        ("", csv_file([good]), 401, "UNAUTHORIZED_USER"),
        (other, csv_file([good]), 401, "UNAUTHORIZED_USER"),  # another state's batch: not theirs to change
        (token, csv_file([good, (f"no-such-{unique}", ["x"])]), 400, "INVALID_COURSE_BATCH_ID"),
        (token, csv_file([good, (open_batch, ["x"])]), 400, "ENROLLMENT_TYPE_VALIDATION"),
        (token, csv_file([good, (batch, [])]), 400, "USERID_MISSING"),
        (token, b"batch,users\r\nb,u\r\n", 400, "INVALID_REQUESTED_DATA"),
    ):
        r = send(bulk, ENROL, who, body)
        assert (r.status_code, r.json()["params"]["err"]) == (http, err), r.text
        assert r.json()["result"] == {} and r.json()["responseCode"] == "CLIENT_ERROR"
    r = bulk.post(
        ENROL, content=b"batchId,userIds\r\n", headers={"x-authenticated-user-token": token, "Content-Type": "text/csv"}
    )
    assert r.status_code == 400 and "multipart/form-data" in r.json()["params"]["errmsg"]
    assert commands_end(isolated_settings) == before, "nothing was published for a refused file"
    r = bulk.get(f"/v1/upload/status/{pid}", headers={"x-authenticated-user-token": other})
    assert r.status_code == 400 and r.json()["params"]["err"] == "INVALID_PROCESS_ID", "another state's process"


def team_member(engine: Engine, world: World, unique: str) -> str:
    """An implementation team member serving the world's state (whose uploads need approval by default)."""
    return add_team(engine, f"team-{unique}", world.state, [world.state.upper()])


def test_the_teams_file_needs_approval_and_the_same_file_again_is_refused_while_in_progress(
    bulk: TestClient, isolated_settings: Settings, engine: Engine, unique: str
) -> None:
    world = World(engine, unique, teachers=5)
    batch = world.batch("bulk-rules")
    team_token = create_token(engine, team_member(engine, world, unique))
    before = commands_end(isolated_settings)
    r = send(bulk, ENROL, team_token, csv_file([(batch, [world.user_id(0)])]))
    assert (r.status_code, r.json()["params"]["err"], r.headers["X-Reason"]) == (
        401,
        "UNAUTHORIZED_USER",
        "APPROVAL_REQUIRED",
    ), r.text
    assert "need a state admin's approval" in r.json()["params"]["errmsg"]
    assert commands_end(isolated_settings) == before, "nothing is published for the team without approval"

    token = create_token(engine, world.admin)
    body = csv_file([(batch, [world.user_id(1), world.user_id(2)])])
    first = send(bulk, ENROL, token, body)  # no processor: published, not completed
    assert first.status_code == 200, first.text
    published = commands_end(isolated_settings)
    again = send(bulk, ENROL, token, body)
    assert (again.status_code, again.json()["params"]["err"], again.headers["X-Reason"]) == (
        400,
        "INVALID_REQUESTED_DATA",
        "REPEATED_FILE",
    ), again.text
    assert "in progress as upload" in again.json()["params"]["errmsg"]
    assert commands_end(isolated_settings) == published, "nothing published for the repeat"
    meant = bulk.post(
        f"{ENROL}?allow_repeat=true",
        files={"file": ("batches.csv", body, "text/csv")},
        headers={"x-authenticated-user-token": token},
    )
    assert meant.status_code == 200, meant.text

    with engine.begin() as conn:  # where the state does not require approval, the team's file goes at once
        conn.execute(
            text(
                "INSERT INTO plan_settings (state, team_approval_required) VALUES (:s, false) "
                "ON CONFLICT (state) DO UPDATE SET team_approval_required = false"
            ),
            {"s": world.state.upper()},
        )
    r = send(bulk, ENROL, team_token, csv_file([(batch, [world.user_id(3)])]))
    assert r.status_code == 200, r.text


def test_a_file_cut_off_by_kafka_answers_the_processid_of_what_was_published(
    bulk: TestClient, isolated_settings: Settings, engine: Engine, unique: str
) -> None:
    """Kafka fails before the file's 2nd of 3 batches: the 1st stays published and is followed by its processId."""
    world = World(engine, unique, teachers=6)
    a, b, c = world.batch("cut-a"), world.batch("cut-b"), world.batch("cut-c")
    token = create_token(engine, world.admin)
    rows = [(a, [world.user_id(0), world.user_id(1)]), (b, [world.user_id(2)]), (c, [world.user_id(3)])]
    before = commands_end(isolated_settings)
    hub = Hub(dataclasses.replace(isolated_settings, failpoint="bulk-publish:2"))
    app = FastAPI()
    app.include_router(bulk_router(hub, engine))
    try:
        r = send(TestClient(app), ENROL, token, csv_file(rows))
    finally:
        hub.close()
    assert (r.status_code, r.json()["params"]["err"], r.headers["X-Reason"]) == (
        503,
        "SERVICE_UNAVAILABLE",
        "PARTLY_PUBLISHED",
    ), r.text
    process_id = r.json()["result"]["processId"]
    assert r.headers["X-Process-Id"] == process_id
    errmsg = r.json()["params"]["errmsg"]
    assert f"Published as processId {process_id}: batch {a} " in errmsg, errmsg
    assert f"Not sent: batch {b}, {c}; send a file with the rows of those batches only." in errmsg, errmsg
    assert commands_end(isolated_settings) == before + 3, "batch 1's two commands and its seal"
    found = status(bulk, token, process_id)
    assert [(p["batchId"], p["total"]) for p in found["batches"]] == [(a, 2)], "the published batch is followed"

    rest = send(bulk, ENROL, token, csv_file(rows[1:]))  # Kafka back: the batches not sent
    assert rest.status_code == 200, rest.text
    whole = send(bulk, ENROL, token, csv_file(rows))
    assert (whole.status_code, whole.headers["X-Reason"]) == (400, "REPEATED_FILE"), whole.text
    assert f"Batch {a}:" in whole.json()["params"]["errmsg"]
