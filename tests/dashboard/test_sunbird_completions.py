"""The completion rule through Sunbird's APIs: removing someone who completed the course is refused with
Sunbird's text, on the single call and in the bulk unenrolment's failureResult."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dashboard.web.sunbird import sunbird_router
from dashboard.web.sunbird_bulk import bulk_router
from dashboard.web.sunbird_hub import Hub
from enrolment.settings import Settings
from enrolment.store.tokens import create_token
from tests.dashboard.test_sunbird_bulk import UNENROL, csv_file, send, status
from tests.support.helpers import World, cli, start_processor, wait_until

pytestmark = pytest.mark.integration
ADD, REMOVE = "/v1/course/batch/users/add", "/v1/course/batch/users/remove"
COMPLETED = "User already completed given course batch."


def test_a_completer_is_not_removed_through_the_sunbird_apis(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    world = World(engine, unique, teachers=4)
    batch = world.batch("sb-done")
    u = [world.user_id(n) for n in range(4)]
    auth = {"x-authenticated-user-token": create_token(engine, world.admin)}
    hub = Hub(isolated_settings)
    app = FastAPI()
    app.include_router(sunbird_router(isolated_settings, engine, hub))
    app.include_router(bulk_router(hub, engine))
    client = TestClient(app)
    proc = start_processor(isolated_settings, "--instance-id", f"sbdone-{unique}")
    try:
        r = client.post(f"{ADD}/{batch}", json={"request": {"userIds": u}}, headers=auth)
        assert r.status_code == 200 and set(r.json()["result"].values()) == {"SUCCESS"}, r.text
        progress = tmp_path / "progress.csv"
        progress.write_text(
            "batch_id,user_id,progress,completed_at\n"
            f"{batch},{u[0]},100,2026-11-01T10:00:00+00:00\n{batch},{u[2]},100,2026-11-01T10:00:00+00:00\n",
            encoding="utf-8",
        )
        pub = cli(isolated_settings, "progress", "publish", str(progress))  # acknowledged before the removes
        assert pub.returncode == 0, pub.stderr.decode()

        r = client.post(f"{REMOVE}/{batch}", json={"request": {"userIds": [u[0], u[1]]}}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["result"] == {u[0]: COMPLETED, u[1]: "SUCCESS"}

        token = auth["x-authenticated-user-token"]
        r = send(client, UNENROL, token, csv_file([(batch, [u[2], u[3]])]))
        assert r.status_code == 200, r.text
        pid = r.json()["result"]["processId"]

        def completed() -> dict[str, Any] | None:
            found = status(client, token, pid)
            return found if found["status"] == "COMPLETED" else None

        found = wait_until("the bulk unenrolment to complete", completed, 120, 0.5)
    finally:
        hub.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert found["successResult"] == [{"batchId": batch, "userId": u[3]}]
    assert found["failureResult"] == [
        {"batchId": batch, "userId": u[2], "err_msg": COMPLETED, "reason": "COURSE_COMPLETED"}
    ]
    assert world.members(batch) == {u[0], u[2]}
