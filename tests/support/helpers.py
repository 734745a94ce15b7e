"""Shared helpers for integration tests: reference data, publishing, running the processor, reading topics, waiting."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer, ConsumerGroupState, TopicPartition
from sqlalchemy import Engine, text

from enrolment.files import InputRow, RefusedRow
from enrolment.kafka import acls
from enrolment.kafka.clients import admin_client, base_config
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from enrolment.store import accounts
from processor.engine import Processor
from processor.imports import import_batches, import_users
from producer.publish import Published, UploadRequest, publish_upload

ROOT = Path(__file__).resolve().parents[2]
PARTICIPANTS = str(ROOT / ".venv" / "bin" / "participants")
STARTED: list[subprocess.Popen[bytes]] = []  # reaped after each test, even one that failed half-way
T = TypeVar("T")


@contextmanager
def granted(settings: Settings) -> Iterator[None]:
    """The components' ACLs on a test's private topics and groups (enrolment.kafka.acls), revoked afterwards.

    `settings` act as the stack's admin; on an open broker (no credentials) there is nothing to grant.
    """
    if settings.kafka_sasl_username != "admin":
        yield
        return
    table = acls.grants(settings)
    acls.apply(settings, table)
    try:
        yield
    finally:
        acls.revoke(settings, table)


def wait_until(what: str | Callable[[], str], predicate: Callable[[], T], timeout_s: float, interval_s: float) -> T:
    """Polls `predicate` until it returns something truthy and returns that; running out of time fails the test.

    `what` names the awaited state for the failure sentence; a callable is asked at that moment (to show where
    things stood).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"Timed out after {timeout_s:g} s waiting for {described}.")
        time.sleep(interval_s)


def group_assignment(settings: Settings, group: str) -> list[set[int]]:
    """The partitions each member of a consumer group owns, once the group is stable (else no members)."""
    admin = admin_client(settings)
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    if described.state != ConsumerGroupState.STABLE:
        return []
    return [{tp.partition for tp in m.assignment.topic_partitions} for m in described.members]


class World:
    """A private state with teachers, an admin, a mentor and batches, all named after a unique token."""

    def __init__(self, engine: Engine, unique: str, teachers: int = 100, other_state_teachers: int = 5) -> None:
        self.engine = engine
        self.u = unique
        self.state = f"S{unique}"
        self.other_state = f"O{unique}"
        self.admin = f"admin-{unique}"
        self.other_admin = f"oadmin-{unique}"
        self.mentor = f"mentor-{unique}"
        self.teachers = teachers
        lines = ["user_id,state_id,state,name,roles,status"]
        lines.append(f"{self.admin},,{self.state},Admin,ORG_ADMIN,active")
        lines.append(f"{self.other_admin},,{self.other_state},Other Admin,ORG_ADMIN,active")
        lines.append(f"{self.mentor},,{self.state},Mentor,COURSE_MENTOR,active")
        for n in range(teachers):
            lines.append(f"{self.user_id(n)},{self.state_id(n)},{self.state},Teacher {n},PUBLIC,active")
        for n in range(other_state_teachers):
            lines.append(f"o-{unique}-{n},OS-{n},{self.other_state},Other {n},PUBLIC,active")
        lines.append(f"inactive-{unique},IN-1,{self.state},Inactive,PUBLIC,inactive")
        report = import_users(engine, io.BytesIO(("\n".join(lines) + "\n").encode()))
        assert not report.errors, report.errors

    def user_id(self, n: int) -> str:
        return f"u-{self.u}-{n:06d}"

    def state_id(self, n: int) -> str:
        return f"T{self.u}-{n:06d}"

    def batch(self, name: str, enrollment_type: str = "invite-only", status: str = "ongoing") -> str:
        batch_id = f"{name}-{self.u}"
        csv = (
            "batch_id,course_id,course_name,state,enrollment_type,status,start_date,end_date,mentors\n"
            f"{batch_id},course-{self.u},Course,{self.state},{enrollment_type},{status},2026-01-01,2027-01-01,"
            f"{self.mentor}\n"
        )
        report = import_batches(self.engine, io.BytesIO(csv.encode()))
        assert not report.errors, report.errors
        return batch_id

    def members(self, batch_id: str) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT user_id FROM enrolments WHERE batch_id = :b"), {"b": batch_id})
            return {r[0] for r in rows}

    def count(self, batch_id: str) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                text("SELECT participant_count FROM course_batches WHERE batch_id = :b"), {"b": batch_id}
            ).scalar_one()
            return int(value)


def rows(identifiers: Iterable[str], id_type: str = "STATE_ID", first_line: int = 2) -> list[InputRow | RefusedRow]:
    return [InputRow(first_line + i, ident, id_type) for i, ident in enumerate(identifiers)]  # type: ignore[arg-type]


def publish(
    settings: Settings,
    batch_id: str,
    requester: str,
    items: list[InputRow | RefusedRow],
    action: str = "ADD",
    dry_run: bool = False,
    source: str = "BACKEND",
    include_completed: bool = False,
) -> Published:
    request = UploadRequest(
        batch_id=batch_id,
        action=action,
        requested_by=requester,
        kind=action.lower(),
        dry_run=dry_run,
        source=source,
        include_completed=include_completed,
    )
    return publish_upload(settings, default_codec(), request, items)


def process(settings: Settings, engine: Engine, instance_id: str | None = None, group: str | None = None) -> None:
    """Runs the real processor in-process until the group is caught up."""
    Processor(
        settings, engine, default_codec(), instance_id=instance_id, group=group, until_idle=True, idle_grace_s=0.5
    ).run()


def database_env(settings: Settings) -> dict[str, str]:
    """DATABASE_URL for a child only when the test chose a database (a private one, an unreachable one).

    Otherwise the child runs as its own component's role, from the stack's secrets (enrolment.credentials),
    as it would in production: the test process itself is the owner.  A DATABASE_URL set in the environment
    is inherited by every child anyway.
    """
    if settings.database_url == Settings.from_env().database_url:
        return {}
    return {"DATABASE_URL": settings.database_url}


def env_for(settings: Settings) -> dict[str, str]:
    t = settings.topics
    env = dict(os.environ)
    env.update(database_env(settings))
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "TOPIC_COMMANDS": t.commands,
            "TOPIC_RESULTS": t.results,
            "TOPIC_ENROLLMENT_EVENTS": t.enrollment_events,
            "TOPIC_UPLOADS": t.uploads,
            "TOPIC_TELEMETRY": t.telemetry,
            "TOPIC_COURSE_PROGRESS": t.course_progress,
            "TOPIC_DEAD_LETTERS": t.dead_letters,
            "TOPIC_ENROLLMENTS": t.enrollments,
            "CONSUMER_GROUP": settings.consumer_group,
            "DASHBOARD_GROUP": settings.dashboard_group,
            "PROCESSOR_INSTANCE_ID": settings.instance_id,
            "COMMANDS_PARTITIONS": str(settings.commands_partitions),
        }
    )
    return env


def start_processor(
    settings: Settings, *extra: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child process
    full_env = env_for(settings)
    full_env.update(env or {})
    proc = subprocess.Popen([PARTICIPANTS, "process", *extra], env=full_env, stdout=out, stderr=subprocess.STDOUT)
    STARTED.append(proc)
    return proc


def add_team(engine: Engine, team: str, home_state: str, serves: Sequence[str]) -> str:
    """An IMPLEMENTATION_TEAM member of ``home_state`` serving ``serves``; removed by ``forget``."""
    rows = f"user_id,state_id,state,name,roles,status\n{team},,{home_state},Team,IMPLEMENTATION_TEAM,active\n"
    assert not import_users(engine, io.BytesIO(rows.encode())).errors
    with engine.begin() as conn, closing(conn.connection.cursor()) as cur:
        accounts.set_served_states(cur, team, list(serves))
    return team


SERVER_VARIABLES = ("PARTICIPANTS_SERVER", "PARTICIPANTS_TOKEN", "PARTICIPANTS_CREDENTIALS")


def cli(
    settings: Settings, *args: str, input_bytes: bytes | None = None, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """The `participants` command as the settings' components; a server is used only when ``env`` names one."""
    full = env_for(settings)
    for name in SERVER_VARIABLES:
        full.pop(name, None)
    full.update(env)
    return subprocess.run(
        [PARTICIPANTS, *args], env=full, input=input_bytes, capture_output=True, timeout=timeout, check=False
    )


def commands_end(settings: Settings) -> int:
    """The sum of the commands topic's end offsets: unchanged means nothing was published."""
    consumer = Consumer({**base_config(settings), "group.id": "offsets-probe"})
    try:
        topic = settings.topics.commands
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def members(engine: Engine, batch_id: str) -> set[str]:
    """The batch's participants as the store has them."""
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT user_id FROM enrolments WHERE batch_id = :b"), {"b": batch_id}).scalars())


def csv_table(data: bytes) -> list[list[str]]:
    """A downloaded CSV (with its BOM) as rows of cells."""
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def read_topic(settings: Settings, topic: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every committed record of a topic, from the beginning to the log's current end (read_committed).

    The end is the log-end offset, not the last stable offset a read_committed handle is told: the processor
    commits its database step before its Kafka transaction, so right after an upload shows completed in the
    store its last outputs may sit in a transaction still open, and reading only to the stable offset would
    return a short list. Reading to the log end waits for every transaction written so far to be decided.
    """
    codec = default_codec()
    config = {
        **base_config(settings),
        "group.id": f"reader-{time.time_ns()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    consumer = Consumer({**config, "isolation.level": "read_committed"})
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        ends = log_ends(config, topic, parts)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[dict[str, Any]] = []
        done = {p for p in parts if ends[p] == 0}

        def read_on() -> bool:
            for m in consumer.consume(10000, 0.5):
                if m.error() is not None:
                    continue
                p, off = m.partition(), m.offset()
                assert p is not None and off is not None
                _name, rec = codec.decode(m.value())
                out.append(rec)
                if off + 1 >= ends[p]:
                    done.add(p)
            # transaction markers sit at the end: a partition is done once its position passes the end
            for p in parts:
                if p not in done and consumer.position([TopicPartition(topic, p)])[0].offset >= ends[p]:
                    done.add(p)
            return len(done) == len(parts)

        if len(done) < len(parts):
            wait_until(
                lambda: f"{topic} to be read to its end ({len(done)} of {len(parts)} partitions)", read_on, timeout, 0
            )
        return out
    finally:
        consumer.close()


def log_ends(config: dict[str, Any], topic: str, parts: list[int]) -> dict[int, int]:
    """Each partition's log-end offset (read_uncommitted: open transactions included)."""
    watcher = Consumer({**config, "isolation.level": "read_uncommitted"})
    try:
        return {p: watcher.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        watcher.close()


def python() -> str:
    return sys.executable
