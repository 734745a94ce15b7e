"""The Sunbird APIs' shared hub when Kafka is unreachable or its results follower dies.

Before: the Kafka setup ran under a lock that calls also took on the event loop, so while Kafka was unreachable
every route of the server (``/healthz`` too) stalled for the setup's timeouts, again on every call; and a dead
follower was never restarted, so every later call waited the whole ``SUNBIRD_API_WAIT_S`` and answered 202.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dashboard.web.app import create_app
from dashboard.web.sunbird_hub import Hub
from enrolment.messages.codec import Codec
from enrolment.settings import Settings
from enrolment.store.tokens import create_token
from tests.dashboard.test_sunbird_api import ADD, sunbird_app
from tests.support.helpers import World, start_processor, wait_until

pytestmark = pytest.mark.integration
UNREACHABLE = "127.0.0.1:1"


async def _setup_started(hub: Hub) -> None:
    """Until a call is in the Kafka setup (its lock held); a wait that runs out fails the test."""
    deadline = time.monotonic() + 10
    while not hub.setup_lock.locked():
        assert time.monotonic() < deadline, "no call reached the Kafka setup within 10 s"
        await asyncio.sleep(0.05)


async def _calls_and_probes(
    client: httpx.AsyncClient, hub: Hub, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[list[float], list[httpx.Response]]:
    """Three concurrent Sunbird calls; while the first is in the Kafka setup, ``/healthz`` timed five times."""
    calls = [asyncio.create_task(client.post(path, json=body, headers=headers)) for _ in range(3)]
    await _setup_started(hub)
    seconds: list[float] = []
    for _ in range(5):
        started = time.monotonic()
        probe = await client.get("/healthz")
        seconds.append(time.monotonic() - started)
        assert probe.status_code == 200, probe.text
        await asyncio.sleep(0.2)
    assert hub.setup_lock.locked(), "the probes ran while the Kafka setup was still under way"
    return seconds, list(await asyncio.wait_for(asyncio.gather(*calls), 60))


def test_an_unreachable_kafka_does_not_stop_other_routes(
    isolated_settings: Settings, engine: Engine, unique: str
) -> None:
    world = World(engine, unique, teachers=2)
    batch = world.batch("hub")
    token = create_token(engine, world.admin)
    app = create_app(dataclasses.replace(isolated_settings, kafka_bootstrap_servers=UNREACHABLE), engine)
    hub: Hub = app.state.sunbird_hub
    headers = {"x-authenticated-user-token": token, "X-msgId": "h"}
    body = {"params": {"msgid": "body"}, "request": {"userIds": [world.user_id(0)]}}  # the header's msgid wins

    async def scenario() -> tuple[list[float], list[httpx.Response], float, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
            seconds, answers = await _calls_and_probes(client, hub, f"{ADD}/{batch}", body, headers)
            started = time.monotonic()
            again = await client.post(f"{ADD}/{batch}", json=body, headers=headers)
            return seconds, answers, time.monotonic() - started, again

    try:
        seconds, answers, again_s, again = asyncio.run(scenario())
    finally:
        hub.close()
    assert max(seconds) < 1.0, f"/healthz answered in {seconds} s while Kafka was being set up"
    for r in [*answers, again]:
        assert r.status_code == 503, r.text
        doc = r.json()
        assert (doc["params"]["err"], doc["params"]["msgid"], doc["result"]) == ("SERVICE_UNAVAILABLE", "h", {})
        assert UNREACHABLE in doc["params"]["errmsg"]
    assert again_s < 1.0, f"a call right after the failed setup took {again_s:.1f} s (it should not retry at once)"


class Exploding:
    """A codec whose decoding fails (encoding works): the results follower dies on the next result it reads."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def __getattr__(self, name: str) -> Any:
        return getattr(self.codec, name)

    def decode(self, value: bytes, expect: str | None = None) -> Any:
        raise RuntimeError("a bug in the follower")


@pytest.fixture()
def waiting_hub(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[tuple[TestClient, Hub, World]]:
    """The Sunbird routes (a 20 s wait) with a processor."""
    world = World(engine, unique, teachers=3)
    client, hub = sunbird_app(dataclasses.replace(isolated_settings, sunbird_api_wait_s=20.0), engine)
    proc = start_processor(isolated_settings, "--instance-id", f"hub-{unique}")
    try:
        yield client, hub, world
    finally:
        hub.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_a_dead_follower_releases_its_waiters_and_is_restarted(
    waiting_hub: tuple[TestClient, Hub, World], engine: Engine
) -> None:
    client, hub, world = waiting_hub
    batch = world.batch("follow")
    headers = {"x-authenticated-user-token": create_token(engine, world.admin)}

    def add(n: int) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        r = client.post(f"{ADD}/{batch}", json={"request": {"userIds": [world.user_id(n)]}}, headers=headers)
        return r, time.monotonic() - started

    first, _s = add(0)
    assert first.status_code == 200, first.text
    codec, hub.codec = hub.codec, Exploding(hub.codec)  # type: ignore[assignment]
    released, seconds = add(1)
    assert released.status_code == 202 and seconds < 10, f"{released.status_code} after {seconds:.1f} s"
    assert released.json()["result"]["uploadId"] == released.headers["X-Upload-Id"]
    wait_until("the follower to end", lambda: hub.follower is not None and not hub.follower.is_alive(), 10, 0.1)
    hub.codec = codec
    again, seconds = add(2)
    assert again.status_code == 200, f"{again.status_code} after {seconds:.1f} s: the follower was not restarted"
    assert again.json()["result"] == {world.user_id(2): "SUCCESS"}
    assert world.members(batch) == {world.user_id(n) for n in range(3)}
