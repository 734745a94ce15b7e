"""50 concurrent single-user Sunbird calls against a real dashboard process: all answered within the wait, and
the server's threads and its connections to Kafka and PostgreSQL stay flat (measured from /proc).

Before the shared producer and results follower, each call built its own producer and consumer (two Kafka
connections each) and held a worker thread while it waited.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest
from sqlalchemy import Engine

from bench.sunbird_api import Sample, burst, free_port, sampled_burst, wait_healthy
from enrolment.settings import Settings
from enrolment.store.tokens import create_token
from tests.support.helpers import PARTICIPANTS, STARTED, World, env_for, start_processor

pytestmark = pytest.mark.integration
CALLS = 50


def test_50_concurrent_calls_answer_within_the_wait_with_flat_threads_and_connections(
    isolated_settings: Settings, engine: Engine, unique: str
) -> None:
    world = World(engine, unique, teachers=2 * CALLS)
    batch = world.batch("load")
    token = create_token(engine, world.admin)
    proc = start_processor(isolated_settings, "--instance-id", f"load-{unique}")
    port = free_port()
    dash = subprocess.Popen(
        [PARTICIPANTS, "dashboard", "--port", str(port)],
        env=env_for(isolated_settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    STARTED.append(dash)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, dash)
        ports = {int(isolated_settings.kafka_bootstrap_servers.rsplit(":", 1)[1]), engine.url.port or 5432}
        users = [world.user_id(n) for n in range(2 * CALLS)]
        warm = asyncio.run(burst(url, batch, token, users[:CALLS], 60.0))  # starts the shared clients and pool
        assert {code for code, _s in warm} == {200}
        time.sleep(1.0)
        sample = Sample(dash.pid, ports)
        calls = asyncio.run(sampled_burst(sample, url, batch, token, users[CALLS:], 60.0))
        time.sleep(1.0)
        sample.take()
    finally:
        for child in (dash, proc):
            child.send_signal(signal.SIGTERM)
            child.wait(60)
    wait_s = isolated_settings.sunbird_api_wait_s
    assert [code for code, _s in calls] == [200] * CALLS, "every call answered with its results, none 202"
    assert max(s for _code, s in calls) < wait_s
    figures = sample.summary()
    assert figures["threads_peak"] <= figures["threads_before"], figures
    assert figures["connections_peak"] <= figures["connections_before"], figures
    assert figures["threads_after"] == figures["threads_before"], figures
    assert figures["connections_before"] >= 2, f"the sample sees the server's Kafka and PostgreSQL links {figures}"
    assert world.members(batch) == set(users)
