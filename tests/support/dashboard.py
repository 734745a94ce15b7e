"""Shared set-up for the dashboard's integration and browser tests: a private world on the real stack.

A world is a state of its own (users, a mentor, an admin, batches) in the shared database, private topics
and groups; uploads go through the real producer and the real processor, and the read model is built by the
real consumer.  Everything a world creates is deleted afterwards, by its ids.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import Engine, text

from dashboard.consumer import ReadModelConsumer, Stats
from dashboard.server import DashboardServer
from enrolment.files import InputRow
from enrolment.kafka.admin import broker_count, create_topics, delete_topics, topic_specs
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings, Topics
from enrolment.store.tokens import issue_token
from processor.engine import Processor
from processor.imports import import_batches, import_users
from producer.publish import UploadRequest, publish_upload
from tests.support.helpers import add_team, granted


@dataclass(frozen=True)
class World:
    settings: Settings
    token: str
    state: str
    mentor: str
    admin: str
    teachers: tuple[str, ...]
    batches: tuple[str, ...]

    def name_of(self, user_id: str) -> str:
        return f"Teacher {user_id.rsplit('-', 1)[-1]}"


@contextmanager
def private_topics(base: Settings, token: str, **overrides: Any) -> Iterator[Settings]:
    """Settings with topics and groups of their own (like the isolated_settings fixture, for any scope)."""
    # Every topic the settings name gets the private prefix, including any added later to Topics.
    topics = Topics(**{f.name: f"t{token}.{f.name.replace('_', '-')}" for f in fields(Topics)})
    settings = replace(
        base,
        topics=topics,
        consumer_group=f"processor-{token}",
        dashboard_group=f"dashboard-{token}",
        instance_id=f"test-{token}",
        commands_partitions=4,
        **overrides,
    )
    create_topics(settings, topic_specs(settings, broker_count(settings)))
    try:
        with granted(settings):
            yield settings
    finally:
        delete_topics(settings, topics.all())


def make_world(
    engine: Engine, settings: Settings, token: str, teachers: int, batches: Sequence[tuple[str, str, str]]
) -> World:
    """Imports a state with ``teachers`` users, a mentor and an admin, and ``batches`` of (suffix, type, status)."""
    state = f"S{token}".upper()
    mentor, admin = f"mentor-{token}", f"admin-{token}"
    users = ["user_id,state_id,state,name,roles,status"]
    users.append(f"{mentor},{state}-M1,{state},Mentor {token},COURSE_MENTOR,active")
    users.append(f"{admin},,{state},Admin {token},ORG_ADMIN,active")
    ids = tuple(f"u-{token}-{i:06d}" for i in range(1, teachers + 1))
    for i, uid in enumerate(ids, 1):
        users.append(f"{uid},{state}-T{i:06d},{state},Teacher {i:06d},PUBLIC,active")
    report = import_users(engine, io.BytesIO(("\n".join(users) + "\n").encode()))
    assert not report.errors, report.errors
    lines = ["batch_id,course_id,course_name,state,enrollment_type,status,start_date,end_date,mentors"]
    batch_ids = []
    for suffix, kind, status in batches:
        batch_id = f"batch-{token}-{suffix}"
        batch_ids.append(batch_id)
        lines.append(f"{batch_id},course-{token},Course {token},{state},{kind},{status},2026-01-01,2027-12-31,{mentor}")
    report = import_batches(engine, io.BytesIO(("\n".join(lines) + "\n").encode()))
    assert not report.errors, report.errors
    return World(settings, token, state, mentor, admin, ids, tuple(batch_ids))


def cleanup_world(engine: Engine, world: World) -> None:
    """Deletes every row the world's reference data, uploads, processor and read model created."""
    s = world.settings
    params = {"b": list(world.batches), "s": world.state, "g": s.dashboard_group, "pg": s.consumer_group}
    with engine.begin() as conn:
        for table in (
            "dash_applied_events",
            "dash_members",
            "dash_batch_counts",
            "dash_progress",
            "dash_uploads",
            "dash_positions",
        ):
            conn.execute(text(f"DELETE FROM {table} WHERE group_id = :g"), params)
        conn.execute(text("DELETE FROM enrolments WHERE batch_id = ANY(:b)"), params)
        conn.execute(text("DELETE FROM command_ledger WHERE batch_id = ANY(:b)"), params)
        conn.execute(text("DELETE FROM uploads WHERE batch_id = ANY(:b)"), params)
        conn.execute(text("DELETE FROM consumer_positions WHERE group_id = :pg"), params)
        conn.execute(text("DELETE FROM batch_mentors WHERE batch_id = ANY(:b)"), params)
        conn.execute(text("DELETE FROM course_batches WHERE batch_id = ANY(:b)"), params)
        conn.execute(text("DELETE FROM users WHERE state = :s"), params)
        conn.execute(text("DELETE FROM states WHERE code = :s"), params)


def upload(
    settings: Settings,
    batch_id: str,
    requested_by: str,
    user_ids: Sequence[str],
    *,
    action: str = "ADD",
    source: str = "BACKEND",
) -> str:
    """Publishes one upload of user ids through the real producer; returns its id."""
    rows = [InputRow(line=i + 2, identifier=u, id_type="USER_ID") for i, u in enumerate(user_ids)]
    request = UploadRequest(
        batch_id=batch_id, action=action, requested_by=requested_by, kind=action.lower(), source=source
    )
    return publish_upload(settings, default_codec(), request, rows, keep_rows=False).upload_id


def process(settings: Settings, engine: Engine) -> None:
    """Runs the real processor in-process until it has applied everything published so far."""
    Processor(settings, engine, default_codec(), until_idle=True, instance_id=settings.instance_id).run()


def catch_up(settings: Settings, engine: Engine, timeout_s: float = 120.0) -> Stats:
    """Runs the dashboard's read-model consumer until it has read its topics to the end."""
    consumer = ReadModelConsumer(settings, engine, default_codec())
    try:
        return consumer.catch_up(timeout_s)
    finally:
        consumer.close()


def read_model_content(engine: Engine, group: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a dashboard group's read model except positions, in a stable order (for equality checks)."""
    queries = {
        "members": "SELECT batch_id, user_id, course_id, enrolled_at, added_via, event_id, name, state_id "
        "FROM dash_members",
        "counts": "SELECT batch_id, course_id, participant_count, last_event_at FROM dash_batch_counts",
        "progress": "SELECT batch_id, user_id, progress, completed_at, updated_at FROM dash_progress",
        "uploads": "SELECT upload_id, batch_id, kind, requested_by, dry_run, file_name, parent_upload_id, "
        "commands_published, refused::text, processed, outcomes::text, reasons::text, created_at, completed_at, "
        "first_seen_at FROM dash_uploads",
        "applied": "SELECT event_id FROM dash_applied_events",
    }
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name, sql in queries.items():
            rows = conn.execute(
                text(
                    f"{sql} WHERE group_id = :g ORDER BY 1, 2"
                    if name != "applied"
                    else f"{sql} WHERE group_id = :g ORDER BY 1"
                ),
                {"g": group},
            ).all()
            out[name] = [tuple(r) for r in rows]
    return out


def forget(engine: Engine, people: Sequence[str], worlds: Sequence[World]) -> None:
    """Deletes what identity and plan tests leave beside the worlds: tokens, served states, plans, state settings;
    then the worlds themselves."""
    batches = [b for w in worlds for b in w.batches]
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM api_tokens WHERE user_id = ANY(:u)"), {"u": list(people)})
        conn.execute(text("DELETE FROM served_states WHERE user_id = ANY(:u)"), {"u": list(people)})
        conn.execute(text("DELETE FROM plans WHERE batch_id = ANY(:b)"), {"b": batches})
        conn.execute(text("DELETE FROM plan_settings WHERE state = ANY(:s)"), {"s": [w.state for w in worlds]})
    for world in worlds:
        cleanup_world(engine, world)


@contextmanager
def two_states(engine: Engine, settings: Settings, unique: str) -> Iterator[tuple[World, World, str]]:
    """State A (two invite-only batches, 8 teachers), state B (one batch, 3 teachers), and an implementation
    team member of B serving A."""
    a = make_world(engine, settings, unique, 8, [("a", "invite-only", "ongoing"), ("b", "invite-only", "ongoing")])
    b = make_world(engine, settings, unique + "b", 3, [("a", "invite-only", "ongoing")])
    team = add_team(engine, f"team-{unique}", b.state, [a.state])
    try:
        yield a, b, team
    finally:
        forget(engine, [a.admin, a.mentor, b.admin, b.mentor, team], [a, b])


def bearer(engine: Engine, user_id: str) -> dict[str, str]:
    """The Authorization header of a fresh API token of the user's."""
    return {"Authorization": f"Bearer {issue_token(engine, user_id, 'test', by='test').secret}"}


@contextmanager
def serving(settings: Settings, engine: Engine) -> Iterator[str]:
    """The dashboard as the CLI runs it (uvicorn and the read-model thread) on a free port; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = DashboardServer(settings, engine, port=port)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
