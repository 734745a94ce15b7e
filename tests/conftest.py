"""Test fixtures: the real Kafka broker and PostgreSQL.

The worktree's secured stack (scripts/stack) is used whenever it is up (its .stack/secrets exist and its broker
and database answer) and also when no Docker engine answers (then `stack up` starts it); only a machine with a
Docker engine and no local stack gets testcontainers, where the security tests skip (tests/support/stackmode.py).
Tests isolate themselves by unique batch ids / upload ids and, where they consume whole topics, by a per-test
topic prefix.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from enrolment import credentials
from enrolment.kafka.admin import broker_count, create_topics, delete_topics, topic_specs
from enrolment.settings import Settings, Topics, with_stored_credentials
from enrolment.store import migrate
from tests.support import stackmode
from tests.support.helpers import granted

ROOT = Path(__file__).resolve().parent.parent
# The images of docker-compose.yml (tests/core/test_compose.py keeps them the same).
POSTGRES_IMAGE = "postgres:15.18-bookworm"
KAFKA_IMAGE = "apache/kafka:4.1.1"


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - no engine, no socket, no package: use the local stack
        return False


@pytest.fixture(scope="session")
def base_settings() -> Iterator[Settings]:
    """Settings pointing at a live broker and database, migrated to head (the test process runs as the owner).

    On the local stack the owner's password comes from .stack/secrets/owner.env; children started by the
    helpers run as their own component's role (tests/support/helpers.database_env).
    """
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    local = stackmode.local_stack_answers(credentials.secrets_dir(), bootstrap)
    if stackmode.choose(local, _docker_answers) == "containers":
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE) as pg, KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
            url = pg.get_connection_url().replace("postgresql://", "postgresql+psycopg2://")
            os.environ["PARTICIPANTS_SECRETS_DIR"] = str(ROOT / ".stack" / "no-secrets")  # an open broker here
            os.environ["DATABASE_URL"] = url
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka.get_bootstrap_server()
            settings = Settings.from_env()
            migrate.upgrade(settings.database_url)
            create_topics(settings)
            yield settings
        return
    subprocess.run([str(ROOT / "scripts" / "stack"), "up"], check=True, cwd=ROOT)
    # The test process creates and deletes topics and grants ACLs as the stack's admin. Its password stays in
    # these settings: exported, every subprocess would inherit it (the environment wins over the files), and
    # the commands a test starts must run as their own component, with its credentials and ACLs.
    yield with_stored_credentials(Settings.from_env(), "admin")


@pytest.fixture(scope="session")
def engine(base_settings: Settings) -> Iterator[Engine]:
    eng = create_engine(base_settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture()
def unique() -> str:
    """A short unique token for ids (batch ids, users, uploads) so tests never collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture()
def isolated_settings(base_settings: Settings, unique: str) -> Iterator[Settings]:
    """Settings with a private set of topics and consumer groups (created here, deleted after)."""
    prefix = f"t{unique}."
    topics = Topics(
        commands=prefix + "commands",
        results=prefix + "results",
        enrollment_events=prefix + "enrollment-events",
        uploads=prefix + "uploads",
        telemetry=prefix + "telemetry",
        course_progress=prefix + "course-progress",
        dead_letters=prefix + "dead-letters",
        enrollments=prefix + "enrollments",
    )
    settings = replace(
        base_settings,
        topics=topics,
        consumer_group=f"processor-{unique}",
        dashboard_group=f"dashboard-{unique}",
        instance_id=f"test-{unique}",
        commands_partitions=4,
    )
    create_topics(settings, topic_specs(settings, broker_count(settings)))
    with granted(settings):
        yield settings
    delete_topics(settings, topics.all())


@pytest.fixture(autouse=True)
def _reap_processors() -> Iterator[None]:
    """No processor started by a test outlives it (a failed assertion must not leave one running)."""
    yield
    from tests.support.helpers import STARTED

    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    STARTED.clear()
