"""The locked-down broker (issue 10): SCRAM credentials, the ACL table, the SASL_SSL listener, no secret in output.

Commands run as they do for a user: subprocesses with their component's credentials from the stack's private
folder (``scripts/stack up`` wrote them), on the test's private topics, whose ACLs the ``isolated_settings``
fixture granted from `enrolment.kafka.acls`. The test process itself acts as the stack's admin; what it reads
back shows that a refused client wrote nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine

from enrolment import credentials
from enrolment.kafka import clients
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings, with_stored_credentials
from producer.follow import ResultFollower
from tests.support.helpers import PARTICIPANTS, ROOT, World, env_for, read_topic, start_processor
from tests.support.stackmode import CONTAINERS_REASON

pytestmark = pytest.mark.integration


def _secured(settings: Settings) -> None:
    if settings.kafka_sasl_username != "admin":
        pytest.skip(CONTAINERS_REASON)


def _upload_file(tmp_path: Path, world: World, n: int) -> Path:
    path = tmp_path / "teachers.csv"
    path.write_text("state_id\n" + "".join(f"{world.state_id(i)}\n" for i in range(n)))
    return path


def _add(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    full = env_for(settings)
    full.update(env or {})
    return subprocess.run([PARTICIPANTS, "add", *args], env=full, capture_output=True, timeout=180, check=False)


def _one_sentence(done: subprocess.CompletedProcess[bytes]) -> str:
    stderr = done.stderr.decode()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("participants: "), stderr
    assert "Traceback" not in stderr and "unexpected error" not in stderr, stderr
    return lines[0]


def test_no_or_wrong_credentials_cannot_produce_or_consume(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    _secured(s)
    world = World(engine, unique, teachers=5)
    batch = world.batch("locked")
    upload = _upload_file(tmp_path, world, 5)
    wrong = f"wrong-{uuid.uuid4().hex}"

    started = time.monotonic()
    done = _add(s, str(upload), "--batch", batch, "--as", world.admin, env={"KAFKA_SASL_PASSWORD": wrong})
    assert done.returncode == 1, done.stderr.decode()
    sentence = _one_sentence(done)
    assert "refused the credentials of principal User:producer" in sentence
    assert wrong not in sentence and time.monotonic() - started < 60

    done = _add(s, str(upload), "--batch", batch, "--as", world.admin, env={"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    assert done.returncode == 1, done.stderr.decode()
    assert "Cannot reach Kafka" in _one_sentence(done)

    # Consuming: the producer's `--wait` reader with a wrong password, and with no credentials at all.
    producer = with_stored_credentials(s, "producer")
    with pytest.raises(clients.AccessDenied, match="refused the credentials of principal User:producer"):
        ResultFollower(replace(producer, kafka_sasl_password=wrong), default_codec())
    with pytest.raises(clients.BrokerUnavailable, match="Cannot reach Kafka"):
        ResultFollower(replace(producer, kafka_security_protocol="PLAINTEXT"), default_codec())
    # ... and the processor: it stops with the sentence instead of retrying forever.
    proc = start_processor(s, "--until-idle", log=tmp_path / "processor.log", env={"KAFKA_SASL_PASSWORD": wrong})
    assert proc.wait(timeout=90) == 1
    log = (tmp_path / "processor.log").read_text()
    assert "refused the credentials of principal User:processor" in log and wrong not in log

    assert read_topic(s, s.topics.commands) == [] and read_topic(s, s.topics.uploads) == []


def test_each_principal_writes_only_its_own_topics(isolated_settings: Settings) -> None:
    s = isolated_settings
    _secured(s)
    for component, topic in (("dashboard", s.topics.results), ("processor", s.topics.course_progress)):
        as_component = with_stored_credentials(s, component)
        producer = clients.bulk_producer(as_component)
        deliveries = clients.Deliveries(as_component)
        clients.produce(producer, topic, b"forged", b"key", on_delivery=deliveries)
        with pytest.raises(clients.AccessDenied) as refused:
            deliveries.flush(producer, "a forged record", 30)
        assert f"User:{component}" in str(refused.value) and topic in str(refused.value)
        assert "TOPIC_AUTHORIZATION_FAILED" in str(refused.value)
        assert read_topic(s, topic) == [], f"nothing may reach {topic}"
    # Reading is refused the same way: the progress principal cannot follow results.
    with pytest.raises(clients.AccessDenied, match="User:progress"):
        ResultFollower(with_stored_credentials(s, "progress"), default_codec())


def _tls_env() -> dict[str, str]:
    """The SASL_SSL listener's settings, as `scripts/stack env COMPONENT --tls` prints them (secrets left out)."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "stack"), "env", "processor", "--tls"], capture_output=True, check=True, timeout=60
    )
    printed = credentials.parse(done.stdout.decode())
    keys = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SSL_CA_LOCATION")
    env = {k: printed[k] for k in keys}
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and Path(env["KAFKA_SSL_CA_LOCATION"]).is_file()
    return env


def _stored_secrets() -> list[str]:
    found = [v for c in credentials.COMPONENTS for k, v in credentials.load(c).items() if "PASSWORD" in k and v]
    for c in credentials.COMPONENTS:
        url = credentials.load(c).get("DATABASE_URL", "")
        if "@" in url and ":" in url.split("@")[0].rsplit("/", 1)[-1]:
            found.append(url.split("@")[0].rsplit(":", 1)[-1])
    store = ROOT / ".stack" / "tls" / "store.pass"
    if store.is_file():
        found.append(store.read_text().strip())
    return [f for f in found if len(f) >= 8]


def test_an_upload_over_the_tls_listener_and_no_secret_in_any_output(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    _secured(s)
    tls = _tls_env()
    world = World(engine, unique, teachers=20)
    batch = world.batch("tls")
    upload = _upload_file(tmp_path, world, 20)
    log = tmp_path / "processor.log"
    proc = start_processor(s, "--metrics-port", "0", "--log-level", "DEBUG", log=log, env=tls)
    try:
        done = _add(s, str(upload), "--batch", batch, "--as", world.admin, "--wait", "--json", env=tls)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        assert '"complete": true' in done.stdout.decode()
        assert world.members(batch) == {world.user_id(i) for i in range(20)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    check = subprocess.run(
        [sys.executable, "-m", "participants.stackcheck", "--timeout", "30", "--secure"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stderr.decode()
    outputs = {
        "add stdout": done.stdout.decode(),
        "add stderr": done.stderr.decode(),
        "processor log": log.read_text(),
        "stackcheck": check.stdout.decode() + check.stderr.decode(),
        "kafka log": (ROOT / ".stack" / "kafka.log").read_text(errors="replace"),
        "settings repr": repr(with_stored_credentials(s, "processor")) + repr(s),
    }
    secrets = _stored_secrets()
    assert secrets, "the stack generated credentials"
    for where, text in outputs.items():
        leaked = [f"{secret[:3]}…" for secret in secrets if secret in text]
        assert not leaked, f"{len(leaked)} generated secret(s) appear in the {where}"
